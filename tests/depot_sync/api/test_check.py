from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from typing import Any

from structlog.testing import capture_logs

from depot_sync.config import CheckSection
from depot_sync.crypto import FieldCipher, credential_context
from depot_sync.risklist.changes import delta_page
from depot_sync.risklist.credentials import card_key, hes_key
from depot_sync.risklist.registrations import import_registrations
from protocol import codec
from protocol.credentials import ReadMethod
from protocol.messages import PROTOCOL_VERSION, CheckAnswer, CheckOutcome, CheckRequest
from protocol.ministry.simulator import Faults
from protocol.risk import Groups, HealthStatus, expiry_day_of
from tests.depot_sync.api.conftest import Harness
from tests.depot_sync.ministry.sim import person, simulated_ministry

CODE = "R7G6915415"
#: Tests that expect an answer give the loopback simulator time even on a loaded machine.
PATIENT = CheckSection(budget_ms=5000)


async def ask(
    h: Harness,
    secret: bytes,
    code: str | None,
    *,
    key: bytes | None = None,
    method: ReadMethod = ReadMethod.QR,
) -> CheckAnswer:
    request = CheckRequest(
        v=PROTOCOL_VERSION,
        method=method,
        key=key if key is not None else hes_key(h.depot.list_key, code or ""),
        hes_code=code,
        tckn_last3=None,
    )
    resp = await h.send("POST", "/v1/check", request, device="bus-1", secret=secret)
    assert resp.status == 200, await resp.text()
    return codec.decode(CheckAnswer, await resp.read())


async def test_found_is_stored_and_the_next_delta_carries_it(
    make_harness: Callable[..., Any],
) -> None:
    someone = person(CODE, status=HealthStatus.RISKY)
    async with (
        simulated_ministry([someone]) as (sim, client),
        make_harness(ministry=client, check=PATIENT) as h,
    ):
        secret = await h.enrol("bus-1")
        answer = await ask(h, secret, CODE)
        assert answer.outcome is CheckOutcome.FOUND
        assert answer.status is HealthStatus.RISKY
        assert answer.tckn_last3 == someone.tckn[-3:]
        assert answer.expiry_day == expiry_day_of(someone.expires_at)
        async with h.pool.acquire() as conn:
            page = await delta_page(conn, 0, 100)
        assert [c.key for c in page.changes] == [hes_key(h.depot.list_key, CODE)]
        assert page.until == answer.list_version
        stored = await h.pool.fetchrow("SELECT source, value_enc FROM credentials")
        assert stored is not None
        assert stored["source"] == "online_check"
        assert CODE.encode() not in stored["value_enc"]
        # Asked again: answered from the database.
        calls = sum(sim.stats.by_endpoint.values())
        again = await ask(h, secret, CODE)
        assert again == answer
        assert sum(sim.stats.by_endpoint.values()) == calls


async def test_not_found_and_expired(make_harness: Callable[..., Any]) -> None:
    gone = person("EXP1RED000", expires_in=-dt.timedelta(days=1))
    async with (
        simulated_ministry([gone]) as (_, client),
        make_harness(ministry=client, check=PATIENT) as h,
    ):
        secret = await h.enrol("bus-1")
        assert (await ask(h, secret, "NOSUCHCODE")).outcome is CheckOutcome.NOT_FOUND
        expired = await ask(h, secret, "EXP1RED000")
        assert expired.outcome is CheckOutcome.EXPIRED
        assert expired.status is None
        assert await h.pool.fetchval("SELECT count(*) FROM list_changes") == 0


async def test_ministry_outage_answers_unavailable(make_harness: Callable[..., Any]) -> None:
    async with (
        simulated_ministry([person(CODE)]) as (sim, client),
        make_harness(ministry=client, check=PATIENT) as h,
    ):
        secret = await h.enrol("bus-1")
        sim.faults.set(Faults(unavailable_rate=1.0))
        answer = await ask(h, secret, CODE)
        assert answer.outcome is CheckOutcome.UNAVAILABLE
        assert answer.status is None
        assert await h.pool.fetchval("SELECT count(*) FROM credentials") == 0
        sim.faults.set(Faults(gateway_rate=1.0))
        assert (await ask(h, secret, CODE)).outcome is CheckOutcome.UNAVAILABLE
        sim.faults.set(Faults(garbage_rate=1.0))
        assert (await ask(h, secret, CODE)).outcome is CheckOutcome.UNAVAILABLE
        metrics = await (await h.client.get("/metrics")).text()
        assert (
            'hesgate_depot_online_checks_total{outcome="unavailable",source="ministry"}' in metrics
        )


