from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg

from depot_sync.jobs.runner import Job, JobRunner


async def until(check: Callable[[], bool]) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


async def test_recoverable_failures_are_retried(pool: asyncpg.Pool) -> None:
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("disk hiccup")

    runner = JobRunner(pool, [Job("flaky", 0.0, flaky)])
    runner.start()
    try:
        await until(lambda: runner.states["flaky"].last_ok is not None)
    finally:
        await runner.stop()
    state = runner.states["flaky"]
    assert state.last_error == "OSError: disk hiccup"
    assert runner.healthy


async def test_locked_job_runs_in_one_runner_at_a_time(pool: asyncpg.Pool) -> None:
    running = 0
    most = 0

    async def exclusive() -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await asyncio.sleep(0.02)
        finally:  # stop() cancels a run midway
            running -= 1

    runners = [JobRunner(pool, [Job("x", 0.0, exclusive, lock=4851999)]) for _ in range(2)]
    for r in runners:
        r.start()
    await until(lambda: sum(r.states["x"].runs for r in runners) >= 10)
    for r in runners:
        await r.stop()
    assert most == 1
