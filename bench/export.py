"""Trip exports: rows/s an auditor gets from ``GET /v1/exports/trips``, CSV and JSON lines.

The export covers every tap in the table (what the ingest section left, or
rows seeded here with the same COPY when it did not run), streamed over HTTP
from ``hes-depot serve`` and counted line by line. The reference runs the
depot's own :func:`depot_sync.audit.exports.stream_trips` with the same filters on a
direct database connection into a sink that only counts: the export without
HTTP, authentication and logging.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Final
from urllib.parse import urlencode

import aiohttp

from bench.context import BenchFailure, Context
from bench.depot import DepotStack
from bench.ingest import plan, raw_copy, reset
from bench.measure import say
from bench.table import Reference, Result
from depot_sync.audit.exports import ExportFormat, TripFilters, stream_trips
from protocol.risk import ISTANBUL

SECTION: Final = "export"


def _window() -> TripFilters:
    """From yesterday to the day after tomorrow, Istanbul time: every tap the bench made."""
    today = dt.datetime.now(ISTANBUL).date()
    start = dt.datetime.combine(today - dt.timedelta(days=1), dt.time(), tzinfo=ISTANBUL)
    return TripFilters(start, start + dt.timedelta(days=3))


async def _seed(ctx: Context, depot: DepotStack) -> int:
    """Rows for the export when the table is empty: the ingest section's rows, by COPY."""
    rows = ctx.config.export.seed_rows
    devices = depot.devices[: min(8, len(depot.devices))]
    rows = rows // len(devices) * len(devices)
    say(f"export: no taps stored, seeding {rows:,} with COPY")
    start_ms = int((dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).timestamp() * 1000)
    await reset(depot.pool)
    await raw_copy(depot.pool, plan(devices, rows, 1000, start_ms), 2)
    return rows


async def _over_http(depot: DepotStack, filters: TripFilters, fmt: ExportFormat) -> int:
    """Lines of one export over HTTP (the CSV header not counted)."""
    query = urlencode(
        {"from": filters.start.isoformat(), "to": filters.end.isoformat(), "format": fmt.value}
    )
    headers = {"Authorization": f"Bearer {depot.auditor_token}"}
    lines = 0
    timeout = aiohttp.ClientTimeout(total=600)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"{depot.url}/v1/exports/trips?{query}", headers=headers) as response,
    ):
        if response.status != 200:
            body = await response.read()
            raise BenchFailure(f"export: HTTP {response.status}: {body[:200]!r}")
        async for chunk in response.content.iter_chunked(1 << 16):
            lines += chunk.count(b"\n")
    return lines - 1 if fmt is ExportFormat.CSV else lines


async def _direct(depot: DepotStack, filters: TripFilters, fmt: ExportFormat) -> int:
    """Rows of the same export straight from the database, into a sink that only counts."""
    written = [0]

    async def sink(chunk: bytes) -> None:
        written[0] += len(chunk)

    async with depot.pool.acquire() as conn:
        return await stream_trips(conn, filters, fmt, sink)


async def run(ctx: Context) -> list[Result]:
    """Rows/s for each export format, over HTTP and direct."""
    depot = await ctx.depot()
    stored = int(await depot.pool.fetchval("SELECT count(*) FROM taps"))
    if stored == 0:
        stored = await _seed(ctx, depot)
    filters = _window()
    results = []
    for fmt in (ExportFormat.CSV, ExportFormat.JSONL):
        say(f"export: {stored:,} rows as {fmt.value}")
        http_s = direct_s = float("inf")
        for _ in range(ctx.config.export.repeats):
            started = time.perf_counter()
            lines = await _over_http(depot, filters, fmt)
            http_s = min(http_s, time.perf_counter() - started)
            if lines != stored:
                raise BenchFailure(f"export gave {lines} rows, {stored} are stored")
            started = time.perf_counter()
            rows = await _direct(depot, filters, fmt)
            direct_s = min(direct_s, time.perf_counter() - started)
            if rows != stored:
                raise BenchFailure(f"stream_trips gave {rows} rows, {stored} are stored")
        depot.check_running()
        results.append(
            Result(
                SECTION,
                f"rows/s, {fmt.value} over HTTP ({stored:,} rows)",
                stored / http_s,
                "/s",
                Reference("stream_trips, direct connection", stored / direct_s),
            )
        )
    return results
