"""A real PostgreSQL for tests: one server per test run, a fresh database per use.

``HESGATE_TEST_DSN`` names a server to use (its user must be allowed to create
databases); without it an embedded server (pgserver) is started in a
temporary directory and stopped at the end of the run.

Usage from any test package::

    def test_x(pg_cluster: PgCluster) -> None:
        dsn = pg_cluster.create_database_sync(unique_name("x"))
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import warnings
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ENV_DSN = "HESGATE_TEST_DSN"

T = TypeVar("T")
_counter = itertools.count(1)


def unique_name(prefix: str = "t") -> str:
    """A database name no other test in this run (or a parallel run) uses."""
    return f"hg_{prefix}_{os.getpid()}_{next(_counter)}".lower()


def with_database(dsn: str, database: str) -> str:
    """``dsn`` pointing at ``database`` instead of the one it names."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh loop in a worker thread.

    Safe from sync fixtures whether or not the calling thread runs a loop.
    """
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class PgCluster:
    """A PostgreSQL server reachable through ``admin_dsn``."""

    admin_dsn: str

    def dsn_for(self, database: str) -> str:
        """The DSN of one database on this server."""
        return with_database(self.admin_dsn, database)

    async def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create ``name`` (optionally as a copy of ``template``) and return its DSN."""
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            sql = f"CREATE DATABASE {_quote(name)}"
            if template is not None:
                sql += f" TEMPLATE {_quote(template)}"
                if conn.get_server_version().major >= 15:
                    # Copying the files is much faster than WAL-logging a small template.
                    sql += " STRATEGY FILE_COPY"
            await conn.execute(sql)
        finally:
            await conn.close()
        return self.dsn_for(name)

    async def drop_database(self, name: str) -> None:
        """Drop ``name``, closing whatever is still connected to it."""
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")
        finally:
            await conn.close()

    def create_database_sync(self, name: str, *, template: str | None = None) -> str:
        """:meth:`create_database` for synchronous callers (fixtures)."""
        return run_sync(self.create_database(name, template=template))

    def drop_database_sync(self, name: str) -> None:
        """:meth:`drop_database` for synchronous callers (fixtures)."""
        run_sync(self.drop_database(name))


async def _throwaway_durability(dsn: str) -> None:
    """Test data is thrown away: skip flushing it to disk, so databases come and go fast."""
    conn = await asyncpg.connect(dsn)
    try:
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            await conn.execute(f"ALTER SYSTEM SET {setting} = off")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


@contextmanager
def pg_cluster(base_dir: Path) -> Iterator[PgCluster]:
    """The server named by ``HESGATE_TEST_DSN``, or an embedded one under ``base_dir``."""
    dsn = os.environ.get(ENV_DSN)
    if dsn:
        yield PgCluster(dsn)
        return
    with warnings.catch_warnings():
        # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (CI, containers).
        warnings.simplefilter("ignore")
        import pgserver  # noqa: PLC0415

    get_server: Any = pgserver.get_server  # type: ignore[attr-defined]
    base_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(base_dir / "pg", cleanup_mode="stop")
    try:
        cluster = PgCluster(str(server.get_uri()))
        run_sync(_throwaway_durability(cluster.admin_dsn))
        yield cluster
    finally:
        server.cleanup()
