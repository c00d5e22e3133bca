"""Contact tracing for auditors: who boarded the same vehicle around an index credential's taps.

The auditor names an index credential (a HES code, a card UID, or a raw key
in hex) and a time range. The depot finds every tap of that credential in
the range (its boardings) and, around each one, every other credential that
tapped on the same vehicle within a window (default ±30 minutes): the
possible contacts, aggregated per key. The answer carries keys only, never a
raw HES code or card number. A credential's linked credentials (a HES code
and the cards registered to it) are the same person, so by default their
taps count as the index's too.

Both lookups run on indexes of the partitioned ``taps`` table
(``sql/002_trace_indexes.sql``): (key, time_ms) for the boardings,
(vehicle, time_ms) for the windows around them. Sizes are bounded by
:class:`TraceLimits`; a trace that finds more is refused (413), not cut
short. Every trace is recorded in ``export_log`` with the index's key, never
its raw value.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from depot_sync.audit.exports import BadFilter, parse_time
from depot_sync.db import Conn, Queryable
from depot_sync.risklist.credentials import card_key, hes_key
from depot_sync.risklist.registrations import normalize_uid
from protocol import hescode
from protocol.credentials import KEY_SIZE, CredentialKind
from protocol.reasons import Decision, Reason
from protocol.risk import HealthStatus

#: What ``export_log.kind`` says for a trace.
LOG_KIND: Final = "trace"
#: A trace request's body is small; anything larger is refused before it is read.
MAX_BODY_BYTES: Final = 4096
_MS_PER_MIN: Final = 60_000
_FIELDS: Final = frozenset({"hes_code", "card_uid", "key", "from", "to", "window_min", "linked"})


@dataclass(frozen=True, slots=True)
class TraceLimits:
    """How large a trace may be (the window's default and bounds, the range, the answer)."""

    #: The window around each boarding, in minutes, when the request does not say.
    default_window_min: int = 30
    #: The largest window a request may ask for.
    max_window_min: int = 240
    #: The longest time range (``to - from``) one trace may cover.
    max_range_days: int = 31
    #: More boardings of the index than this in the range: refused (413).
    max_boardings: int = 500
    #: More distinct contacts than this: refused (413).
    max_contacts: int = 2000

    def __post_init__(self) -> None:
        if not 1 <= self.default_window_min <= self.max_window_min <= 24 * 60:
            raise ValueError("trace: expected 1 <= default_window_min <= max_window_min <= 1440")
        if not 1 <= self.max_range_days <= 366:
            raise ValueError("trace.max_range_days: expected 1 to 366")
        if self.max_boardings < 1 or self.max_contacts < 1:
            raise ValueError("trace: max_boardings and max_contacts must be at least 1")


class IndexGiven(enum.StrEnum):
    """How the auditor named the index credential (the request's field)."""

    HES_CODE = "hes_code"
    CARD_UID = "card_uid"
    KEY = "key"


class BadTraceRequest(ValueError):
    """A trace request is wrong; ``field`` names what (answered with 400)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class TraceTooLarge(Exception):
    """A trace found more than its limit allows (answered with 413)."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(
            f"the trace finds more than {limit} {what}: narrow the time range or the window"
        )
        self.what = what
        self.limit = limit


