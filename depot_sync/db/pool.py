"""Connecting to the depot's database: the configured DSN, or the embedded server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final

import asyncpg
import structlog

from depot_sync.config import DatabaseSection
from depot_sync.db.embedded import embedded_postgres, with_database

log = structlog.get_logger("hesgate.depot.db")

#: Every session runs in UTC; times reach people through explicit conversions.
SERVER_SETTINGS: Final[Mapping[str, str]] = MappingProxyType(
    {"application_name": "hes-depot", "timezone": "UTC"}
)


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached with the configured settings."""


@dataclass(frozen=True, slots=True)
class Database:
    """An open connection pool and where it points."""

    pool: asyncpg.Pool
    dsn: str
    embedded: bool


async def _ensure_database(server_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
            log.info("created database in embedded PostgreSQL", database=name)
    finally:
        await conn.close()


@asynccontextmanager
async def resolve_dsn(settings: DatabaseSection, data_dir: Path) -> AsyncIterator[tuple[str, bool]]:
    """Yield ``(dsn, embedded)``: the configured DSN, or an embedded server's (started here)."""
    if settings.dsn:
        yield settings.dsn, False
        return
    async with AsyncExitStack() as stack:
        manager = embedded_postgres(data_dir)
        server_dsn = await asyncio.to_thread(manager.__enter__)
        stack.push_async_callback(asyncio.to_thread, manager.__exit__, None, None, None)
        await _ensure_database(server_dsn, settings.embedded_database)
        yield with_database(server_dsn, settings.embedded_database), True


async def create_pool(dsn: str, settings: DatabaseSection) -> asyncpg.Pool:
    """An asyncpg pool sized from the configuration."""
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=settings.pool_min,
            max_size=settings.pool_max,
            command_timeout=settings.command_timeout_s,
            server_settings=dict(SERVER_SETTINGS),
        )
    except (
        OSError,
        TimeoutError,
        ValueError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
    ) as err:
        raise DatabaseUnavailable(f"cannot connect to the database: {err}") from err
    return pool


@asynccontextmanager
async def open_database(settings: DatabaseSection, data_dir: Path) -> AsyncIterator[Database]:
    """The depot's database, open for the duration of the block."""
    async with resolve_dsn(settings, data_dir) as (dsn, embedded):
        pool = await create_pool(dsn, settings)
        try:
            yield Database(pool, dsn, embedded)
        finally:
            await pool.close()
