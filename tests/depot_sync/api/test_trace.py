from __future__ import annotations

import json
from typing import Any

import aiohttp

from depot_sync.audit.trace import TraceLimits
from depot_sync.operations.operators import Role
from tests.depot_sync.api.conftest import Harness
from tests.depot_sync.tracing import (
    A_CODE,
    B_CARD,
    INDEX_CARD,
    INDEX_CODE,
    T0,
    V1,
    TapLoader,
    World,
    build_world,
    other_key,
)

RANGE = {"from": "2024-03-01T10:00:00+03:00", "to": "2024-03-01T15:00:00+03:00"}
LIMITS = TraceLimits()


async def post(harness: Harness, body: object, token: str | None) -> aiohttp.ClientResponse:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return await harness.client.post("/v1/trace", json=body, headers=headers)


async def world_of(harness: Harness) -> World:
    return await build_world(harness.pool, harness.depot.cipher, harness.depot.list_key)


async def log_rows(harness: Harness) -> list[dict[str, Any]]:
    rows = await harness.pool.fetch(
        "SELECT o.name, e.kind, e.format, e.filters, e.rows, e.outcome, e.finished_at "
        "FROM export_log e JOIN operators o ON o.id = e.operator_id ORDER BY e.id"
    )
    return [dict(r) | {"filters": json.loads(r["filters"])} for r in rows]


async def test_a_hes_code_trace_answers_keys_and_is_logged(harness: Harness) -> None:
    world = await world_of(harness)
    auditor = await harness.operator(Role.AUDITOR, "deniz")
    resp = await post(harness, {"hes_code": "r7g6-9154-15", **RANGE}, auditor)
    assert resp.status == 200
    text = await resp.text()
    # Keys only: no HES code or card number of anyone, the index's included.
    for raw in (INDEX_CODE, INDEX_CARD, A_CODE, B_CARD):
        assert raw not in text.upper()
    answer = json.loads(text)
    assert answer["index"] == {
        "given": "hes_code",
        "key": world.index.hex(),
        "keys": [world.index.hex(), world.index_card.hex()],
        "known": True,
    }
    assert answer["window_min"] == 30
    assert [(b["id"], b["key"], b["vehicle"]) for b in answer["boardings"]] == [
        (1, world.index.hex(), V1),
        (2, world.index_card.hex(), "34 DEF 02"),
    ]
    contacts = {c["key"]: c for c in answer["contacts"]}
    assert set(contacts) == {k.hex() for k in world.contacts}
    a = answer["contacts"][0]
    assert a["key"] == world.a.hex()
    assert (a["shared_rides"], a["boardings"], a["vehicles"]) == (2, [1, 2], [V1, "34 DEF 02"])
    assert (a["first_overlap"], a["last_overlap"]) == (
        "2024-03-01T09:10:00.000Z",
        "2024-03-01T10:55:00.000Z",
    )
    assert a["credential"]["status"] == "RISKLESS"
    assert contacts[world.b_card.hex()]["credential"]["status"] == "RISKY"
    assert contacts[world.f.hex()]["credential"] is None
    [logged] = await log_rows(harness)
    assert (logged["name"], logged["kind"], logged["format"], logged["outcome"]) == (
        "deniz",
        "trace",
        "json",
        "done",
    )
    assert logged["rows"] == 4
    assert logged["finished_at"] is not None
    assert logged["filters"] == {
        "index": "hes_code",
        "key": world.index.hex(),
        "from": "2024-03-01T10:00:00+03:00",
        "to": "2024-03-01T15:00:00+03:00",
        "window_min": 30,
        "linked": True,
    }


async def test_a_key_trace_with_a_window_and_without_linked_taps(harness: Harness) -> None:
    world = await world_of(harness)
    admin = await harness.operator(Role.ADMIN)
    resp = await post(
        harness, {"key": world.index.hex(), "window_min": 10, "linked": False, **RANGE}, admin
    )
    assert resp.status == 200
    answer = await resp.json()
    assert [b["time_ms"] for b in answer["boardings"]] == [T0]
    # A at +10 min is on the edge; D and B, half an hour off, are outside a 10-minute window.
    assert [c["key"] for c in answer["contacts"]] == [world.f.hex(), world.a.hex()]
    assert all("credential" not in c for c in answer["contacts"])


