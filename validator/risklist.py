"""The local risk list: the memory-mapped snapshot plus an overlay of the deltas since.

Lookups are plain synchronous calls on the event loop and never wait on an
update. Updates do their slow work (verifying a downloaded snapshot, decoding
and verifying a delta page, writing the overlay to disk) in a worker thread
and then swap the result in with a single assignment on the loop, so a lookup
sees the list before or after an update, never half of one. A delta page is
applied whole or not at all.

On disk, in the data directory:

* ``risklist.snapshot``: the last snapshot, verified (signature and body
  hash) before it replaced the previous one;
* ``risklist.db``: SQLite holding the overlay (one row per key changed since
  the snapshot), the list version, when the list was last known current, and
  the identity of the snapshot file as it was when last verified whole
  (:mod:`validator.listfile`).

At start a snapshot whose identity is unchanged opens with its header checked
only (milliseconds, whatever its size); any other is verified whole before
it serves, and dropped if it fails. :meth:`RiskList.verify_kept` then checks
the body of a list opened on its identity alone, in the worker thread, while
lookups go on.

Overlay values are plain tuples of scalars (:data:`Change`), not
:class:`~protocol.messages.ListChange` objects: the garbage collector stops
tracking such tuples, so a 100k-change overlay adds nothing to its
collections, which otherwise stall the event loop while a big delta applies.
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

from protocol.codec import MessageError, decode
from protocol.listsign import ListVerifier, SignatureInvalid, unseal
from protocol.messages import DeltaPage, ListChange, Signed
from protocol.risk import Groups, HealthStatus, ListEntry
from protocol.snapshot import Snapshot, SnapshotError
from validator.listfile import FileIdentity, file_identity

log = structlog.get_logger(__name__)

SNAPSHOT_NAME: Final = "risklist.snapshot"
OVERLAY_NAME: Final = "risklist.db"
T = TypeVar("T")

#: One changed key in the overlay: ``(version, removed, status, expiry_day, tckn_last3,
#: groups)``, the status and groups as plain ints (the same order as the ``overlay`` table).
Change = tuple[int, bool, int, int | None, str | None, int]

# Lookup tables: plain ints in the overlay, the enums a ListEntry holds.
_STATUS_OF: Final = tuple(HealthStatus)
_GROUPS_OF: Final = tuple(Groups(value) for value in range(256))

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
CREATE TABLE IF NOT EXISTS snapshot_file (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    body_sha256 BLOB NOT NULL
);
"""


class ListUpdateError(ValueError):
    """An update was refused (bad signature, wrong version order, unreadable file).

    The list in use is unchanged.
    """


class ListStorageError(ListUpdateError):
    """The list's files could not be written or read (a full or failing disk)."""


class SnapshotChanged(ListUpdateError):
    """The kept snapshot file changed while it was being opened or checked."""


class OverlayDamaged(ListUpdateError):
    """A row of the overlay database holds a value no change can have."""


@dataclass(frozen=True, slots=True)
class _View:
    """Everything a lookup reads, swapped as one."""

    snapshot: Snapshot | None
    overlay: dict[bytes, Change]
    version: int
    fresh_ms: int | None


def _no_list() -> _View:
    """The view before any list: a new one each time, as overlays are updated in place."""
    return _View(None, {}, 0, None)


def _change_of(change: ListChange) -> Change:
    return (
        change.version,
        change.removed,
        int(change.status),
        change.expiry_day,
        change.tckn_last3,
        int(change.groups),
    )


def _change_from_row(row: tuple[bytes, int, int, int, int | None, str | None, int]) -> Change:
    """An overlay row as kept on disk, checked: a damaged value must not reach a lookup."""
    _key, version, removed, status, expiry_day, tckn_last3, groups = row
    if not 0 <= status < len(_STATUS_OF) or not 0 <= groups < len(_GROUPS_OF):
        raise OverlayDamaged(f"overlay row for key {_key.hex()}: status {status}, groups {groups}")
    return (version, bool(removed), status, expiry_day, tckn_last3, groups)


def open_delta_page(verifier: ListVerifier, wire: bytes) -> DeltaPage:
    """A delta page as the depot sent it (a signed envelope), checked and decoded.

    Raises :class:`ListUpdateError` for a page that does not decode or whose
    signature fails.
    """
    try:
        return decode(DeltaPage, unseal(verifier, decode(Signed, wire)))
    except SignatureInvalid as err:
        raise ListUpdateError(f"delta refused: {err}") from err
    except MessageError as err:
        raise ListUpdateError(f"delta page does not decode: {err}") from err


