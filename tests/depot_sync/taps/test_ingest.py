from __future__ import annotations

import asyncio

import asyncpg

from depot_sync.taps.ingest import ingest_batch
from protocol.messages import TapRecord
from tests.depot_sync.helpers import enrol, tap, taps


async def stored_seqs(pool: asyncpg.Pool, device: str) -> list[int]:
    rows = await pool.fetch("SELECT seq FROM taps WHERE device_id = $1 ORDER BY seq", device)
    return [r["seq"] for r in rows]


async def test_same_batch_three_times_stores_each_record_once(pool: asyncpg.Pool) -> None:
    await enrol(pool, "bus-1")
    batch = taps(range(1, 101))
    results = []
    async with pool.acquire() as conn:
        for _ in range(3):
            r = await ingest_batch(conn, "bus-1", batch)
            results.append((r.ack, r.stored, r.duplicates))
    assert results == [(100, 100, 0), (100, 0, 100), (100, 0, 100)]
    assert await stored_seqs(pool, "bus-1") == list(range(1, 101))


async def test_overlapping_out_of_order_batches_and_a_gap(pool: asyncpg.Pool) -> None:
    await enrol(pool, "bus-1")
    async with pool.acquire() as conn:
        r1 = await ingest_batch(conn, "bus-1", taps([5, 3, 1, 2]))
        assert (r1.ack, r1.stored, r1.duplicates) == (3, 4, 0)
        assert [(g.first, g.last) for g in r1.gaps] == [(4, 4)]
        r2 = await ingest_batch(conn, "bus-1", taps([3, 4, 5, 6, 9]))
        assert (r2.ack, r2.stored, r2.duplicates) == (6, 3, 2)
        assert [(g.first, g.last) for g in r2.gaps] == [(7, 8)]
    gaps = await pool.fetch("SELECT first_seq, last_seq FROM tap_gaps WHERE device_id = 'bus-1'")
    assert [(g["first_seq"], g["last_seq"]) for g in gaps] == [(7, 8)]
    async with pool.acquire() as conn:
        r3 = await ingest_batch(conn, "bus-1", taps([8, 7]))
    assert (r3.ack, r3.stored, r3.gaps) == (9, 2, ())
    assert await pool.fetchval("SELECT count(*) FROM tap_gaps") == 0
    assert await stored_seqs(pool, "bus-1") == list(range(1, 10))
    row = await pool.fetchrow("SELECT ack, max_seq, taps_stored FROM device_sync")
    assert row is not None
    assert tuple(row) == (9, 9, 9)


async def test_records_keep_every_field(pool: asyncpg.Pool) -> None:
    await enrol(pool, "bus-1")
    record = tap(1)
    async with pool.acquire() as conn:
        await ingest_batch(conn, "bus-1", [record])
    row = await pool.fetchrow("SELECT * FROM taps")
    assert row is not None
    assert row["time_ms"] == record.time_ms
    assert row["key"] == record.key
    assert row["method"] == record.method
    assert (row["decision"], row["reason"], row["decided_by"]) == (1, 0, 1)
    assert (row["vehicle"], row["route"], row["trip"]) == ("34 ABC 01", "500T", "T-0800")
    assert row["lat"] == record.lat
    assert row["device_id"] == "bus-1"


async def test_state_lost_still_stores_nothing_twice(pool: asyncpg.Pool) -> None:
    await enrol(pool, "bus-1")
    async with pool.acquire() as conn:
        await ingest_batch(conn, "bus-1", taps(range(1, 11)))
        # As after restoring the taps from a backup but not the sync state:
        await conn.execute("UPDATE device_sync SET ack = 0, max_seq = 0")
        r = await ingest_batch(conn, "bus-1", taps(range(1, 16)))
    assert (r.ack, r.stored, r.duplicates) == (15, 5, 10)
    assert await stored_seqs(pool, "bus-1") == list(range(1, 16))


async def test_concurrent_batches_of_one_device_are_serialised(pool: asyncpg.Pool) -> None:
    await enrol(pool, "bus-1")
    batches = [taps(range(start, start + 20)) for start in (1, 11, 21, 1, 31)]

    async def send(batch: list[TapRecord]) -> int:
        async with pool.acquire() as conn:
            return (await ingest_batch(conn, "bus-1", batch)).stored

    stored = await asyncio.gather(*(send(b) for b in batches))
    assert sum(stored) == 50
    assert await stored_seqs(pool, "bus-1") == list(range(1, 51))
