"""Fixtures for the depot's tests: a migrated template database, a fresh copy per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from depot_sync.config import DEFAULT_MIGRATIONS_DIR
from depot_sync.db.migrations import migrate
from tests.pg import PgCluster, run_sync, unique_name


async def _build_template(cluster: PgCluster, name: str) -> None:
    dsn = await cluster.create_database(name)
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, DEFAULT_MIGRATIONS_DIR)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def depot_template(postgres: PgCluster) -> Iterator[str]:
    """A database with every migration applied, copied for each test."""
    name = unique_name("tmpl")
    run_sync(_build_template(postgres, name))
    yield name
    postgres.drop_database_sync(name)


@pytest.fixture
def db_dsn(postgres: PgCluster, depot_template: str) -> Iterator[str]:
    """A fresh, migrated database of the test's own."""
    name = unique_name("db")
    dsn = postgres.create_database_sync(name, template=depot_template)
    yield dsn
    postgres.drop_database_sync(name)


@pytest.fixture
async def pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A small pool on the test's database."""
    pool = await asyncpg.create_pool(db_dsn, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()
