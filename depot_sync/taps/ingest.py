"""Storing a batch of tap records: one transaction, bulk-loaded with COPY, idempotent.

The device's row in ``device_sync`` is locked for the batch, so batches of
one device are applied one after another while different devices load in
parallel. :func:`depot_sync.taps.tapseq.plan_batch` decides from that row and the
device's gaps which records are new; only those are copied into the
partitioned ``taps`` table, and the new ack, maximum and gaps are written in
the same transaction. If ``taps`` ever disagrees with that state (a restore
from backup, say), the unique index refuses the COPY and the batch is loaded
through a temporary table with ``ON CONFLICT DO NOTHING`` instead.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import asyncpg
import structlog

from depot_sync.db import Conn
from depot_sync.taps.tapseq import Gap, SeqState, plan_batch
from protocol.messages import TapRecord

log = structlog.get_logger("hesgate.depot.ingest")

#: The columns a batch fills: the record's fields in wire order, then the device.
TAP_COLUMNS: Final = (
    "seq",
    "time_ms",
    "method",
    "key",
    "decision",
    "reason",
    "decided_by",
    "list_version",
    "latency_us",
    "vehicle",
    "route",
    "trip",
    "lat",
    "lon",
    "device_id",
)
_FIELDS: Final = operator.attrgetter(*TAP_COLUMNS[:-1])

# The lock comes first: gaps read in the same statement would come from the snapshot taken
# before waiting for it, missing what the batch that held the lock wrote.
_LOCK: Final = "SELECT ack, max_seq FROM device_sync WHERE device_id = $1 FOR UPDATE"
_GAPS: Final = (
    "SELECT first_seq, last_seq, noticed_at FROM tap_gaps WHERE device_id = $1 ORDER BY first_seq"
)


class StateMismatch(RuntimeError):
    """The stored sequence state of a device is not self-consistent."""


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What a batch did: the ack after it, how many records were new, how many already stored."""

    ack: int
    stored: int
    duplicates: int
    gaps: tuple[Gap, ...]


def tap_row(device_id: str, tap: TapRecord) -> tuple[object, ...]:
    """A tap as a row of :data:`TAP_COLUMNS`."""
    return (*_FIELDS(tap), device_id)


def _rows(
    device_id: str, taps: Sequence[TapRecord], indexes: Sequence[int]
) -> list[tuple[object, ...]]:
    fields = _FIELDS
    tail = (device_id,)
    return [fields(taps[i]) + tail for i in indexes]


async def _lock_state(conn: Conn, device_id: str) -> SeqState:
    row = await conn.fetchrow(_LOCK, device_id)
    if row is None:
        await conn.execute(
            "INSERT INTO device_sync (device_id) VALUES ($1) ON CONFLICT DO NOTHING", device_id
        )
        row = await conn.fetchrow(_LOCK, device_id)
        if row is None:  # pragma: no cover - the row was just inserted in this transaction
            raise StateMismatch(f"no sync state for device {device_id}")
    gaps = tuple(
        Gap(g["first_seq"], g["last_seq"], g["noticed_at"])
        for g in await conn.fetch(_GAPS, device_id)
    )
    try:
        return SeqState(row["ack"], row["max_seq"], gaps)
    except ValueError as err:
        raise StateMismatch(f"device {device_id}: {err}") from err


async def _copy_skipping_stored(conn: Conn, rows: list[tuple[object, ...]]) -> int:
    """Load ``rows`` through a temporary table, skipping those ``taps`` already has."""
    await conn.execute(
        "CREATE TEMPORARY TABLE tap_batch (LIKE taps INCLUDING DEFAULTS) ON COMMIT DROP"
    )
    await conn.copy_records_to_table("tap_batch", records=rows, columns=TAP_COLUMNS)
    status = await conn.execute(
        "INSERT INTO taps SELECT * FROM tap_batch ON CONFLICT (device_id, seq, time_ms) DO NOTHING"
    )
    return int(status.rsplit(" ", 1)[1])


async def _write_state(
    conn: Conn, device_id: str, state: SeqState, stored: int, gaps_changed: bool
) -> None:
    await conn.execute(
        "UPDATE device_sync SET ack = $2, max_seq = $3, taps_stored = taps_stored + $4, "
        "last_batch_at = now() WHERE device_id = $1",
        device_id,
        state.ack,
        state.max_seq,
        stored,
    )
    if not gaps_changed:
        return
    await conn.execute("DELETE FROM tap_gaps WHERE device_id = $1", device_id)
    if state.gaps:
        await conn.execute(
            "INSERT INTO tap_gaps (device_id, first_seq, last_seq, noticed_at) "
            "SELECT $1, f, l, coalesce(n, now()) "
            "FROM unnest($2::bigint[], $3::bigint[], $4::timestamptz[]) AS g(f, l, n)",
            device_id,
            [g.first for g in state.gaps],
            [g.last for g in state.gaps],
            [g.noticed_at for g in state.gaps],
        )


async def ingest_batch(conn: Conn, device_id: str, taps: Sequence[TapRecord]) -> IngestResult:
    """Store the new records of one device's batch and return the ack; safe to repeat."""
    blog = log.bind(device=device_id, taps=len(taps))
    async with conn.transaction():
        state = await _lock_state(conn, device_id)
        plan = plan_batch(state, [t.seq for t in taps])
        stored = len(plan.new)
        duplicates = plan.duplicates
        if plan.new:
            rows = _rows(device_id, taps, plan.new)
            try:
                async with conn.transaction():
                    await conn.copy_records_to_table("taps", records=rows, columns=TAP_COLUMNS)
            except asyncpg.UniqueViolationError:
                blog.warning("stored taps disagree with the sequence state; skipping stored ones")
                stored = await _copy_skipping_stored(conn, rows)
                duplicates += len(rows) - stored
            await _write_state(conn, device_id, plan.state, stored, plan.gaps_changed)
    if plan.state.gaps and plan.gaps_changed:
        blog.info(
            "gaps in tap sequence",
            ack=plan.state.ack,
            missing=plan.state.missing,
            gaps=len(plan.state.gaps),
        )
    return IngestResult(plan.state.ack, stored, duplicates, plan.state.gaps)
