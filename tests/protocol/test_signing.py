"""Device request signing: what is signed, and every reason a request is refused."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator, Mapping

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.signing import (
    DEFAULT_WINDOW_MS,
    HEADER_DEVICE,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIME,
    AuthError,
    AuthReason,
    MemoryDeviceSecrets,
    MemoryNonceStore,
    NonceStoreFull,
    SigningError,
    new_secret,
    secret_from_hex,
    sign_request,
    signing_string,
    verify_request,
)

SECRET = bytes(range(32))
NOW = 1_778_000_000_000
NONCE = "n0nce-0123456789abcdef"
BODY = b"\x83\xa1v\x01"


class Clock:
    """A settable millisecond clock for the nonce store."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def devices() -> MemoryDeviceSecrets:
    return MemoryDeviceSecrets.of(
        {"bus-7": SECRET, "bus-8": bytes(32), "bus-9": new_secret()}, revoked=["bus-9"]
    )


def signed(**changes: object) -> dict[str, str]:
    request: dict[str, object] = {
        "device_id": "bus-7",
        "secret": SECRET,
        "method": "POST",
        "path_qs": "/v1/taps",
        "body": BODY,
        "now_ms": NOW,
        "nonce": NONCE,
    }
    request.update(changes)
    return sign_request(**request)  # type: ignore[arg-type]


async def verify(
    headers: Mapping[str, str],
    *,
    method: str = "POST",
    path_qs: str = "/v1/taps",
    body: bytes = BODY,
    now_ms: int = NOW,
    nonces: MemoryNonceStore | None = None,
) -> str:
    return await verify_request(
        method=method,
        path_qs=path_qs,
        headers=headers,
        body=body,
        secrets=devices(),
        nonces=nonces if nonces is not None else MemoryNonceStore(clock=Clock(now_ms)),
        now_ms=now_ms,
    )


async def refusal(headers: Mapping[str, str], **kwargs: object) -> AuthError:
    with pytest.raises(AuthError) as caught:
        await verify(headers, **kwargs)  # type: ignore[arg-type]
    return caught.value


# --- what is signed ----------------------------------------------------------


def test_the_signature_covers_exactly_the_documented_string() -> None:
    headers = signed()
    body_hash = hashlib.sha256(BODY).hexdigest()
    text = f"POST\n/v1/taps\n{NOW}\n{NONCE}\n{body_hash}".encode()
    assert (
        signing_string(
            method="post", path_qs="/v1/taps", timestamp=str(NOW), nonce=NONCE, body=BODY
        )
        == text
    )
    assert headers == {
        HEADER_DEVICE: "bus-7",
        HEADER_TIME: str(NOW),
        HEADER_NONCE: NONCE,
        HEADER_SIGNATURE: hmac.new(SECRET, text, hashlib.sha256).hexdigest(),
    }


def test_the_documented_example_signature() -> None:
    # Computed with `openssl dgst -sha256 -mac HMAC -macopt hexkey:0001..1f`.
    headers = signed(body=b"")
    assert headers[HEADER_SIGNATURE] == (
        "d0e6e6c5342aaddc4419242ad1ab32990d521692f718e65e10acc60b74ce993d"
    )


def test_a_fresh_nonce_and_the_clock_by_default() -> None:
    first = sign_request(device_id="bus-7", secret=SECRET, method="GET", path_qs="/", body=b"")
    second = sign_request(device_id="bus-7", secret=SECRET, method="GET", path_qs="/", body=b"")
    assert first[HEADER_NONCE] != second[HEADER_NONCE]
    assert len(first[HEADER_NONCE]) >= 16
    assert int(first[HEADER_TIME]) > NOW - 10 * 365 * 86_400_000


async def test_a_signed_request_is_accepted_and_names_its_device() -> None:
    assert await verify(signed()) == "bus-7"


async def test_the_real_clock_is_used_when_no_time_is_given() -> None:
    headers = sign_request(
        device_id="bus-7", secret=SECRET, method="GET", path_qs="/v1/policy", body=b""
    )
    device = await verify_request(
        method="GET",
        path_qs="/v1/policy",
        headers=headers,
        body=b"",
        secrets=devices(),
        nonces=MemoryNonceStore(),
    )
    assert device == "bus-7"


