"""Builders shared by the depot's tests."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

import asyncpg

from depot_sync.crypto import FieldCipher
from depot_sync.devices import provision_device
from protocol.credentials import ReadMethod
from protocol.messages import TapRecord
from protocol.reasons import DecidedBy, Decision, Reason

#: 2024-03-01T08:00:00Z
BASE_MS = 1_709_280_000_000


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
