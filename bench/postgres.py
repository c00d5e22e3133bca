"""The bench's own PostgreSQL: the depot's embedded server (pgserver), kept in the data directory.

Durability is left at PostgreSQL's defaults (``fsync``, ``synchronous_commit``
and ``full_page_writes`` on), as a depot runs; the settings that matter are
reported with the results.
"""

from __future__ import annotations

import asyncio
import shutil
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Final

import asyncpg

from bench.measure import tree_cpu_s
from depot_sync.db.embedded import embedded_postgres, with_database

#: Server settings reported beside the results.
REPORTED: Final = (
    "server_version",
    "shared_buffers",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "max_wal_size",
    "work_mem",
)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Postgres:
    """One PostgreSQL server in ``directory`` (started, or joined if already running)."""

    def __init__(self, directory: Path, *, fresh: bool = False) -> None:
        self._dir = directory
        self._fresh = fresh
        self._manager: AbstractContextManager[str] | None = None
        self.admin_dsn = ""

    async def start(self) -> None:
        """Start the server (blocking work in a thread)."""
        if self._fresh:
            await asyncio.to_thread(shutil.rmtree, self._dir, True)
        manager = embedded_postgres(self._dir)
        self.admin_dsn = await asyncio.to_thread(manager.__enter__)
        self._manager = manager

    async def stop(self) -> None:
        """Stop the server."""
        manager, self._manager = self._manager, None
        if manager is not None:
            await asyncio.to_thread(manager.__exit__, None, None, None)

    def postmaster_pid(self) -> int:
        """The server's main process (from ``postmaster.pid``)."""
        first = (self._dir / "postmaster.pid").read_text(encoding="ascii").split("\n", 1)[0]
        return int(first.strip())

    def cpu_s(self) -> float:
        """CPU seconds the whole server (every backend) has used so far."""
        return tree_cpu_s(self.postmaster_pid())

    def dsn_for(self, database: str) -> str:
        """The DSN of one database on this server."""
        return with_database(self.admin_dsn, database)

    async def describe(self) -> dict[str, str]:
        """The server's version and durability and memory settings."""
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            return {
                f"postgres {name}": str(await conn.fetchval(f"SHOW {name}")) for name in REPORTED
            }
        finally:
            await conn.close()

    async def exists(self, database: str) -> str | None:
        """The comment on ``database`` if it exists ('' without one), else ``None``."""
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            row = await conn.fetchrow(
                "SELECT coalesce(shobj_description(oid, 'pg_database'), '') AS note "
                "FROM pg_database WHERE datname = $1",
                database,
            )
        finally:
            await conn.close()
        return None if row is None else str(row["note"])

    async def recreate(self, database: str) -> str:
        """Drop ``database`` if it exists, create it empty, and return its DSN."""
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {_quote(database)} WITH (FORCE)")
            await conn.execute(f"CREATE DATABASE {_quote(database)}")
        finally:
            await conn.close()
        return self.dsn_for(database)

    async def mark(self, database: str, note: str) -> None:
        """Set the comment on ``database`` (how a finished seed is recognised)."""
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            literal = "'" + note.replace("'", "''") + "'"
            await conn.execute(f"COMMENT ON DATABASE {_quote(database)} IS {literal}")
        finally:
            await conn.close()
