"""Every way a Ministry call fails, injected into the simulator: typed, never riskless."""

from __future__ import annotations

import asyncio
import socket

import pytest

from protocol.ministry import (
    BreakerState,
    CircuitOpen,
    MinistryAuthError,
    MinistryClient,
    MinistryError,
    MinistryProtocolError,
    MinistrySettings,
    MinistryThrottled,
    MinistryTimeout,
    MinistryUnavailable,
)
from protocol.ministry.simulator import SimulatorHandle
from protocol.risk import HealthStatus
from tests.protocol.ministry.helpers import Ticker, pick, settings_for


def breaker(client: MinistryClient) -> BreakerState:
    # A call, so each assert reads the state afresh.
    return client.breaker_state


async def wait_until_idle(sim: SimulatorHandle) -> None:
    """A cancelled call leaves the simulator when the server notices the client went away."""
    for _ in range(200):
        if sim.stats.in_flight == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{sim.stats.in_flight} calls still in flight")


async def test_503_twice_then_an_answer(sim: SimulatorHandle, client: MinistryClient) -> None:
    record = pick(sim.population)
    sim.faults.update(unavailable_rate=1.0, budget=2)
    result = await client.check(record.hes_code)
    assert result.hes_code == record.hes_code
    assert sim.stats.calls == 3
    assert sim.stats.by_status == {503: 2, 200: 1}


async def test_a_lasting_500_is_unavailable_after_max_attempts(
    sim: SimulatorHandle, client: MinistryClient
) -> None:
    sim.faults.update(error_rate=1.0)
    with pytest.raises(MinistryUnavailable) as caught:
        await client.check(pick(sim.population).hes_code)
    assert caught.value.status == 500
    assert sim.stats.calls == client.settings.max_attempts == 4


async def test_a_gateway_html_page_is_unavailable(
    sim: SimulatorHandle, client: MinistryClient
) -> None:
    sim.faults.update(gateway_rate=1.0)
    with pytest.raises(MinistryUnavailable, match="HTML") as caught:
        await client.check(pick(sim.population).hes_code)
    assert caught.value.status == 502
    assert sim.stats.calls == 4


@pytest.mark.parametrize("kind", ["html", "truncated", "wrong_shape"])
async def test_a_200_that_is_not_the_documented_shape_is_a_protocol_error(
    sim: SimulatorHandle, client: MinistryClient, kind: str
) -> None:
    sim.faults.update(garbage_rate=1.0, garbage_kind=kind)
    with pytest.raises(MinistryProtocolError) as caught:
        await client.check(pick(sim.population, status=HealthStatus.RISKLESS).hes_code)
    assert caught.value.retryable
    assert sim.stats.calls == 4


@pytest.mark.parametrize("kind", ["html", "truncated", "wrong_shape"])
async def test_a_garbage_bulk_answer_fails_its_codes(
    sim: SimulatorHandle, client: MinistryClient, kind: str
) -> None:
    codes = sim.population.codes()[:20]
    sim.faults.update(garbage_rate=1.0, garbage_kind=kind)
    outcome = await client.check_many(codes)
    assert outcome.results == {}
    assert set(outcome.failed) == set(codes)
    assert all(isinstance(e, MinistryProtocolError) for e in outcome.failed.values())


async def test_garbage_once_then_the_real_answer(
    sim: SimulatorHandle, client: MinistryClient
) -> None:
    record = pick(sim.population, status=HealthStatus.RISKY)
    sim.faults.update(garbage_rate=1.0, budget=1)
    assert (await client.check(record.hes_code)).status is HealthStatus.RISKY
    assert sim.stats.calls == 2


async def test_429_waits_for_retry_after(sim: SimulatorHandle, client: MinistryClient) -> None:
    record = pick(sim.population)
    sim.faults.update(throttle_rate=1.0, retry_after_s=1, budget=1)
    result = await client.check(record.hes_code)
    assert result.hes_code == record.hes_code
    assert sim.stats.by_status == {429: 1, 200: 1}
    # The retry came no sooner than the service asked (a lower bound, not a speed claim).
    assert sim.stats.gaps()[0] >= 0.95


async def test_a_retry_after_longer_than_allowed_fails_at_once(sim: SimulatorHandle) -> None:
    sim.faults.update(throttle_rate=1.0, retry_after_s=60)
    async with MinistryClient(settings_for(sim, max_retry_after_s=5)) as client:
        with pytest.raises(MinistryThrottled) as caught:
            await client.check(pick(sim.population).hes_code)
    assert caught.value.retry_after_s == 60
    assert sim.stats.calls == 1


