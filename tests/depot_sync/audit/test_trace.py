from __future__ import annotations

import datetime as dt
import os
from typing import Any

import asyncpg
import pytest

from depot_sync.audit.trace import (
    _BOARDINGS,
    _CONTACTS,
    BadTraceRequest,
    IndexGiven,
    TraceLimits,
    TraceRequest,
    TraceTooLarge,
    parse_request,
    trace,
)
from depot_sync.crypto import FieldCipher
from protocol.credentials import CredentialKind
from protocol.risk import HealthStatus
from tests.depot_sync.tracing import (
    INDEX_CARD,
    INDEX_CODE,
    MIN,
    T0,
    V1,
    V2,
    TapLoader,
    World,
    build_world,
    other_key,
)

LIST_KEY = bytes(range(32))
NOW = dt.datetime(2024, 3, 10, tzinfo=dt.UTC)
LIMITS = TraceLimits()


def at(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def request(
    key: bytes,
    given: IndexGiven = IndexGiven.HES_CODE,
    *,
    window_min: int = 30,
    linked: bool = True,
) -> TraceRequest:
    return TraceRequest(
        given, key, at(T0 - 60 * MIN), at(T0 + 180 * MIN), window_min, linked=linked
    )


@pytest.fixture
async def world(pool: asyncpg.Pool) -> World:
    return await build_world(pool, FieldCipher(os.urandom(32)), LIST_KEY)


async def run(pool: asyncpg.Pool, asked: TraceRequest, limits: TraceLimits = LIMITS) -> Any:
    async with pool.acquire() as conn:
        return await trace(conn, asked, limits)


async def test_contacts_of_a_hes_code_and_the_card_linked_to_it(
    pool: asyncpg.Pool, world: World
) -> None:
    result = await run(pool, request(world.index))
    assert result.index_known
    assert set(result.index_keys) == {world.index, world.index_card}
    assert [(b.id, b.key, b.time_ms, b.vehicle) for b in result.boardings] == [
        (1, world.index, T0, V1),
        (2, world.index_card, T0 + 120 * MIN, V2),
    ]
    by_key = {c.key: c for c in result.contacts}
    # Both window edges count; a millisecond past either, another vehicle, no key: not contacts.
    assert set(by_key) == world.contacts
    a = by_key[world.a]
    assert result.contacts[0] is a
    assert a.boardings == (1, 2)
    assert a.shared_rides == 2
    assert (a.first_ms, a.last_ms) == (T0 + 10 * MIN, T0 + 115 * MIN)
    assert a.nearest_ms == 5 * MIN
    assert a.vehicles == (V1, V2)
    assert result.contacts[1].key == world.f
    assert by_key[world.b_card].nearest_ms == by_key[world.d].nearest_ms == 30 * MIN
    assert all(by_key[k].boardings == (1,) for k in (world.b_card, world.d, world.f))


async def test_a_hes_code_trace_says_what_the_depot_knows_of_each_contact(
    pool: asyncpg.Pool, world: World
) -> None:
    result = await run(pool, request(world.index))
    assert result.credentials is not None
    a, b = result.credentials[world.a], result.credentials[world.b_card]
    assert (a.kind, a.registered, a.status) == (
        CredentialKind.HES_CODE,
        True,
        HealthStatus.RISKLESS,
    )
    # A card carries the status of the code it is registered to.
    assert (b.kind, b.registered, b.status) == (CredentialKind.CARD, True, HealthStatus.RISKY)
    assert world.d not in result.credentials
    answer = result.as_json()
    contacts = {c["key"]: c for c in answer["contacts"]}
    assert contacts[world.b_card.hex()]["credential"] == {
        "kind": "card",
        "registered": True,
        "ministry_state": "found",
        "status": "RISKY",
    }
    assert contacts[world.d.hex()]["credential"] is None
    assert [b["contacts"] for b in answer["boardings"]] == [4, 1]
    assert answer["boardings"][0]["decision"] == "DENY"
    assert answer["boardings"][0]["time"] == "2024-03-01T09:00:00.000Z"
    assert contacts[world.a.hex()]["first_overlap"] == "2024-03-01T09:10:00.000Z"
    assert contacts[world.a.hex()]["nearest_s"] == 300


async def test_a_trace_by_card_or_key_finds_the_same_taps_without_statuses(
    pool: asyncpg.Pool, world: World
) -> None:
    by_card = await run(pool, request(world.index_card, IndexGiven.CARD_UID))
    assert by_card.index_keys[0] == world.index_card
    assert {b.key for b in by_card.boardings} == {world.index, world.index_card}
    assert {c.key for c in by_card.contacts} == world.contacts
    assert by_card.credentials is None
    assert all("credential" not in c for c in by_card.as_json()["contacts"])
    by_key = await run(pool, request(world.index, IndexGiven.KEY))
    assert {c.key for c in by_key.contacts} == world.contacts
    assert by_key.credentials is None


async def test_without_linked_credentials_only_the_given_keys_taps_count(
    pool: asyncpg.Pool, world: World
) -> None:
    result = await run(pool, request(world.index, IndexGiven.KEY, linked=False))
    assert result.index_keys == (world.index,)
    assert [b.time_ms for b in result.boardings] == [T0]
    a = next(c for c in result.contacts if c.key == world.a)
    # Two taps on the same ride are one shared ride.
    assert (a.shared_rides, a.first_ms, a.last_ms) == (1, T0 + 10 * MIN, T0 + 12 * MIN)


async def test_a_narrower_window_keeps_only_what_is_inside_it(
    pool: asyncpg.Pool, world: World
) -> None:
    result = await run(pool, request(world.index, window_min=1))
    # F tapped exactly one minute after the index; A five minutes before the second ride.
    assert [c.key for c in result.contacts] == [world.f]


async def test_an_unknown_credential_has_no_boardings(pool: asyncpg.Pool, world: World) -> None:
    result = await run(pool, request(other_key("nobody")))
    assert not result.index_known
    assert (result.boardings, result.contacts) == ((), ())
    assert result.as_json()["contacts"] == []


async def test_validators_without_a_vehicle_match_on_their_device(pool: asyncpg.Pool) -> None:
    taps = TapLoader(pool)
    index, same_door, other_door = other_key("i"), other_key("s"), other_key("o")
    await taps.load(
        [
            taps.row("door-1", T0, index, ""),
            taps.row("door-1", T0 + MIN, same_door, ""),
            taps.row("door-2", T0 + MIN, other_door, ""),
        ]
    )
    result = await run(pool, request(index, IndexGiven.KEY))
    assert [(c.key, c.vehicles) for c in result.contacts] == [(same_door, ("door-1",))]


async def test_a_trace_past_its_limits_is_refused(pool: asyncpg.Pool, world: World) -> None:
    with pytest.raises(TraceTooLarge, match="more than 1 boardings"):
        await run(pool, request(world.index), TraceLimits(max_boardings=1))
    with pytest.raises(TraceTooLarge, match="more than 3 contacts") as refused:
        await run(pool, request(world.index), TraceLimits(max_contacts=3))
    assert refused.value.limit == 3
    exact = await run(pool, request(world.index), TraceLimits(max_boardings=2, max_contacts=4))
    assert len(exact.contacts) == 4


async def test_the_lookups_can_use_the_trace_indexes(pool: asyncpg.Pool, world: World) -> None:
    async with pool.acquire() as conn, conn.transaction():
        # A tiny table is cheaper to scan: forbid scans to see which indexes the queries can use.
        await conn.execute("SET LOCAL enable_seqscan = off")
        boardings = "\n".join(
            r[0]
            for r in await conn.fetch(
                "EXPLAIN " + _BOARDINGS, [world.index], T0 - MIN, T0 + MIN, 10
            )
        )
        assert "taps_default_key_time_ms_idx" in boardings
        contacts = "\n".join(
            r[0]
            for r in await conn.fetch(
                "EXPLAIN " + _CONTACTS,
                [T0],
                [V1],
                ["bus-1"],
                [1],
                30 * MIN,
                T0 - 30 * MIN,
                T0 + 30 * MIN,
                [world.index],
                10,
            )
        )
        assert "taps_default_vehicle_time_ms_idx" in contacts


def body(**fields: object) -> dict[str, object]:
    return {"hes_code": "R7G6-9154-15", "from": "2024-03-01", **fields}


def test_a_request_names_its_index_in_one_of_three_ways() -> None:
    by_code = parse_request(body(), LIST_KEY, NOW, LIMITS)
    assert by_code.given is IndexGiven.HES_CODE
    assert parse_request(body(hes_code="r7g6915415"), LIST_KEY, NOW, LIMITS).key == by_code.key
    by_card = parse_request(
        {"card_uid": "04:a2:24:b2:c6:1e:80", "from": "2024-03-01"}, LIST_KEY, NOW, LIMITS
    )
    assert by_card.given is IndexGiven.CARD_UID
    assert by_card.key != by_code.key
    by_key = parse_request({"key": by_code.key.hex(), "from": "2024-03-01"}, LIST_KEY, NOW, LIMITS)
    assert (by_key.given, by_key.key) == (IndexGiven.KEY, by_code.key)
    # No offset: Istanbul time; no "to": now.
    assert by_code.start == dt.datetime(2024, 2, 29, 21, tzinfo=dt.UTC)
    assert (by_code.end, by_code.window_min, by_code.linked) == (NOW, 30, True)
    assert by_code.as_json()["key"] == by_code.key.hex()
    assert INDEX_CODE not in str(by_code.as_json())
    assert INDEX_CARD not in str(by_card.as_json())


@pytest.mark.parametrize(
    ("fields", "field", "problem"),
    [
        ({"hes_code": None}, "index", "exactly one"),
        ({"key": "00" * 8}, "index", "exactly one"),
        ({"hes_code": "R7G6-9154-1"}, "hes_code", "9 characters"),
        ({"hes_code": 12}, "hes_code", "a string"),
        ({"hes_code": None, "card_uid": "xyz"}, "card_uid", "hexadecimal"),
        ({"hes_code": None, "key": "abcd"}, "key", "16 hexadecimal"),
        ({"from": None}, "from", "required"),
        ({"from": "yesterday"}, "from", "ISO 8601"),
        ({"to": "2024-02-01"}, "to", "after from"),
        ({"to": "2024-04-02"}, "to", "at most 31 days"),
        ({"window_min": 0}, "window_min", "1 to 240"),
        ({"window_min": 241}, "window_min", "1 to 240"),
        ({"window_min": "30"}, "window_min", "whole number"),
        ({"window_min": True}, "window_min", "whole number"),
        ({"linked": "yes"}, "linked", "true or false"),
        ({"colour": "red"}, "colour", "unknown field"),
    ],
)
def test_a_bad_request_names_the_field(fields: dict[str, object], field: str, problem: str) -> None:
    with pytest.raises(BadTraceRequest, match=problem) as refused:
        parse_request(body(**fields), LIST_KEY, NOW, LIMITS)
    assert refused.value.field == field
    assert "R7G6" not in str(refused.value)


def test_a_body_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(BadTraceRequest, match="JSON object"):
        parse_request(["R7G6915415"], LIST_KEY, NOW, LIMITS)


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="default_window_min"):
        TraceLimits(default_window_min=300)
    with pytest.raises(ValueError, match="max_range_days"):
        TraceLimits(max_range_days=0)
