"""How the fleet is doing: heartbeats, when each device was last seen, and the fleet view."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Final

import asyncpg

from depot_sync.db import Queryable
from protocol.messages import Heartbeat

#: Gaps listed per device in the fleet view (the count is always complete).
MAX_GAPS_SHOWN: Final = 20


class LastSeen:
    """When each device last made an authenticated request, written to the database in batches.

    Every request would otherwise write the ``devices`` row.
    """

    def __init__(self) -> None:
        self._pending: dict[str, dt.datetime] = {}

    def saw(self, device_id: str, when: dt.datetime | None = None) -> None:
        """Note a request from ``device_id``."""
        self._pending[device_id] = when or dt.datetime.now(dt.UTC)

    async def flush(self, db: Queryable) -> int:
        """Write what was noted since the last flush; returns how many devices."""
        if not self._pending:
            return 0
        pending, self._pending = self._pending, {}
        try:
            await db.execute(
                "UPDATE devices d SET last_seen_at = greatest(d.last_seen_at, u.t) "
                "FROM unnest($1::text[], $2::timestamptz[]) AS u(id, t) WHERE d.id = u.id",
                list(pending),
                list(pending.values()),
            )
        except BaseException:
            # Keep what was not written, unless newer news arrived meanwhile.
            for device, when in pending.items():
                self._pending.setdefault(device, when)
            raise
        return len(pending)


async def record_heartbeat(
    db: Queryable, device_id: str, beat: Heartbeat, received: dt.datetime
) -> int:
    """Store a device's heartbeat; returns its clock skew (device minus depot, ms)."""
    server_ms = int(received.timestamp() * 1000)
    skew = beat.time_ms - server_ms
    await db.execute(
        "INSERT INTO device_status (device_id, received_at, device_time_ms, clock_skew_ms, "
        "software, last_seq, backlog, oldest_unsent_ms, list_version, list_age_s, "
        "policy_version, online_failures) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
        "ON CONFLICT (device_id) DO UPDATE SET received_at = excluded.received_at, "
        "device_time_ms = excluded.device_time_ms, clock_skew_ms = excluded.clock_skew_ms, "
        "software = excluded.software, last_seq = excluded.last_seq, backlog = excluded.backlog, "
        "oldest_unsent_ms = excluded.oldest_unsent_ms, list_version = excluded.list_version, "
        "list_age_s = excluded.list_age_s, policy_version = excluded.policy_version, "
        "online_failures = excluded.online_failures",
        device_id,
        received,
        beat.time_ms,
        skew,
        beat.software,
        beat.last_seq,
        beat.backlog,
        beat.oldest_unsent_ms,
        beat.list_version,
        beat.list_age_s,
        beat.policy_version,
        beat.online_failures,
    )
    return skew


_FLEET: Final = """
SELECT d.id, d.status, d.vehicle, d.enrolled_at, d.revoked_at, d.last_seen_at,
       s.ack, s.max_seq, s.taps_stored, s.last_batch_at,
       h.received_at, h.device_time_ms, h.clock_skew_ms, h.software, h.last_seq, h.backlog,
       h.oldest_unsent_ms, h.list_version, h.list_age_s, h.policy_version, h.online_failures,
       g.gap_count, g.missing, g.gaps
  FROM devices d
  LEFT JOIN device_sync s ON s.device_id = d.id
  LEFT JOIN device_status h ON h.device_id = d.id
  LEFT JOIN LATERAL (
       SELECT count(*) AS gap_count, coalesce(sum(last_seq - first_seq + 1), 0) AS missing,
              (SELECT coalesce(json_agg(json_build_array(first_seq, last_seq, noticed_at)
                                        ORDER BY first_seq), '[]')::text
                 FROM (SELECT * FROM tap_gaps WHERE device_id = d.id
                        ORDER BY first_seq LIMIT $1) AS shown) AS gaps
         FROM tap_gaps WHERE device_id = d.id) AS g ON true
 ORDER BY d.id
"""


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat()


def _device(row: asyncpg.Record, head: int, now: dt.datetime) -> dict[str, Any]:
    heartbeat: dict[str, Any] | None = None
    if row["received_at"] is not None:
        heartbeat = {
            "received_at": _iso(row["received_at"]),
            "software": row["software"],
            "last_seq": row["last_seq"],
            "backlog": row["backlog"],
            "oldest_unsent_ms": row["oldest_unsent_ms"],
            "list_version": row["list_version"],
            "list_versions_behind": max(0, head - row["list_version"]),
            "list_age_s": row["list_age_s"],
            "policy_version": row["policy_version"],
            "clock_skew_ms": row["clock_skew_ms"],
            "online_failures": row["online_failures"],
        }
    last_seen = row["last_seen_at"]
    return {
        "id": row["id"],
        "status": row["status"],
        "vehicle": row["vehicle"],
        "enrolled_at": _iso(row["enrolled_at"]),
        "revoked_at": _iso(row["revoked_at"]),
        "last_seen_at": _iso(last_seen),
        "seconds_since_seen": None if last_seen is None else int((now - last_seen).total_seconds()),
        "ack": row["ack"] or 0,
        "max_seq": row["max_seq"] or 0,
        "taps_stored": row["taps_stored"] or 0,
        "last_batch_at": _iso(row["last_batch_at"]),
        "gap_count": row["gap_count"],
        "missing": int(row["missing"]),
        "gaps": [
            {"first": first, "last": last, "noticed_at": noticed}
            for first, last, noticed in json.loads(row["gaps"])
        ],
        "heartbeat": heartbeat,
    }


async def fleet_devices(db: Queryable, head: int, now: dt.datetime) -> list[dict[str, Any]]:
    """Every device's sync state, for the fleet view."""
    rows = await db.fetch(_FLEET, MAX_GAPS_SHOWN)
    return [_device(r, head, now) for r in rows]