async def test_an_unknown_credential_is_an_empty_answer(harness: Harness) -> None:
    await world_of(harness)
    auditor = await harness.operator(Role.AUDITOR)
    resp = await post(harness, {"card_uid": "DEADBEEF", **RANGE}, auditor)
    assert resp.status == 200
    answer = await resp.json()
    assert answer["index"]["known"] is False
    assert (answer["boardings"], answer["contacts"]) == ([], [])
    [logged] = await log_rows(harness)
    assert (logged["kind"], logged["rows"], logged["outcome"]) == ("trace", 0, "done")
    assert logged["filters"]["index"] == "card_uid"
    assert "DEADBEEF" not in json.dumps(logged["filters"]).upper()


async def test_only_auditors_and_admins_may_trace(harness: Harness) -> None:
    body = {"key": other_key("x").hex(), **RANGE}
    missing = await post(harness, body, None)
    assert missing.status == 401
    assert (await missing.json())["error"] == "unauthorized"
    assert (await post(harness, body, "hgo_not_a_token")).status == 401
    ops = await harness.operator(Role.OPS)
    forbidden = await post(harness, body, ops)
    assert forbidden.status == 403
    assert (await forbidden.json())["error"] == "forbidden"
    assert (await post(harness, body, await harness.operator(Role.AUDITOR))).status == 200
    assert (await post(harness, body, await harness.operator(Role.ADMIN))).status == 200
    # A trace by GET would put the code in the URL.
    get = await harness.as_operator("/v1/trace", await harness.operator(Role.AUDITOR))
    assert get.status == 405
    assert [r["outcome"] for r in await log_rows(harness)] == ["done", "done"]


async def test_bad_requests_name_the_field_and_are_not_logged(harness: Harness) -> None:
    auditor = await harness.operator(Role.AUDITOR)
    for body, field in [
        ({"hes_code": "R7G6-9154", **RANGE}, "hes_code"),
        ({"hes_code": "R7G6915415", "key": "00" * 8, **RANGE}, "index"),
        ({"key": "00" * 8, "from": "2024-01-01", "to": "2024-03-01"}, "to"),
        ({"key": "00" * 8, "window_min": 600, **RANGE}, "window_min"),
        ({"key": "00" * 8}, "from"),
    ]:
        resp = await post(harness, body, auditor)
        assert resp.status == 400, body
        error = await resp.json()
        assert (error["error"], error["field"]) == ("malformed", field)
        assert "R7G6" not in error["message"]
    not_json = await harness.client.post(
        "/v1/trace", data=b"{hes_code", headers={"Authorization": f"Bearer {auditor}"}
    )
    assert not_json.status == 400
    assert (await not_json.json())["field"] == "body"
    huge = await post(harness, {"key": "00" * 8, "pad": "x" * 5000, **RANGE}, auditor)
    assert huge.status == 413
    assert await log_rows(harness) == []


async def test_too_many_boardings_or_contacts_is_413_and_logged_as_failed(
    harness: Harness,
) -> None:
    taps = TapLoader(harness.pool)
    busy, crowded = other_key("busy"), other_key("crowded")
    await taps.load(
        [taps.row("bus-1", T0 + i * 1000, busy, V1) for i in range(LIMITS.max_boardings + 1)]
        + [taps.row("bus-5", T0, crowded, "34 CRW 05")]
        + [
            taps.row("bus-5", T0 + 1 + i, other_key(f"rider-{i}"), "34 CRW 05")
            for i in range(LIMITS.max_contacts + 1)
        ]
    )
    auditor = await harness.operator(Role.AUDITOR)
    for key, limit, what in [
        (busy, LIMITS.max_boardings, "boardings"),
        (crowded, LIMITS.max_contacts, "contacts"),
    ]:
        resp = await post(harness, {"key": key.hex(), **RANGE}, auditor)
        assert resp.status == 413
        error = await resp.json()
        assert error["error"] == "too_large"
        assert error["limit"] == limit
        assert f"more than {limit} {what}" in error["message"]
        assert "narrow the time range" in error["message"]
    logged = await log_rows(harness)
    assert [(r["outcome"], r["rows"]) for r in logged] == [("failed", None), ("failed", None)]
    done = await post(harness, {"key": other_key("nobody").hex(), **RANGE}, auditor)
    assert done.status == 200
    metrics = await (await harness.client.get("/metrics")).text()
    assert 'hesgate_depot_traces_total{outcome="too_large"} 2.0' in metrics
    assert 'hesgate_depot_traces_total{outcome="done"} 1.0' in metrics


async def test_the_depot_page_points_auditors_to_the_trace(harness: Harness) -> None:
    page = await harness.client.get("/")
    assert "POST /v1/trace" in await page.text()
