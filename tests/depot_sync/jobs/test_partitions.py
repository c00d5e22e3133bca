from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from depot_sync.jobs.partitions import (
    BadDuration,
    ensure_partitions,
    parse_days,
    partition_days,
    purge,
)
from depot_sync.taps.ingest import ingest_batch
from tests.depot_sync.helpers import BASE_MS, enrol, tap

DAY_MS = 86_400_000
FIRST = dt.date(2024, 3, 1)  # BASE_MS's day


async def test_partitions_are_created_ahead_and_move_early_rows(pool: asyncpg.Pool) -> None:
    await enrol(pool, "bus-1")
    async with pool.acquire() as conn:
        # A tap on a day without a partition lands in the default one...
        await ingest_batch(conn, "bus-1", [tap(1, time_ms=BASE_MS + 2 * DAY_MS)])
        assert await conn.fetchval("SELECT count(*) FROM taps_default") == 1
        created = await ensure_partitions(conn, FIRST, back=0, ahead=3)
        assert created == 4
        assert await ensure_partitions(conn, FIRST, back=0, ahead=3) == 0
        # ...and moves to its own partition when that is created.
        assert await conn.fetchval("SELECT count(*) FROM taps_default") == 0
        assert await conn.fetchval("SELECT count(*) FROM taps_20240303") == 1
        assert await partition_days(conn) == [FIRST + dt.timedelta(days=d) for d in range(4)]


async def test_purge_drops_whole_days(pool: asyncpg.Pool) -> None:
    await enrol(pool, "bus-1")
    async with pool.acquire() as conn:
        await ensure_partitions(conn, FIRST, back=0, ahead=2)
        records = [tap(seq, time_ms=BASE_MS + (seq - 1) * DAY_MS // 2) for seq in range(1, 7)]
        records.append(tap(7, time_ms=BASE_MS - 40 * DAY_MS))  # an old day without a partition
        await ingest_batch(conn, "bus-1", records)
        dry = await purge(conn, FIRST + dt.timedelta(days=1), dry_run=True)
        assert (dry.days, dry.partition_rows, dry.default_rows) == ((FIRST,), 2, 1)
        assert await conn.fetchval("SELECT count(*) FROM taps") == 7
        done = await purge(conn, FIRST + dt.timedelta(days=1))
        assert (done.partition_rows, done.default_rows) == (2, 1)
        assert await partition_days(conn) == [
            FIRST + dt.timedelta(days=1),
            FIRST + dt.timedelta(days=2),
        ]
        left = [r["seq"] for r in await conn.fetch("SELECT seq FROM taps ORDER BY seq")]
        assert left == [3, 4, 5, 6]
        # Purged records stay acknowledged: sent again, they are not stored twice.
        again = await ingest_batch(conn, "bus-1", records[:2])
        assert (again.stored, again.duplicates) == (0, 2)


def test_durations() -> None:
    assert parse_days("30d") == 30
    assert parse_days("4w") == 28
    assert parse_days(" 1 day ") == 1
    with pytest.raises(BadDuration, match="30d or 4w"):
        parse_days("30")
    with pytest.raises(BadDuration):
        parse_days("1h")
