"""Operator-facing endpoints: JSON, bearer tokens with roles; health, metrics and the page."""

from __future__ import annotations

import datetime as dt
import importlib.resources
import json
from typing import Any

import asyncpg
import structlog
from aiohttp import hdrs, web

from depot_sync.api.common import ApiError, operator_only
from depot_sync.audit import trace
from depot_sync.audit.exports import (
    BadFilter,
    log_export_end,
    log_export_start,
    parse_query,
    stream_trips,
)
from depot_sync.metrics import BREAKER_VALUES, CONTENT_TYPE_LATEST
from depot_sync.operations.fleet import fleet_devices
from depot_sync.operations.operators import Operator, Role
from depot_sync.risklist.changes import list_head
from depot_sync.risklist.snapshots import latest_snapshot
from depot_sync.state import DEPOT, JOBS, Depot

log = structlog.get_logger("hesgate.depot.api")


def _breaker(depot: Depot) -> str:
    return "not_configured" if depot.ministry is None else depot.ministry.breaker_state.value


async def _list_status(depot: Depot) -> dict[str, Any]:
    head = await list_head(depot.pool)
    snapshot = await latest_snapshot(depot.pool, depot.snapshot_dir)
    return {
        "version": head.version,
        "horizon": head.horizon,
        "snapshot": None
        if snapshot is None
        else {
            "list_version": snapshot.list_version,
            "entries": snapshot.entries,
            "created_at": snapshot.created_at.isoformat(),
            "size_bytes": snapshot.size_bytes,
        },
    }


@operator_only(Role.OPS)
async def get_fleet(request: web.Request, operator: Operator) -> web.StreamResponse:
    """``GET /v1/fleet``: each device's sync state, and the list's."""
    depot = request.app[DEPOT]
    now = dt.datetime.now(dt.UTC)
    listing = await _list_status(depot)
    devices = await fleet_devices(depot.pool, listing["version"], now)
    return web.json_response(
        {
            "server_time": now.isoformat(),
            "list": listing,
            "policy_version": depot.policy.current().policy.version,
            "ministry": {"breaker": _breaker(depot)},
            "devices": devices,
        }
    )


@operator_only(Role.AUDITOR)
async def get_trips(request: web.Request, operator: Operator) -> web.StreamResponse:
    """``GET /v1/exports/trips``: tap records as streamed CSV or JSON lines."""
    depot = request.app[DEPOT]
    try:
        filters, fmt = parse_query(request.query, dt.datetime.now(dt.UTC))
    except BadFilter as err:
        raise ApiError(400, "malformed", str(err), field=err.field) from err
    export_id = await log_export_start(depot.pool, operator.id, filters, fmt, request.remote)
    elog = log.bind(export=export_id, operator=operator.name, format=fmt.value)
    response = web.StreamResponse(
        headers={
            hdrs.CONTENT_DISPOSITION: f'attachment; filename="trips-{export_id}.{fmt.value}"',
            hdrs.CACHE_CONTROL: "no-store",
        }
    )
    response.content_type = fmt.content_type
    response.enable_chunked_encoding()
    await response.prepare(request)
    rows: int | None = None
    try:
        async with depot.pool.acquire() as conn:
            rows = await stream_trips(conn, filters, fmt, response.write)
        await response.write_eof()
    except (ConnectionError, asyncpg.PostgresError) as err:
        depot.metrics.exports.labels("failed").inc()
        elog.warning("export did not finish", error=f"{type(err).__name__}: {err}")
        await log_export_end(depot.pool, export_id, rows, ok=False)
        raise
    depot.metrics.exports.labels("done").inc()
    await log_export_end(depot.pool, export_id, rows, ok=True)
    elog.info("export done", rows=rows, filters=filters.as_json())
    return response