async def test_header_names_are_case_insensitive() -> None:
    headers = {name.lower(): value for name, value in signed().items()}
    assert await verify(headers) == "bus-7"


# --- every refusal -------------------------------------------------------------


@pytest.mark.parametrize("missing", [HEADER_DEVICE, HEADER_TIME, HEADER_NONCE, HEADER_SIGNATURE])
async def test_a_missing_header_is_refused(missing: str) -> None:
    headers = signed()
    del headers[missing]
    err = await refusal(headers)
    assert err.reason is AuthReason.MISSING_HEADERS
    assert missing in err.detail


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (HEADER_DEVICE, "bus 7"),
        (HEADER_DEVICE, ""),
        (HEADER_TIME, "-1"),
        (HEADER_TIME, "1.5e12"),
        (HEADER_TIME, "1" * 17),
        (HEADER_NONCE, "short"),
        (HEADER_NONCE, "n0nce/0123456789abcdef"),
    ],
)
async def test_a_malformed_header_is_refused(header: str, value: str) -> None:
    err = await refusal({**signed(), header: value})
    assert err.reason is AuthReason.MISSING_HEADERS
    assert header in str(err)


@pytest.mark.parametrize(
    "change",
    [
        {"body": BODY + b"\x00"},
        {"body": b""},
        {"path_qs": "/v1/taps?x=1"},
        {"path_qs": "/v1/heartbeat"},
        {"method": "PUT"},
    ],
    ids=["body-appended", "body-empty", "query-added", "other-path", "other-method"],
)
async def test_a_request_changed_after_signing_is_refused(change: dict[str, object]) -> None:
    err = await refusal(signed(), **change)
    assert err.reason is AuthReason.BAD_SIGNATURE


async def test_changed_signed_headers_are_refused() -> None:
    for header, value in [(HEADER_TIME, str(NOW + 1)), (HEADER_NONCE, NONCE + "x")]:
        err = await refusal({**signed(), header: value})
        assert err.reason is AuthReason.BAD_SIGNATURE


async def test_another_devices_secret_does_not_sign_for_it() -> None:
    err = await refusal(signed(secret=bytes(32)))
    assert err.reason is AuthReason.BAD_SIGNATURE
    # And a signature made for one device is not valid for another.
    err = await refusal({**signed(), HEADER_DEVICE: "bus-8"})
    assert err.reason is AuthReason.BAD_SIGNATURE


@pytest.mark.parametrize("signature", ["", "zz" * 32, "ab" * 31, "ab" * 33, "é" * 64])
async def test_a_malformed_signature_is_a_bad_signature(signature: str) -> None:
    err = await refusal({**signed(), HEADER_SIGNATURE: signature})
    assert err.reason is AuthReason.BAD_SIGNATURE


async def test_an_upper_case_hex_signature_is_accepted() -> None:
    headers = signed()
    headers[HEADER_SIGNATURE] = headers[HEADER_SIGNATURE].upper()
    assert await verify(headers) == "bus-7"


@pytest.mark.parametrize("skew", [DEFAULT_WINDOW_MS + 1, -DEFAULT_WINDOW_MS - 1, -NOW])
async def test_a_time_outside_the_window_is_refused(skew: int) -> None:
    err = await refusal(signed(now_ms=NOW + skew))
    assert err.reason is AuthReason.TIMESTAMP_OUT_OF_WINDOW
    assert "clock" in err.detail


@pytest.mark.parametrize("skew", [DEFAULT_WINDOW_MS, -DEFAULT_WINDOW_MS, 0])
async def test_a_time_at_the_edge_of_the_window_is_accepted(skew: int) -> None:
    assert await verify(signed(now_ms=NOW + skew)) == "bus-7"


async def test_a_replayed_request_is_refused() -> None:
    nonces = MemoryNonceStore(clock=Clock(NOW))
    headers = signed()
    assert await verify(headers, nonces=nonces) == "bus-7"
    err = await refusal(headers, nonces=nonces)
    assert err.reason is AuthReason.NONCE_REUSED
    # A new nonce with the same content is a new request.
    assert await verify(signed(nonce="another-nonce-0123456"), nonces=nonces) == "bus-7"


