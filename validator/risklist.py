"""The local risk list: the memory-mapped snapshot plus an overlay of the deltas since.

Lookups are plain synchronous calls on the event loop and never wait on an
update. Updates do their slow work (verifying a downloaded snapshot, writing
the overlay to disk) in a worker thread and then swap the result in with a
single assignment on the loop, so a lookup sees the list before or after an
update, never half of one. A delta page is applied whole or not at all.

On disk, in the data directory:

* ``risklist.snapshot``: the last snapshot, verified (signature and body
  hash) before it replaced the previous one;
* ``risklist.db``: SQLite holding the overlay (one row per key changed since
  the snapshot), the list version and when the list was last known current.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

import structlog

from protocol.listsign import ListVerifier
from protocol.messages import DeltaPage, ListChange
from protocol.risk import Groups, HealthStatus, ListEntry
from protocol.snapshot import Snapshot, SnapshotError

log = structlog.get_logger(__name__)

SNAPSHOT_NAME: Final = "risklist.snapshot"
OVERLAY_NAME: Final = "risklist.db"
T = TypeVar("T")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS overlay (
    key BLOB PRIMARY KEY,
    version INTEGER NOT NULL,
    removed INTEGER NOT NULL,
    status INTEGER NOT NULL,
    expiry_day INTEGER,
    tckn_last3 TEXT,
    groups INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER);
"""


class ListUpdateError(ValueError):
    """An update was refused (bad signature, wrong version order, unreadable file).

    The list in use is unchanged.
    """


class ListStorageError(ListUpdateError):
    """The list's files could not be written or read (a full or failing disk)."""


@dataclass(frozen=True, slots=True)
class _View:
    """Everything a lookup reads, swapped as one."""

    snapshot: Snapshot | None
    overlay: dict[bytes, ListChange]
    version: int
    fresh_ms: int | None


def _no_list() -> _View:
    """The view before any list: a new one each time, as overlays are updated in place."""
    return _View(None, {}, 0, None)


def _entry_of(change: ListChange) -> ListEntry | None:
    if change.removed:
        return None
    return ListEntry(
        key=change.key,
        status=change.status,
        expiry_day=change.expiry_day,
        tckn_last3=change.tckn_last3,
        groups=change.groups,
    )


