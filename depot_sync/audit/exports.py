"""Trip exports for auditors: tap records as CSV or JSON lines, streamed in constant memory.

CSV comes straight out of PostgreSQL's ``COPY ... TO STDOUT`` in chunks;
JSON lines are built by PostgreSQL and read through a server-side cursor.
Either way the depot holds one chunk at a time, whatever the size of the
export. Every export is recorded in ``export_log`` (who, which filters, how
many rows, whether it finished).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Final

import structlog

from depot_sync.db import Conn, Queryable
from protocol.credentials import ReadMethod
from protocol.reasons import DecidedBy, Decision, Reason
from protocol.risk import ISTANBUL

log = structlog.get_logger("hesgate.depot.exports")

Writer = Callable[[bytes], Coroutine[Any, Any, None]]
#: JSON lines fetched (and written) at once.
FETCH_ROWS: Final = 500


class ExportFormat(enum.StrEnum):
    """What an export is written as."""

    CSV = "csv"
    JSONL = "jsonl"

    @property
    def content_type(self) -> str:
        """The HTTP content type."""
        return "text/csv" if self is ExportFormat.CSV else "application/x-ndjson"


class BadFilter(ValueError):
    """A query parameter is wrong; ``field`` names it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class TripFilters:
    """Which taps to export: ``start`` inclusive, ``end`` exclusive (aware datetimes)."""

    start: dt.datetime
    end: dt.datetime
    device: str | None = None
    vehicle: str | None = None
    route: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The filters as the export log records them."""
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "device": self.device,
            "vehicle": self.vehicle,
            "route": self.route,
        }

    def args(self) -> tuple[object, ...]:
        """The query's parameters."""
        start_ms = int(self.start.timestamp() * 1000)
        end_ms = int(self.end.timestamp() * 1000)
        return (
            start_ms,
            end_ms,
            self.device,
            self.vehicle,
            self.route,
        )


def parse_time(value: str, field: str) -> dt.datetime:
    """An ISO 8601 time or date; without an offset it is Istanbul local time."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            return dt.datetime.combine(day, dt.time(), tzinfo=ISTANBUL)
        moment = dt.datetime.fromisoformat(text)
    except ValueError as err:
        raise BadFilter(field, f"expected an ISO 8601 date or time, got {value[:40]!r}") from err
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=ISTANBUL)


def _label(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    if len(value) > 64:
        raise BadFilter(name, "at most 64 characters")
    return value


def parse_query(query: Mapping[str, str], now: dt.datetime) -> tuple[TripFilters, ExportFormat]:
    """Filters and format from ``from``, ``to``, ``device``, ``vehicle``, ``route``, ``format``."""
    known = {"from", "to", "device", "vehicle", "route", "format"}
    for name in query:
        if name not in known:
            raise BadFilter(name, "unknown parameter")
    if not query.get("from"):
        raise BadFilter("from", "required (an ISO 8601 date or time)")
    start = parse_time(query["from"], "from")
    end = parse_time(query["to"], "to") if query.get("to") else now
    if end <= start:
        raise BadFilter("to", "must be after from")
    try:
        fmt = ExportFormat(query.get("format", "csv").lower())
    except ValueError as err:
        raise BadFilter("format", "expected csv or jsonl") from err
    filters = TripFilters(
        start, end, _label(query, "device"), _label(query, "vehicle"), _label(query, "route")
    )
    return filters, fmt


def _names(column: str, members: type[enum.IntEnum]) -> str:
    cases = " ".join(f"WHEN {int(m)} THEN '{m.name}'" for m in members)
    return f"CASE {column} {cases} ELSE {column}::text END"


_WHERE: Final = """
  FROM taps
 WHERE time_ms >= $1 AND time_ms < $2
   AND ($3::text IS NULL OR device_id = $3)
   AND ($4::text IS NULL OR vehicle = $4)
   AND ($5::text IS NULL OR route = $5)
 ORDER BY time_ms, device_id, seq
"""
_TIME: Final = (
    "to_char(to_timestamp(time_ms / 1000.0) AT TIME ZONE 'UTC', "
    '\'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\')'
)
#: The exported columns, in order: (name, SQL expression).
COLUMNS: Final = (
    ("device", "device_id"),
    ("seq", "seq"),
    ("time", _TIME),
    ("time_ms", "time_ms"),
    ("method", _names("method", ReadMethod)),
    ("key", "encode(key, 'hex')"),
    ("decision", _names("decision", Decision)),
    ("reason", _names("reason", Reason)),
    ("decided_by", _names("decided_by", DecidedBy)),
    ("list_version", "list_version"),
    ("latency_us", "latency_us"),
    ("vehicle", "vehicle"),
    ("route", "route"),
    ("trip", "trip"),
    ("lat", "lat"),
    ("lon", "lon"),
    ("received_at", "to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"),
)
_CSV_QUERY: Final = "SELECT " + ", ".join(f"{sql} AS {name}" for name, sql in COLUMNS) + _WHERE
_JSON_QUERY: Final = (
    "SELECT json_build_object("
    + ", ".join(f"'{name}', {sql}" for name, sql in COLUMNS)
    + ")::text AS line"
    + _WHERE
)


async def stream_trips(conn: Conn, filters: TripFilters, fmt: ExportFormat, write: Writer) -> int:
    """Write the matching taps through ``write``; returns how many rows."""
    args = filters.args()
    if fmt is ExportFormat.CSV:
        status = await conn.copy_from_query(
            _CSV_QUERY, *args, output=write, format="csv", header=True
        )
        return int(status.rsplit(" ", 1)[1])
    rows = 0
    async with conn.transaction(readonly=True):
        cursor = await conn.cursor(_JSON_QUERY, *args)
        while True:
            batch = await cursor.fetch(FETCH_ROWS)
            if not batch:
                return rows
            rows += len(batch)
            chunk = "".join(r["line"] + "\n" for r in batch).encode("utf-8")
            await write(chunk)


async def log_export_start(
    db: Queryable,
    operator_id: int,
    filters: TripFilters,
    fmt: ExportFormat,
    remote: str | None,
) -> int:
    """Record an export as it starts; returns its log id."""
    export_id: int = await db.fetchval(
        "INSERT INTO export_log (operator_id, kind, format, filters, remote) "
        "VALUES ($1, 'trips', $2, $3::jsonb, $4) RETURNING id",
        operator_id,
        fmt.value,
        json.dumps(filters.as_json()),
        remote,
    )
    return export_id


async def log_export_end(db: Queryable, export_id: int, rows: int | None, *, ok: bool) -> None:
    """Record how an export ended."""
    await db.execute(
        "UPDATE export_log SET finished_at = now(), rows = $2, outcome = $3 WHERE id = $1",
        export_id,
        rows,
        "done" if ok else "failed",
    )