@dataclass(frozen=True, slots=True)
class TraceRequest:
    """A checked trace request: the index's key, ``start`` inclusive, ``end`` exclusive."""

    given: IndexGiven
    key: bytes
    start: dt.datetime
    end: dt.datetime
    window_min: int
    linked: bool = True

    @property
    def window_ms(self) -> int:
        """The window on each side of a boarding, in ms."""
        return self.window_min * _MS_PER_MIN

    @property
    def start_ms(self) -> int:
        """The range's first ms."""
        return int(self.start.timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        """The first ms after the range."""
        return int(self.end.timestamp() * 1000)

    def as_json(self) -> dict[str, Any]:
        """What was asked, as the export log records it (the key, never a raw value)."""
        return {
            "index": self.given.value,
            "key": self.key.hex(),
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "window_min": self.window_min,
            "linked": self.linked,
        }


def _text(body: Mapping[str, object], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadTraceRequest(name, "expected a string")
    return value


def _index(body: Mapping[str, object], list_key: bytes) -> tuple[IndexGiven, bytes]:
    given = [g for g in IndexGiven if body.get(g.value) not in (None, "")]
    if len(given) != 1:
        raise BadTraceRequest("index", "give exactly one of hes_code, card_uid or key")
    kind = given[0]
    text = _text(body, kind.value) or ""
    if kind is IndexGiven.HES_CODE:
        try:
            return kind, hes_key(list_key, hescode.parse(text))
        except hescode.InvalidHesCode as err:
            # The reason never quotes the code back.
            raise BadTraceRequest(kind.value, err.reason) from err
    if kind is IndexGiven.CARD_UID:
        try:
            return kind, card_key(list_key, normalize_uid(text))
        except ValueError as err:
            raise BadTraceRequest(
                kind.value, "expected 4 to 10 bytes of hexadecimal (8 to 20 digits)"
            ) from err
    try:
        key = bytes.fromhex(text.replace(":", "").replace(" ", ""))
    except ValueError as err:
        raise BadTraceRequest(kind.value, f"expected {KEY_SIZE * 2} hexadecimal digits") from err
    if len(key) != KEY_SIZE:
        raise BadTraceRequest(kind.value, f"expected {KEY_SIZE * 2} hexadecimal digits")
    return kind, key


def _time(body: Mapping[str, object], name: str) -> dt.datetime | None:
    text = _text(body, name)
    if not text:
        return None
    try:
        return parse_time(text, name)
    except BadFilter as err:
        raise BadTraceRequest(err.field, err.problem) from err


def parse_request(
    body: object, list_key: bytes, now: dt.datetime, limits: TraceLimits
) -> TraceRequest:
    """Check a request's JSON body (see docs/depot.md, "Contact trace")."""
    if not isinstance(body, dict):
        raise BadTraceRequest("body", "expected a JSON object")
    for name in body:
        if name not in _FIELDS:
            raise BadTraceRequest(str(name)[:40], "unknown field")
    given, key = _index(body, list_key)
    start = _time(body, "from")
    if start is None:
        raise BadTraceRequest("from", "required (an ISO 8601 date or time)")
    end = _time(body, "to") or now
    if end <= start:
        raise BadTraceRequest("to", "must be after from")
    if end - start > dt.timedelta(days=limits.max_range_days):
        raise BadTraceRequest(
            "to",
            f"a trace covers at most {limits.max_range_days} days: trace a longer span in parts",
        )
    window = body.get("window_min", limits.default_window_min)
    if isinstance(window, bool) or not isinstance(window, int):
        raise BadTraceRequest("window_min", "expected a whole number of minutes")
    if not 1 <= window <= limits.max_window_min:
        raise BadTraceRequest("window_min", f"expected 1 to {limits.max_window_min} minutes")
    linked = body.get("linked", True)
    if not isinstance(linked, bool):
        raise BadTraceRequest("linked", "expected true or false")
    return TraceRequest(given, key, start, end, window, linked)


@dataclass(frozen=True, slots=True)
class Boarding:
    """One tap of the index credential."""

    id: int
    key: bytes
    time_ms: int
    device: str
    seq: int
    vehicle: str
    route: str
    trip: str
    decision: int
    reason: int


@dataclass(frozen=True, slots=True)
class KnownCredential:
    """What the depot knows of a contact's key."""

    kind: CredentialKind
    registered: bool
    state: str
    status: HealthStatus | None

    def as_json(self) -> dict[str, Any]:
        """The answer's form."""
        return {
            "kind": "hes_code" if self.kind is CredentialKind.HES_CODE else "card",
            "registered": self.registered,
            "ministry_state": self.state,
            "status": None if self.status is None else self.status.name,
        }


@dataclass(frozen=True, slots=True)
class Contact:
    """Another credential seen in the window around one or more boardings."""

    key: bytes
    boardings: tuple[int, ...]
    first_ms: int
    last_ms: int
    nearest_ms: int
    vehicles: tuple[str, ...]

    @property
    def shared_rides(self) -> int:
        """In how many of the index's boardings' windows it tapped."""
        return len(self.boardings)


@dataclass(frozen=True, slots=True)
class TraceResult:
    """A trace's answer."""

    request: TraceRequest
    index_keys: tuple[bytes, ...]
    index_known: bool
    boardings: tuple[Boarding, ...]
    contacts: tuple[Contact, ...]
    #: Only when the index was given as a HES code: what the depot knows of each contact.
    credentials: Mapping[bytes, KnownCredential] | None = None

    def as_json(self) -> dict[str, Any]:
        """The JSON answer (keys in hex, times in UTC)."""
        per_boarding: dict[int, int] = {}
        for contact in self.contacts:
            for boarding in contact.boardings:
                per_boarding[boarding] = per_boarding.get(boarding, 0) + 1
        contacts = []
        for c in self.contacts:
            item: dict[str, Any] = {
                "key": c.key.hex(),
                "shared_rides": c.shared_rides,
                "first_overlap": iso_ms(c.first_ms),
                "last_overlap": iso_ms(c.last_ms),
                "nearest_s": c.nearest_ms / 1000,
                "vehicles": list(c.vehicles),
                "boardings": list(c.boardings),
            }
            if self.credentials is not None:
                known = self.credentials.get(c.key)
                item["credential"] = None if known is None else known.as_json()
            contacts.append(item)
        request = self.request
        return {
            "index": {
                "given": request.given.value,
                "key": request.key.hex(),
                "keys": [k.hex() for k in self.index_keys],
                "known": self.index_known,
            },
            "from": request.start.isoformat(),
            "to": request.end.isoformat(),
            "window_min": request.window_min,
            "boardings": [
                {
                    "id": b.id,
                    "time": iso_ms(b.time_ms),
                    "time_ms": b.time_ms,
                    "key": b.key.hex(),
                    "device": b.device,
                    "seq": b.seq,
                    "vehicle": b.vehicle,
                    "route": b.route,
                    "trip": b.trip,
                    "decision": _name(Decision, b.decision),
                    "reason": _name(Reason, b.reason),
                    "contacts": per_boarding.get(b.id, 0),
                }
                for b in self.boardings
            ],
            "contacts": contacts,
        }


def iso_ms(time_ms: int) -> str:
    """A time in ms since the epoch as ISO 8601 UTC with milliseconds (``...T08:00:00.000Z``)."""
    moment = dt.datetime.fromtimestamp(time_ms / 1000, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{time_ms % 1000:03d}Z"


def _name(members: type[enum.IntEnum], value: int) -> str:
    try:
        return members(value).name
    except ValueError:
        return str(value)


# A code's person: the code itself, or the code a card is linked to; then the code and its cards.
_LINKED: Final = """
WITH person AS (SELECT coalesce(hes_key, key) AS code FROM credentials WHERE key = $1)
SELECT key FROM credentials
 WHERE key = (SELECT code FROM person) OR hes_key = (SELECT code FROM person)
 ORDER BY key
"""


async def index_keys(db: Queryable, key: bytes, *, linked: bool) -> tuple[tuple[bytes, ...], bool]:
    """The keys whose taps are the index's (``key`` first), and whether the depot knows ``key``."""
    known = bool(await db.fetchval("SELECT EXISTS (SELECT 1 FROM credentials WHERE key = $1)", key))
    if not linked or not known:
        return (key,), known
    others = [r["key"] for r in await db.fetch(_LINKED, key) if r["key"] != key]
    return (key, *others), known


_BOARDINGS: Final = """
SELECT key, time_ms, device_id, seq, vehicle, route, trip, decision, reason
  FROM taps
 WHERE key = ANY($1::bytea[]) AND time_ms >= $2 AND time_ms < $3
 ORDER BY time_ms, device_id, seq
 LIMIT $4
"""


async def find_boardings(
    db: Queryable, keys: Sequence[bytes], start_ms: int, end_ms: int, limit: int
) -> tuple[Boarding, ...]:
    """The taps of ``keys`` in ``[start_ms, end_ms)``, in time order (ids from 1)."""
    rows = await db.fetch(_BOARDINGS, list(keys), start_ms, end_ms, limit + 1)
    if len(rows) > limit:
        raise TraceTooLarge("boardings of the index", limit)
    return tuple(
        Boarding(
            id=i,
            key=r["key"],
            time_ms=r["time_ms"],
            device=r["device_id"],
            seq=r["seq"],
            vehicle=r["vehicle"],
            route=r["route"],
            trip=r["trip"],
            decision=r["decision"],
            reason=r["reason"],
        )
        for i, r in enumerate(rows, 1)
    )


# A validator configured without a vehicle is its own vehicle: its taps match on the device.
# The outer time bounds are constants for the whole statement, so partitions outside every
# window are pruned before the (vehicle, time_ms) index is probed once per boarding.
_CONTACTS: Final = """
WITH b AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[])
                  AS b(time_ms, vehicle, device_id, id)
), pairs AS (
    SELECT b.id, t.key,
           CASE WHEN b.vehicle = '' THEN b.device_id ELSE b.vehicle END AS place,
           min(t.time_ms) AS first_ms, max(t.time_ms) AS last_ms,
           min(abs(t.time_ms - b.time_ms)) AS nearest_ms
      FROM b
      JOIN taps t
        ON t.vehicle = b.vehicle
       AND t.time_ms BETWEEN b.time_ms - $5 AND b.time_ms + $5
       AND (b.vehicle <> '' OR t.device_id = b.device_id)
     WHERE t.time_ms BETWEEN $6 AND $7
       AND t.key IS NOT NULL
       AND t.key <> ALL($8::bytea[])
     GROUP BY b.id, place, t.key
)
SELECT key,
       array_agg(DISTINCT id ORDER BY id) AS boardings,
       min(first_ms) AS first_ms, max(last_ms) AS last_ms, min(nearest_ms) AS nearest_ms,
       array_agg(DISTINCT place ORDER BY place) AS vehicles
  FROM pairs
 GROUP BY key
 ORDER BY count(DISTINCT id) DESC, min(nearest_ms), key
 LIMIT $9
"""


async def find_contacts(
    db: Queryable,
    boardings: Sequence[Boarding],
    exclude: Sequence[bytes],
    window_ms: int,
    limit: int,
) -> tuple[Contact, ...]:
    """Every other key that tapped on a boarding's vehicle within ``window_ms`` of it.

    Both edges count: a tap exactly ``window_ms`` before or after is a contact.
    Most shared rides first, then the closest in time.
    """
    if not boardings:
        return ()
    rows = await db.fetch(
        _CONTACTS,
        [b.time_ms for b in boardings],
        [b.vehicle for b in boardings],
        [b.device for b in boardings],
        [b.id for b in boardings],
        window_ms,
        min(b.time_ms for b in boardings) - window_ms,
        max(b.time_ms for b in boardings) + window_ms,
        list(exclude),
        limit + 1,
    )
    if len(rows) > limit:
        raise TraceTooLarge("contacts", limit)
    return tuple(
        Contact(
            key=r["key"],
            boardings=tuple(r["boardings"]),
            first_ms=r["first_ms"],
            last_ms=r["last_ms"],
            nearest_ms=r["nearest_ms"],
            vehicles=tuple(r["vehicles"]),
        )
        for r in rows
    )


async def known_credentials(db: Queryable, keys: Sequence[bytes]) -> dict[bytes, KnownCredential]:
    """What the depot knows of each of ``keys`` (unknown keys are left out)."""
    rows = await db.fetch(
        "SELECT key, kind, source, ministry_state, status FROM credentials "
        "WHERE key = ANY($1::bytea[])",
        list(keys),
    )
    return {
        r["key"]: KnownCredential(
            kind=CredentialKind(r["kind"]),
            registered=r["source"] == "registration",
            state=r["ministry_state"],
            status=(
                HealthStatus(r["status"])
                if r["ministry_state"] == "found" and r["status"] is not None
                else None
            ),
        )
        for r in rows
    }


async def trace(conn: Conn, request: TraceRequest, limits: TraceLimits) -> TraceResult:
    """Run a trace in one read-only snapshot of the database."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        keys, known = await index_keys(conn, request.key, linked=request.linked)
        boardings = await find_boardings(
            conn, keys, request.start_ms, request.end_ms, limits.max_boardings
        )
        contacts = await find_contacts(
            conn, boardings, keys, request.window_ms, limits.max_contacts
        )
        credentials = None
        # A contact's health status is the auditor's to see only when tracing a case's HES code.
        if request.given is IndexGiven.HES_CODE:
            credentials = await known_credentials(conn, [c.key for c in contacts])
    return TraceResult(request, keys, known, boardings, contacts, credentials)


async def log_trace_start(
    db: Queryable, operator_id: int, request: TraceRequest, remote: str | None
) -> int:
    """Record a trace in the export log as it starts; returns its log id."""
    log_id: int = await db.fetchval(
        "INSERT INTO export_log (operator_id, kind, format, filters, remote) "
        "VALUES ($1, $2, 'json', $3::jsonb, $4) RETURNING id",
        operator_id,
        LOG_KIND,
        json.dumps(request.as_json()),
        remote,
    )
    return log_id
