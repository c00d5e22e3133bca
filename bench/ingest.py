"""Depot ingest: validators uploading tap batches over HTTP, beside a raw COPY of the same rows.

Each validator sends its records in ``batch_size`` batches, in order, waiting
for each ack as :class:`validator.uploader.Uploader` does, to ``hes-depot
serve`` in its own process. Bodies are encoded before the clock starts (a
validator encodes on its own CPU, not the depot's); each request is signed as
it is sent, as a validator signs it. Both costs are measured and reported.
Every run starts from an empty ``taps`` table and is checked afterwards:
every tap stored once, every ack at the device's last sequence number.

The reference loads the very same rows with one asyncpg
``copy_records_to_table`` into the same partitioned ``taps`` table, emptied
first: what PostgreSQL takes with no HTTP, no decoding, no signature check,
no sequence bookkeeping and no per-batch transactions. A second load, the
same rows COPYed in the validators' batches over as many connections as the
depot runs batch transactions at once (``ingest.max_concurrent_batches``),
shows what the batching alone costs. Each round runs all three loads in
turn (``rounds``, best of each), with CPU time of the depot process and of
the whole PostgreSQL server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import itertools
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Final

import aiohttp
import asyncpg

from bench.context import BenchFailure, Context
from bench.depot import DepotStack, Device
from bench.measure import best_of, say
from bench.postgres import Postgres
from bench.table import Basis, Bound, Reference, Result, Target
from depot_sync.config import IngestSection
from depot_sync.taps.ingest import TAP_COLUMNS, tap_row
from protocol import codec
from protocol.credentials import ReadMethod
from protocol.messages import PROTOCOL_VERSION, TapAck, TapBatch, TapRecord
from protocol.reasons import DecidedBy, Decision, Reason

SECTION: Final = "ingest"
MSGPACK: Final = "application/msgpack"
RATE_TARGET: Final = Target(Bound.AT_LEAST, 50_000.0)
SHARE_TARGET: Final = Target(Bound.AT_LEAST, 0.40, Basis.RATIO)


@dataclass(frozen=True, slots=True)
class Upload:
    """One validator's batches: encoded bodies and the ack each must bring back."""

    device: Device
    bodies: list[bytes]
    acks: list[int]
    rows: list[list[tuple[object, ...]]]


def records(device: Device, first_seq: int, count: int, start_ms: int) -> list[TapRecord]:
    """``count`` plausible taps of one validator from ``first_seq``, 100 ms apart."""
    out = []
    for seq in range(first_seq, first_seq + count):
        out.append(
            TapRecord(
                seq=seq,
                time_ms=start_ms + seq * 100,
                method=ReadMethod.QR if seq % 5 else ReadMethod.CARD,
                key=hashlib.blake2b(f"{device.id}/{seq}".encode(), digest_size=8).digest(),
                decision=Decision.ALLOW,
                reason=Reason.OK,
                decided_by=DecidedBy.LOCAL_LIST,
                list_version=7,
                latency_us=850 + seq % 400,
                vehicle=f"34 BEN {device.id[-3:]}",
                route="500T",
                trip=f"T-{8 + seq // 3600:02d}00",
                lat=41.0 + (seq % 1000) / 100_000,
                lon=28.9 + (seq % 1000) / 100_000,
            )
        )
    return out


def plan(devices: list[Device], taps: int, batch_size: int, start_ms: int) -> list[Upload]:
    """Split ``taps`` over the devices; encode every batch; keep the matching rows."""
    per_device = taps // len(devices)
    uploads = []
    for device in devices:
        bodies, acks, rows = [], [], []
        for first in range(1, per_device + 1, batch_size):
            batch = records(device, first, min(batch_size, per_device - first + 1), start_ms)
            bodies.append(codec.encode(TapBatch(v=PROTOCOL_VERSION, device=device.id, taps=batch)))
            acks.append(batch[-1].seq)
            rows.append([tap_row(device.id, t) for t in batch])
        uploads.append(Upload(device, bodies, acks, rows))
    return uploads


