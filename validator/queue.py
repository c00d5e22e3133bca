"""The durable tap queue: SQLite in WAL mode, one connection, owned here.

A tap is committed (``synchronous=FULL``: it survives power loss as far as
SQLite can promise) before its answer is shown. Its sequence number is the
row's ``AUTOINCREMENT`` key, given by the same statement that stores it, so a
number is never used twice, even for rows already deleted, across crashes and
restarts. Records are deleted only when the depot has acknowledged them and
the local retention has passed.

When the disk is full or failing, :meth:`TapQueue.record` raises
:class:`StorageError` and keeps the tap in a bounded memory buffer; the taps
are stored, in order, as soon as the disk takes writes again. SQLite's
transactions guarantee that a failed write leaves every stored record whole.
"""

from __future__ import annotations

import collections
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog

from protocol.credentials import ReadMethod
from protocol.messages import TapRecord
from protocol.reasons import DecidedBy, Decision, Reason

log = structlog.get_logger(__name__)

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS taps (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms INTEGER NOT NULL,
    method INTEGER,
    key BLOB,
    decision INTEGER NOT NULL,
    reason INTEGER NOT NULL,
    decided_by INTEGER NOT NULL,
    list_version INTEGER NOT NULL,
    latency_us INTEGER NOT NULL,
    vehicle TEXT NOT NULL,
    route TEXT NOT NULL,
    trip TEXT NOT NULL,
    lat REAL,
    lon REAL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (name, value) VALUES ('acked', 0);
"""
_INSERT: Final = (
    "INSERT INTO taps (time_ms, method, key, decision, reason, decided_by, list_version,"
    " latency_us, vehicle, route, trip, lat, lon)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq"
)
_SELECT_UNSENT: Final = (
    "SELECT seq, time_ms, method, key, decision, reason, decided_by, list_version,"
    " latency_us, vehicle, route, trip, lat, lon FROM taps WHERE seq > ? ORDER BY seq LIMIT ?"
)
#: Deleting in chunks keeps each statement short on the event loop.
PURGE_CHUNK: Final = 5000


class StorageError(RuntimeError):
    """The tap could not be written. ``kept`` says whether it waits in memory for the disk."""

    def __init__(self, message: str, *, kept: bool) -> None:
        super().__init__(message)
        self.kept = kept


@dataclass(frozen=True, slots=True)
class TapDraft:
    """A tap as decided, before the queue gives it its sequence number."""

    time_ms: int
    method: ReadMethod | None
    key: bytes | None
    decision: Decision
    reason: Reason
    decided_by: DecidedBy
    list_version: int
    latency_us: int
    vehicle: str
    route: str
    trip: str
    lat: float | None = None
    lon: float | None = None

    def row(self) -> tuple[object, ...]:
        """The values in the order of the INSERT statement."""
        return (
            self.time_ms,
            None if self.method is None else int(self.method),
            self.key,
            int(self.decision),
            int(self.reason),
            int(self.decided_by),
            self.list_version,
            self.latency_us,
            self.vehicle,
            self.route,
            self.trip,
            self.lat,
            self.lon,
        )


@dataclass(frozen=True, slots=True)
class QueueStats:
    """What the heartbeat and the status page report about the queue."""

    last_seq: int
    acked: int
    backlog: int
    oldest_unsent_ms: int | None
    pending_in_memory: int
    storage_error: str | None


def _record_of(row: sqlite3.Row) -> TapRecord:
    method = row[2]
    return TapRecord(
        seq=row[0],
        time_ms=row[1],
        method=None if method is None else ReadMethod(method),
        key=row[3],
        decision=Decision(row[4]),
        reason=Reason(row[5]),
        decided_by=DecidedBy(row[6]),
        list_version=row[7],
        latency_us=row[8],
        vehicle=row[9],
        route=row[10],
        trip=row[11],
        lat=row[12],
        lon=row[13],
    )


class TapQueue:
    """The validator's store of tap records and of the depot's acknowledgement."""

    def __init__(
        self,
        path: Path,
        *,
        retention_s: int = 7 * 86400,
        max_db_bytes: int = 0,
        pending_limit: int = 10_000,
    ) -> None:
        self._path = path
        self._retention_ms = retention_s * 1000
        self._max_db_bytes = max_db_bytes
        self._pending: collections.deque[TapDraft] = collections.deque()
        self._pending_limit = pending_limit
        self._db: sqlite3.Connection | None = None
        self._last_seq = 0
        self._acked = 0
        self._error: str | None = None
        self._log = log.bind(db=str(path))
        self._try_open()

    # -- opening -------------------------------------------------------------------------

    def _try_open(self) -> bool:
        if self._db is not None:
            return True
        try:
            self._db = self._connect()
        except sqlite3.Error as err:
            self._fail("open", err)
            return False
        return True

    def _connect(self) -> sqlite3.Connection:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}COMMIT;")
            if self._max_db_bytes:
                page_size = db.execute("PRAGMA page_size").fetchone()[0]
                pages = max(self._max_db_bytes // page_size, 16)
                db.execute(f"PRAGMA max_page_count={pages}")
            seq_row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'taps'").fetchone()
            self._last_seq = seq_row[0] if seq_row else 0
            self._acked = db.execute("SELECT value FROM meta WHERE name = 'acked'").fetchone()[0]
        except sqlite3.Error:
            db.close()
            raise
        self._log.info("tap_queue_opened", last_seq=self._last_seq, acked=self._acked)
        return db

    def close(self) -> None:
        """Close the database (what could not be stored is lost with the process)."""
        if self._pending:
            self._log.error("tap_queue_closed_with_unstored_taps", count=len(self._pending))
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- recording -----------------------------------------------------------------------

    def record(self, draft: TapDraft) -> int:
        """Store a tap and return its sequence number, committed.

        Raises :class:`StorageError` when the disk refuses the write; the tap is
        then kept in memory (if the buffer has room) and stored later by
        :meth:`retry_pending` or the next successful :meth:`record`.
        """
        if self._pending and not self.retry_pending():
            return self._keep(draft, self._error or "storage unavailable")
        if not self._try_open():
            return self._keep(draft, self._error or "storage unavailable")
        assert self._db is not None
        try:
            seq = int(self._db.execute(_INSERT, draft.row()).fetchone()[0])
        except sqlite3.Error as err:
            self._fail("insert", err)
            return self._keep(draft, str(err))
        self._last_seq = seq
        if self._error is not None:
            self._recovered()
        return seq

    def _keep(self, draft: TapDraft, problem: str) -> int:
        kept = len(self._pending) < self._pending_limit
        if kept:
            self._pending.append(draft)
        else:
            self._log.critical("tap_lost_memory_buffer_full", limit=self._pending_limit)
        raise StorageError(f"tap not stored: {problem}", kept=kept)

    def retry_pending(self) -> bool:
        """Store the taps waiting in memory, oldest first; whether none is left waiting."""
        if not self._pending:
            return True
        if not self._try_open():
            return False
        assert self._db is not None
        while self._pending:
            try:
                seq = int(self._db.execute(_INSERT, self._pending[0].row()).fetchone()[0])
            except sqlite3.Error as err:
                self._fail("insert_pending", err)
                return False
            self._pending.popleft()
            self._last_seq = seq
        self._recovered()
        return True

    def _fail(self, operation: str, err: sqlite3.Error) -> None:
        first = self._error is None
        self._error = f"{operation}: {err}"
        # Loud the first time; every later failure of the same outage at warning.
        (self._log.critical if first else self._log.warning)(
            "tap_storage_failed",
            operation=operation,
            error=str(err),
            pending=len(self._pending),
        )

    def _recovered(self) -> None:
        self._log.warning("tap_storage_recovered", last_seq=self._last_seq)
        self._error = None

    # -- uploading -----------------------------------------------------------------------

    def unsent(self, limit: int) -> list[TapRecord]:
        """The oldest records the depot has not acknowledged, in sequence order."""
        if not self._try_open():
            return []
        assert self._db is not None
        try:
            rows = self._db.execute(_SELECT_UNSENT, (self._acked, limit)).fetchall()
        except sqlite3.Error as err:
            self._fail("read", err)
            return []
        return [_record_of(r) for r in rows]

    def mark_acked(self, ack: int) -> None:
        """Remember the depot's acknowledgement (never moves backwards).

        An ack beyond the last number this queue gave means the depot holds
        records from an earlier life of this device (a wiped disk): the
        sequence jumps past them so no number is used twice.
        """
        if ack <= self._acked or not self._try_open():
            return
        assert self._db is not None
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("UPDATE meta SET value = ? WHERE name = 'acked'", (ack,))
            if ack > self._last_seq:
                self._log.error("depot_ack_beyond_local_sequence", ack=ack, last_seq=self._last_seq)
                # sqlite_sequence has no key on name: update the row, or make it.
                updated = self._db.execute(
                    "UPDATE sqlite_sequence SET seq = ? WHERE name = 'taps'", (ack,)
                ).rowcount
                if not updated:
                    self._db.execute(
                        "INSERT INTO sqlite_sequence (name, seq) VALUES ('taps', ?)", (ack,)
                    )
            self._db.execute("COMMIT")
        except sqlite3.Error as err:
            self._rollback()
            self._fail("ack", err)
            return
        self._acked = ack
        self._last_seq = max(self._last_seq, ack)

    def purge(self, now_ms: int | None = None) -> int:
        """Delete acknowledged records older than the retention; how many went."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        if not self._try_open():
            return 0
        assert self._db is not None
        removed = 0
        try:
            while True:
                cur = self._db.execute(
                    "DELETE FROM taps WHERE seq IN (SELECT seq FROM taps"
                    " WHERE seq <= ? AND time_ms <= ? ORDER BY seq LIMIT ?)",
                    (self._acked, now - self._retention_ms, PURGE_CHUNK),
                )
                removed += cur.rowcount
                if cur.rowcount < PURGE_CHUNK:
                    break
        except sqlite3.Error as err:
            self._fail("purge", err)
        return removed

    def _rollback(self) -> None:
        assert self._db is not None
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error as err:
                self._log.warning("rollback_failed", error=str(err))

    # -- status --------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The highest sequence number given so far."""
        return self._last_seq

    @property
    def acked(self) -> int:
        """The depot's acknowledgement: every record up to it is stored there."""
        return self._acked

    @property
    def storage_error(self) -> str | None:
        """The current storage failure, or ``None`` when writes work."""
        return self._error

    def stats(self) -> QueueStats:
        """Backlog and the rest, for the heartbeat and the status page."""
        oldest: int | None = None
        if self._last_seq > self._acked and self._db is not None:
            try:
                row = self._db.execute(
                    "SELECT time_ms FROM taps WHERE seq > ? ORDER BY seq LIMIT 1", (self._acked,)
                ).fetchone()
            except sqlite3.Error as err:
                self._fail("read", err)
                row = None
            oldest = row[0] if row else None
        if oldest is None and self._pending:
            oldest = self._pending[0].time_ms
        return QueueStats(
            last_seq=self._last_seq,
            acked=self._acked,
            backlog=max(self._last_seq - self._acked, 0) + len(self._pending),
            oldest_unsent_ms=oldest,
            pending_in_memory=len(self._pending),
            storage_error=self._error,
        )