async def test_the_same_nonce_from_two_devices_is_two_requests() -> None:
    nonces = MemoryNonceStore(clock=Clock(NOW))
    assert await verify(signed(), nonces=nonces) == "bus-7"
    other = signed(device_id="bus-8", secret=bytes(32))
    assert await verify(other, nonces=nonces) == "bus-8"


async def test_a_refused_request_does_not_use_up_its_nonce() -> None:
    nonces = MemoryNonceStore(clock=Clock(NOW))
    forged = {**signed(), HEADER_SIGNATURE: "00" * 32}
    assert (await refusal(forged, nonces=nonces)).reason is AuthReason.BAD_SIGNATURE
    assert len(nonces) == 0
    assert await verify(signed(), nonces=nonces) == "bus-7"


async def test_an_unknown_device_is_refused() -> None:
    err = await refusal(signed(device_id="bus-404"))
    assert err.reason is AuthReason.UNKNOWN_DEVICE


async def test_a_revoked_device_is_refused_even_with_a_good_signature() -> None:
    secrets = devices()
    headers = signed(device_id="bus-9", secret=secrets.secrets["bus-9"])
    err = await refusal(headers)
    assert err.reason is AuthReason.REVOKED_DEVICE


def test_an_auth_error_reads_as_its_reason() -> None:
    err = AuthError(AuthReason.NONCE_REUSED, "the nonce was already used")
    assert str(err) == "nonce_reused: the nonce was already used"
    assert str(AuthError(AuthReason.REVOKED_DEVICE)) == "revoked_device"
    assert [reason.value for reason in AuthReason] == [
        "missing_headers",
        "bad_signature",
        "timestamp_out_of_window",
        "nonce_reused",
        "unknown_device",
        "revoked_device",
    ]


@settings(max_examples=40, deadline=None)
@given(body=st.binary(max_size=64), other=st.binary(max_size=64), query=st.text(max_size=20))
def test_only_the_signed_body_and_path_verify(body: bytes, other: bytes, query: str) -> None:
    path = "/v1/risklist/delta?since=" + "".join(c for c in query if c.isascii() and c.isalnum())
    headers = signed(body=body, path_qs=path, method="GET")

    async def check() -> None:
        assert await verify(headers, body=body, path_qs=path, method="GET") == "bus-7"
        if other != body:
            err = await refusal(headers, body=other, path_qs=path, method="GET")
            assert err.reason is AuthReason.BAD_SIGNATURE

    asyncio.run(check())


# --- the nonce store -----------------------------------------------------------


async def test_the_nonce_store_forgets_expired_nonces() -> None:
    clock = Clock(NOW)
    store = MemoryNonceStore(clock=clock)
    assert await store.remember("bus-7", NONCE, NOW + 1000)
    assert not await store.remember("bus-7", NONCE, NOW + 1000)
    clock.now = NOW + 1000
    assert not await store.remember("bus-7", NONCE, NOW + 2000)
    clock.now = NOW + 1001
    assert await store.remember("bus-7", NONCE, NOW + 2000)
    assert len(store) == 1


async def test_a_full_nonce_store_refuses_rather_than_forget_a_live_nonce() -> None:
    clock = Clock(NOW)
    store = MemoryNonceStore(max_entries=3, clock=clock)
    for i in range(3):
        assert await store.remember("bus-7", f"nonce-{i}", NOW + 10 + i)
    with pytest.raises(NonceStoreFull):
        await store.remember("bus-7", "nonce-3", NOW + 20)
    # A replay is still recognised when the store is full.
    assert not await store.remember("bus-7", "nonce-0", NOW + 10)
    # Once nonce-0 has expired, its place is free.
    clock.now = NOW + 11
    assert await store.remember("bus-7", "nonce-3", NOW + 20)
    assert len(store) == 3
    with pytest.raises(NonceStoreFull):
        await store.remember("bus-7", "nonce-4", NOW + 30)