async def reset(pool: asyncpg.Pool) -> None:
    """An empty tap table and no sequence state; a checkpoint so no run pays for the last one."""
    async with pool.acquire() as conn:
        await conn.execute("TRUNCATE taps")
        await conn.execute("DELETE FROM tap_gaps")
        await conn.execute("DELETE FROM device_sync")
        await conn.execute("CHECKPOINT")


async def _send(session: aiohttp.ClientSession, url: str, upload: Upload) -> None:
    device = upload.device
    for body, expected in zip(upload.bodies, upload.acks, strict=True):
        headers = device.sign("POST", "/v1/taps", body)
        headers["Content-Type"] = MSGPACK
        headers["Accept"] = MSGPACK
        async with session.post(f"{url}/v1/taps", data=body, headers=headers) as response:
            answer = await response.read()
            if response.status != 200:
                raise BenchFailure(
                    f"{device.id}: HTTP {response.status}: {answer[:200].decode(errors='replace')}"
                )
        ack = codec.decode(TapAck, answer)
        if ack.ack != expected:
            raise BenchFailure(f"{device.id}: ack {ack.ack}, expected {expected}")


async def over_http(depot: DepotStack, uploads: list[Upload]) -> float:
    """Seconds for every validator to upload everything, concurrently."""
    connector = aiohttp.TCPConnector(limit=len(uploads))
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(_send(session, depot.url, u) for u in uploads))
        return time.perf_counter() - started


async def one_copy(pool: asyncpg.Pool, uploads: list[Upload]) -> float:
    """Seconds to COPY every row in one statement: the raw reference."""
    rows = [row for upload in uploads for batch in upload.rows for row in batch]
    async with pool.acquire() as conn:
        started = time.perf_counter()
        await conn.copy_records_to_table("taps", records=rows, columns=TAP_COLUMNS)
        return time.perf_counter() - started


async def raw_copy(pool: asyncpg.Pool, uploads: list[Upload], connections: int) -> float:
    """Seconds to COPY the same rows in the same batches over ``connections`` connections."""
    # Interleave validators as the depot sees them: batch 1 of each, then batch 2...
    per_upload = [u.rows for u in uploads]
    batches = [b for group in itertools.zip_longest(*per_upload) for b in group if b is not None]
    queue: asyncio.Queue[list[tuple[object, ...]]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)

    async def worker() -> None:
        async with pool.acquire() as conn:
            while not queue.empty():
                rows = queue.get_nowait()
                await conn.copy_records_to_table("taps", records=rows, columns=TAP_COLUMNS)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - started


async def _count(pool: asyncpg.Pool, taps: int) -> None:
    if await pool.fetchval("SELECT count(*) FROM taps") != taps:
        raise BenchFailure("the reference COPY did not store every row")


async def verify(pool: asyncpg.Pool, uploads: list[Upload], taps: int) -> None:
    """Every tap stored exactly once, every device acked through its last record."""
    stored = await pool.fetchval("SELECT count(*) FROM taps")
    distinct = await pool.fetchval(
        "SELECT count(*) FROM (SELECT DISTINCT device_id, seq FROM taps) d"
    )
    if stored != taps or distinct != taps:
        raise BenchFailure(f"{stored} taps stored ({distinct} distinct), {taps} sent")
    acks = await pool.fetch("SELECT device_id, ack FROM device_sync")
    expected = {u.device.id: u.acks[-1] for u in uploads}
    got = {r["device_id"]: r["ack"] for r in acks}
    if got != expected:
        raise BenchFailure("device acks after the run do not match what was sent")


@dataclass(frozen=True, slots=True)
class Timed:
    """One load: wall seconds, and CPU seconds of the depot process and of PostgreSQL."""

    seconds: float
    depot_cpu: float
    postgres_cpu: float


