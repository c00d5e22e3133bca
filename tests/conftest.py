"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pg import PgCluster, pg_cluster


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgCluster]:
    """One PostgreSQL server for the whole run (``HESGATE_TEST_DSN`` or embedded)."""
    with pg_cluster(tmp_path_factory.mktemp("postgres")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def pg_dsn(postgres: PgCluster) -> str:
    """The administrative DSN of the session's PostgreSQL server (may create databases)."""
    return postgres.admin_dsn
