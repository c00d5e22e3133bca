"""The client against the simulator over real HTTP on loopback: answers, bulk, concurrency."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from protocol.hescode import InvalidHesCode, format_code
from protocol.ministry import (
    BreakerState,
    HesCodeExpired,
    HesCodeNotFound,
    MinistryAuthError,
    MinistryClient,
)
from protocol.ministry.simulator import SimulatorHandle
from protocol.ministry.simulator.answers import mask_name
from protocol.risk import HealthStatus
from tests.protocol.ministry.helpers import (
    NOW,
    TEST_PASSWORD,
    TEST_USER,
    SimClock,
    pick,
    settings_for,
)


async def test_a_riskless_code_reads_back_as_the_ministry_holds_it(
    sim: SimulatorHandle, client: MinistryClient
) -> None:
    # A code whose masked last name the service pads with a space.
    record = next(
        r
        for r in sim.population
        if not r.expired(NOW)
        and r.status is HealthStatus.RISKLESS
        and int(r.hes_code[-1], 36) % 4 == 0
    )
    result = await client.check(record.hes_code)
    assert result.hes_code == record.hes_code
    assert result.status is HealthStatus.RISKLESS
    assert result.expires_at == record.expires_at
    assert result.expires_at.utcoffset() is not None
    assert result.tckn_last3 == record.tckn[-3:]
    assert result.first_name == mask_name(record.first_name)
    assert result.last_name == mask_name(record.last_name)
    assert not result.last_name.endswith(" ")
    assert result.is_vaccinated is None


async def test_a_risky_code_is_risky(sim: SimulatorHandle, client: MinistryClient) -> None:
    record = pick(sim.population, status=HealthStatus.RISKY)
    result = await client.check(record.hes_code)
    assert result.status is HealthStatus.RISKY


async def test_check_plus_brings_the_vaccination_and_test_fields(
    sim: SimulatorHandle, client: MinistryClient
) -> None:
    record = next(r for r in sim.population if not r.expired(NOW) and r.last_negative_test)
    result = await client.check_plus(record.hes_code)
    assert result.is_vaccinated == record.is_vaccinated
    assert result.is_immune == record.is_immune
    assert result.last_negative_test == record.last_negative_test
    assert result.is_test_data_shared == record.is_test_data_shared
    assert sim.stats.by_endpoint == {"check-hes-code-plus": 1}


async def test_codes_are_normalised_before_asking(
    sim: SimulatorHandle, client: MinistryClient
) -> None:
    record = pick(sim.population)
    result = await client.check(format_code(record.hes_code).lower())
    assert result.hes_code == record.hes_code


async def test_a_malformed_code_is_refused_without_calling(
    sim: SimulatorHandle, client: MinistryClient
) -> None:
    with pytest.raises(InvalidHesCode):
        await client.check("R7G6-9154")
    with pytest.raises(InvalidHesCode):
        await client.check_many([pick(sim.population).hes_code, "not a code!"])
    assert sim.stats.calls == 0


async def test_unknown_code_is_not_found_and_not_retried(
    sim: SimulatorHandle, client: MinistryClient
) -> None:
    with pytest.raises(HesCodeNotFound) as caught:
        await client.check("ZZZZ-0000-00")
    assert caught.value.hes_code == "ZZZZ000000"
    assert caught.value.error_key == "hescodenotfound"
    assert sim.stats.calls == 1


async def test_an_expired_code_is_expired_and_not_retried(
    sim: SimulatorHandle, client: MinistryClient
) -> None:
    record = pick(sim.population, status=None, expired=True)
    with pytest.raises(HesCodeExpired) as caught:
        await client.check(record.hes_code)
    assert caught.value.hes_code == record.hes_code
    assert sim.stats.calls == 1


async def test_answers_about_codes_never_trip_the_breaker(sim: SimulatorHandle) -> None:
    async with MinistryClient(settings_for(sim, breaker_threshold=2)) as client:
        for n in range(5):
            with pytest.raises(HesCodeNotFound):
                await client.check(f"ZZZZZZZZ{n:02d}")
        assert client.breaker_state is BreakerState.CLOSED
        assert client.breaker_status().consecutive_failures == 0


async def test_the_test_environment_with_its_own_user(sim: SimulatorHandle) -> None:
    record = pick(sim.population)
    settings = settings_for(
        sim, base_url=sim.test_base_url, username=TEST_USER, password=TEST_PASSWORD
    )
    async with MinistryClient(settings) as client:
        assert (await client.check(record.hes_code)).hes_code == record.hes_code


async def test_a_live_user_on_the_test_environment_is_forbidden_not_retried(
    sim: SimulatorHandle,
) -> None:
    async with MinistryClient(settings_for(sim, base_url=sim.test_base_url)) as client:
        with pytest.raises(MinistryAuthError) as caught:
            await client.check(pick(sim.population).hes_code)
    assert caught.value.status == 403
    assert sim.stats.calls == 1


async def test_a_wrong_password_is_an_auth_failure_not_retried(sim: SimulatorHandle) -> None:
    async with MinistryClient(settings_for(sim, password="not-it")) as client:
        with pytest.raises(MinistryAuthError) as caught:
            await client.check(pick(sim.population).hes_code)
    assert caught.value.status == 401
    assert sim.stats.calls == 1


async def test_1234_codes_go_out_as_3_bulk_calls_and_come_back_merged(
    sim: SimulatorHandle, client: MinistryClient
) -> None:
    unknown = [f"QQQQQQQQ{n:02d}" for n in range(6)]
    known = sim.population.codes()[: 1234 - len(unknown)]
    outcome = await client.check_many([*known, *unknown])

    assert sim.stats.by_endpoint == {"check-hes-codes": 3}
    assert sim.stats.codes_asked == 1234
    assert outcome.complete
    assert outcome.not_found == frozenset(unknown)
    expected_expired = {r.hes_code for r in sim.population if r.expired(NOW)} & set(known)
    assert expected_expired  # the seed gives some, so the check below means something
    assert outcome.expired == expected_expired
    assert set(outcome.results) == set(known) - expected_expired
    for code, result in outcome.results.items():
        record = sim.population.get(code)
        assert record is not None
        assert result.status is record.status
        assert result.tckn_last3 == record.tckn[-3:]
        assert result.expires_at == record.expires_at
    assert {r.status for r in outcome.results.values()} == {
        HealthStatus.RISKY,
        HealthStatus.RISKLESS,
    }


async def test_bulk_plus_uses_the_plus_endpoint(
    sim: SimulatorHandle, client: MinistryClient
) -> None:
    record = next(r for r in sim.population if not r.expired(NOW) and r.is_vaccinated)
    outcome = await client.check_many([record.hes_code], plus=True)
    assert sim.stats.by_endpoint == {"check-hes-codes-plus": 1}
    assert outcome.results[record.hes_code].is_vaccinated is True


async def test_bulk_deduplicates_and_normalises(
    sim: SimulatorHandle, client: MinistryClient
) -> None:
    record = pick(sim.population)
    dashed = format_code(record.hes_code)
    outcome = await client.check_many([dashed, dashed.lower(), record.hes_code])
    assert set(outcome.results) == {record.hes_code}
    assert sim.stats.codes_asked == 1


async def test_an_empty_bulk_asks_nothing(sim: SimulatorHandle, client: MinistryClient) -> None:
    outcome = await client.check_many([])
    assert outcome.results == {}
    assert outcome.complete
    assert sim.stats.calls == 0


async def test_bulk_chunks_never_exceed_the_concurrency_limit(sim: SimulatorHandle) -> None:
    sim.faults.update(latency_min_s=0.05, latency_max_s=0.1)
    settings = settings_for(sim, concurrency=3, bulk_chunk_size=10)
    async with MinistryClient(settings) as client:
        outcome = await client.check_many(sim.population.codes()[:120])
    assert sim.stats.calls == 12
    assert sim.stats.max_in_flight == 3  # the limit is used, and never passed
    assert len(outcome.results) + len(outcome.expired) == 120


async def test_single_checks_share_the_concurrency_limit(sim: SimulatorHandle) -> None:
    sim.faults.update(latency_min_s=0.03, latency_max_s=0.05)
    codes = [r.hes_code for r in sim.population if not r.expired(NOW)][:16]
    async with MinistryClient(settings_for(sim, concurrency=2)) as client:
        results = await asyncio.gather(*(client.check(code) for code in codes))
    assert [r.hes_code for r in results] == codes
    assert sim.stats.max_in_flight == 2


async def test_a_scheduled_change_shows_on_the_next_check(
    sim: SimulatorHandle, client: MinistryClient, sim_clock: SimClock
) -> None:
    record = pick(sim.population, status=HealthStatus.RISKLESS)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            sim.admin_url + "schedule",
            json={"hes_code": record.hes_code, "in_s": 600, "status": "RISKY"},
        ) as response,
    ):
        assert response.status == 201
    assert (await client.check(record.hes_code)).status is HealthStatus.RISKLESS
    sim_clock.advance(minutes=11)
    assert (await client.check(record.hes_code)).status is HealthStatus.RISKY
    outcome = await client.check_many([record.hes_code])
    assert outcome.results[record.hes_code].status is HealthStatus.RISKY