async def test_verify_passes_the_full_store_error_on() -> None:
    store = MemoryNonceStore(max_entries=1, clock=Clock(NOW))
    assert await verify(signed(), nonces=store) == "bus-7"
    with pytest.raises(NonceStoreFull):
        await verify(signed(nonce="another-nonce-0123456"), nonces=store)


async def test_verify_remembers_the_nonce_until_the_window_has_passed() -> None:
    clock = Clock(NOW)
    store = MemoryNonceStore(clock=clock)
    headers = signed()
    assert await verify(headers, nonces=store) == "bus-7"
    clock.now = NOW + DEFAULT_WINDOW_MS
    err = await refusal(headers, nonces=store, now_ms=NOW + DEFAULT_WINDOW_MS)
    assert err.reason is AuthReason.NONCE_REUSED
    clock.now = NOW + DEFAULT_WINDOW_MS + 1
    err = await refusal(headers, nonces=store, now_ms=NOW + DEFAULT_WINDOW_MS + 1)
    assert err.reason is AuthReason.TIMESTAMP_OUT_OF_WINDOW


def test_a_nonce_store_holds_at_least_one_nonce() -> None:
    with pytest.raises(ValueError, match="at least one"):
        MemoryNonceStore(max_entries=0)


# --- signing mistakes ------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"device_id": "bus 7"},
        {"secret": b"short"},
        {"method": "GET POST"},
        {"path_qs": "v1/taps"},
        {"path_qs": "/v1/tapş"},
        {"nonce": "short"},
        {"now_ms": -1},
    ],
)
def test_sign_request_refuses_what_cannot_be_verified(change: dict[str, object]) -> None:
    with pytest.raises(SigningError):
        signed(**change)


def test_secrets_come_from_hex() -> None:
    secret = new_secret()
    assert len(secret) == 32
    assert secret_from_hex(secret.hex().upper() + "\n") == secret
    with pytest.raises(SigningError, match="not hex"):
        secret_from_hex("xyz")
    with pytest.raises(SigningError, match="at least 16"):
        secret_from_hex("00" * 8)


# --- over real HTTP ----------------------------------------------------------------


@pytest.fixture
async def depot() -> AsyncIterator[str]:
    """A loopback server that authenticates every request the way the depot does."""
    secrets = devices()
    nonces = MemoryNonceStore()

    async def handle(request: web.Request) -> web.Response:
        try:
            device = await verify_request(
                method=request.method,
                path_qs=request.raw_path,
                headers=request.headers,
                body=await request.read(),
                secrets=secrets,
                nonces=nonces,
            )
        except AuthError as err:
            return web.json_response({"reason": err.reason.value}, status=401)
        return web.json_response({"device": device, "query": dict(request.query)})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_signed_requests_over_http(depot: str) -> None:
    async with aiohttp.ClientSession() as session:
        path = "/v1/risklist/delta?since=42&page=2"
        headers = sign_request(
            device_id="bus-7", secret=SECRET, method="GET", path_qs=path, body=b""
        )
        async with session.get(depot + path, headers=headers) as response:
            assert response.status == 200
            assert await response.json() == {
                "device": "bus-7",
                "query": {"since": "42", "page": "2"},
            }
        async with session.get(depot + path, headers=headers) as response:
            assert response.status == 401
            assert await response.json() == {"reason": "nonce_reused"}

        body = b"\x81\xa1v\x01" * 100
        headers = sign_request(
            device_id="bus-7", secret=SECRET, method="POST", path_qs="/v1/taps", body=body
        )
        async with session.post(depot + "/v1/taps", data=body[:-1], headers=headers) as response:
            assert response.status == 401
            assert await response.json() == {"reason": "bad_signature"}
        async with session.post(depot + "/v1/taps", data=body, headers=headers) as response:
            assert response.status == 200

        headers = sign_request(
            device_id="bus-9", secret=SECRET, method="POST", path_qs="/v1/taps", body=body
        )
        async with session.post(depot + "/v1/taps", data=body, headers=headers) as response:
            assert await response.json() == {"reason": "revoked_device"}
