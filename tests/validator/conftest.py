"""Fixtures for the validator's tests: the depot's database fixtures, reused as they are."""

from tests.depot_sync.conftest import db_dsn, depot_template, pool

__all__ = ["db_dsn", "depot_template", "pool"]