async def _timed(depot: DepotStack, postgres: Postgres, load: Awaitable[float]) -> Timed:
    depot_cpu, postgres_cpu = depot.cpu_s(), postgres.cpu_s()
    seconds = await load
    return Timed(seconds, depot.cpu_s() - depot_cpu, postgres.cpu_s() - postgres_cpu)


async def run(ctx: Context) -> list[Result]:
    """Taps/s over HTTP at each concurrency, beside the raw COPY of the same rows."""
    settings = ctx.config.ingest
    depot = await ctx.depot()
    postgres = await ctx.postgres()
    connections = IngestSection().max_concurrent_batches
    # An hour back: inside today's or yesterday's partition, both of which exist.
    start_ms = int((dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).timestamp() * 1000)
    results: list[Result] = []
    for level in settings.validators:
        devices = depot.devices[:level]
        taps = settings.taps // level * level
        say(f"ingest: {taps:,} taps from {level} validators, {settings.batch_size} a batch")
        uploads = plan(devices, taps, settings.batch_size, start_ms)
        copies: list[Timed] = []
        batched: list[Timed] = []
        posts: list[Timed] = []
        for _ in range(settings.rounds):
            await reset(depot.pool)
            copies.append(await _timed(depot, postgres, one_copy(depot.pool, uploads)))
            await _count(depot.pool, taps)
            await reset(depot.pool)
            batched.append(
                await _timed(depot, postgres, raw_copy(depot.pool, uploads, connections))
            )
            await _count(depot.pool, taps)
            # The HTTP run goes last, so the last one's taps stay for the export section.
            await reset(depot.pool)
            posts.append(await _timed(depot, postgres, over_http(depot, uploads)))
            depot.check_running()
            await verify(depot.pool, uploads, taps)
        copy = min(copies, key=lambda t: t.seconds)
        batch = min(batched, key=lambda t: t.seconds)
        post = min(posts, key=lambda t: t.seconds)
        per_1000 = 1_000_000 / taps  # CPU seconds per tap -> ms per 1000 taps
        raw = Reference("asyncpg COPY of all the rows", taps / copy.seconds)
        results += [
            Result(
                SECTION,
                f"taps/s over HTTP, {level} validators",
                taps / post.seconds,
                "/s",
                raw,
                targets=(RATE_TARGET, SHARE_TARGET),
            ),
            Result(
                SECTION,
                f"rows/s, COPY in the same {settings.batch_size}-row batches, {connections} conns",
                taps / batch.seconds,
                "/s",
                raw,
            ),
            Result(
                SECTION,
                f"postgres CPU per 1000 taps over HTTP, {level} validators",
                post.postgres_cpu * per_1000,
                "ms",
                Reference("same, COPY of all the rows", copy.postgres_cpu * per_1000),
            ),
            Result(
                SECTION,
                f"depot process CPU per 1000 taps, {level} validators",
                post.depot_cpu * per_1000,
                "ms",
                Reference("postgres CPU per 1000 taps, same run", post.postgres_cpu * per_1000),
            ),
        ]
    results.extend(_client_costs(depot, settings.batch_size, start_ms))
    return results


def _client_costs(depot: DepotStack, batch_size: int, start_ms: int) -> list[Result]:
    """What a validator spends on one batch: encoding it, and signing the request."""
    device = depot.devices[0]
    batch = TapBatch(
        v=PROTOCOL_VERSION, device=device.id, taps=records(device, 1, batch_size, start_ms)
    )
    encode_s, body = best_of(20, lambda: codec.encode(batch))
    sign_s, _ = best_of(200, lambda: device.sign("POST", "/v1/taps", body))
    return [
        Result(
            SECTION,
            f"client: sign one {batch_size}-tap request",
            sign_s * 1e6,
            "us",
            Reference(f"client: encode one {batch_size}-tap batch", encode_s * 1e6),
        )
    ]
