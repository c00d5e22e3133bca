"""Numbered SQL migrations (``sql/NNN_name.sql``), applied in order and recorded with checksums.

Each file runs in its own transaction together with its row in
``schema_migrations``. A migration already applied whose file has changed
since is refused: the schema it built is no longer what the file says, and
guessing how to reconcile the two would be worse than stopping.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import asyncpg
import structlog

from depot_sync.db import Conn

log = structlog.get_logger("hesgate.depot.migrations")

_NAME: Final = re.compile(r"(?P<number>[0-9]{3,})_(?P<name>[a-z0-9_]+)\.sql")
#: Session advisory lock held while migrating, so two depots never migrate at once.
MIGRATION_LOCK: Final = 4851000

_CREATE_TABLE: Final = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """The migrations cannot be applied; the message says which file and why."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's text."""
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()

    @property
    def label(self) -> str:
        """The file's name, as people know it."""
        return self.path.name


@dataclass(frozen=True, slots=True)
class Applied:
    """A migration the database records as applied."""

    version: int
    name: str
    checksum: str
    applied_at: dt.datetime


def discover(directory: Path) -> list[Migration]:
    """The migrations in ``directory``, in order; refuses misnamed files and duplicate numbers."""
    if not directory.is_dir():
        raise MigrationError(f"the migrations directory {directory} does not exist")
    found: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _NAME.fullmatch(path.name)
        if match is None:
            raise MigrationError(
                f"{path.name}: a migration is named NNN_name.sql (digits, then lower-case words)"
            )
        version = int(match["number"])
        if version in found:
            raise MigrationError(
                f"{path.name}: number {version} is also used by {found[version].label}"
            )
        try:
            sql = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise MigrationError(f"{path.name}: cannot read it: {err}") from err
        found[version] = Migration(version, match["name"], path, sql)
    return [found[v] for v in sorted(found)]


async def applied(conn: Conn) -> dict[int, Applied]:
    """What the database says was applied (empty for a new database)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch(
        "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version"
    )
    return {
        r["version"]: Applied(r["version"], r["name"], r["checksum"], r["applied_at"]) for r in rows
    }


def plan(migrations: list[Migration], done: dict[int, Applied]) -> list[Migration]:
    """The migrations still to apply, after checking the applied ones are unchanged."""
    known = {m.version: m for m in migrations}
    for version, record in sorted(done.items()):
        migration = known.get(version)
        if migration is None:
            raise MigrationError(
                f"the database has migration {version:03d}_{record.name} applied, which this "
                "program does not have: it is older than the database"
            )
        if migration.checksum != record.checksum:
            raise MigrationError(
                f"{migration.label} was edited after it was applied on "
                f"{record.applied_at:%Y-%m-%d %H:%M} UTC (checksum {record.checksum[:12]} then, "
                f"{migration.checksum[:12]} now): restore the file and put the change in a new "
                "migration"
            )
    todo = [m for m in migrations if m.version not in done]
    if done and todo and todo[0].version < max(done):
        raise MigrationError(
            f"{todo[0].label} is numbered below migration {max(done)}, which is already "
            "applied: give it a higher number"
        )
    return todo


async def pending(conn: Conn, directory: Path) -> list[Migration]:
    """The migrations not yet applied (checking the applied ones)."""
    return plan(discover(directory), await applied(conn))


async def migrate(conn: Conn, directory: Path) -> list[Migration]:
    """Apply every pending migration in order; returns what was applied."""
    migrations = discover(directory)
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute(_CREATE_TABLE)
        todo = plan(migrations, await applied(conn))
        for migration in todo:
            mlog = log.bind(migration=migration.label)
            try:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) "
                        "VALUES ($1, $2, $3)",
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
            except asyncpg.PostgresError as err:
                raise MigrationError(f"{migration.label} failed: {err}") from err
            mlog.info("migration applied")
        return todo
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