async def test_429_without_retry_after_backs_off_then_gives_up(
    sim: SimulatorHandle, client: MinistryClient
) -> None:
    sim.faults.update(throttle_rate=1.0, retry_after_s=None)
    with pytest.raises(MinistryThrottled) as caught:
        await client.check(pick(sim.population).hes_code)
    assert caught.value.retry_after_s is None
    assert sim.stats.calls == 4


async def test_a_hung_call_times_out_and_the_retry_answers(sim: SimulatorHandle) -> None:
    record = pick(sim.population)
    sim.faults.update(hang_rate=1.0, budget=1)
    async with MinistryClient(settings_for(sim, timeout_s=0.3)) as client:
        result = await client.check(record.hes_code)
    assert result.hes_code == record.hes_code
    assert sim.stats.calls == 2
    await wait_until_idle(sim)


async def test_the_callers_deadline_bounds_retries(sim: SimulatorHandle) -> None:
    sim.faults.update(hang_rate=1.0)
    async with MinistryClient(settings_for(sim, timeout_s=5.0)) as client:
        with pytest.raises(MinistryTimeout):
            await client.check(pick(sim.population).hes_code, timeout_s=0.3)
    assert sim.stats.calls == 1  # no retry started past the deadline
    await wait_until_idle(sim)


async def test_a_deadline_shorter_than_retry_after_does_not_wait(sim: SimulatorHandle) -> None:
    sim.faults.update(throttle_rate=1.0, retry_after_s=2)
    async with MinistryClient(settings_for(sim)) as client:
        with pytest.raises(MinistryThrottled):
            await client.check(pick(sim.population).hes_code, timeout_s=0.5)
    assert sim.stats.calls == 1


async def test_nobody_listening_is_unavailable_after_retries() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = MinistrySettings(
        f"http://127.0.0.1:{port}/services/g2g/saglik/hes/",
        "U",
        "P",
        max_attempts=3,
        retry_wait_initial_s=0.01,
        retry_jitter_s=0.0,
    )
    async with MinistryClient(settings) as client:
        with pytest.raises(MinistryUnavailable, match="cannot reach"):
            await client.check("R7G6915415")
        assert client.breaker_status().consecutive_failures == 3


async def test_a_wrong_base_path_is_a_protocol_error_not_retried(sim: SimulatorHandle) -> None:
    async with MinistryClient(settings_for(sim, base_url=sim.root_url + "/wrong/")) as client:
        with pytest.raises(MinistryProtocolError, match="404") as caught:
            await client.check(pick(sim.population).hes_code)
    assert not caught.value.retryable
    assert client.breaker_status().consecutive_failures == 1


async def test_the_wrong_credentials_window_is_loud_and_not_retried(
    sim: SimulatorHandle, client: MinistryClient
) -> None:
    record = pick(sim.population)
    sim.faults.update(wrong_credentials_for_s=60)
    with pytest.raises(MinistryAuthError):
        await client.check(record.hes_code)
    assert sim.stats.by_status == {401: 1}
    sim.faults.clear()
    assert (await client.check(record.hes_code)).hes_code == record.hes_code


async def test_the_breaker_opens_fails_fast_and_closes_again(sim: SimulatorHandle) -> None:
    clock = Ticker()
    record = pick(sim.population)
    settings = settings_for(sim, breaker_threshold=3, breaker_cooldown_s=30, max_attempts=1)
    sim.faults.update(error_rate=1.0)
    async with MinistryClient(settings, clock=clock) as client:
        for _ in range(3):
            with pytest.raises(MinistryUnavailable):
                await client.check(record.hes_code)
        assert breaker(client) is BreakerState.OPEN
        with pytest.raises(CircuitOpen) as caught:
            await client.check(record.hes_code)
        assert caught.value.retry_in_s == pytest.approx(30)
        assert sim.stats.calls == 3  # failed fast: no call made

        clock.t += 30
        assert breaker(client) is BreakerState.HALF_OPEN
        with pytest.raises(MinistryUnavailable):
            await client.check(record.hes_code)  # the probe fails: open again
        assert breaker(client) is BreakerState.OPEN

        clock.t += 30
        sim.faults.clear()
        assert (await client.check(record.hes_code)).hes_code == record.hes_code
        assert breaker(client) is BreakerState.CLOSED
        assert client.breaker_status().times_opened == 2


