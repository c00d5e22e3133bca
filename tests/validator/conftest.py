"""Fixtures for the validator's tests: the depot's database, a scanner cable, a dead depot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.depot_sync.conftest import db_dsn, depot_template, pool
from tests.depot_sync.helpers import reserved_port
from tests.validator.ptys import FakeCable

__all__ = ["cable", "db_dsn", "dead_depot_url", "depot_template", "pool"]


@pytest.fixture
def cable(tmp_path: Path) -> Iterator[FakeCable]:
    """A plugged-in scanner cable at ``tmp_path/ttyScanner``, unplugged after the test."""
    c = FakeCable(tmp_path / "ttyScanner")
    c.plug()
    yield c
    c.unplug()


@pytest.fixture
def dead_depot_url() -> Iterator[str]:
    """A depot address that refuses every connection at once, and stays so for the test."""
    with reserved_port() as port:
        yield f"http://127.0.0.1:{port}"
