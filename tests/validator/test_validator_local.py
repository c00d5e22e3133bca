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
from protocol.reasons import Reason
from protocol.risk import Groups, HealthStatus, local_day
from tests.validator.bus import Bench, bench, config_from, preload, provisioned_toml
from tests.validator.lists import (
    card_key,
    entry,
    hes_key,
    pretend_identity_unchanged,
    rewrite_byte,
    sealed_policy,
    status_offset,
)
from tests.validator.ptys import FakeCable, eventually
from validator.app import TAPS_DB
from validator.cli import main
from validator.config import ValidatorConfig
from validator.risklist import SNAPSHOT_NAME

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
    budget_us, reserve_us = 200_000, 40_000
    text = provisioned_toml(
        device_id="bus-0001",
        depot_url=f"http://127.0.0.1:{port}",
        signer=signer,
        scanner_port=cable.path,
        screen_port=0,
        data_dir=tmp_path / "data",
    ).replace(
        "[depot]\n",
        f"[depot]\nonline_budget_ms = {budget_us // 1000}\n"
        f"online_reserve_ms = {reserve_us // 1000}\n",
    )
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
            # The budget holds, frame in to answer: the check gave up with the
            # reserve (for the decision and the commit) still left.
            assert budget_us - reserve_us <= last["latency_us"] <= budget_us
            assert waited < 2.0
            assert (await b.status())["online_failures"] == 1

            # Two unknown codes read at once: the second waits for the first, and
            # that wait comes out of its own budget, not on top of it.
            cable.send(b"NOPE000010\rNOPE000011\r")
            await eventually(lambda: _taps(tmp_path) >= 3)
            db = sqlite3.connect(tmp_path / "data" / TAPS_DB)
            rows = db.execute("SELECT reason, latency_us FROM taps WHERE seq > 1").fetchall()
            db.close()
            assert [Reason(reason) for reason, _ in rows] == [Reason.UNKNOWN_OFFLINE] * 2
            first, second = (latency for _, latency in rows)
            assert budget_us - reserve_us <= first <= budget_us
            assert first <= second <= budget_us
            assert (await b.status())["online_failures"] == 3
    finally:
        hold.set()
        server.close()
        await server.wait_closed()


def _taps(tmp_path: Path) -> int:
    db = sqlite3.connect(tmp_path / "data" / TAPS_DB)
    try:
        count: int = db.execute("SELECT count(*) FROM taps").fetchone()[0]
    finally:
        db.close()
    return count


async def test_a_kept_list_changed_on_disk_is_refused_and_the_validator_says_so(
    tmp_path: Path, signer: ListSigner, cable: FakeCable, dead_depot_url: str
) -> None:
    data = tmp_path / "data"
    preload(data, signer, entries=LIST, version=7, policy=sealed_policy(signer))
    config = make_config(tmp_path, signer, cable, dead_depot_url)
    async with bench(config, cable) as b:
        assert (await b.tap(b"RISK000002\r"))["reason"] == "RISKY"
    # With the bus off, the risky code's record turns riskless, the times put back.
    keys = [e.key for e in LIST]
    risky = hes_key("RISK000002")
    offset = status_offset(keys, risky)
    rewrite_byte(data / SNAPSHOT_NAME, offset, int(HealthStatus.RISKLESS), keep_times=True)
    async with bench(config, cable) as b:
        status = await b.status()
        assert (status["list_version"], status["list_stale"]) == (0, True)
        assert "kept risk list refused" in status["list_problem"]
        assert any("out of date" in w["en"] for w in status["warnings"])
        # Not OK from the damaged list: unknown, and the depot is out of reach.
        last = await b.tap(b"RISK000002\r")
        assert (last["reason"], last["colour"]) == ("UNKNOWN_OFFLINE", "red")


async def test_a_kept_list_that_rotted_on_the_card_is_dropped_soon_after_start(
    tmp_path: Path, signer: ListSigner, cable: FakeCable, dead_depot_url: str
) -> None:
    data = tmp_path / "data"
    preload(data, signer, entries=LIST, version=7, policy=sealed_policy(signer))
    config = make_config(tmp_path, signer, cable, dead_depot_url)
    async with bench(config, cable):
        pass
    keys = [e.key for e in LIST]
    offset = status_offset(keys, hes_key("RISK000002"))
    rewrite_byte(data / SNAPSHOT_NAME, offset, int(HealthStatus.RISKLESS), keep_times=True)
    pretend_identity_unchanged(data)  # bits flipped under the file system
    async with bench(config, cable) as b:
        await eventually(lambda: not b.validator.risk_list.has_list)
        status = await b.status()
        assert "bad_body_hash" in status["list_problem"]
        last = await b.tap(b"RISK000002\r")
        assert (last["reason"], last["colour"]) == ("UNKNOWN_OFFLINE", "red")