def _checked_changes(page: DeltaPage, version: int) -> dict[bytes, Change]:
    """The page's changes by key (the latest of each key wins), once the page fits the list."""
    if page.since != version:
        raise ListUpdateError(f"delta starts after version {page.since}, the list is at {version}")
    if page.until < page.since:
        raise ListUpdateError(f"delta ends ({page.until}) before it starts ({page.since})")
    for change in page.changes:
        if not page.since < change.version <= page.until:
            raise ListUpdateError(
                f"change version {change.version} outside ({page.since}, {page.until}]"
            )
    # Later changes to the same key win, whatever order the page lists them in.
    changes: dict[bytes, Change] = {}
    for change in sorted(page.changes, key=lambda c: c.version):
        changes[change.key] = _change_of(change)
    return changes


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
        #: Whether the snapshot in use was opened on its file identity alone (body unchecked).
        self._body_unchecked = False
        #: Why the list's files cannot be used, while they cannot.
        self.storage_error: str | None = None
        #: Why the list kept on disk was refused, until a new snapshot is installed.
        self.damage: str | None = None
        #: Whole-body checks of a snapshot file made so far (start, install, kept-list check).
        self.body_checks = 0

    @property
    def snapshot_path(self) -> Path:
        """Where the verified snapshot lives."""
        return self._dir / SNAPSHOT_NAME

    @property
    def problem(self) -> str | None:
        """What is wrong with the list's storage or the list kept on disk, if anything."""
        return self.storage_error or self.damage

    # -- lookups (event loop, never blocking on updates) ---------------------------------

    def lookup(self, key: bytes) -> ListEntry | None:
        """The entry for an 8-byte key, or ``None`` when the list does not hold it.

        A snapshot record found malformed is never answered from: the key is
        treated as unknown (the gate then asks the depot) and the list's
        :attr:`damage` says why.
        """
        view = self._view
        change = view.overlay.get(key)
        if change is not None:
            if change[1]:
                return None
            return ListEntry(
                key, _STATUS_OF[change[2]], change[3], change[4], _GROUPS_OF[change[5]]
            )
        if view.snapshot is None:
            return None
        try:
            return view.snapshot.lookup(key)
        except SnapshotError as err:
            self.damage = f"risk list record malformed: {err}"
            log.critical("risk_list_record_malformed", error=str(err), key=key.hex())
            return None

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

    def _recorded_identity(self) -> FileIdentity | None:
        row = (
            self._conn()
            .execute("SELECT size, mtime_ns, ctime_ns, inode, body_sha256 FROM snapshot_file")
            .fetchone()
        )
        return None if row is None else FileIdentity(*row)

    def _record_identity(self, identity: FileIdentity | None) -> None:
        """Remember (``None``: forget) the verified file's identity; call within a transaction."""
        db = self._conn()
        db.execute("DELETE FROM snapshot_file")
        if identity is not None:
            db.execute(
                "INSERT INTO snapshot_file (one, size, mtime_ns, ctime_ns, inode, body_sha256)"
                " VALUES (1, ?, ?, ?, ?, ?)",
                (
                    identity.size,
                    identity.mtime_ns,
                    identity.ctime_ns,
                    identity.inode,
                    identity.body_sha256,
                ),
            )

    def _forget_everything(self) -> None:
        """Drop the overlay, the version, the freshness and the file's identity."""
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM overlay")
        db.execute("DELETE FROM meta")
        self._record_identity(None)
        db.execute("COMMIT")

    def _open_verified(self, path: Path) -> tuple[Snapshot, FileIdentity]:
        """Open ``path`` with its whole body checked; the identity it was checked under."""
        before = file_identity(path)
        self.body_checks += 1
        snapshot = Snapshot.open(path, self._verifier, verify_body=True)
        try:
            changed = file_identity(path) != before
        except BaseException:
            snapshot.close()
            raise
        if changed:
            snapshot.close()
            raise SnapshotChanged(f"{path.name} changed while it was being verified")
        return snapshot, before

    def _open_kept(self, path: Path) -> tuple[Snapshot, bool]:
        """Open the kept snapshot: header only if its identity is as recorded, else whole.

        Returns the snapshot and whether its body was checked. Raises
        :class:`SnapshotError`, :class:`SnapshotChanged` or ``OSError`` for a
        file that must not be used.
        """
        recorded = self._recorded_identity()
        identity = file_identity(path)
        if identity == recorded:
            snapshot = Snapshot.open(path, self._verifier, verify_body=False)
            try:
                unchanged = file_identity(path) == identity
            except BaseException:
                snapshot.close()
                raise
            if unchanged:
                return snapshot, False
            snapshot.close()  # changed under us: check it whole, below
        snapshot, verified_as = self._open_verified(path)
        if verified_as != recorded:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            self._record_identity(verified_as)
            db.execute("COMMIT")
        return snapshot, True

    # -- loading -------------------------------------------------------------------------

    async def load(self) -> None:
        """Open the list kept on disk, if any (a bad file is dropped, never used).

        A kept snapshot whose file identity is the one recorded when it was
        last verified opens with its header checked only; any other is
        verified whole first. A disk that cannot be read leaves the validator
        without a list (every credential goes online) rather than without a
        validator.
        """
        async with self._updating:
            try:
                view, body_checked = await self._in_worker(self._load)
            except ListStorageError as err:
                self.storage_error = str(err)
                log.critical("risk_list_storage_failed", error=str(err))
                return
            self.storage_error = None
            self._body_unchecked = view.snapshot is not None and not body_checked
            self._swap(view)
        log.info(
            "risk_list_loaded",
            list_version=view.version,
            snapshot_version=self.snapshot_version,
            overlay=len(view.overlay),
            body_checked=body_checked,
        )

    def _load(self) -> tuple[_View, bool]:
        """The view of the kept list and whether its body was checked; no list if it fails."""
        self._conn()
        path = self.snapshot_path
        if not path.exists():
            self._forget_everything()
            return _no_list(), False
        snapshot: Snapshot | None = None
        try:
            snapshot, body_checked = self._open_kept(path)
            return self._view_over(snapshot), body_checked
        except (SnapshotError, SnapshotChanged, OverlayDamaged, OSError) as err:
            problem = str(err)
            if snapshot is not None:
                snapshot.close()
        self.damage = f"kept risk list refused: {problem}"
        log.error("risk_list_snapshot_unusable", error=problem, path=str(path))
        path.unlink(missing_ok=True)
        # Without the snapshot under it the overlay means nothing: start over.
        self._forget_everything()
        return _no_list(), True

    def _view_over(self, snapshot: Snapshot) -> _View:
        """The view of ``snapshot`` with the overlay kept on disk on top."""
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        # A crash between the snapshot's rename and this database's update
        # leaves changes the snapshot already holds: they must not override it.
        db.execute("DELETE FROM overlay WHERE version <= ?", (snapshot.list_version,))
        version = max(self._meta("version") or 0, snapshot.list_version)
        self._set_meta("version", version)
        db.execute("COMMIT")
        fresh = self._meta("fresh_ms")
        overlay = {
            row[0]: _change_from_row(row)
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

    async def verify_kept(self) -> bool:
        """Check the whole body of a list that was opened on its file identity alone.

        The identity catches any change made through the file system, not a
        storage medium that flips bits under it; this catches those, in the
        worker thread while lookups go on. A list that fails is dropped (no
        list: every credential goes online) and :attr:`damage` says why.
        Returns ``False`` when it dropped the list, else ``True`` (also when
        there was nothing to check).
        """
        async with self._updating:
            snapshot = self._view.snapshot
            if snapshot is None or not self._body_unchecked:
                return True
            try:
                await self._in_worker(lambda: self._check_body(snapshot))
            except ListStorageError as err:
                # Not the list's fault: it stays, and is checked whole at the next start.
                self.storage_error = str(err)
                log.warning("risk_list_body_check_failed", error=str(err))
                return True
            except (SnapshotError, SnapshotChanged) as err:
                problem = str(err)
            else:
                self._body_unchecked = False
                log.info("risk_list_body_checked", snapshot_version=snapshot.list_version)
                return True
            self.damage = f"kept risk list refused: {problem}"
            log.critical("risk_list_snapshot_damaged", error=problem, path=str(snapshot.path))
            self._swap(_no_list())
            self._body_unchecked = False
            await self._drop_files()
            return False

    def _check_body(self, snapshot: Snapshot) -> None:
        """Verify the file under ``snapshot`` whole, through a mapping of its own."""
        checked, identity = self._open_verified(snapshot.path)
        checked.close()
        # The file checked must be the one mapped at start, not one put in its place since.
        if identity != self._recorded_identity():
            raise SnapshotChanged(f"{snapshot.path.name} changed since the list was opened")

    async def _drop_files(self) -> None:
        """Delete the kept snapshot and forget its overlay, once it is out of use."""

        def drop() -> None:
            self.snapshot_path.unlink(missing_ok=True)
            self._forget_everything()

        try:
            await self._in_worker(drop)
        except ListStorageError as err:
            self.storage_error = str(err)
            log.critical("risk_list_storage_failed", error=str(err))

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
            self._body_unchecked = False
            self.damage = None
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
            self.body_checks += 1
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
        # Taken after the rename, which sets the inode change time. A crash before
        # the commit below leaves the old identity: the next start checks the file whole.
        identity = file_identity(self.snapshot_path)
        version = max(current.version, snapshot.list_version)
        fresh_ms = max(current.fresh_ms or 0, snapshot.created_ms)
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM overlay WHERE version <= ?", (snapshot.list_version,))
        self._set_meta("version", version)
        self._set_meta("fresh_ms", fresh_ms)
        self._record_identity(identity)
        db.execute("COMMIT")
        # Only the sync agent changes the overlay, and it is waiting on this.
        overlay = {k: c for k, c in current.overlay.items() if c[0] > snapshot.list_version}
        return _View(snapshot, overlay, version, fresh_ms)

    # -- deltas --------------------------------------------------------------------------

    async def apply_delta(self, page: DeltaPage) -> None:
        """Apply one verified delta page, whole, after the version the list is at.

        Raises :class:`ListUpdateError` for a page that does not follow on
        from this list, or whose changes lie outside its range.
        """
        await self._apply(lambda: page)

    async def apply_signed_delta(self, wire: bytes) -> DeltaPage:
        """Open a delta page as the depot sent it and apply it, whole; the page.

        Decoding and checking the signature happen in the worker thread with
        the disk write, not on the event loop. Raises :class:`ListUpdateError`
        for a page that does not decode, whose signature fails, that does not
        follow on from this list or whose changes lie outside its range.
        """
        return await self._apply(lambda: open_delta_page(self._verifier, wire))

    async def _apply(self, open_page: Callable[[], DeltaPage]) -> DeltaPage:
        async with self._updating:
            current = self._view
            if current.snapshot is None:
                raise ListUpdateError("no snapshot to apply changes to")

            def work() -> tuple[DeltaPage, dict[bytes, Change]]:
                page = open_page()
                changes = _checked_changes(page, current.version)
                if changes or page.until != current.version:
                    self._persist(changes, page.until)
                return page, changes

            page, changes = await self._in_worker(work)
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
        return page

    def _persist(self, changes: dict[bytes, Change], version: int) -> None:
        db = self._conn()
        rows = [(key, *change) for key, change in changes.items()]
        db.execute("BEGIN IMMEDIATE")
        try:
            # A few multi-row statements, not one executemany: executemany gives up
            # and retakes the GIL at every row, which on two cores lets a busy gate
            # thread stretch a 100k-change delta past two seconds (docs/performance.md).
            for start in range(0, len(rows), _UPSERT_ROWS):
                chunk = rows[start : start + _UPSERT_ROWS]
                sql = _UPSERT_FULL if len(chunk) == _UPSERT_ROWS else _upsert_sql(len(chunk))
                db.execute(sql, [v for row in chunk for v in row])
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


#: Overlay rows one upsert statement writes (7 values a row, under SQLite's 32,766 variables).
_UPSERT_ROWS: Final = 2000


_UPSERT_HEAD: Final = (
    "INSERT INTO overlay (key, version, removed, status, expiry_day, tckn_last3, groups) VALUES "
)
_UPSERT_ROW: Final = "(?, ?, ?, ?, ?, ?, ?)"
_UPSERT_TAIL: Final = (
    " ON CONFLICT (key) DO UPDATE SET"
    " version = excluded.version, removed = excluded.removed,"
    " status = excluded.status, expiry_day = excluded.expiry_day,"
    " tckn_last3 = excluded.tckn_last3, groups = excluded.groups"
)


def _upsert_sql(rows: int) -> str:
    """An upsert of ``rows`` overlay rows in one statement (placeholders only)."""
    return _UPSERT_HEAD + ", ".join([_UPSERT_ROW] * rows) + _UPSERT_TAIL


_UPSERT_FULL: Final = _upsert_sql(_UPSERT_ROWS)
