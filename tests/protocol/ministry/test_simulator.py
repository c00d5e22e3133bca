"""The simulator spoken to in raw HTTP: the documented shapes, auth, limits and the admin API."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from protocol.ministry.simulator import (
    Population,
    ServerSection,
    SimulatorConfig,
    SimulatorHandle,
    registrations_csv,
    running_simulator,
)
from tests.protocol.ministry.helpers import (
    LIVE_PASSWORD,
    LIVE_USER,
    NOW,
    TEST_PASSWORD,
    TEST_USER,
    SimClock,
    pick,
    sim_config,
)

Headers = dict[str, str]


def basic(user: str, password: str) -> Headers:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


LIVE_AUTH = basic(LIVE_USER, LIVE_PASSWORD)
TEST_AUTH = basic(TEST_USER, TEST_PASSWORD)
RESULT_KEYS = {
    "current_health_status",
    "expiration_date",
    "masked_identity_number",
    "masked_firstname",
    "masked_lastname",
}
PLUS_KEYS = {"is_vaccinated", "is_immune", "last_negative_test_date", "is_test_data_shared"}
JHIPSTER_KEYS = {"entityName", "errorKey", "type", "title", "status", "message", "params"}
WIRE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession,
    url: str,
    body: Any,
    auth: Headers | None = LIVE_AUTH,
) -> tuple[int, str, Any]:
    async with http.post(url, json=body, headers=auth) as response:
        text = await response.text()
        try:
            parsed = await response.json(content_type=None)
        except ValueError:
            parsed = text
        return response.status, response.content_type, parsed


async def test_a_single_result_has_exactly_the_documented_fields(
    sim: SimulatorHandle, http: aiohttp.ClientSession
) -> None:
    record = pick(sim.population)
    status, content_type, body = await post(
        http, sim.base_url + "check-hes-code", {"hes_code": record.hes_code}
    )
    assert status == 200
    assert content_type == "application/json"
    assert set(body) == RESULT_KEYS
    assert body["current_health_status"] == "RISKLESS"
    assert WIRE_TIME.fullmatch(body["expiration_date"])
    assert body["masked_identity_number"] == "********" + record.tckn[-3:]
    assert body["masked_firstname"].startswith(record.first_name[:2])
    assert set(body["masked_firstname"][2:]) <= {"*", " "}


async def test_some_names_come_padded_as_the_real_service_sends_them(
    sim: SimulatorHandle, http: aiohttp.ClientSession
) -> None:
    padded = 0
    for record in [r for r in sim.population if not r.expired(NOW)][:12]:
        _, _, body = await post(
            http, sim.base_url + "check-hes-code", {"hes_code": record.hes_code}
        )
        padded += body["masked_lastname"].endswith(" ")
    assert 0 < padded < 12


async def test_the_plus_endpoint_adds_the_plus_fields(
    sim: SimulatorHandle, http: aiohttp.ClientSession
) -> None:
    record = pick(sim.population)
    _, _, body = await post(
        http, sim.base_url + "check-hes-code-plus", {"hes_code": record.hes_code}
    )
    assert set(body) == RESULT_KEYS | PLUS_KEYS


@pytest.mark.parametrize("endpoint", ["check-employee-hes-code", "check-visitor-hes-code"])
async def test_employee_and_visitor_endpoints_answer(
    sim: SimulatorHandle, http: aiohttp.ClientSession, endpoint: str
) -> None:
    record = pick(sim.population)
    body = {
        "hes_code": record.hes_code,
        "city": "İstanbul",
        "district": "Kadıköy",
        "explicit_address": "İskele",
        "location": {"latitude": 40.99, "longitude": 29.02},
    }
    status, _, answer = await post(http, sim.base_url + endpoint, body)
    assert status == 200
    assert set(answer) == RESULT_KEYS


async def test_not_found_and_expired_are_jhipster_errors(
    sim: SimulatorHandle, http: aiohttp.ClientSession
) -> None:
    status, content_type, body = await post(
        http, sim.base_url + "check-hes-code", {"hes_code": "ZZZZZZZZZZ"}
    )
    assert status == 400
    assert content_type == "application/problem+json"
    assert set(body) == JHIPSTER_KEYS
    assert body["errorKey"] == "hescodenotfound"
    assert body["status"] == 400
    expired = pick(sim.population, status=None, expired=True)
    _, _, body = await post(http, sim.base_url + "check-hes-code", {"hes_code": expired.hes_code})
    assert body["errorKey"] == "hescodehasbeenexpired"


async def test_the_bulk_answer_is_two_maps(
    sim: SimulatorHandle, http: aiohttp.ClientSession
) -> None:
    good = pick(sim.population)
    expired = pick(sim.population, status=None, expired=True)
    asked = [good.hes_code, expired.hes_code, "ZZZZZZZZZZ"]
    status, _, body = await post(
        http, sim.base_url + "check-hes-codes", [{"hes_code": c} for c in asked]
    )
    assert status == 200
    assert set(body) == {"success_map", "unsuccess_map"}
    assert set(body["success_map"]) == {good.hes_code}
    assert set(body["success_map"][good.hes_code]) == RESULT_KEYS
    assert body["unsuccess_map"] == {
        expired.hes_code: "hescodehasbeenexpired",
        "ZZZZZZZZZZ": "hescodenotfound",
    }


async def test_500_codes_pass_and_501_get_a_400(
    sim: SimulatorHandle, http: aiohttp.ClientSession
) -> None:
    codes = [{"hes_code": c} for c in sim.population.codes()[:501]]
    status, _, body = await post(http, sim.base_url + "check-hes-codes-plus", codes[:500])
    assert status == 200
    assert len(body["success_map"]) + len(body["unsuccess_map"]) == 500
    status, _, body = await post(http, sim.base_url + "check-hes-codes-plus", codes)
    assert status == 400
    assert set(body) == JHIPSTER_KEYS
    assert body["errorKey"] == "toomanyhescodes"


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("check-hes-code", {"code": "R7G6915415"}),
        ("check-hes-code", ["R7G6915415"]),
        ("check-hes-codes", {"hes_code": "R7G6915415"}),
        ("check-hes-codes", [{"hes_code": 12}]),
        ("check-visitor-hes-code", {"hes_code": "R7G6915415", "location": "Kadıköy"}),
    ],
)
async def test_a_malformed_body_is_a_400_with_an_error_key(
    sim: SimulatorHandle, http: aiohttp.ClientSession, endpoint: str, body: object
) -> None:
    status, _, answer = await post(http, sim.base_url + endpoint, body)
    assert status == 400
    assert answer["errorKey"] == "invalidrequest"


async def test_both_base_paths_serve_with_their_users(
    sim: SimulatorHandle, http: aiohttp.ClientSession
) -> None:
    body = {"hes_code": pick(sim.population).hes_code}
    assert (await post(http, sim.base_url + "check-hes-code", body))[0] == 200
    assert (await post(http, sim.test_base_url + "check-hes-code", body, TEST_AUTH))[0] == 200
    assert (await post(http, sim.test_base_url + "check-hes-code", body, LIVE_AUTH))[0] == 403
    assert (await post(http, sim.base_url + "check-hes-code", body, TEST_AUTH))[0] == 403


@pytest.mark.parametrize(
    "auth",
    [
        None,
        basic(LIVE_USER, "wrong"),
        basic("NOBODY", LIVE_PASSWORD),
        {"Authorization": "Basic not-base64!"},
        {"Authorization": f"Bearer {LIVE_PASSWORD}"},
    ],
)
async def test_missing_or_wrong_credentials_get_401_with_a_challenge(
    sim: SimulatorHandle, http: aiohttp.ClientSession, auth: Headers | None
) -> None:
    url = sim.base_url + "check-hes-code"
    async with http.post(url, json={"hes_code": "ZZZZZZZZZZ"}, headers=auth) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic")


async def test_only_post_on_known_paths(sim: SimulatorHandle, http: aiohttp.ClientSession) -> None:
    async with http.get(sim.base_url + "check-hes-code", headers=LIVE_AUTH) as response:
        assert response.status == 405
    status, _, _ = await post(http, sim.root_url + "/services/g2g/saglik/hes/nope", {})
    assert status == 404


async def test_injected_faults_answer_as_configured(
    sim: SimulatorHandle, http: aiohttp.ClientSession
) -> None:
    url = sim.base_url + "check-hes-code"
    body = {"hes_code": pick(sim.population).hes_code}
    sim.faults.update(throttle_rate=1.0, retry_after_s=7)
    async with http.post(url, json=body, headers=LIVE_AUTH) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "7"
    sim.faults.update(throttle_rate=0.0, gateway_rate=1.0)
    async with http.post(url, json=body, headers=LIVE_AUTH) as response:
        assert response.status == 502
        assert response.content_type == "text/html"
    sim.faults.update(gateway_rate=0.0, garbage_rate=1.0, garbage_kind="html")
    async with http.post(url, json=body, headers=LIVE_AUTH) as response:
        assert response.status == 200
        assert "<html" in await response.text()
    sim.faults.clear()
    assert (await post(http, url, body))[0] == 200


async def test_a_budget_limits_how_many_calls_fail(
    sim: SimulatorHandle, http: aiohttp.ClientSession
) -> None:
    url = sim.base_url + "check-hes-code"
    body = {"hes_code": pick(sim.population).hes_code}
    sim.faults.update(unavailable_rate=1.0, budget=2)
    statuses = [(await post(http, url, body))[0] for _ in range(4)]
    assert statuses == [503, 503, 200, 200]
    assert sim.faults.budget_left == 0


async def test_in_flight_calls_are_counted_and_released_when_the_client_leaves(
    sim: SimulatorHandle, http: aiohttp.ClientSession
) -> None:
    sim.faults.update(hang_rate=1.0)
    url = sim.base_url + "check-hes-code"
    body = {"hes_code": pick(sim.population).hes_code}
    calls = [asyncio.create_task(post(http, url, body)) for _ in range(3)]
    for _ in range(200):
        if sim.stats.in_flight == 3:
            break
        await asyncio.sleep(0.01)
    assert sim.stats.in_flight == 3
    for call in calls:
        call.cancel()
    await asyncio.gather(*calls, return_exceptions=True)
    for _ in range(200):
        if sim.stats.in_flight == 0:
            break
        await asyncio.sleep(0.01)
    assert sim.stats.in_flight == 0
    assert sim.stats.max_in_flight == 3
    assert sim.stats.calls == 3


async def admin(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> tuple[int, Any]:
    async with http.request(method, url, json=body) as response:
        if response.content_type == "text/csv":
            return response.status, await response.text()
        return response.status, await response.json()


async def test_admin_faults_put_patch_delete(
    sim: SimulatorHandle, http: aiohttp.ClientSession
) -> None:
    status, body = await admin(
        http, "PUT", sim.admin_url + "faults", {"error_rate": 0.5, "seed": 3}
    )
    assert status == 200
    assert body["faults"]["error_rate"] == 0.5
    status, body = await admin(http, "PATCH", sim.admin_url + "faults", {"latency_max_s": 0.01})
    assert body["faults"]["error_rate"] == 0.5
    assert body["faults"]["latency_max_s"] == 0.01
    assert sim.faults.current.latency_max_s == 0.01
    status, body = await admin(http, "DELETE", sim.admin_url + "faults")
    assert body["faults"]["error_rate"] == 0.0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error_rate": "lots"}, "faults.error_rate"),
        ({"error_rate": 0.7, "unavailable_rate": 0.7}, "exceed 1"),
        ({"no_such_fault": 1}, "unknown key"),
        ({"garbage_kind": "poetry"}, "garbage_kind"),
        ([1, 2], "JSON object"),
    ],
)
async def test_admin_refuses_bad_faults_and_keeps_the_old_ones(
    sim: SimulatorHandle, http: aiohttp.ClientSession, body: object, message: str
) -> None:
    sim.faults.update(latency_max_s=0.002)
    status, answer = await admin(http, "PUT", sim.admin_url + "faults", body)
    assert status == 400
    assert message in answer["error"]
    assert sim.faults.current.latency_max_s == 0.002


async def test_admin_stats_and_reset(sim: SimulatorHandle, http: aiohttp.ClientSession) -> None:
    await post(http, sim.base_url + "check-hes-code", {"hes_code": "ZZZZZZZZZZ"})
    status, body = await admin(http, "GET", sim.admin_url + "stats")
    assert status == 200
    assert body["calls"] == 1
    assert body["by_status"] == {"400": 1}
    assert body["by_endpoint"] == {"check-hes-code": 1}
    _, body = await admin(http, "DELETE", sim.admin_url + "stats")
    assert body["calls"] == 0


async def test_admin_schedule_changes_status_when_due(
    sim: SimulatorHandle, http: aiohttp.ClientSession, sim_clock: SimClock
) -> None:
    record = pick(sim.population)
    at = "2026-03-01T10:00:00Z"
    status, body = await admin(
        http,
        "POST",
        sim.admin_url + "schedule",
        [{"hes_code": record.hes_code, "at": at, "status": "RISKY"}],
    )
    assert status == 201
    assert body["pending"] == [
        {
            "hes_code": record.hes_code,
            "at": "2026-03-01T10:00:00.000Z",
            "status": "RISKY",
            "expires_at": None,
        }
    ]
    url = sim.base_url + "check-hes-code"
    assert (await post(http, url, {"hes_code": record.hes_code}))[2][
        "current_health_status"
    ] == "RISKLESS"
    sim_clock.advance(hours=1)
    assert (await post(http, url, {"hes_code": record.hes_code}))[2][
        "current_health_status"
    ] == "RISKY"
    assert (await admin(http, "GET", sim.admin_url + "schedule"))[1] == []


@pytest.mark.parametrize(
    "body",
    [
        {"hes_code": "ZZZZZZZZZZ", "in_s": 5, "status": "RISKY"},
        {"hes_code": "R7G6915415", "status": "RISKY"},
        {"hes_code": "R7G6915415", "in_s": 5, "status": "PURPLE"},
        {"hes_code": "R7G6915415", "in_s": 5},
        {"hes_code": "R7G6915415", "at": "tomorrow", "status": "RISKY"},
    ],
)
async def test_admin_refuses_bad_schedules(
    sim: SimulatorHandle, http: aiohttp.ClientSession, body: dict[str, Any]
) -> None:
    status, answer = await admin(http, "POST", sim.admin_url + "schedule", body)
    assert status == 400
    assert answer["error"]
    assert sim.population.pending() == []


async def test_admin_population_export_round_trips(
    sim: SimulatorHandle, http: aiohttp.ClientSession
) -> None:
    status, text = await admin(http, "GET", sim.admin_url + "population?format=csv")
    assert status == 200
    assert list(Population.from_csv(text)) == list(sim.population)
    _, data = await admin(http, "GET", sim.admin_url + "population")
    assert list(Population.from_json(data)) == list(sim.population)
    _, registrations = await admin(http, "GET", sim.admin_url + "population?format=registrations")
    assert registrations == registrations_csv(sim.population)
    status, _ = await admin(http, "GET", sim.admin_url + "population?format=xml")
    assert status == 400


async def test_admin_adds_a_record_that_then_answers(
    sim: SimulatorHandle, http: aiohttp.ClientSession
) -> None:
    record = {
        "tckn": "10000000146",
        "first_name": "DENİZ",
        "last_name": "KAYA",
        "status": "RISKY",
        "expires_at": "2027-01-01T00:00:00Z",
    }
    status, _ = await admin(http, "PUT", sim.admin_url + "population/NEWC-0DE0-01", record)
    assert status == 200
    _, _, body = await post(http, sim.base_url + "check-hes-code", {"hes_code": "NEWC0DE001"})
    assert body["current_health_status"] == "RISKY"
    assert body["masked_identity_number"] == "********146"
    status, answer = await admin(
        http, "PUT", sim.admin_url + "population/NEWC0DE002", {**record, "tckn": "10000000147"}
    )
    assert status == 400
    assert "tckn" in answer["error"]


async def test_an_admin_token_guards_the_admin_api(
    population: Population, sim_clock: SimClock, http: aiohttp.ClientSession
) -> None:
    base = sim_config()
    config = SimulatorConfig(
        auth=base.auth, server=ServerSection(admin_token="ops-token", shutdown_timeout_s=0.2)
    )
    async with running_simulator(config, population=population, clock=sim_clock) as sim:
        async with http.get(sim.admin_url + "stats") as response:
            assert response.status == 401
        headers = {"Authorization": "Bearer ops-token"}
        async with http.get(sim.admin_url + "stats", headers=headers) as response:
            assert response.status == 200
        # The Ministry endpoints keep Basic auth, whatever the admin token.
        status, _, _ = await post(
            http, sim.base_url + "check-hes-code", {"hes_code": pick(population).hes_code}
        )
        assert status == 200
