"""Building, publishing and pruning the signed snapshot files validators download.

A snapshot is the whole list at one version, read in one repeatable-read
transaction (the list and its version agree exactly), written by
:class:`protocol.snapshot.SnapshotWriter` (temp file, then rename) and then
recorded in ``snapshots``; the newest recorded file is the one served. A list
that is empty, or smaller than the last published one by more than the
configured fraction, is refused unless forced: a mass removal is far more
likely a fault (the Ministry answering nonsense, a bad import) than the truth,
and validators keep the last good list meanwhile.

After publishing, only the newest ``keep`` files stay, and changes older than
the oldest kept snapshot are deleted: that version becomes the delta horizon.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import asyncpg
import structlog

from depot_sync.db import Conn, Queryable
from depot_sync.risklist.changes import list_head
from protocol.listsign import ListSigner
from protocol.risk import Groups, HealthStatus, ListEntry
from protocol.snapshot import SnapshotInfo, SnapshotWriter

log = structlog.get_logger("hesgate.depot.snapshots")

#: Rows fetched from the cursor (and handed to the writer) at once.
FETCH_ROWS: Final = 20_000
SUFFIX: Final = ".hgsnap"
#: Session advisory lock held while a snapshot is built and published.
SNAPSHOT_LOCK: Final = 4851003

_LISTED: Final = """
SELECT key, status, expiry_day, coalesce(tckn_last3, registered_last3) AS last3, groups
  FROM credentials
 WHERE ministry_state = 'found' AND status IS NOT NULL
"""


class SnapshotRefused(Exception):
    """The new list looks wrong; the last good snapshot stays published.

    ``entries`` is the new list's size, ``previous`` the last published one's.
    """

    def __init__(self, message: str, entries: int, previous: int | None) -> None:
        super().__init__(message)
        self.entries = entries
        self.previous = previous


@dataclass(frozen=True, slots=True)
class PublishedSnapshot:
    """A snapshot file the depot serves (or served)."""

    id: int
    list_version: int
    path: Path
    entries: int
    size_bytes: int
    sha256: str
    key_id: str
    created_at: dt.datetime

    @property
    def etag(self) -> str:
        """The HTTP entity tag: the file's SHA-256."""
        return f'"{self.sha256}"'


def _published(row: asyncpg.Record, directory: Path) -> PublishedSnapshot:
    return PublishedSnapshot(
        id=row["id"],
        list_version=row["list_version"],
        path=directory / row["file_name"],
        entries=row["entries"],
        size_bytes=row["size_bytes"],
        sha256=row["sha256"],
        key_id=row["key_id"],
        created_at=row["created_at"],
    )


_SNAPSHOT_COLUMNS: Final = (
    "id, list_version, file_name, entries, size_bytes, sha256, key_id, created_at"
)


_INSERT_SNAPSHOT: Final = (
    "INSERT INTO snapshots (list_version, file_name, entries, size_bytes, sha256, key_id) "
    "VALUES ($1, $2, $3, $4, $5, $6) "
    "RETURNING id, list_version, file_name, entries, size_bytes, sha256, key_id, created_at"
)


async def latest_snapshot(db: Queryable, directory: Path) -> PublishedSnapshot | None:
    """The newest published snapshot, if any."""
    row = await db.fetchrow(
        f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots ORDER BY id DESC LIMIT 1"  # noqa: S608
    )
    return None if row is None else _published(row, directory)


def check_size(entries: int, previous: int | None, max_shrink: float) -> None:
    """Raise :class:`SnapshotRefused` for an empty list or one that shrank too much."""
    if entries == 0:
        raise SnapshotRefused("the new list is empty", entries, previous)
    if previous and entries < previous * (1 - max_shrink):
        shrink = 1 - entries / previous
        raise SnapshotRefused(
            f"the new list has {entries} entries, {shrink:.1%} fewer than the last published "
            f"({previous}); more than the allowed {max_shrink:.1%}",
            entries,
            previous,
        )


def _entry(row: asyncpg.Record) -> ListEntry:
    return ListEntry(
        key=row["key"],
        status=HealthStatus(row["status"]),
        expiry_day=row["expiry_day"],
        tckn_last3=row["last3"],
        groups=Groups(row["groups"]),
    )


