"""Validator-facing endpoints: MessagePack bodies, every request device-signed."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from typing import BinaryIO, Final

import structlog
from aiohttp import hdrs, web

from depot_sync.api.common import (
    ApiError,
    SignedRequest,
    decode_body,
    device_signed,
    msgpack_response,
)
from depot_sync.ministry.check import BadCheck
from depot_sync.operations.fleet import record_heartbeat
from depot_sync.risklist.changes import DeltaUnavailable, delta_page, signed_page
from depot_sync.risklist.snapshots import PublishedSnapshot
from depot_sync.state import DEPOT, Depot
from depot_sync.taps.ingest import ingest_batch
from protocol import codec
from protocol.messages import (
    PROTOCOL_VERSION,
    CheckRequest,
    Heartbeat,
    HeartbeatAnswer,
    TapAck,
    TapBatch,
)

log = structlog.get_logger("hesgate.depot.api")

HEADER_LIST_VERSION: Final = "X-Hesgate-List-Version"
HEADER_SNAPSHOT_ENTRIES: Final = "X-Hesgate-Snapshot-Entries"
HEADER_HORIZON: Final = "X-Hesgate-List-Horizon"
FILE_CHUNK: Final = 256 * 1024
_MAX_VERSION: Final = 2**63 - 1


async def _store_batch(depot: Depot, signed: SignedRequest) -> TapAck:
    # Decoded only once it holds a slot: requests waiting for one keep their body's bytes,
    # not a thousand decoded records each.
    async with depot.ingest_slots:
        batch = decode_body(TapBatch, signed.body, max_bytes=depot.config.server.max_body_bytes)
        if batch.device != signed.device:
            raise ApiError(
                403,
                "wrong_device",
                f"this request is signed by {signed.device}; it may not send {batch.device}'s taps",
                field="device",
            )
        async with depot.pool.acquire() as conn:
            result = await ingest_batch(conn, signed.device, batch.taps)
    depot.metrics.taps.labels("new").inc(result.stored)
    depot.metrics.taps.labels("duplicate").inc(result.duplicates)
    return TapAck(
        v=PROTOCOL_VERSION, ack=result.ack, stored=result.stored, duplicates=result.duplicates
    )


@device_signed
async def post_taps(request: web.Request, signed: SignedRequest) -> web.StreamResponse:
    """``POST /v1/taps``: store a batch, answer the ack."""
    depot = request.app[DEPOT]
    started = time.perf_counter()
    try:
        ack = await _store_batch(depot, signed)
    except ApiError as err:
        depot.metrics.batches.labels(str(err.status)).inc()
        raise
    depot.metrics.batches.labels("200").inc()
    depot.metrics.batch_seconds.observe(time.perf_counter() - started)
    return msgpack_response(codec.encode(ack))


def _etag_tags(header: str | None) -> list[str]:
    if header is None:
        return []
    return [t.strip().removeprefix("W/") for t in header.split(",")]


def _etag_listed(header: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` itself (weak or strong)."""
    return etag in _etag_tags(header)