@operator_only(Role.AUDITOR)
async def post_trace(request: web.Request, operator: Operator) -> web.StreamResponse:
    """``POST /v1/trace``: the contacts of an index credential (JSON; see docs/depot.md)."""
    depot = request.app[DEPOT]
    # A POST body, so a raw HES code or card number never lands in an access log's URL.
    too_large = ApiError(
        413, "too_large", f"a trace request is a JSON body of at most {trace.MAX_BODY_BYTES} bytes"
    )
    if (request.content_length or 0) > trace.MAX_BODY_BYTES:
        raise too_large
    raw = await request.read()
    if len(raw) > trace.MAX_BODY_BYTES:
        raise too_large
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as err:
        raise ApiError(400, "malformed", "the body is not JSON", field="body") from err
    limits = trace.TraceLimits()
    try:
        asked = trace.parse_request(body, depot.list_key, dt.datetime.now(dt.UTC), limits)
    except trace.BadTraceRequest as err:
        raise ApiError(400, "malformed", str(err), field=err.field) from err
    log_id = await trace.log_trace_start(depot.pool, operator.id, asked, request.remote)
    tlog = log.bind(trace=log_id, operator=operator.name, index=asked.given.value)
    try:
        async with depot.pool.acquire() as conn:
            result = await trace.trace(conn, asked, limits)
    except trace.TraceTooLarge as err:
        await log_export_end(depot.pool, log_id, None, ok=False)
        depot.metrics.traces.labels("too_large").inc()
        tlog.info("trace refused: too large", limit=err.limit, what=err.what)
        raise ApiError(413, "too_large", str(err), limit=err.limit) from err
    except asyncpg.PostgresError as err:
        await log_export_end(depot.pool, log_id, None, ok=False)
        depot.metrics.traces.labels("failed").inc()
        tlog.warning("trace failed", error=f"{type(err).__name__}: {err}")
        raise
    await log_export_end(depot.pool, log_id, len(result.contacts), ok=True)
    depot.metrics.traces.labels("done").inc()
    tlog.info("trace done", boardings=len(result.boardings), contacts=len(result.contacts))
    return web.json_response(result.as_json(), headers={hdrs.CACHE_CONTROL: "no-store"})


async def get_healthz(request: web.Request) -> web.StreamResponse:
    """``GET /healthz``: 200 when the database answers and every job runs, else 503."""
    depot = request.app[DEPOT]
    jobs = request.app.get(JOBS)
    body: dict[str, Any] = {"ministry": _breaker(depot)}
    healthy = True
    try:
        await depot.pool.fetchval("SELECT 1")
        body["database"] = "ok"
        body["list_version"] = (await list_head(depot.pool)).version
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
        healthy = False
        body["database"] = f"{type(err).__name__}: {err}"
    if jobs is not None:
        body["jobs"] = {name: state.as_json() for name, state in jobs.states.items()}
        healthy = healthy and jobs.healthy
    body["status"] = "ok" if healthy else "failing"
    return web.json_response(body, status=200 if healthy else 503)


async def get_metrics(request: web.Request) -> web.StreamResponse:
    """``GET /metrics``: Prometheus text format."""
    depot = request.app[DEPOT]
    metrics = depot.metrics
    metrics.breaker.set(
        -1 if depot.ministry is None else BREAKER_VALUES.get(depot.ministry.breaker_state.value, -1)
    )
    try:
        metrics.list_version.set((await list_head(depot.pool)).version)
        snapshot = await latest_snapshot(depot.pool, depot.snapshot_dir)
        if snapshot is not None:
            metrics.snapshot_version.set(snapshot.list_version)
            metrics.snapshot_entries.set(snapshot.entries)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
        log.warning("metrics without list gauges: database unavailable", error=str(err))
    return web.Response(body=metrics.render(), headers={hdrs.CONTENT_TYPE: CONTENT_TYPE_LATEST})


async def get_page(request: web.Request) -> web.StreamResponse:
    """``GET /``: the fleet page for people (plain HTML; its script fetches ``/v1/fleet``)."""
    page = importlib.resources.files("depot_sync.web").joinpath("index.html").read_bytes()
    return web.Response(
        body=page,
        content_type="text/html",
        charset="utf-8",
        headers={
            hdrs.CACHE_CONTROL: "no-cache",
            "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
            "style-src 'unsafe-inline'",
        },
    )


def add_routes(app: web.Application) -> None:
    """Register the operator endpoints."""
    app.router.add_get("/v1/fleet", get_fleet)
    app.router.add_get("/v1/exports/trips", get_trips)
    app.router.add_post("/v1/trace", post_trace)
    app.router.add_get("/healthz", get_healthz)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/", get_page)
