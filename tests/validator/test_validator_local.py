"""The validator with real frames through a pseudo-terminal, no depot reachable."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from protocol import tckn
from protocol.listsign import ListSigner
from protocol.messages import Behaviour, GroupRule
from protocol.risk import Groups, HealthStatus, local_day
from tests.validator.bus import Bench, bench, config_from, preload, provisioned_toml
from tests.validator.lists import card_key, entry, hes_key, sealed_policy
from tests.validator.ptys import FakeCable, eventually
from validator.app import TAPS_DB
from validator.cli import main
from validator.config import ValidatorConfig

TODAY = local_day(dt.datetime.now(dt.UTC))
OWNER = tckn.make("123456789")  # its last 3 digits are on the list
STRANGER = tckn.make("987654321")


@pytest.fixture
def signer() -> ListSigner:
    return ListSigner.generate("test-1")


def make_config(
    tmp_path: Path,
    signer: ListSigner,
    cable: FakeCable,
    depot_url: str,
    *,
    idle_s: float = 20.0,
    extra: str = "",
) -> ValidatorConfig:
    text = provisioned_toml(
        idle_s=idle_s,
        device_id="bus-0001",
        depot_url=depot_url,
        signer=signer,
        scanner_port=cable.path,
        screen_port=0,
        data_dir=tmp_path / "data",
        extra=extra,
    )
    return config_from(text, tmp_path / "validator.toml")


LIST = [
    entry(hes_key("GOOD000001"), last3=OWNER[-3:]),
    entry(hes_key("RISK000002"), HealthStatus.RISKY),
    entry(hes_key("OLDC000003"), expiry_day=TODAY - 1),
    entry(hes_key("SENR000004"), groups=Groups.AGE_65_PLUS),
    entry(card_key("0A0B0C0D")),
]
# 65+ riders barred at every hour: TIME_WINDOW whenever the test runs.
BARRED = [GroupRule(Groups.AGE_65_PLUS, [])]


@pytest.fixture
async def bus(
    tmp_path: Path, signer: ListSigner, cable: FakeCable, dead_depot_url: str
) -> AsyncIterator[Bench]:
    preload(
        tmp_path / "data",
        signer,
        entries=LIST,
        version=7,
        policy=sealed_policy(signer, rules=BARRED),
    )
    async with bench(make_config(tmp_path, signer, cable, dead_depot_url), cable) as b:
        yield b


@pytest.mark.parametrize(
    ("frame", "reason", "colour", "decided_by"),
    [
        (b"GOOD-0000-01\r", "OK", "green", "local_list"),
        (OWNER.encode() + b"|GOOD000001\r", "OK", "green", "local_list"),
        (STRANGER.encode() + b"|GOOD000001\r", "TCKN_MISMATCH", "red", "local_list"),
        (b"]Q1risk000002\r", "RISKY", "red", "local_list"),
        (b"OLDC000003\r", "EXPIRED", "red", "local_list"),
        (b"SENR000004\r", "TIME_WINDOW", "red", "local_list"),
        (b"CARD:0a0b0c0d\r", "OK", "green", "local_list"),
        (b"NOPE000009\r", "UNKNOWN_OFFLINE", "red", "offline_policy"),
        (b"CARD:01020304\r", "UNKNOWN_OFFLINE", "red", "offline_policy"),
        (b"R7G6\xc4\xb09154\r", "UNREADABLE", "yellow", "none"),
        (b"\x00\x01\x02\r", "UNREADABLE", "yellow", "none"),
    ],
)
async def test_reason_codes_from_real_frames(
    bus: Bench, frame: bytes, reason: str, colour: str, decided_by: str
) -> None:
    last = await bus.tap(frame)
    assert (last["reason"], last["colour"], last["decided_by"]) == (reason, colour, decided_by)
    assert last["seq"] == 1
    assert last["recorded"] is True
    assert last["tr"]
    assert last["en"]


async def test_every_tap_is_recorded_in_order(bus: Bench, tmp_path: Path) -> None:
    reasons = []
    for frame in (b"GOOD000001\r", b"RISK000002\r", b"garbage!\r"):
        reasons.append((await bus.tap(frame))["reason"])
    assert reasons == ["OK", "RISKY", "UNREADABLE"]
    db = sqlite3.connect(tmp_path / "data" / TAPS_DB)
    rows = db.execute(
        "SELECT seq, reason, method, key IS NULL, vehicle FROM taps ORDER BY seq"
    ).fetchall()
    db.close()
    assert [(r[0], r[1]) for r in rows] == [(1, 0), (2, 1), (3, 8)]
    assert rows[2][2] is None  # unreadable: no method...
    assert rows[2][3] == 1  # ...and no key


async def test_status_api_has_what_operations_need(bus: Bench) -> None:
    await bus.tap(b"RISK000002\r")
    status = await bus.status()
    assert status["last_decision"]["seq"] == 1
    assert status["last_decision"]["reason"] == "RISKY"
    assert status["last_decision"]["colour"] == "red"
    assert status["last_decision"]["decided_by"] == "local_list"
    assert status["backlog"] == 1
    assert status["list_version"] == 7
    assert isinstance(status["list_age_s"], int)
    assert status["online"] is False
    assert status["scanner_connected"] is True
    assert status["policy_version"] == 1


async def test_over_long_and_partial_frames_are_unreadable_then_resync(bus: Bench) -> None:
    last = await bus.tap(b"X" * 500 + b"\r")
    assert last["reason"] == "UNREADABLE"
    last = await bus.tap(b"GOOD000001\r")
    assert last["reason"] == "OK"


async def test_keypad_entry(bus: Bench) -> None:
    status, answer = await bus.keypad("good-0000-01", OWNER[-3:])
    assert status == 200
    assert (answer["reason"], answer["method"], answer["colour"]) == ("OK", "keypad", "green")
    status, answer = await bus.keypad("GOOD000001", STRANGER[-3:])
    assert answer["reason"] == "TCKN_MISMATCH"
    status, answer = await bus.keypad("GOOD000001", "791")  # odd: a typing error
    assert answer["reason"] == "UNREADABLE"
    assert "even" in answer["en"] or "çift" in answer["tr"]
    assert (await bus.status())["last_decision"]["seq"] == 3


async def test_keypad_refuses_what_is_not_a_keypad_entry(bus: Bench) -> None:
    async with bus.http.post(bus.url + "/api/keypad", data="code=X") as r:
        assert r.status == 415
    async with bus.http.post(bus.url + "/api/keypad", json={"code": 5, "tckn_last3": "000"}) as r:
        assert r.status == 400
        assert "code" in (await r.json())["error"]
    async with bus.http.post(
        bus.url + "/api/keypad", data=b"{", headers={"Content-Type": "application/json"}
    ) as r:
        assert r.status == 400
    assert (await bus.status())["last_decision"] is None


async def test_page_and_live_updates(bus: Bench) -> None:
    async with bus.http.get(bus.url + "/") as r:
        page = await r.text()
    assert "EventSource" not in page  # the script is separate
    assert 'id="keypad"' in page
    async with bus.http.get(bus.url + "/static/screen.js") as r:
        assert "EventSource" in await r.text()
    async with bus.http.get(bus.url + "/static/../app.py") as r:
        assert r.status == 404
    async with bus.http.get(bus.url + "/events") as events:
        assert events.headers["Content-Type"] == "text/event-stream"
        first = await _next_state(events)
        assert first["last_decision"] is None
        bus.cable.send(b"RISK000002\r")
        while True:
            state = await _next_state(events)
            if state["last_decision"] is not None:
                break
        assert state["view"] == "answer"
        assert state["last_decision"]["reason"] == "RISKY"
        assert state["last_decision"]["tr"] == "Riskli HES kodu: biniş yapılamaz"


async def _next_state(events: aiohttp.ClientResponse) -> dict[str, Any]:
    async with asyncio.timeout(10):
        event = None
        while True:
            line = (await events.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "state":
                data: dict[str, Any] = json.loads(line[6:])
                return data


async def test_screen_returns_to_start_after_idle(
    tmp_path: Path, signer: ListSigner, cable: FakeCable, dead_depot_url: str
) -> None:
    preload(tmp_path / "data", signer, entries=LIST, policy=sealed_policy(signer))
    async with bench(make_config(tmp_path, signer, cable, dead_depot_url, idle_s=0.3), cable) as b:
        await b.tap(b"GOOD000001\r")
        assert (await b.status())["view"] == "answer"
        await eventually(lambda: b.validator.board.view == "start")
        status = await b.status()
        assert status["view"] == "start"
        assert status["last_decision"]["reason"] == "OK"  # still reported, no longer shown


async def test_stale_list_under_policy(
    tmp_path: Path, signer: ListSigner, cable: FakeCable, dead_depot_url: str
) -> None:
    two_hours_ago = int((time.time() - 7200) * 1000)
    preload(
        tmp_path / "data",
        signer,
        entries=LIST,
        created_ms=two_hours_ago,
        policy=sealed_policy(signer, max_age_s=3600, stale=Behaviour.ALLOW_FLAGGED),
    )
    async with bench(make_config(tmp_path, signer, cable, dead_depot_url), cable) as b:
        assert (await b.status())["list_stale"] is True
        last = await b.tap(b"GOOD000001\r")
        assert (last["reason"], last["colour"], last["decision"]) == (
            "STALE_LIST",
            "yellow",
            "allow_flagged",
        )
        assert last["decided_by"] == "offline_policy"
        last = await b.tap(b"RISK000002\r")
        assert last["reason"] == "RISKY"  # a stale list still refuses what it knows is risky
        warnings = (await b.status())["warnings"]
        assert any("out of date" in w["en"] for w in warnings)


async def test_fresh_box_never_says_ok(
    tmp_path: Path, signer: ListSigner, cable: FakeCable, dead_depot_url: str
) -> None:
    async with bench(make_config(tmp_path, signer, cable, dead_depot_url), cable) as b:
        status = await b.status()
        assert (status["list_version"], status["policy_version"]) == (0, 0)
        assert status["list_age_s"] is None
        for frame in (b"GOOD000001\r", b"CARD:0A0B0C0D\r"):
            last = await b.tap(frame)
            assert (last["reason"], last["decision"]) == ("UNKNOWN_OFFLINE", "deny")


async def test_unplugged_scanner_shows_on_screen_and_comes_back(bus: Bench) -> None:
    bus.cable.unplug()
    await eventually(lambda: not bus.validator.scanner.state.connected)
    status = await bus.status()
    assert status["scanner_connected"] is False
    assert any("Reader not connected" in w["en"] for w in status["warnings"])
    bus.cable.plug()
    await eventually(lambda: bus.validator.scanner.state.connected)
    assert (await bus.tap(b"GOOD000001\r"))["reason"] == "OK"


async def test_status_command_for_a_person(bus: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    await bus.tap(b"RISK000002\r")
    assert await asyncio.to_thread(main, ["status", "--url", bus.url]) == 0
    out = capsys.readouterr().out
    assert "Validator bus-0001" in out
    assert "OFFLINE" in out
    assert "version 7" in out
    assert "1 waiting to upload" in out
    assert "#1 RISKY red by local_list" in out
    assert await asyncio.to_thread(main, ["status", "--json", "--url", bus.url]) == 0
    assert json.loads(capsys.readouterr().out)["last_decision"]["seq"] == 1


async def test_status_command_without_a_validator(
    capsys: pytest.CaptureFixture[str], dead_depot_url: str
) -> None:
    assert await asyncio.to_thread(main, ["status", "--url", dead_depot_url]) == 3
    assert "no validator answers" in capsys.readouterr().err


async def test_online_check_gives_up_within_budget_on_a_hung_depot(
    tmp_path: Path, signer: ListSigner, cable: FakeCable
) -> None:
    # A depot that takes the connection and never answers.
    hold = asyncio.Event()

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await hold.wait()
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    preload(
        tmp_path / "data",
        signer,
        entries=LIST,
        policy=sealed_policy(signer, offline=Behaviour.ALLOW_FLAGGED),
    )
    text = provisioned_toml(
        device_id="bus-0001",
        depot_url=f"http://127.0.0.1:{port}",
        signer=signer,
        scanner_port=cable.path,
        screen_port=0,
        data_dir=tmp_path / "data",
    ).replace("[depot]\n", "[depot]\nonline_budget_ms = 200\n")
    try:
        async with bench(config_from(text, tmp_path / "v.toml"), cable) as b:
            started = time.monotonic()
            last = await b.tap(b"NOPE000009\r")
            waited = time.monotonic() - started
            assert (last["reason"], last["decision"], last["colour"]) == (
                "UNKNOWN_OFFLINE",
                "allow_flagged",
                "yellow",
            )
            # The budget holds: the answer did not wait for the hung depot.
            assert 0.2 <= last["latency_us"] / 1e6 < 0.5
            assert waited < 2.0
            assert (await b.status())["online_failures"] == 1
    finally:
        hold.set()
        server.close()
        await server.wait_closed()
