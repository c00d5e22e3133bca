from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import tracemalloc

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from depot_sync.app import create_app
from depot_sync.jobs.runner import Job, JobRunner
from depot_sync.operations.operators import Role
from depot_sync.state import JOBS
from depot_sync.taps.ingest import TAP_COLUMNS, tap_row
from protocol.messages import PROTOCOL_VERSION, TapBatch
from tests.depot_sync.api.conftest import Harness
from tests.depot_sync.helpers import BASE_MS, tap, taps


async def load_taps(
    pool: asyncpg.Pool, device: str, count: int, *, vehicle: str = "34 ABC 01"
) -> None:
    """Put ``count`` taps straight into the table, bypassing the ingest path."""
    rows = []
    for seq in range(1, count + 1):
        record = tap(seq, time_ms=BASE_MS + seq * 100, vehicle=vehicle)
        rows.append(tap_row(device, record))
    await pool.copy_records_to_table("taps", records=rows, columns=TAP_COLUMNS)


async def test_fleet_needs_an_ops_token(harness: Harness) -> None:
    assert (await harness.client.get("/v1/fleet")).status == 401
    assert (await harness.as_operator("/v1/fleet", "hgo_wrong")).status == 401
    auditor = await harness.operator(Role.AUDITOR)
    forbidden = await harness.as_operator("/v1/fleet", auditor)
    assert forbidden.status == 403
    assert (await forbidden.json())["error"] == "forbidden"
    admin = await harness.operator(Role.ADMIN)
    assert (await harness.as_operator("/v1/fleet", admin)).status == 200


async def test_fleet_shows_ack_gaps_and_heartbeat(harness: Harness) -> None:
    secret = await harness.enrol("bus-1")
    await harness.enrol("bus-2")
    batch = TapBatch(v=PROTOCOL_VERSION, device="bus-1", taps=taps([1, 2, 5]))
    assert (
        await harness.send("POST", "/v1/taps", batch, device="bus-1", secret=secret)
    ).status == 200
    await harness.depot.last_seen.flush(harness.pool)
    ops = await harness.operator(Role.OPS)
    data = await (await harness.as_operator("/v1/fleet", ops)).json()
    devices = {d["id"]: d for d in data["devices"]}
    one = devices["bus-1"]
    assert (one["ack"], one["max_seq"], one["gap_count"], one["missing"]) == (2, 5, 1, 2)
    assert [(g["first"], g["last"]) for g in one["gaps"]] == [(3, 4)]
    assert one["last_seen_at"] is not None
    assert one["heartbeat"] is None
    assert devices["bus-2"]["ack"] == 0
    assert data["ministry"]["breaker"] == "not_configured"
    assert data["list"]["snapshot"] is None


async def test_export_csv_with_filters_is_logged(harness: Harness) -> None:
    await load_taps(harness.pool, "bus-1", 30)
    await load_taps(harness.pool, "bus-2", 10, vehicle="34 XYZ 99")
    auditor = await harness.operator(Role.AUDITOR, "ayse")
    start = dt.datetime.fromtimestamp(BASE_MS / 1000, dt.UTC)
    path = f"/v1/exports/trips?from={start.isoformat().replace('+', '%2B')}&vehicle=34%20XYZ%2099"
    resp = await harness.as_operator(path, auditor)
    assert resp.status == 200
    assert resp.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert len(rows) == 10
    assert {r["device"] for r in rows} == {"bus-2"}
    first = rows[0]
    assert (first["decision"], first["reason"], first["decided_by"], first["method"]) == (
        "ALLOW",
        "OK",
        "LOCAL_LIST",
        "QR",
    )
    assert first["time"].endswith("Z")
    assert len(first["key"]) == 16
    logged = await harness.pool.fetchrow(
        "SELECT o.name, e.format, e.rows, e.outcome, e.filters FROM export_log e "
        "JOIN operators o ON o.id = e.operator_id"
    )
    assert logged is not None
    assert (logged["name"], logged["format"], logged["rows"], logged["outcome"]) == (
        "ayse",
        "csv",
        10,
        "done",
    )
    assert json.loads(logged["filters"])["vehicle"] == "34 XYZ 99"


async def test_export_jsonl_and_bad_filters(harness: Harness) -> None:
    await load_taps(harness.pool, "bus-1", 5)
    auditor = await harness.operator(Role.AUDITOR)
    resp = await harness.as_operator(
        "/v1/exports/trips?from=2024-03-01&format=jsonl&device=bus-1", auditor
    )
    assert resp.status == 200
    lines = [json.loads(line) for line in (await resp.text()).splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5]
    assert lines[0]["route"] == "500T"
    for query, field in [
        ("", "from"),
        ("from=yesterday", "from"),
        ("from=2024-03-02&to=2024-03-01", "to"),
        ("from=2024-03-01&format=xml", "format"),
        ("from=2024-03-01&colour=red", "colour"),
    ]:
        bad = await harness.as_operator(f"/v1/exports/trips?{query}", auditor)
        assert bad.status == 400, query
        assert (await bad.json())["field"] == field
    ops = await harness.operator(Role.OPS)
    assert (await harness.as_operator("/v1/exports/trips?from=2024-03-01", ops)).status == 403


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
async def test_100k_row_export_streams_in_constant_memory(harness: Harness, fmt: str) -> None:
    rows = 100_000
    await load_taps(harness.pool, "bus-1", rows)
    auditor = await harness.operator(Role.AUDITOR)
    tracemalloc.start()
    try:
        resp = await harness.as_operator(f"/v1/exports/trips?from=2024-03-01&format={fmt}", auditor)
        assert resp.status == 200
        received = lines = 0
        tracemalloc.reset_peak()
        async for chunk in resp.content.iter_chunked(64 * 1024):
            received += len(chunk)
            lines += chunk.count(b"\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == rows + (1 if fmt == "csv" else 0)
    # The export is tens of megabytes; what was held at once is a few chunks.
    assert received > 15_000_000
    assert peak < 4_000_000, f"peak {peak} bytes for a {received}-byte export"


async def test_healthz_metrics_and_page(harness: Harness) -> None:
    health = await harness.client.get("/healthz")
    assert health.status == 200
    body = await health.json()
    assert (body["status"], body["database"]) == ("ok", "ok")
    metrics = await harness.client.get("/metrics")
    text = await metrics.text()
    assert "hesgate_depot_list_version" in text
    assert "hesgate_depot_ministry_breaker_state -1.0" in text
    page = await harness.client.get("/")
    assert page.status == 200
    assert "/v1/fleet" in await page.text()


async def test_a_crashed_job_fails_healthz(harness: Harness) -> None:
    async def broken() -> None:
        raise ZeroDivisionError("a bug")

    app = create_app(harness.depot)
    runner = JobRunner(harness.pool, [Job("broken", 0.0, broken)])
    app[JOBS] = runner
    async with TestClient(TestServer(app)) as client:
        runner.start()
        for _ in range(200):
            if runner.states["broken"].crashed:
                break
            await asyncio.sleep(0.01)
        await runner.stop()
        resp = await client.get("/healthz")
        assert resp.status == 503
        body = await resp.json()
        assert body["status"] == "failing"
        assert body["jobs"]["broken"]["last_error"] == "ZeroDivisionError: a bug"
