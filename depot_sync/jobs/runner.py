"""Running jobs every so often, one process at a time, and knowing whether they are well."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg
import structlog

from depot_sync.risklist.snapshots import SnapshotRefused
from protocol.ministry import MinistryError

log = structlog.get_logger("hesgate.depot.jobs")

#: Failures a job survives: it logs them and tries again next time.
RECOVERABLE: Final = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
    MinistryError,
    SnapshotRefused,
)


@dataclass(frozen=True, slots=True)
class Job:
    """Run ``run`` every ``interval_s``; with ``lock``, only in one depot process at a time."""

    name: str
    interval_s: float
    run: Callable[[], Awaitable[object]]
    lock: int | None = None


@dataclass(slots=True)
class JobState:
    """How a job is doing."""

    runs: int = 0
    last_ok: dt.datetime | None = None
    last_error: str | None = None
    crashed: bool = False

    def as_json(self) -> dict[str, Any]:
        """For ``/healthz``."""
        return {
            "runs": self.runs,
            "last_ok": None if self.last_ok is None else self.last_ok.isoformat(),
            "last_error": self.last_error,
            "crashed": self.crashed,
        }


@dataclass(slots=True)
class JobRunner:
    """The depot's background jobs."""

    pool: asyncpg.Pool
    jobs: list[Job]
    states: dict[str, JobState] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        """Start every job (the first run happens at once)."""
        for job in self.jobs:
            self.states[job.name] = JobState()
            self._tasks.append(asyncio.create_task(self._loop(job), name=f"job:{job.name}"))

    async def stop(self) -> None:
        """Cancel the jobs and wait for them to end."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    @property
    def healthy(self) -> bool:
        """Whether every job is still running."""
        return not any(state.crashed for state in self.states.values())

    async def _once(self, job: Job) -> None:
        if job.lock is None:
            await job.run()
            return
        async with self.pool.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", job.lock):
                log.debug("job running in another depot process", job=job.name)
                return
            try:
                await job.run()
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", job.lock)

    async def _loop(self, job: Job) -> None:
        state = self.states[job.name]
        jlog = log.bind(job=job.name)
        while True:
            try:
                await self._once(job)
            except SnapshotRefused as err:
                state.last_error = str(err)
                jlog.error("snapshot refused; the last good one is still served", error=str(err))
            except RECOVERABLE as err:
                state.last_error = f"{type(err).__name__}: {err}"
                jlog.warning("job failed; will try again", error=state.last_error)
            except asyncio.CancelledError:
                raise
            except BaseException as err:
                state.crashed = True
                state.last_error = f"{type(err).__name__}: {err}"
                jlog.exception("job crashed")
                raise
            else:
                state.last_ok = dt.datetime.now(dt.UTC)
            state.runs += 1
            await asyncio.sleep(job.interval_s)