async def test_the_breaker_stops_retries_of_a_call_under_way(sim: SimulatorHandle) -> None:
    sim.faults.update(unavailable_rate=1.0)
    settings = settings_for(sim, breaker_threshold=2, max_attempts=4)
    async with MinistryClient(settings, clock=Ticker()) as client:
        with pytest.raises(CircuitOpen) as caught:
            await client.check(pick(sim.population).hes_code)
    assert isinstance(caught.value.__cause__, MinistryUnavailable)
    assert sim.stats.calls == 2


async def test_an_open_breaker_fails_every_bulk_code_without_calling(
    sim: SimulatorHandle,
) -> None:
    clock = Ticker()
    codes = sim.population.codes()[:30]
    settings = settings_for(sim, breaker_threshold=1, max_attempts=1)
    sim.faults.update(error_rate=1.0, budget=1)
    async with MinistryClient(settings, clock=clock) as client:
        with pytest.raises(MinistryUnavailable):
            await client.check(codes[0])
        outcome = await client.check_many(codes)
    assert outcome.results == {}
    assert set(outcome.failed) == set(codes)
    assert all(isinstance(e, CircuitOpen) for e in outcome.failed.values())
    assert sim.stats.calls == 1


async def test_a_failed_chunk_fails_only_its_codes(sim: SimulatorHandle) -> None:
    codes = sim.population.codes()[:30]
    sim.faults.update(error_rate=1.0, budget=1)
    settings = settings_for(sim, bulk_chunk_size=10, max_attempts=1, concurrency=1)
    async with MinistryClient(settings) as client:
        outcome = await client.check_many(codes)
    assert len(outcome.failed) == 10
    assert all(isinstance(e, MinistryUnavailable) for e in outcome.failed.values())
    answered = set(outcome.results) | outcome.not_found | outcome.expired
    assert answered | set(outcome.failed) == set(codes)
    assert not answered & set(outcome.failed)
    assert not outcome.complete


async def test_a_bulk_deadline_fails_what_has_no_answer(sim: SimulatorHandle) -> None:
    codes = sim.population.codes()[:20]
    sim.faults.update(hang_rate=1.0)
    async with MinistryClient(settings_for(sim, bulk_chunk_size=10)) as client:
        outcome = await client.check_many(codes, timeout_s=0.3)
    assert set(outcome.failed) == set(codes)
    assert all(isinstance(e, MinistryTimeout) for e in outcome.failed.values())
    await wait_until_idle(sim)


@pytest.mark.parametrize(
    "faults",
    [
        {"error_rate": 1.0},
        {"unavailable_rate": 1.0},
        {"gateway_rate": 1.0},
        {"throttle_rate": 1.0, "retry_after_s": None},
        {"garbage_rate": 1.0},
        {"wrong_credentials_for_s": 60.0},
    ],
)
async def test_no_failure_is_ever_a_riskless_result(
    sim: SimulatorHandle, faults: dict[str, object]
) -> None:
    record = pick(sim.population, status=HealthStatus.RISKLESS)
    sim.faults.update(**faults)
    async with MinistryClient(settings_for(sim, max_attempts=2)) as client:
        with pytest.raises(MinistryError):
            await client.check(record.hes_code)
        outcome = await client.check_many([record.hes_code])
    assert outcome.results == {}
    assert set(outcome.failed) == {record.hes_code}


async def test_a_timeout_cut_short_by_the_callers_budget_does_not_trip_the_breaker(
    sim: SimulatorHandle,
) -> None:
    sim.faults.update(hang_rate=1.0)
    async with MinistryClient(settings_for(sim, breaker_threshold=1, timeout_s=5.0)) as client:
        with pytest.raises(MinistryTimeout):
            await client.check(pick(sim.population).hes_code, timeout_s=0.2)
        assert breaker(client) is BreakerState.CLOSED
    await wait_until_idle(sim)


async def test_a_timeout_of_the_configured_length_counts_against_the_service(
    sim: SimulatorHandle,
) -> None:
    sim.faults.update(hang_rate=1.0)
    settings = settings_for(sim, breaker_threshold=1, timeout_s=0.2, max_attempts=1)
    async with MinistryClient(settings, clock=Ticker()) as client:
        with pytest.raises(MinistryTimeout):
            await client.check(pick(sim.population).hes_code)
        assert breaker(client) is BreakerState.OPEN
    await wait_until_idle(sim)


async def test_a_spent_budget_is_a_timeout_without_a_call(
    sim: SimulatorHandle, client: MinistryClient
) -> None:
    code = pick(sim.population).hes_code
    with pytest.raises(MinistryTimeout):
        await client.check(code, timeout_s=0)
    with pytest.raises(MinistryTimeout):
        await client.check(code, timeout_s=0.001)
    assert sim.stats.calls == 0