async def _write(conn: Conn, writer: SnapshotWriter) -> int:
    """Stream the listed credentials into ``writer``; returns how many."""
    count = 0
    cursor = await conn.cursor(_LISTED)
    while True:
        rows = await cursor.fetch(FETCH_ROWS)
        if not rows:
            return count
        entries = [_entry(r) for r in rows]
        # The writer's work is CPU-bound: keep it off the event loop.
        await asyncio.to_thread(writer.add_many, entries)
        count += len(entries)


async def build_snapshot(
    pool: asyncpg.Pool,
    signer: ListSigner,
    directory: Path,
    *,
    keep: int,
    max_shrink: float,
    force: bool = False,
) -> PublishedSnapshot | None:
    """Publish a snapshot of the current list; ``None`` if the newest one is already current.

    One build runs at a time across every depot process (an advisory lock).
    Raises :class:`SnapshotRefused` when the guard holds (unless ``force``).
    """
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", SNAPSHOT_LOCK)
        try:
            published = await _build(conn, signer, directory, max_shrink=max_shrink, force=force)
            if published is not None:
                await prune(conn, directory, keep=keep)
            return published
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", SNAPSHOT_LOCK)


async def _build(
    conn: Conn, signer: ListSigner, directory: Path, *, max_shrink: float, force: bool
) -> PublishedSnapshot | None:
    latest = await latest_snapshot(conn, directory)
    previous = latest.entries if latest is not None else None
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        head = (await list_head(conn)).version
        current = latest is not None and latest.list_version == head
        if current and not force and await asyncio.to_thread(_exists, latest):
            return None
        entries = await conn.fetchval(f"SELECT count(*) FROM ({_LISTED}) AS listed")  # noqa: S608
        if not force:
            check_size(entries, previous, max_shrink)
        created_ms = time.time_ns() // 1_000_000
        path = directory / f"snapshot-{head:016d}-{created_ms}{SUFFIX}"
        writer = SnapshotWriter(path, list_version=head, signer=signer, created_ms=created_ms)
        try:
            written = await _write(conn, writer)
        except BaseException:
            writer.abort()
            raise
        info: SnapshotInfo = await asyncio.to_thread(writer.close)
    if written != entries:  # pragma: no cover - one repeatable-read snapshot gives one count
        path.unlink(missing_ok=True)
        raise RuntimeError(f"snapshot wrote {written} entries, the list has {entries}")
    row = await conn.fetchrow(
        _INSERT_SNAPSHOT,
        info.list_version,
        info.path.name,
        info.count,
        info.size_bytes,
        info.sha256,
        info.key_id,
    )
    assert row is not None  # INSERT ... RETURNING gives its row
    log.info(
        "snapshot published",
        list_version=head,
        entries=info.count,
        size_bytes=info.size_bytes,
        forced=force,
        previous=previous,
    )
    return _published(row, directory)


async def prune(conn: Conn, directory: Path, *, keep: int) -> int:
    """Keep the newest ``keep`` snapshots, delete the other files, and compact the changes.

    The oldest kept snapshot's version becomes the delta horizon. Returns how
    many snapshots were removed.
    """
    async with conn.transaction():
        kept = await conn.fetch(
            "SELECT id, list_version, file_name FROM snapshots ORDER BY id DESC LIMIT $1", keep
        )
        if not kept:
            return 0
        horizon = min(r["list_version"] for r in kept)
        gone = await conn.fetch(
            "DELETE FROM snapshots WHERE id < $1 RETURNING file_name", min(r["id"] for r in kept)
        )
        moved = await conn.fetchval(
            "UPDATE list_state SET compacted_through = $1 WHERE compacted_through < $1 "
            "RETURNING true",
            horizon,
        )
        if moved:
            deleted = await conn.execute("DELETE FROM list_changes WHERE version <= $1", horizon)
            log.info("list changes compacted", horizon=horizon, deleted=deleted.split()[-1])
    # Files no row names: older ones, and any left by a build that died before recording.
    await asyncio.to_thread(_remove_files_except, directory, {r["file_name"] for r in kept})
    return len(gone)


def _exists(snapshot: PublishedSnapshot | None) -> bool:
    return snapshot is not None and snapshot.path.exists()


def _remove_files_except(directory: Path, keep: set[str]) -> None:
    for path in directory.glob(f"snapshot-*{SUFFIX}"):
        if path.name not in keep:
            path.unlink(missing_ok=True)
