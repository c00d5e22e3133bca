"""Fixtures shared by every test package."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from tests.chromium import Chromium, find_chromium
from tests.pg import PgCluster, pg_cluster


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgCluster]:
    """One PostgreSQL server for the whole run (``HESGATE_TEST_DSN`` or embedded).

    Its directory is not under pytest's base temp: a concurrent pytest run prunes
    old base temps, which would delete a running server's data.
    """
    base = Path(tempfile.mkdtemp(prefix="hesgate-pg-"))
    try:
        with pg_cluster(base) as cluster:
            yield cluster
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_dsn(postgres: PgCluster) -> str:
    """The administrative DSN of the session's PostgreSQL server (may create databases)."""
    return postgres.admin_dsn


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back for the next test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def chromium() -> Chromium:
    """A real headless Chromium; skipped, saying why, where none is installed."""
    binary = find_chromium()
    if binary is None:
        pytest.skip("no chromium on this machine (.ci/run installs Debian's chromium)")
    return Chromium(binary)
