"""Builders shared by the depot's tests."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import os
import socket
from collections.abc import Callable, Iterable, Iterator

import asyncpg
import pytest

from depot_sync.crypto import FieldCipher, credential_context
from depot_sync.operations.devices import provision_device
from depot_sync.risklist.credentials import (
    MinistryFacts,
    MinistryState,
    hes_key,
    record_checked_code,
)
from protocol.credentials import ReadMethod
from protocol.messages import TapRecord
from protocol.reasons import DecidedBy, Decision, Reason
from protocol.risk import Groups, HealthStatus, ListEntry

#: 2024-03-01T08:00:00Z
BASE_MS = 1_709_280_000_000


@contextlib.contextmanager
def reserved_port() -> Iterator[int]:
    """A loopback TCP port kept for the block: refused while nothing of ours listens on it.

    Its socket is bound with SO_REUSEADDR and never listens. The kernel then
    gives the port to no other bind(0) and uses it for no outgoing
    connection; a connection to it is refused, as a stopped server's port
    would refuse it; and a server of ours that binds it the usual way
    (asyncio and aiohttp set SO_REUSEADDR) may listen on it, stop, and listen
    again. A port looked up and let go instead can be handed to another
    process (another test run, a demo) before it is used, or between a
    server's stop and its restart.
    """
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        port: int = holder.getsockname()[1]
        yield port


def tap(seq: int, *, time_ms: int | None = None, vehicle: str = "34 ABC 01") -> TapRecord:
    """A plausible tap record with sequence number ``seq``."""
    return TapRecord(
        seq=seq,
        time_ms=BASE_MS + seq * 1000 if time_ms is None else time_ms,
        method=ReadMethod.QR,
        key=hashlib.sha256(seq.to_bytes(8, "big")).digest()[:8],
        decision=Decision.ALLOW,
        reason=Reason.OK,
        decided_by=DecidedBy.LOCAL_LIST,
        list_version=7,
        latency_us=850,
        vehicle=vehicle,
        route="500T",
        trip="T-0800",
        lat=41.01,
        lon=28.97,
    )


def taps(seqs: Iterable[int]) -> list[TapRecord]:
    """Tap records for each sequence number."""
    return [tap(s) for s in seqs]


def cipher() -> FieldCipher:
    """A field cipher with a throwaway key."""
    return FieldCipher(os.urandom(32))


async def enrol(pool: asyncpg.Pool, device_id: str, field: FieldCipher | None = None) -> bytes:
    """Enrol a device (with a throwaway key unless ``field`` is given); returns its secret."""
    async with pool.acquire() as conn:
        return await provision_device(conn, field or cipher(), device_id)


def code_of(n: int) -> str:
    """A distinct, valid HES code for each ``n``."""
    return f"T{n:09d}"


async def seed_found(
    pool: asyncpg.Pool,
    field: FieldCipher,
    list_key: bytes,
    numbers: Iterable[int],
    *,
    status: HealthStatus = HealthStatus.RISKLESS,
    last3: str | None = "246",
) -> list[bytes]:
    """Record Ministry answers for the codes ``code_of(n)``; returns their keys."""
    keys = []
    now = dt.datetime.now(dt.UTC)
    async with pool.acquire() as conn:
        for n in numbers:
            code = code_of(n)
            key = hes_key(list_key, code)
            facts = MinistryFacts(MinistryState.FOUND, status, now + dt.timedelta(days=30), last3)
            await record_checked_code(
                conn,
                key=key,
                sealed_code=field.seal_text(code, context=credential_context(key)),
                facts=facts,
                checked_at=now,
            )
            keys.append(key)
    return keys


async def listed(pool: asyncpg.Pool) -> dict[bytes, ListEntry]:
    """The list as the credentials table says it is."""
    rows = await pool.fetch(
        "SELECT key, status, expiry_day, coalesce(tckn_last3, registered_last3) AS last3, groups "
        "FROM credentials WHERE ministry_state = 'found'"
    )
    return {
        r["key"]: ListEntry(
            r["key"], HealthStatus(r["status"]), r["expiry_day"], r["last3"], Groups(r["groups"])
        )
        for r in rows
    }


async def until(predicate: Callable[[], bool], what: str, *, timeout_s: float = 10.0) -> None:
    """Wait for ``predicate`` to hold (a notification to arrive, a task to reconnect)."""
    for _ in range(int(timeout_s / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"gave up waiting for {what}")