def _etag_matches(header: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag``, or ``*``."""
    tags = _etag_tags(header)
    return "*" in tags or etag in tags


def delta_etag(version: int) -> str:
    """The entity tag of a delta page ending at ``version``: ``"v<version>"``."""
    return f'"v{version}"'


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The single ``bytes=`` range asked for, as inclusive offsets; ``None`` for the whole file.

    Raises 416 for a range outside the file. A header that is not one
    ``bytes=`` range is ignored, as HTTP allows.
    """
    if header is None or not header.startswith("bytes=") or "," in header:
        return None
    first, dash, last = header[6:].strip().partition("-")
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":
        if last == "" or int(last) == 0:
            raise ApiError(416, "range_not_satisfiable", "empty suffix range", size=size)
        return max(0, size - int(last)), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise ApiError(416, "range_not_satisfiable", f"the file has {size} bytes", size=size)
    return start, end


def _open(path: Path) -> BinaryIO:
    return path.open("rb")


async def send_file(
    request: web.Request, path: Path, *, etag: str, headers: dict[str, str]
) -> web.StreamResponse:
    """Send ``path`` with ETag, ``If-None-Match`` (304), ``Range`` and ``If-Range`` support."""
    common = {
        hdrs.ETAG: etag,
        hdrs.ACCEPT_RANGES: "bytes",
        hdrs.CACHE_CONTROL: "no-cache",
        **headers,
    }
    if _etag_matches(request.headers.get(hdrs.IF_NONE_MATCH), etag):
        return web.Response(status=304, headers=common)
    try:
        handle = await asyncio.to_thread(_open, path)
    except FileNotFoundError as err:
        raise ApiError(503, "snapshot_missing", "the snapshot file is gone: try again") from err
    try:
        size = (await asyncio.to_thread(path.stat)).st_size
        wanted = None
        if_range = request.headers.get(hdrs.IF_RANGE)
        if if_range is None or if_range.strip() == etag:
            try:
                wanted = byte_range(request.headers.get(hdrs.RANGE), size)
            except ApiError as err:
                err.extra.setdefault("etag", etag)
                response = err.response()
                response.headers[hdrs.CONTENT_RANGE] = f"bytes */{size}"
                return response
        start, end = wanted if wanted is not None else (0, size - 1)
        stream = web.StreamResponse(status=206 if wanted is not None else 200, headers=common)
        stream.content_type = "application/octet-stream"
        stream.content_length = max(0, end - start + 1)
        if wanted is not None:
            stream.headers[hdrs.CONTENT_RANGE] = f"bytes {start}-{end}/{size}"
        await stream.prepare(request)
        if request.method == hdrs.METH_HEAD:
            return stream
        await asyncio.to_thread(handle.seek, start)
        left = end - start + 1
        while left > 0:
            chunk = await asyncio.to_thread(handle.read, min(FILE_CHUNK, left))
            if not chunk:
                break
            await stream.write(chunk)
            left -= len(chunk)
        await stream.write_eof()
        return stream
    finally:
        # Closing is quick, and must happen even when the handler is cancelled on shutdown.
        handle.close()


@device_signed
async def get_snapshot(request: web.Request, signed: SignedRequest) -> web.StreamResponse:
    """``GET /v1/risklist/snapshot``: the newest signed snapshot file."""
    depot = request.app[DEPOT]
    snapshot: PublishedSnapshot | None = await depot.watch.newest_snapshot()
    if snapshot is None:
        raise ApiError(404, "no_snapshot", "no snapshot has been published yet")
    return await send_file(
        request,
        snapshot.path,
        etag=snapshot.etag,
        headers={
            HEADER_LIST_VERSION: str(snapshot.list_version),
            HEADER_SNAPSHOT_ENTRIES: str(snapshot.entries),
        },
    )


def _version_param(request: web.Request, name: str, *, required: bool) -> int | None:
    text = request.query.get(name)
    if text is None:
        if required:
            raise ApiError(400, "malformed", f"{name}: required", field=name)
        return None
    if not text.isdigit() or int(text) > _MAX_VERSION:
        raise ApiError(400, "malformed", f"{name}: expected a non-negative integer", field=name)
    return int(text)


@device_signed
async def get_delta(request: web.Request, signed: SignedRequest) -> web.StreamResponse:
    """``GET /v1/risklist/delta?since=V[&limit=N]``: one signed page of changes after V.

    ``If-None-Match: "vV"`` while the head is V: 304, no page to build or sign.
    """
    depot = request.app[DEPOT]
    since = _version_param(request, "since", required=True)
    assert since is not None
    etag = delta_etag(since)
    if _etag_listed(request.headers.get(hdrs.IF_NONE_MATCH), etag):
        head = await depot.watch.head()
        if head.version == since:
            return web.Response(
                status=304, headers={hdrs.ETAG: etag, HEADER_LIST_VERSION: str(since)}
            )
    page_size = depot.config.risklist.delta_page_size
    limit = _version_param(request, "limit", required=False) or page_size
    limit = max(1, min(limit, page_size))
    try:
        async with depot.pool.acquire() as conn:
            page = await delta_page(conn, since, limit)
    except DeltaUnavailable as err:
        raise ApiError(
            410, "gone", str(err), since=err.since, horizon=err.horizon, head=err.head
        ) from err
    return msgpack_response(
        signed_page(depot.signer, page),
        headers={HEADER_LIST_VERSION: str(page.until), hdrs.ETAG: delta_etag(page.until)},
    )


@device_signed
async def post_check(request: web.Request, signed: SignedRequest) -> web.StreamResponse:
    """``POST /v1/check``: the online check, within the configured budget."""
    depot = request.app[DEPOT]
    deadline = asyncio.get_running_loop().time() + depot.config.check.budget_ms / 1000
    check = decode_body(CheckRequest, signed.body, max_bytes=depot.config.server.max_body_bytes)
    try:
        answer = await depot.checker.check(check, deadline=deadline)
    except BadCheck as err:
        raise ApiError(400, "malformed", str(err), field=err.field) from err
    return msgpack_response(codec.encode(answer))


@device_signed
async def get_policy(request: web.Request, signed: SignedRequest) -> web.StreamResponse:
    """``GET /v1/policy``: the signed boarding policy."""
    current = request.app[DEPOT].policy.current()
    headers = {"ETag": current.etag, "Cache-Control": "no-cache"}
    if _etag_matches(request.headers.get(hdrs.IF_NONE_MATCH), current.etag):
        return web.Response(status=304, headers=headers)
    return msgpack_response(current.wire, headers=headers)


@device_signed
async def post_heartbeat(request: web.Request, signed: SignedRequest) -> web.StreamResponse:
    """``POST /v1/heartbeat``: note how the device is doing; answer what the depot has."""
    depot = request.app[DEPOT]
    beat = decode_body(Heartbeat, signed.body, max_bytes=depot.config.server.max_body_bytes)
    if beat.device != signed.device:
        raise ApiError(
            403, "wrong_device", f"this request is signed by {signed.device}", field="device"
        )
    received = dt.datetime.now(dt.UTC)
    skew = await record_heartbeat(depot.pool, signed.device, beat, received)
    if abs(skew) > depot.config.auth.window_s * 1000 // 2:
        log.warning("device clock is far off", skew_ms=skew)
    head = await depot.watch.head()
    snapshot = await depot.watch.newest_snapshot()
    answer = HeartbeatAnswer(
        v=PROTOCOL_VERSION,
        server_ms=int(received.timestamp() * 1000),
        list_version=head.version,
        policy_version=depot.policy.current().policy.version,
        snapshot_version=snapshot.list_version if snapshot else 0,
    )
    return msgpack_response(codec.encode(answer))


def add_routes(app: web.Application) -> None:
    """Register the validator endpoints."""
    app.router.add_post("/v1/taps", post_taps)
    app.router.add_get("/v1/risklist/snapshot", get_snapshot)
    app.router.add_get("/v1/risklist/delta", get_delta)
    app.router.add_post("/v1/check", post_check)
    app.router.add_get("/v1/policy", get_policy)
    app.router.add_post("/v1/heartbeat", post_heartbeat)