class RiskList:
    """The list the gate looks keys up in, and the updates the sync agent makes to it."""

    def __init__(self, data_dir: Path, verifier: ListVerifier) -> None:
        self._dir = data_dir
        self._verifier = verifier
        self._view = _no_list()
        # One thread owns the overlay database and does the slow parts of updates.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="risklist")
        self._db: sqlite3.Connection | None = None
        self._updating = asyncio.Lock()
        #: Why the list's files cannot be used, while they cannot.
        self.storage_error: str | None = None

    @property
    def snapshot_path(self) -> Path:
        """Where the verified snapshot lives."""
        return self._dir / SNAPSHOT_NAME

    # -- lookups (event loop, never blocking on updates) ---------------------------------

    def lookup(self, key: bytes) -> ListEntry | None:
        """The entry for an 8-byte key, or ``None`` when the list does not hold it."""
        view = self._view
        change = view.overlay.get(key)
        if change is not None:
            return _entry_of(change)
        if view.snapshot is None:
            return None
        return view.snapshot.lookup(key)

    @property
    def version(self) -> int:
        """The version of the newest change applied (0: no list yet)."""
        return self._view.version

    @property
    def snapshot_version(self) -> int:
        """The version of the snapshot under the overlay (0: none)."""
        snapshot = self._view.snapshot
        return 0 if snapshot is None else snapshot.list_version

    @property
    def overlay_size(self) -> int:
        """How many keys changed since the snapshot."""
        return len(self._view.overlay)

    @property
    def has_list(self) -> bool:
        """Whether a snapshot is loaded."""
        return self._view.snapshot is not None

    def age_s(self, now_ms: int) -> float | None:
        """Seconds since the list was last known to match the depot's; ``None`` without a list."""
        view = self._view
        if view.snapshot is None or view.fresh_ms is None:
            return None
        return max(now_ms - view.fresh_ms, 0) / 1000

    # -- worker thread plumbing ----------------------------------------------------------

    async def _in_worker(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the list's thread; a disk failure becomes :class:`ListStorageError`."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._worker, fn)
        except (sqlite3.Error, OSError) as err:
            raise ListStorageError(f"list storage failed: {err}") from err

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self._dir.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self._dir / OVERLAY_NAME, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    def _meta(self, name: str) -> int | None:
        row = self._conn().execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, name: str, value: int | None) -> None:
        self._conn().execute(
            "INSERT INTO meta (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    # -- loading -------------------------------------------------------------------------

    async def load(self) -> None:
        """Open the list kept on disk, if any (a bad file is dropped, never used).

        A disk that cannot be read leaves the validator without a list (every
        credential goes online) rather than without a validator.
        """
        async with self._updating:
            try:
                view = await self._in_worker(self._load)
            except ListStorageError as err:
                self.storage_error = str(err)
                log.critical("risk_list_storage_failed", error=str(err))
                return
            self.storage_error = None
            self._swap(view)
        log.info(
            "risk_list_loaded",
            list_version=view.version,
            snapshot_version=self.snapshot_version,
            overlay=len(view.overlay),
        )

    def _load(self) -> _View:
        db = self._conn()
        snapshot: Snapshot | None = None
        path = self.snapshot_path
        problem: str | None = None
        if path.exists():
            try:
                snapshot = Snapshot.open(path, self._verifier, verify_body=True)
            except (SnapshotError, OSError) as err:
                problem = str(err)
            if problem is not None:
                log.error("risk_list_snapshot_unusable", error=problem, path=str(path))
                path.unlink(missing_ok=True)
        if snapshot is None:
            # Without the snapshot under it the overlay means nothing: start over.
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM overlay")
            db.execute("DELETE FROM meta")
            db.execute("COMMIT")
            return _no_list()
        db.execute("BEGIN IMMEDIATE")
        # A crash between the snapshot's rename and this database's update
        # leaves changes the snapshot already holds: they must not override it.
        db.execute("DELETE FROM overlay WHERE version <= ?", (snapshot.list_version,))
        version = max(self._meta("version") or 0, snapshot.list_version)
        self._set_meta("version", version)
        db.execute("COMMIT")
        fresh = self._meta("fresh_ms")
        overlay = {
            row[0]: ListChange(
                version=row[1],
                key=row[0],
                removed=bool(row[2]),
                status=HealthStatus(row[3]),
                expiry_day=row[4],
                tckn_last3=row[5],
                groups=Groups(row[6]),
            )
            for row in db.execute(
                "SELECT key, version, removed, status, expiry_day, tckn_last3, groups FROM overlay"
            )
        }
        fresh_ms = max(fresh or 0, snapshot.created_ms)
        return _View(snapshot, overlay, version, fresh_ms)

    def _swap(self, view: _View) -> None:
        old = self._view.snapshot
        self._view = view
        if old is not None and old is not view.snapshot:
            old.close()

    # -- snapshot ------------------------------------------------------------------------

    async def install_snapshot(self, downloaded: Path, *, replace: bool = False) -> bool:
        """Verify a downloaded snapshot and put it under the overlay, atomically.

        Returns whether the list changed (``False``: not newer than the one in
        use). With ``replace`` (the depot's list was rebuilt and its versions
        started again) the snapshot becomes the whole list whatever its version.
        Raises :class:`ListUpdateError` for a file that fails its checks; it is
        deleted and the list in use keeps serving.
        """
        async with self._updating:
            view = await self._in_worker(lambda: self._install(downloaded, replace=replace))
            if view is None:
                return False
            self._swap(view)
        log.info(
            "risk_list_snapshot_installed",
            list_version=view.version,
            snapshot_version=self.snapshot_version,
            overlay=len(view.overlay),
        )
        return True

    def _install(self, downloaded: Path, *, replace: bool) -> _View | None:
        current = self._view
        try:
            snapshot = Snapshot.open(downloaded, self._verifier, verify_body=True)
        except (SnapshotError, OSError) as err:
            downloaded.unlink(missing_ok=True)
            raise ListUpdateError(f"snapshot refused: {err}") from err
        if replace:
            log.warning(
                "risk_list_replaced_after_depot_reset",
                list_version=current.version,
                depot_snapshot=snapshot.list_version,
            )
            # Forget the old numbering's changes before the file moves: a crash in
            # between leaves the old snapshot alone, which the next sync replaces.
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM overlay")
            db.execute("DELETE FROM meta WHERE name = 'version'")
            db.execute("COMMIT")
            current = _View(None, {}, 0, None)
        old_version = 0 if current.snapshot is None else current.snapshot.list_version
        if snapshot.list_version <= old_version:
            snapshot.close()
            downloaded.unlink(missing_ok=True)
            if snapshot.list_version < old_version:
                log.warning(
                    "risk_list_older_snapshot_ignored",
                    offered=snapshot.list_version,
                    in_use=old_version,
                )
            return None
        os.replace(downloaded, self.snapshot_path)
        _fsync_dir(self._dir)
        version = max(current.version, snapshot.list_version)
        fresh_ms = max(current.fresh_ms or 0, snapshot.created_ms)
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM overlay WHERE version <= ?", (snapshot.list_version,))
        self._set_meta("version", version)
        self._set_meta("fresh_ms", fresh_ms)
        db.execute("COMMIT")
        # Only the sync agent changes the overlay, and it is waiting on this.
        overlay = {k: c for k, c in current.overlay.items() if c.version > snapshot.list_version}
        return _View(snapshot, overlay, version, fresh_ms)

    # -- deltas --------------------------------------------------------------------------

    async def apply_delta(self, page: DeltaPage) -> None:
        """Apply one verified delta page, whole, after the version the list is at.

        Raises :class:`ListUpdateError` for a page that does not follow on
        from this list, or whose changes lie outside its range.
        """
        async with self._updating:
            current = self._view
            if current.snapshot is None:
                raise ListUpdateError("no snapshot to apply changes to")
            if page.since != current.version:
                raise ListUpdateError(
                    f"delta starts after version {page.since}, the list is at {current.version}"
                )
            if page.until < page.since:
                raise ListUpdateError(f"delta ends ({page.until}) before it starts ({page.since})")
            for change in page.changes:
                if not page.since < change.version <= page.until:
                    raise ListUpdateError(
                        f"change version {change.version} outside ({page.since}, {page.until}]"
                    )
            # Later changes to the same key win, whatever order the page lists them in.
            changes: dict[bytes, ListChange] = {}
            for change in sorted(page.changes, key=lambda c: c.version):
                changes[change.key] = change
            await self._in_worker(lambda: self._persist(changes, page.until))
            # One C-level update between two awaits: lookups see all of the page or none.
            overlay = current.overlay
            overlay.update(changes)
            self._view = _View(current.snapshot, overlay, page.until, current.fresh_ms)
        if page.changes:
            log.info(
                "risk_list_delta_applied",
                since=page.since,
                until=page.until,
                changes=len(page.changes),
            )

    def _persist(self, changes: dict[bytes, ListChange], version: int) -> None:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO overlay (key, version, removed, status, expiry_day, tckn_last3,"
                " groups) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
                " version = excluded.version, removed = excluded.removed,"
                " status = excluded.status, expiry_day = excluded.expiry_day,"
                " tckn_last3 = excluded.tckn_last3, groups = excluded.groups",
                [
                    (
                        c.key,
                        c.version,
                        int(c.removed),
                        int(c.status),
                        c.expiry_day,
                        c.tckn_last3,
                        int(c.groups),
                    )
                    for c in changes.values()
                ],
            )
            self._set_meta("version", version)
            db.execute("COMMIT")
        except sqlite3.Error:
            db.execute("ROLLBACK")
            raise

    # -- freshness -----------------------------------------------------------------------

    async def mark_fresh(self, now_ms: int | None = None) -> None:
        """Record that the list matched the depot's at ``now_ms`` (default: now)."""
        when = int(time.time() * 1000) if now_ms is None else now_ms
        async with self._updating:
            current = self._view
            if current.snapshot is None:
                return
            fresh = max(current.fresh_ms or 0, when)
            try:
                await self._in_worker(lambda: self._set_meta("fresh_ms", fresh))
            except ListStorageError as err:
                # Only the age after a restart depends on it: keep going in memory.
                log.warning("risk_list_freshness_not_saved", error=str(err))
            self._view = _View(current.snapshot, current.overlay, current.version, fresh)

    async def close(self) -> None:
        """Unmap the snapshot and close the overlay database."""
        async with self._updating:
            try:
                await self._in_worker(self._close_db)
            except ListStorageError as err:
                log.warning("risk_list_close_failed", error=str(err))
            self._swap(_no_list())
        self._worker.shutdown(wait=True)

    def _close_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
