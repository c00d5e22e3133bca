"""The list's head and the newest snapshot row, kept in memory while PostgreSQL reports changes.

Every validator polls for deltas and for a newer snapshot; nearly every poll
finds nothing new. So each depot process keeps the two facts those polls
need, the list's head (:class:`~depot_sync.risklist.changes.ListHead`) and
the newest published snapshot, in memory, and answers an up-to-date poll
without a query.

They change in any depot process, and in commands such as
``hes-depot build-snapshot`` or ``import-registrations``: triggers
(``sql/003_list_notify.sql``) ``NOTIFY`` the channel :data:`CHANNEL` at
commit, and :class:`ListWatch` keeps one pooled connection ``LISTEN``-ing
to it and drops the value named. Nothing is kept while that connection is
down (every request reads the database; it reconnects after ``retry_s``),
and every value is read again after ``max_age_s`` at the latest, so a
connection that silently stopped delivering cannot keep a value stale
longer than that. A read that started before a change was reported is
used once, never kept.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Generic, TypeVar

import asyncpg
import structlog

from depot_sync.risklist.changes import ListHead, list_head
from depot_sync.risklist.snapshots import PublishedSnapshot, latest_snapshot

log = structlog.get_logger("hesgate.depot.watch")

#: The channel the triggers notify; the payload names what changed.
CHANNEL: Final = "hesgate_list"
HEAD: Final = "head"
SNAPSHOT: Final = "snapshot"
#: Pause before listening again after the connection was lost or could not be had.
RETRY_S: Final = 5.0

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Kept(Generic[T]):
    value: T
    until: float


class _Slot(Generic[T]):
    """One value, read through ``read`` and kept until dropped or too old."""

    __slots__ = ("_clock", "_kept", "_read", "generation")

    def __init__(self, read: Callable[[], Awaitable[T]], clock: Callable[[], float]) -> None:
        self._read = read
        self._clock = clock
        self._kept: _Kept[T] | None = None
        #: Bumped at every drop: a read that began under an older generation is not kept.
        self.generation = 0

    def drop(self) -> None:
        self.generation += 1
        self._kept = None

    async def get(self, max_age_s: float | None) -> T:
        """The kept value, or a fresh read (kept for ``max_age_s`` unless ``None``)."""
        kept = self._kept
        if kept is not None and kept.until > self._clock():
            return kept.value
        generation = self.generation
        value = await self._read()
        if max_age_s is not None and generation == self.generation:
            self._kept = _Kept(value, self._clock() + max_age_s)
        return value


class ListWatch:
    """Answers "what is the head?" and "what is the newest snapshot?", from memory when it may."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        snapshot_dir: Path,
        *,
        max_age_s: float,
        retry_s: float = RETRY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._max_age_s = max_age_s
        self._retry_s = retry_s
        self._head: _Slot[ListHead] = _Slot(lambda: list_head(pool), clock)
        self._snapshot: _Slot[PublishedSnapshot | None] = _Slot(
            lambda: latest_snapshot(pool, snapshot_dir), clock
        )
        self._listening = False
        self._task: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        """Whether changes are being reported, so values are kept."""
        return self._listening

    @property
    def changes_seen(self) -> int:
        """How many times a kept value was dropped (a change reported, or listening stopped)."""
        return self._head.generation + self._snapshot.generation

    def _max_age(self) -> float | None:
        return self._max_age_s if self._listening and self._max_age_s > 0 else None

    async def head(self) -> ListHead:
        """The list's head version and horizon."""
        return await self._head.get(self._max_age())

    async def newest_snapshot(self) -> PublishedSnapshot | None:
        """The newest published snapshot, if any."""
        return await self._snapshot.get(self._max_age())

    def forget(self, what: str | None = None) -> None:
        """Drop the kept value named by a notification payload (:data:`HEAD`, :data:`SNAPSHOT`).

        Anything else (or ``None``) drops both: an unknown payload is not a reason to keep
        something that may have changed.
        """
        if what != SNAPSHOT:
            self._head.drop()
        if what != HEAD:
            self._snapshot.drop()

    def _set_listening(self, listening: bool) -> None:
        self._listening = listening
        # Whatever was read before (or while) not listening may have missed a change.
        self.forget()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self.forget(payload if isinstance(payload, str) else None)

    def start(self) -> None:
        """Begin listening in the background (values are kept only once it listens)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._listen_forever(), name="list-watch"
            )

    async def stop(self) -> None:
        """Stop listening and give the connection back to the pool."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # Waited for, not awaited: a cancellation of stop() itself must not be swallowed.
            await asyncio.wait([task])
            if not task.cancelled() and (err := task.exception()) is not None:
                log.error("list watch had failed", error=f"{type(err).__name__}: {err}")
        self._set_listening(False)

    async def _listen_forever(self) -> None:
        while True:
            try:
                await self._listen_once()
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
                log.warning(
                    "cannot listen for list changes; reading the database for every poll",
                    error=f"{type(err).__name__}: {err}",
                    retry_s=self._retry_s,
                )
            await asyncio.sleep(self._retry_s)

    async def _listen_once(self) -> None:
        """Hold one connection listening on :data:`CHANNEL` until it is lost."""
        lost = asyncio.Event()

        def on_lost(_conn: object) -> None:
            lost.set()

        async with self._pool.acquire() as conn:
            conn.add_termination_listener(on_lost)
            try:
                await conn.add_listener(CHANNEL, self._notified)
                try:
                    self._set_listening(True)
                    log.info("listening for list changes", channel=CHANNEL)
                    await lost.wait()
                    log.warning("stopped listening for list changes: the connection was lost")
                finally:
                    self._set_listening(False)
                    if not conn.is_closed():
                        # The pool refuses back a connection that still has a listener.
                        await conn.remove_listener(CHANNEL, self._notified)
            finally:
                conn.remove_termination_listener(on_lost)
