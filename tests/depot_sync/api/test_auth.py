from __future__ import annotations

import time
from collections.abc import Awaitable

import aiohttp
import pytest

from depot_sync.operations.devices import revoke_device
from protocol import codec
from protocol.messages import PROTOCOL_VERSION, TapBatch
from protocol.signing import sign_request
from tests.depot_sync.api.conftest import Harness
from tests.depot_sync.helpers import taps


def batch(device: str = "bus-1") -> bytes:
    return codec.encode(TapBatch(v=PROTOCOL_VERSION, device=device, taps=taps([1])))


async def refused(h: Harness, request: Awaitable[aiohttp.ClientResponse]) -> str:
    resp = await request
    assert resp.status == 401
    body = await resp.json()
    assert body["error"] == "unauthorized"
    assert resp.headers["WWW-Authenticate"] == f'HesgateDevice reason="{body["reason"]}"'
    assert await h.pool.fetchval("SELECT count(*) FROM taps") == 0
    return str(body["reason"])


async def test_missing_headers(harness: Harness) -> None:
    await harness.enrol("bus-1")
    reason = await refused(harness, harness.client.post("/v1/taps", data=batch()))
    assert reason == "missing_headers"


async def test_bad_signature_wrong_secret_or_tampered_body(harness: Harness) -> None:
    secret = await harness.enrol("bus-1")
    wrong = bytes(32)
    assert (
        await refused(
            harness, harness.signed("POST", "/v1/taps", batch(), device="bus-1", secret=wrong)
        )
        == "bad_signature"
    )
    headers = sign_request(
        device_id="bus-1", secret=secret, method="POST", path_qs="/v1/taps", body=batch()
    )
    tampered = batch().replace(b"500T", b"501T")
    assert (
        await refused(harness, harness.client.post("/v1/taps", data=tampered, headers=headers))
        == "bad_signature"
    )
    # Signed for another path.
    headers = sign_request(
        device_id="bus-1", secret=secret, method="POST", path_qs="/v1/heartbeat", body=batch()
    )
    assert (
        await refused(harness, harness.client.post("/v1/taps", data=batch(), headers=headers))
        == "bad_signature"
    )


@pytest.mark.parametrize("offset_ms", [-400_000, 400_000])
async def test_timestamp_out_of_window(harness: Harness, offset_ms: int) -> None:
    secret = await harness.enrol("bus-1")
    now = int(time.time() * 1000)
    reason = await refused(
        harness,
        harness.signed(
            "POST", "/v1/taps", batch(), device="bus-1", secret=secret, now_ms=now + offset_ms
        ),
    )
    assert reason == "timestamp_out_of_window"


async def test_nonce_reused(harness: Harness) -> None:
    secret = await harness.enrol("bus-1")
    nonce = "n" * 22
    first = await harness.signed(
        "POST", "/v1/taps", batch(), device="bus-1", secret=secret, nonce=nonce
    )
    assert first.status == 200
    await first.read()
    replay = harness.signed("POST", "/v1/taps", batch(), device="bus-1", secret=secret, nonce=nonce)
    assert await refused_keeping(harness, replay) == "nonce_reused"


async def refused_keeping(h: Harness, request: Awaitable[aiohttp.ClientResponse]) -> str:
    """Like refused(), for when the first request did store its taps."""
    resp = await request
    assert resp.status == 401
    assert await h.pool.fetchval("SELECT count(*) FROM taps") == 1
    return str((await resp.json())["reason"])


async def test_unknown_device(harness: Harness) -> None:
    reason = await refused(
        harness,
        harness.signed("POST", "/v1/taps", batch("ghost"), device="ghost", secret=bytes(32)),
    )
    assert reason == "unknown_device"


async def test_revoked_device(harness: Harness) -> None:
    secret = await harness.enrol("bus-1")
    ok = await harness.signed("POST", "/v1/taps", batch(), device="bus-1", secret=secret)
    assert ok.status == 200
    async with harness.pool.acquire() as conn:
        assert await revoke_device(conn, "bus-1")
    resp = await harness.signed("POST", "/v1/taps", batch(), device="bus-1", secret=secret)
    assert resp.status == 401
    assert (await resp.json())["reason"] == "revoked_device"


async def test_every_validator_endpoint_is_signed(harness: Harness) -> None:
    for method, path in [
        ("POST", "/v1/taps"),
        ("GET", "/v1/risklist/snapshot"),
        ("GET", "/v1/risklist/delta?since=0"),
        ("POST", "/v1/check"),
        ("GET", "/v1/policy"),
        ("POST", "/v1/heartbeat"),
    ]:
        resp = await harness.client.request(method, path)
        assert resp.status == 401, path
        assert (await resp.json())["reason"] == "missing_headers"


async def test_failures_are_counted_by_reason(harness: Harness) -> None:
    await harness.client.post("/v1/taps", data=batch())
    metrics = await (await harness.client.get("/metrics")).text()
    assert 'hesgate_depot_auth_failures_total{reason="missing_headers"} 1.0' in metrics
