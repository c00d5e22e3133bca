"""The circuit breaker on its own, with a clock the test moves."""

from __future__ import annotations

import pytest

from protocol.ministry import BreakerState, CircuitOpen
from protocol.ministry.breaker import CircuitBreaker
from tests.protocol.ministry.helpers import Ticker


def state(breaker: CircuitBreaker) -> BreakerState:
    # A call, not the property: each read is a fresh look at the clock.
    return breaker.state


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.failed(breaker.acquire())


def test_opens_after_the_threshold_of_consecutive_failures() -> None:
    clock = Ticker()
    breaker = CircuitBreaker(3, 10.0, clock=clock)
    fail(breaker, 2)
    assert state(breaker) is BreakerState.CLOSED
    fail(breaker, 1)
    assert state(breaker) is BreakerState.OPEN
    with pytest.raises(CircuitOpen) as caught:
        breaker.acquire()
    assert caught.value.retry_in_s == pytest.approx(10.0)
    status = breaker.status()
    assert status.consecutive_failures == 3
    assert status.times_opened == 1


def test_a_success_resets_the_streak() -> None:
    breaker = CircuitBreaker(3, 10.0, clock=Ticker())
    fail(breaker, 2)
    breaker.succeeded(breaker.acquire())
    fail(breaker, 2)
    assert state(breaker) is BreakerState.CLOSED


def test_half_open_lets_one_probe_through_and_its_success_closes() -> None:
    clock = Ticker()
    breaker = CircuitBreaker(1, 10.0, clock=clock)
    fail(breaker, 1)
    clock.t += 4
    assert breaker.status().retry_in_s == pytest.approx(6.0)
    clock.t += 6
    assert state(breaker) is BreakerState.HALF_OPEN
    probe = breaker.acquire()
    assert probe is True
    with pytest.raises(CircuitOpen):
        breaker.acquire()  # only one probe at a time
    breaker.succeeded(probe)
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.acquire() is False


def test_a_failed_probe_opens_for_another_cooldown() -> None:
    clock = Ticker()
    breaker = CircuitBreaker(2, 5.0, clock=clock)
    fail(breaker, 2)
    clock.t += 5
    breaker.failed(breaker.acquire())
    assert state(breaker) is BreakerState.OPEN
    assert breaker.status().times_opened == 2
    clock.t += 5
    assert state(breaker) is BreakerState.HALF_OPEN


def test_an_abandoned_probe_counts_as_a_failure_and_frees_the_probe_slot() -> None:
    clock = Ticker()
    breaker = CircuitBreaker(1, 5.0, clock=clock)
    fail(breaker, 1)
    clock.t += 5
    breaker.abandoned(breaker.acquire())
    assert state(breaker) is BreakerState.OPEN
    clock.t += 5
    assert breaker.acquire() is True


def test_an_abandoned_ordinary_call_changes_nothing() -> None:
    breaker = CircuitBreaker(1, 5.0, clock=Ticker())
    breaker.abandoned(breaker.acquire())
    assert state(breaker) is BreakerState.CLOSED


@pytest.mark.parametrize(("threshold", "cooldown"), [(0, 1.0), (1, -1.0)])
def test_nonsense_settings_are_refused(threshold: int, cooldown: float) -> None:
    with pytest.raises(ValueError, match="breaker"):
        CircuitBreaker(threshold, cooldown)