async def test_slow_ministry_answers_unavailable_within_the_budget(
    make_harness: Callable[..., Any],
) -> None:
    async with (
        simulated_ministry([person(CODE)]) as (sim, client),
        make_harness(ministry=client, check=CheckSection(budget_ms=100)) as h,
    ):
        secret = await h.enrol("bus-1")
        sim.faults.set(Faults(latency_min_s=1.0, latency_max_s=1.0))
        assert (await ask(h, secret, CODE)).outcome is CheckOutcome.UNAVAILABLE


async def test_no_ministry_configured_answers_unavailable(harness: Harness) -> None:
    secret = await harness.enrol("bus-1")
    assert (await ask(harness, secret, CODE)).outcome is CheckOutcome.UNAVAILABLE


async def test_key_that_does_not_match_the_code_is_refused(harness: Harness) -> None:
    secret = await harness.enrol("bus-1")
    request = CheckRequest(
        v=PROTOCOL_VERSION,
        method=ReadMethod.KEYPAD,
        key=b"\x00" * 8,
        hes_code=CODE,
        tckn_last3="246",
    )
    resp = await harness.send("POST", "/v1/check", request, device="bus-1", secret=secret)
    assert resp.status == 400
    assert (await resp.json())["field"] == "key"


CARD_UID = "04A224B2C61E80"


async def register_card(h: Any, tckn: str) -> bytes:
    """Register the card ``CARD_UID`` to ``CODE`` (owner born 1950); its risk-list key."""
    async with h.pool.acquire() as conn:
        await import_registrations(
            conn,
            h.depot.cipher,
            h.depot.list_key,
            f"card_uid,hes_code,tckn,birth_year\n{CARD_UID},{CODE},{tckn},1950\n",
        )
    return card_key(h.depot.list_key, CARD_UID)


async def test_card_is_checked_through_its_code(make_harness: Callable[..., Any]) -> None:
    someone = person(CODE)
    async with (
        simulated_ministry([someone]) as (sim, client),
        make_harness(ministry=client, check=PATIENT) as h,
    ):
        secret = await h.enrol("bus-1")
        card = await register_card(h, someone.tckn)
        answer = await ask(h, secret, None, key=card, method=ReadMethod.CARD)
        assert answer.outcome is CheckOutcome.FOUND
        assert answer.status is HealthStatus.RISKLESS
        assert answer.groups is Groups.AGE_65_PLUS
        # The card's answer is as fresh as its code's (which the refresh job keeps fresh).
        await h.pool.execute(
            "UPDATE credentials SET last_checked_at = now() - interval '2 days' WHERE key = $1",
            card,
        )
        calls = sum(sim.stats.by_endpoint.values())
        assert await ask(h, secret, None, key=card, method=ReadMethod.CARD) == answer
        assert sum(sim.stats.by_endpoint.values()) == calls
        unknown = await ask(h, secret, None, key=b"\x01" * 8, method=ReadMethod.CARD)
        assert unknown.outcome is CheckOutcome.NOT_FOUND


async def test_card_whose_code_does_not_decrypt_is_unavailable(
    make_harness: Callable[..., Any],
) -> None:
    someone = person(CODE)
    async with (
        simulated_ministry([someone]) as (sim, client),
        make_harness(ministry=client, check=PATIENT) as h,
    ):
        secret = await h.enrol("bus-1")
        card = await register_card(h, someone.tckn)
        code = hes_key(h.depot.list_key, CODE)
        await h.pool.execute(
            "UPDATE credentials SET value_enc = $2 WHERE key = $1",
            code,
            FieldCipher(os.urandom(32)).seal_text(CODE, context=credential_context(code)),
        )
        with capture_logs() as logs:
            answer = await ask(h, secret, None, key=card, method=ReadMethod.CARD)
        # Never "not found", never riskless: the validator applies its offline policy.
        assert answer.outcome is CheckOutcome.UNAVAILABLE
        assert sum(sim.stats.by_endpoint.values()) == 0
        assert [e["key"] for e in logs if e["log_level"] == "error"] == [code.hex()]
