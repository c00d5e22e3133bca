"""The list's head and newest snapshot kept in memory, dropped when PostgreSQL reports a change."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from depot_sync.crypto import FieldCipher
from depot_sync.risklist.snapshots import build_snapshot
from depot_sync.risklist.watch import HEAD, ListWatch
from protocol.listsign import ListSigner
from tests.depot_sync.conftest import Reads
from tests.depot_sync.helpers import seed_found, until

LIST_KEY = os.urandom(32)
FIELD = FieldCipher(os.urandom(32))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def watching(pool: asyncpg.Pool, tmp_path: Path, clock: Clock) -> AsyncIterator[ListWatch]:
    watch = ListWatch(pool, tmp_path, max_age_s=5.0, clock=clock)
    watch.start()
    try:
        await until(lambda: watch.listening, "the watch to listen")
        yield watch
    finally:
        await watch.stop()


async def change_elsewhere(pool: asyncpg.Pool, watch: ListWatch, n: int) -> None:
    """Change the list on another connection (as another depot process would) and wait
    for the notification to reach the watch."""
    seen = watch.changes_seen
    await seed_found(pool, FIELD, LIST_KEY, [n])
    await until(lambda: watch.changes_seen > seen, "the change to be reported")


async def test_without_listening_every_call_reads(
    pool: asyncpg.Pool, tmp_path: Path, reads: Reads
) -> None:
    watch = ListWatch(pool, tmp_path, max_age_s=5.0)
    assert not watch.listening
    assert (await watch.head()).version == 0
    await seed_found(pool, FIELD, LIST_KEY, [1])
    assert (await watch.head()).version == 1
    assert await watch.newest_snapshot() is None
    assert await watch.newest_snapshot() is None
    assert (reads.head, reads.snapshot) == (2, 2)


async def test_kept_until_a_change_elsewhere_is_reported(
    pool: asyncpg.Pool, tmp_path: Path, reads: Reads
) -> None:
    await seed_found(pool, FIELD, LIST_KEY, range(3))
    watch = ListWatch(pool, tmp_path, max_age_s=5.0)
    watch.start()
    try:
        await until(lambda: watch.listening, "the watch to listen")
        for _ in range(3):
            assert (await watch.head()).version == 3
        assert await watch.newest_snapshot() is None
        assert await watch.newest_snapshot() is None
        assert (reads.head, reads.snapshot) == (1, 1)

        await change_elsewhere(pool, watch, 10)
        assert (await watch.head()).version == 4
        assert (await watch.head()).version == 4
        # A list change leaves the snapshot row alone.
        assert await watch.newest_snapshot() is None
        assert (reads.head, reads.snapshot) == (2, 1)

        # Published by someone else (hes-depot build-snapshot, another depot process).
        published = await build_snapshot(
            pool, ListSigner.generate("depot-test"), tmp_path, keep=3, max_shrink=0.1
        )
        assert published is not None
        for _ in range(500):
            newest = await watch.newest_snapshot()
            if newest is not None:
                break
            await asyncio.sleep(0.01)
        assert newest == published
    finally:
        await watch.stop()


async def test_read_again_after_max_age(
    pool: asyncpg.Pool, watching: ListWatch, reads: Reads, clock: Clock
) -> None:
    await watching.head()
    clock.now += 4.9
    await watching.head()
    assert reads.head == 1
    clock.now += 0.2
    await watching.head()
    assert reads.head == 2


async def test_max_age_zero_keeps_nothing(pool: asyncpg.Pool, tmp_path: Path, reads: Reads) -> None:
    watch = ListWatch(pool, tmp_path, max_age_s=0)
    watch.start()
    try:
        await until(lambda: watch.listening, "the watch to listen")
        await watch.head()
        await watch.head()
        assert reads.head == 2
    finally:
        await watch.stop()


async def test_a_read_overtaken_by_a_change_is_not_kept(
    pool: asyncpg.Pool, watching: ListWatch, reads: Reads
) -> None:
    reads.hold_head = asyncio.Event()
    slow = asyncio.create_task(watching.head())
    await reads.held.wait()
    watching.forget(HEAD)  # a change reported while the read was on its way
    reads.hold_head.set()
    await slow
    await watching.head()
    assert reads.head == 2


async def test_unknown_notification_drops_both(watching: ListWatch, reads: Reads) -> None:
    await watching.head()
    await watching.newest_snapshot()
    watching.forget("something new")
    await watching.head()
    await watching.newest_snapshot()
    assert (reads.head, reads.snapshot) == (2, 2)


async def _listener_pid(pool: asyncpg.Pool) -> int:
    pid = await pool.fetchval(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()"
    )
    assert isinstance(pid, int)
    return pid


async def test_lost_connection_keeps_nothing_until_listening_again(
    pool: asyncpg.Pool, tmp_path: Path, reads: Reads
) -> None:
    watch = ListWatch(pool, tmp_path, max_age_s=5.0, retry_s=2.0)
    watch.start()
    try:
        await until(lambda: watch.listening, "the watch to listen")
        await watch.head()
        await pool.execute("SELECT pg_terminate_backend($1)", await _listener_pid(pool))
        await until(lambda: not watch.listening, "the watch to notice the lost connection")
        # Changes made now would go unreported: every call reads.
        await seed_found(pool, FIELD, LIST_KEY, [1])
        assert (await watch.head()).version == 1
        assert (await watch.head()).version == 1
        assert reads.head == 3

        await until(lambda: watch.listening, "the watch to listen again")
        await watch.head()
        await change_elsewhere(pool, watch, 2)
        assert (await watch.head()).version == 2
        assert reads.head == 5
    finally:
        await watch.stop()


async def test_stop_gives_the_connection_back(pool: asyncpg.Pool, tmp_path: Path) -> None:
    watch = ListWatch(pool, tmp_path, max_age_s=5.0)
    await watch.stop()  # never started: nothing to do
    watch.start()
    await until(lambda: watch.listening, "the watch to listen")
    await watch.stop()
    assert not watch.listening
    listeners = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND query ILIKE 'LISTEN%'"
    )
    assert listeners == 0
    # Every connection is back: the pool closes without waiting.
    await asyncio.wait_for(pool.close(), 5)
