"""The depot building a snapshot of 10 million credentials, with its own builder.

:func:`depot_sync.risklist.snapshots.build_snapshot` (one repeatable-read
transaction, a cursor feeding :class:`protocol.snapshot.SnapshotWriter` in a
worker thread, fsync, rename, the row in ``snapshots``) over a
``credentials`` table of the size asked for, in a database of its own on the
bench's PostgreSQL.

Filling that table takes longer than the build (about a minute for 10
million rows), so the seeded database is kept between runs and recognised by
its comment. It is filled server-side with the depot's triggers off (they
would write a list change per row: that is the refresh job's cost, not the
build's), then vacuumed, frozen and analysed, as a long-lived table is.

Reference: PostgreSQL sending the same rows (the builder's own query) to a
client that throws them away, binary COPY: the least any build must wait for.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

import asyncpg

from bench.context import BenchFailure, Context
from bench.lists import KEY_ID
from bench.measure import say
from bench.postgres import Postgres
from bench.table import Reference, Result
from depot_sync.config import DEFAULT_MIGRATIONS_DIR
from depot_sync.db.migrations import migrate
from depot_sync.risklist.snapshots import build_snapshot
from protocol.listsign import ListSigner
from protocol.snapshot import Snapshot

SECTION: Final = "snapshot_build"
#: Bump when the seeded rows change, so an old seeded database is rebuilt.
RECIPE: Final = 1
#: Rows per seeding statement; two statements run at once (two cores).
SEED_CHUNK: Final = 1_000_000
#: The builder's query (depot_sync/risklist/snapshots.py), for the reference.
LISTED: Final = """
SELECT key, status, expiry_day, coalesce(tckn_last3, registered_last3) AS last3, groups
  FROM credentials
 WHERE ministry_state = 'found' AND status IS NOT NULL
"""
# Every row a found HES code; keys from SHA-256 of the row number, so they are
# spread like HMAC keys; 2% risky; some 65+ or under 20; a few with no digits.
_SEED: Final = """
INSERT INTO credentials (key, kind, value_enc, ministry_state, status, expires_at, expiry_day,
                         tckn_last3, registered_last3, birth_year, groups, source,
                         last_checked_at)
SELECT substr(sha256(int8send(i)), 1, 8), 1, sha256(int8send(-i)), 'found',
       (i % 50 = 0)::int::smallint, now() + interval '30 days', 20500 + (i % 60)::int,
       CASE WHEN i % 11 = 0 THEN NULL ELSE lpad(((i * 7) % 500 * 2)::text, 3, '0') END,
       NULL, 1940 + (i % 80)::int,
       CASE WHEN i % 80 < 24 THEN 1 WHEN i % 80 > 61 THEN 2 ELSE 0 END, 'registration', now()
  FROM generate_series($1::bigint, $2::bigint) AS i
"""


async def _seed_range(dsn: str, ranges: list[tuple[int, int]]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        # Row triggers off for the load (superuser only; the bench owns this server).
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("SET synchronous_commit = off")
        for first, last in ranges:
            await conn.execute(_SEED, first, last)
    finally:
        await conn.close()


async def seeded(postgres: Postgres, count: int, *, fresh: bool) -> str:
    """The DSN of a database whose ``credentials`` hold ``count`` listed HES codes."""
    name = f"hesgate_build_{count}"
    mark = f"hesgate bench: {count} credentials, recipe {RECIPE}"
    if not fresh and await postgres.exists(name) == mark:
        return postgres.dsn_for(name)
    say(f"snapshot_build: seeding {count:,} credentials (kept for next time)")
    dsn = await postgres.recreate(name)
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, DEFAULT_MIGRATIONS_DIR)
    finally:
        await conn.close()
    chunks = [(a, min(a + SEED_CHUNK - 1, count)) for a in range(1, count + 1, SEED_CHUNK)]
    await asyncio.gather(_seed_range(dsn, chunks[0::2]), _seed_range(dsn, chunks[1::2]))
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM (FREEZE, ANALYZE) credentials")
        stored = await conn.fetchval("SELECT count(*) FROM credentials")
    finally:
        await conn.close()
    if stored != count:
        raise BenchFailure(f"seeded {stored} credentials, wanted {count}")
    await postgres.mark(name, mark)
    return dsn


async def _copy_out(dsn: str) -> float:
    """Seconds for PostgreSQL to send the listed rows to a client that drops them."""
    received = [0]

    async def sink(chunk: bytes) -> None:
        received[0] += len(chunk)

    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            await conn.copy_from_query(LISTED, output=sink, format="binary")
        return time.perf_counter() - started
    finally:
        await conn.close()


async def run(ctx: Context) -> list[Result]:
    """One timed build of the whole table, checked, beside the COPY out of the same rows."""
    count = ctx.config.snapshot_build.credentials
    postgres = await ctx.postgres()
    dsn = await seeded(postgres, count, fresh=ctx.config.fresh)
    signer = ListSigner.generate(KEY_ID)
    directory = ctx.run_dir / "snapshot-build"
    copy_s = await _copy_out(dsn)  # also warms the cache the build then reads from
    say(f"snapshot_build: building a snapshot of {count:,} credentials")
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        started = time.perf_counter()
        published = await build_snapshot(
            pool, signer, directory, keep=1, max_shrink=1.0, force=True
        )
        build_s = time.perf_counter() - started
    finally:
        await pool.close()
    if published is None or published.entries != count:
        raise BenchFailure(f"the build published {published!r}, expected {count} entries")
    with Snapshot.open(published.path, signer.verifier(), verify_body=True) as snapshot:
        if snapshot.count != count:
            raise BenchFailure(f"the snapshot file holds {snapshot.count} entries, not {count}")
    label = f"{count // 1_000_000}M" if count % 1_000_000 == 0 else f"{count:,}"
    return [
        Result(
            SECTION,
            f"build + publish a snapshot of {label} credentials",
            build_s,
            "s",
            Reference("COPY the same rows out, binary", copy_s),
        ),
        Result(
            SECTION,
            "build rate",
            count / build_s,
            "entries/s",
            Reference("COPY out rate", count / copy_s),
        ),
    ]
