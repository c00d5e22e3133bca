"""Fixtures for the validator's tests: the depot's database fixtures, and a scanner cable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.depot_sync.conftest import db_dsn, depot_template, pool
from tests.validator.ptys import FakeCable

__all__ = ["cable", "db_dsn", "depot_template", "pool"]


@pytest.fixture
def cable(tmp_path: Path) -> Iterator[FakeCable]:
    """A plugged-in scanner cable at ``tmp_path/ttyScanner``, unplugged after the test."""
    c = FakeCable(tmp_path / "ttyScanner")
    c.plug()
    yield c
    c.unplug()
