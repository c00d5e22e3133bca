"""A small world of taps for the contact-trace tests: an index rider, contacts, near misses."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Iterable

import asyncpg

from depot_sync.crypto import FieldCipher
from depot_sync.risklist.credentials import (
    MinistryFacts,
    MinistryState,
    card_key,
    hes_key,
    record_facts,
)
from depot_sync.risklist.registrations import import_registrations
from depot_sync.taps.ingest import TAP_COLUMNS, tap_row
from protocol.credentials import ReadMethod
from protocol.reasons import DecidedBy, Decision, Reason
from protocol.risk import HealthStatus
from tests.depot_sync.helpers import BASE_MS, tap

MIN = 60_000
#: The index's first boarding: 2024-03-01T09:00:00Z.
T0 = BASE_MS + 60 * MIN
V1 = "34 ABC 01"
V2 = "34 DEF 02"
ELSEWHERE = "34 XYZ 99"

INDEX_CODE = "R7G6915415"
INDEX_CARD = "04A224B2C61E80"
A_CODE = "A1B2C3D4E5"
B_CODE = "B1B2B3B4B5"
B_CARD = "0411223344"
REGISTRATIONS = f"""card_uid,hes_code,tckn,age_group
{INDEX_CARD},R7G6-9154-15,246,adult
,{A_CODE},248,adult
{B_CARD},{B_CODE},240,adult
"""


def other_key(name: str) -> bytes:
    """A key no registered credential has."""
    return hashlib.sha256(name.encode()).digest()[:8]


@dataclasses.dataclass(frozen=True)
class World:
    """The keys of the scenario's riders."""

    index: bytes
    index_card: bytes
    a: bytes
    b_card: bytes
    d: bytes
    f: bytes

    @property
    def contacts(self) -> set[bytes]:
        """Everyone inside a window of the index's boardings (linked taps counted)."""
        return {self.a, self.b_card, self.d, self.f}


@dataclasses.dataclass
class TapLoader:
    """Puts tap records straight into the table, numbering each device's taps."""

    pool: asyncpg.Pool
    seqs: dict[str, int] = dataclasses.field(default_factory=dict)

    def row(
        self,
        device: str,
        time_ms: int,
        key: bytes | None,
        vehicle: str,
        *,
        decision: Decision = Decision.ALLOW,
    ) -> tuple[object, ...]:
        seq = self.seqs[device] = self.seqs.get(device, 0) + 1
        record = dataclasses.replace(
            tap(seq, time_ms=time_ms, vehicle=vehicle),
            key=key,
            method=None if key is None else ReadMethod.QR,
            decision=decision,
            reason=Reason.OK if key is not None else Reason.UNREADABLE,
            decided_by=DecidedBy.LOCAL_LIST,
        )
        return tap_row(device, record)

    async def load(self, rows: Iterable[tuple[object, ...]]) -> None:
        await self.pool.copy_records_to_table("taps", records=list(rows), columns=TAP_COLUMNS)


async def build_world(pool: asyncpg.Pool, cipher: FieldCipher, list_key: bytes) -> World:
    """Register the riders, record the Ministry's answers, and load the taps."""
    async with pool.acquire() as conn:
        await import_registrations(conn, cipher, list_key, REGISTRATIONS)
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
        await record_facts(
            conn,
            [
                (
                    hes_key(list_key, INDEX_CODE),
                    MinistryFacts(MinistryState.FOUND, HealthStatus.RISKY, expires, "246"),
                ),
                (
                    hes_key(list_key, A_CODE),
                    MinistryFacts(MinistryState.FOUND, HealthStatus.RISKLESS, expires, "248"),
                ),
                (
                    hes_key(list_key, B_CODE),
                    MinistryFacts(MinistryState.FOUND, HealthStatus.RISKY, expires, "240"),
                ),
            ],
            dt.datetime.now(dt.UTC),
        )
    world = World(
        index=hes_key(list_key, INDEX_CODE),
        index_card=card_key(list_key, INDEX_CARD),
        a=hes_key(list_key, A_CODE),
        b_card=card_key(list_key, B_CARD),
        d=other_key("d"),
        f=other_key("f"),
    )
    taps = TapLoader(pool)
    await taps.load(
        [
            # The index boards V1 at T0 through the front door (bus-1) ...
            taps.row("bus-1", T0, world.index, V1, decision=Decision.DENY),
            # ... and V2 two hours later with the card linked to the code.
            taps.row("bus-3", T0 + 120 * MIN, world.index_card, V2),
            # Outside the traced range.
            taps.row("bus-1", T0 + 2 * 24 * 60 * MIN, world.index, V1),
            # A rides with the index twice (tapping twice on the first ride).
            taps.row("bus-1", T0 + 10 * MIN, world.a, V1),
            taps.row("bus-1", T0 + 12 * MIN, world.a, V1),
            taps.row("bus-3", T0 + 115 * MIN, world.a, V2),
            # B's card boards through V1's rear door exactly at the window's end.
            taps.row("bus-2", T0 + 30 * MIN, world.b_card, V1),
            # D exactly at the window's start.
            taps.row("bus-1", T0 - 30 * MIN, world.d, V1),
            # F a minute later, rear door.
            taps.row("bus-2", T0 + 1 * MIN, world.f, V1),
            # Near misses: a millisecond outside either edge, another vehicle, an unreadable tap.
            taps.row("bus-1", T0 + 30 * MIN + 1, other_key("c"), V1),
            taps.row("bus-1", T0 - 30 * MIN - 1, other_key("h"), V1),
            taps.row("bus-7", T0 + 1 * MIN, other_key("e"), ELSEWHERE),
            taps.row("bus-1", T0 + 2 * MIN, None, V1),
        ]
    )
    return world
