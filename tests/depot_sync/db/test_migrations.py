from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from depot_sync.config import DEFAULT_MIGRATIONS_DIR
from depot_sync.db.migrations import MigrationError, applied, discover, migrate, pending
from tests.pg import PgCluster, unique_name

EXPECTED_TABLES = {
    "devices",
    "device_sync",
    "tap_gaps",
    "device_status",
    "request_nonces",
    "credentials",
    "list_changes",
    "list_state",
    "snapshots",
    "taps",
    "taps_default",
    "operators",
    "operator_tokens",
    "export_log",
    "schema_migrations",
}


@pytest.fixture
async def empty_db(postgres: PgCluster) -> AsyncIterator[asyncpg.Connection]:
    name = unique_name("mig")
    dsn = await postgres.create_database(name)
    conn = await asyncpg.connect(dsn)
    yield conn
    await conn.close()
    await postgres.drop_database(name)


def copy_migrations(tmp_path: Path) -> Path:
    target = tmp_path / "sql"
    target.mkdir()
    for m in discover(DEFAULT_MIGRATIONS_DIR):
        (target / m.label).write_text(m.sql, encoding="utf-8")
    return target


async def test_from_empty_applies_everything_once(empty_db: asyncpg.Connection) -> None:
    done = await migrate(empty_db, DEFAULT_MIGRATIONS_DIR)
    assert [m.version for m in done] == [m.version for m in discover(DEFAULT_MIGRATIONS_DIR)]
    tables = {
        r["tablename"]
        for r in await empty_db.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
    }
    assert tables >= EXPECTED_TABLES
    assert await migrate(empty_db, DEFAULT_MIGRATIONS_DIR) == []
    assert await pending(empty_db, DEFAULT_MIGRATIONS_DIR) == []
    records = await applied(empty_db)
    assert {v: r.checksum for v, r in records.items()} == {
        m.version: m.checksum for m in discover(DEFAULT_MIGRATIONS_DIR)
    }


async def test_edited_applied_migration_is_refused(
    empty_db: asyncpg.Connection, tmp_path: Path
) -> None:
    directory = copy_migrations(tmp_path)
    await migrate(empty_db, directory)
    first = sorted(directory.iterdir())[0]
    first.write_text(first.read_text() + "\n-- an innocent comment\n", encoding="utf-8")
    with pytest.raises(MigrationError, match=rf"{first.name} was edited after it was applied"):
        await migrate(empty_db, directory)


async def test_new_migration_is_applied_in_order(
    empty_db: asyncpg.Connection, tmp_path: Path
) -> None:
    directory = copy_migrations(tmp_path)
    await migrate(empty_db, directory)
    (directory / "900_extra.sql").write_text("CREATE TABLE extra (x int);", encoding="utf-8")
    done = await migrate(empty_db, directory)
    assert [m.label for m in done] == ["900_extra.sql"]
    assert await empty_db.fetchval("SELECT to_regclass('extra') IS NOT NULL")


async def test_failing_migration_leaves_nothing_behind(
    empty_db: asyncpg.Connection, tmp_path: Path
) -> None:
    directory = copy_migrations(tmp_path)
    (directory / "900_broken.sql").write_text(
        "CREATE TABLE half (x int); SELECT no_such_function();", encoding="utf-8"
    )
    with pytest.raises(MigrationError, match=r"900_broken\.sql failed"):
        await migrate(empty_db, directory)
    assert not await empty_db.fetchval("SELECT to_regclass('half') IS NOT NULL")
    assert 900 not in await applied(empty_db)


async def test_unknown_applied_migration_is_refused(
    empty_db: asyncpg.Connection, tmp_path: Path
) -> None:
    directory = copy_migrations(tmp_path)
    (directory / "900_extra.sql").write_text("SELECT 1;", encoding="utf-8")
    await migrate(empty_db, directory)
    (directory / "900_extra.sql").unlink()
    with pytest.raises(MigrationError, match="does not have"):
        await migrate(empty_db, directory)


def test_misnamed_and_duplicate_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "1_x.sql").write_text("", encoding="utf-8")
    with pytest.raises(MigrationError, match=r"NNN_name\.sql"):
        discover(tmp_path)
    (tmp_path / "1_x.sql").unlink()
    (tmp_path / "001_a.sql").write_text("", encoding="utf-8")
    (tmp_path / "001_b.sql").write_text("", encoding="utf-8")
    with pytest.raises(MigrationError, match="also used by"):
        discover(tmp_path)
