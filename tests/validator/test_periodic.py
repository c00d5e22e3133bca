from __future__ import annotations

import asyncio
import email.utils
import random

from validator.depot_client import (
    BadAnswer,
    DepotError,
    DepotRefused,
    DepotUnavailable,
    retry_after_s,
)
from validator.periodic import MAX_RETRY_AFTER_S, Backoff, sleep_or_wake


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(1.0, 60.0, rng=random.Random(7).random)
    delays = [backoff.next_delay() for _ in range(12)]
    steps = [min(60.0, 2.0**i) for i in range(12)]
    for delay, step in zip(delays, steps, strict=True):
        assert step / 2 <= delay <= step
    assert len(set(delays)) == len(delays)  # jittered, not lockstep
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_retry_after_is_honoured_but_bounded() -> None:
    backoff = Backoff(1.0, 60.0)
    assert backoff.next_delay(120.0) == 120.0
    assert backoff.next_delay(10 * MAX_RETRY_AFTER_S) == MAX_RETRY_AFTER_S
    # "Retry-After: 0" is no licence to spin: the backoff still applies.
    assert 2.0 <= backoff.next_delay(0.0) <= 4.0
    assert backoff.failures == 3


def test_every_depot_error_tells_the_backoff_how_long_the_depot_asked_to_wait() -> None:
    errors: list[DepotError] = [
        DepotUnavailable("HTTP 503", retry_after=90.0),
        DepotUnavailable("no answer"),
        DepotRefused(401, "unknown device"),
        BadAnswer("does not decode"),
    ]
    assert [err.retry_after for err in errors] == [90.0, None, None, None]
    delays = [Backoff(1.0, 60.0).next_delay(err.retry_after) for err in errors]
    assert delays[0] == 90.0
    assert all(0.5 <= delay <= 1.0 for delay in delays[1:])


def test_retry_after_header_forms() -> None:
    assert retry_after_s("30") == 30.0
    date = email.utils.formatdate(1_000_100, usegmt=True)
    assert retry_after_s(date, now=1_000_000) == 100.0
    assert retry_after_s("soon") is None
    assert retry_after_s(None) is None


async def test_sleep_is_cut_short_by_a_wake_up() -> None:
    event = asyncio.Event()
    asyncio.get_running_loop().call_soon(event.set)
    assert await sleep_or_wake(event, 30.0)
    assert not event.is_set()
    assert not await sleep_or_wake(event, 0.01)
