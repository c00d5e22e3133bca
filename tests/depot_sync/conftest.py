"""Fixtures for the depot's tests: a migrated template database, a fresh copy per test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from depot_sync.config import DEFAULT_MIGRATIONS_DIR
from depot_sync.db.migrations import migrate
from depot_sync.risklist import watch as watch_module
from depot_sync.risklist.changes import ListHead, list_head
from depot_sync.risklist.snapshots import PublishedSnapshot, latest_snapshot
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


@dataclass
class Reads:
    """How many times a depot's list watch read each value from the database."""

    head: int = 0
    snapshot: int = 0
    #: When set, a head read waits for it before reading (``held`` says one is waiting).
    hold_head: asyncio.Event | None = None
    held: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    """Count the reads of :mod:`depot_sync.risklist.watch` (every ListWatch, the depot's too)."""
    counts = Reads()

    async def counted_head(db: Any) -> ListHead:
        counts.head += 1
        if counts.hold_head is not None:
            counts.held.set()
            await counts.hold_head.wait()
        return await list_head(db)

    async def counted_snapshot(db: Any, directory: Path) -> PublishedSnapshot | None:
        counts.snapshot += 1
        return await latest_snapshot(db, directory)

    monkeypatch.setattr(watch_module, "list_head", counted_head)
    monkeypatch.setattr(watch_module, "latest_snapshot", counted_snapshot)
    return counts
