"""The validator against the depot's real app on loopback (and a simulated Ministry)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web

from depot_sync.config import CheckSection, RiskListSection
from protocol.codec import decode, encode
from protocol.messages import Signed
from protocol.ministry.simulator import Faults
from protocol.risk import HealthStatus
from tests.depot_sync.helpers import code_of, seed_found
from tests.depot_sync.ministry.sim import person, simulated_ministry
from tests.pg import PgCluster, unique_name
from tests.validator.bus import Bench, bench, config_from, on_the_bus
from tests.validator.depot import Handler, LiveDepot, live_depot
from tests.validator.ptys import FakeCable, eventually
from validator.config import SyncSection, ValidatorConfig
from validator.depot_client import BadAnswer, DepotClient
from validator.listsync import ListSync
from validator.risklist import RiskList

#: Quick rounds for tests: a bus would use the defaults.
FAST = """
[sync]
delta_interval_s = 0.3
policy_interval_s = 0.5
heartbeat_interval_s = 0.3
backoff_initial_s = 0.05
backoff_max_s = 0.3

[upload]
batch_age_s = 0.1
backoff_initial_s = 0.05
backoff_max_s = 0.3
"""

CURFEW = """
version = 5
timezone = "Europe/Istanbul"
offline_unknown = "allow_flagged"
stale_list = "deny"
max_list_age_s = 3600

[[rules]]
group = "65+"
windows = []
"""


async def bus_config(
    depot: LiveDepot, tmp_path: Path, cable: FakeCable, *, device: str = "bus-0001", extra: str = ""
) -> ValidatorConfig:
    printed = await depot.provision(device)
    text = on_the_bus(
        printed,
        scanner_port=cable.path,
        screen_port=0,
        data_dir=tmp_path / "validator",
        extra=FAST + extra,
    )
    return config_from(text, tmp_path / "validator.toml")


async def test_taps_online_checks_list_and_uploads(
    pool: asyncpg.Pool, tmp_path: Path, cable: FakeCable
) -> None:
    people = [
        person("GOOD000001", tckn_first9="123456789"),
        person("RISK000001", status=HealthStatus.RISKY),
        person("EXP1RED000", expires_in=-dt.timedelta(days=2)),
    ]
    async with (
        simulated_ministry(people) as (_, ministry),
        live_depot(pool, tmp_path, ministry=ministry, policy_toml=CURFEW) as depot,
    ):
        await seed_found(pool, depot.depot.cipher, depot.list_key, range(3))
        await depot.publish()
        config = await bus_config(depot, tmp_path, cable)
        async with bench(config, cable) as b:
            # Bootstrap: snapshot, deltas, policy, all verified.
            await eventually(lambda: b.validator.risk_list.version > 0)
            await eventually(lambda: b.validator.policy.current.version == 5)
            status = await b.status()
            assert status["online"] is True
            assert status["list_stale"] is False

            assert (await b.tap(code_of(1).encode() + b"\r"))["decided_by"] == "local_list"
            answers = {
                code: await b.tap(code.encode() + b"\r")
                for code in ("GOOD000001", "RISK000001", "NOSUCHCODE", "EXP1RED000")
            }
            assert {c: (a["reason"], a["decided_by"]) for c, a in answers.items()} == {
                "GOOD000001": ("OK", "online"),
                "RISK000001": ("RISKY", "online"),
                "NOSUCHCODE": ("NOT_FOUND", "online"),
                "EXP1RED000": ("EXPIRED", "online"),
            }
            # The depot added what it learnt; the next delta brings it to the list.
            await eventually(lambda: _listed(b, depot, "GOOD000001", "RISK000001"))
            again = await b.tap(b"RISK000001\r")
            assert (again["reason"], again["decided_by"]) == ("RISKY", "local_list")
            # The keypad's T.C. digits are checked against what the Ministry said.
            _, typed = await b.keypad("GOOD000001", "000")
            assert (typed["reason"], typed["decided_by"]) == ("TCKN_MISMATCH", "local_list")
            _, typed = await b.keypad("GOOD000001", "950")
            assert (typed["reason"], typed["decided_by"]) == ("OK", "local_list")

            # Every tap reaches the depot, once, and the queue knows it.
            last_seq = b.validator.queue.last_seq
            assert last_seq == 8
            await eventually(lambda: b.validator.queue.acked == last_seq)
            assert await depot.stored_seqs("bus-0001") == list(range(1, last_seq + 1))
            assert (await b.status())["backlog"] == 0

            # And the heartbeat told the depot how the bus is doing.
            row = await _heartbeat_reporting(pool, "bus-0001", last_seq)
            assert row["list_version"] == b.validator.risk_list.version
            assert row["policy_version"] == 5
            assert row["software"].startswith("hesgate-validator/")
            assert abs(row["clock_skew_ms"]) < 5000


def _listed(b: Bench, depot: LiveDepot, *codes: str) -> bool:
    return all(b.validator.risk_list.lookup(depot.key(c)) is not None for c in codes)


async def _heartbeat_reporting(pool: asyncpg.Pool, device: str, last_seq: int) -> asyncpg.Record:
    """The device's stored heartbeat, once one reports ``last_seq``."""
    async with asyncio.timeout(10):
        while True:
            row = await pool.fetchrow("SELECT * FROM device_status WHERE device_id = $1", device)
            if row is not None and row["last_seq"] >= last_seq:
                return row
            await asyncio.sleep(0.05)


def with_budget(config_text: str, budget_ms: int, reserve_ms: int) -> str:
    return config_text.replace(
        "[depot]\n",
        f"[depot]\nonline_budget_ms = {budget_ms}\nonline_reserve_ms = {reserve_ms}\n",
        1,
    )


async def test_slow_depot_is_not_waited_for_past_the_budget(
    pool: asyncpg.Pool, tmp_path: Path, cable: FakeCable
) -> None:
    async with (
        simulated_ministry([person("SLOW000001")]) as (sim, ministry),
        live_depot(
            pool,
            tmp_path,
            ministry=ministry,
            policy_toml=CURFEW,
            check=CheckSection(budget_ms=3000),
        ) as depot,
    ):
        await seed_found(pool, depot.depot.cipher, depot.list_key, range(3))
        await depot.publish()
        printed = with_budget(await depot.provision("bus-0001"), 200, 40)
        text = on_the_bus(
            printed, scanner_port=cable.path, screen_port=0, data_dir=tmp_path / "v", extra=FAST
        )
        async with bench(config_from(text, tmp_path / "v.toml"), cable) as b:
            await eventually(lambda: b.validator.policy.current.version == 5)
            sim.faults.set(Faults(latency_min_s=2.0, latency_max_s=2.0))
            started = time.monotonic()
            last = await b.tap(b"SLOW000001\r")
            assert time.monotonic() - started < 2.0
            assert (last["reason"], last["decision"], last["colour"], last["decided_by"]) == (
                "UNKNOWN_OFFLINE",
                "allow_flagged",
                "yellow",
                "offline_policy",
            )
            # Frame in to answer within the budget, the reserve left for the commit.
            assert 160_000 <= last["latency_us"] <= 200_000
            status = await b.status()
            assert status["online_failures"] == 1
            # The Ministry recovers: the same code is checked online again, and passes.
            sim.faults.set(Faults())
            await eventually(lambda: _listed(b, depot, "SLOW000001"), within=15)
            assert (await b.tap(b"SLOW000001\r"))["reason"] == "OK"


async def test_tampered_delta_and_snapshot_are_refused_and_the_old_list_serves(
    pool: asyncpg.Pool, tmp_path: Path, cable: FakeCable
) -> None:
    switches = {"tamper_delta": False, "outage": False}

    async def middleman(request: web.Request, handler: Handler) -> web.StreamResponse:
        if switches["outage"]:
            raise web.HTTPServiceUnavailable(headers={"Retry-After": "0"})
        response = await handler(request)
        if switches["tamper_delta"] and request.path == "/v1/risklist/delta":
            assert isinstance(response, web.Response)
            assert response.body is not None
            envelope = decode(Signed, bytes(response.body))  # type: ignore[arg-type]
            body = bytearray(envelope.body)
            body[len(body) // 2] ^= 0x01
            tampered = encode(dataclasses.replace(envelope, body=bytes(body)))
            return web.Response(body=tampered, content_type=response.content_type)
        return response

    async with live_depot(
        pool,
        tmp_path,
        policy_toml=CURFEW,
        middlewares=(middleman,),
        risklist=RiskListSection(keep_snapshots=1, snapshot_interval_s=0, max_shrink_fraction=1),
    ) as depot:
        field = depot.depot.cipher
        await seed_found(pool, field, depot.list_key, range(3))
        await depot.publish()
        async with bench(await bus_config(depot, tmp_path, cable), cable) as b:
            await eventually(lambda: _listed(b, depot, code_of(0)))

            # A delta changed on the way is refused whole; the list stays as it was.
            switches["tamper_delta"] = True
            version = b.validator.risk_list.version
            await seed_found(pool, field, depot.list_key, [10], status=HealthStatus.RISKY)
            await eventually(lambda: "delta refused" in (b.validator.list_sync.problem or ""))
            assert b.validator.risk_list.version == version
            assert not _listed(b, depot, code_of(10))
            assert (await b.status())["list_problem"].startswith("delta refused")
            switches["tamper_delta"] = False
            await eventually(lambda: _listed(b, depot, code_of(10)))

            # A new snapshot moves the horizon past the validator (410), and its file is
            # corrupted on the depot's disk: the download is refused, the old list serves.
            switches["outage"] = True
            await eventually(lambda: not b.validator.client.online)
            await seed_found(pool, field, depot.list_key, range(20, 25))
            await depot.publish()
            published = await depot.latest()
            good = published.path.read_bytes()
            bad = bytearray(good)
            bad[-20] ^= 0x04
            published.path.write_bytes(bytes(bad))
            switches["outage"] = False
            await eventually(lambda: "snapshot refused" in (b.validator.list_sync.problem or ""))
            last = await b.tap(code_of(10).encode() + b"\r")
            assert (last["reason"], last["decided_by"]) == ("RISKY", "local_list")
            assert not _listed(b, depot, code_of(20))
            assert b.validator.risk_list.snapshot_version < published.list_version

            # The good file back: the snapshot is taken and the list catches up.
            published.path.write_bytes(good)
            await eventually(
                lambda: b.validator.risk_list.snapshot_version == published.list_version
            )
            assert _listed(b, depot, code_of(20), code_of(10), code_of(0))
            await eventually(lambda: b.validator.list_sync.problem is None)


async def test_interrupted_snapshot_download_resumes_with_range(
    pool: asyncpg.Pool, tmp_path: Path, cable: FakeCable
) -> None:
    asked: list[tuple[str | None, str | None, int]] = []

    async def watch(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.path == "/v1/risklist/snapshot":
            asked.append(
                (request.headers.get("Range"), request.headers.get("If-Range"), response.status)
            )
        return response

    async with live_depot(pool, tmp_path, policy_toml=CURFEW, middlewares=(watch,)) as depot:
        await seed_found(pool, depot.depot.cipher, depot.list_key, range(2000))
        await depot.publish()
        published = await depot.latest()
        half = published.size_bytes // 2
        data_dir = tmp_path / "validator"
        data_dir.mkdir()
        # What a download cut off half-way left behind.
        (data_dir / "risklist.snapshot.part").write_bytes(published.path.read_bytes()[:half])
        (data_dir / "risklist.snapshot.part.etag").write_text(published.etag)
        async with bench(await bus_config(depot, tmp_path, cable), cable) as b:
            await eventually(
                lambda: b.validator.risk_list.snapshot_version == published.list_version
            )
            assert asked[0] == (f"bytes={half}-", published.etag, 206)
            assert _listed(b, depot, *(code_of(n) for n in range(0, 2000, 97)))
            assert not (data_dir / "risklist.snapshot.part").exists()


async def test_wrong_clock_still_syncs_and_is_flagged(
    pool: asyncpg.Pool, tmp_path: Path, cable: FakeCable
) -> None:
    async with live_depot(pool, tmp_path, policy_toml=CURFEW) as depot:
        await seed_found(pool, depot.depot.cipher, depot.list_key, range(3))
        await depot.publish()
        ten_minutes_fast = lambda: time.time() + 600  # noqa: E731
        config = await bus_config(depot, tmp_path, cable)
        async with bench(config, cable, clock=ten_minutes_fast) as b:
            # The first request is refused (time out of window); its Date header
            # fixes the signatures' time, and the validator gets through.
            await eventually(lambda: b.validator.risk_list.version > 0)
            await eventually(lambda: b.validator.policy.current.version == 5)
            status = await b.status()
            assert status["clock_skew_flagged"] is True
            assert 595 <= status["clock_skew_s"] <= 605
            assert any("clock" in w["en"] for w in status["warnings"])
            await b.tap(code_of(1).encode() + b"\r")
            await eventually(lambda: b.validator.queue.acked == 1)
            row = await _heartbeat_reporting(pool, "bus-0001", 1)
            assert 590_000 <= row["clock_skew_ms"] <= 610_000


async def test_rebuilt_depot_list_replaces_the_validators(
    pool: asyncpg.Pool,
    postgres: PgCluster,
    depot_template: str,
    tmp_path: Path,
    cable: FakeCable,
) -> None:
    data_dir = tmp_path / "validator"
    async with live_depot(pool, tmp_path, policy_toml=CURFEW) as old:
        await seed_found(pool, old.depot.cipher, old.list_key, range(20))
        for n in range(20, 40):  # many versions on the old depot
            await seed_found(pool, old.depot.cipher, old.list_key, [n])
        await old.publish()
        async with bench(await bus_config(old, tmp_path, cable), cable) as b:
            await eventually(lambda: _listed(b, old, code_of(39)))
            old_version = b.validator.risk_list.version

    # The depot is rebuilt on an empty database with the same keys; the bus is
    # provisioned again. Its list is ahead of everything the new depot has.
    name = unique_name("rebuilt")
    fresh = await asyncpg.create_pool(
        await postgres.create_database(name, template=depot_template), min_size=1, max_size=4
    )
    try:
        async with live_depot(fresh, tmp_path, again=old) as new:
            await seed_found(fresh, new.depot.cipher, new.list_key, range(100, 103))
            await new.publish()
            assert (await new.latest()).list_version < old_version
            text = on_the_bus(
                await new.provision("bus-0001"),
                scanner_port=cable.path,
                screen_port=0,
                data_dir=data_dir,
                extra=FAST,
            )
            async with bench(config_from(text, tmp_path / "v2.toml"), cable) as b:
                await eventually(lambda: _listed(b, new, code_of(100)))
                assert not _listed(b, new, code_of(0))
                assert b.validator.risk_list.version < old_version
                assert b.validator.list_sync.problem is None
    finally:
        await fresh.close()
        await postgres.drop_database(name)


async def test_delta_poll_at_the_depots_version_is_answered_304(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    polls: list[tuple[str | None, int, str | None]] = []
    switches = {"wrong_etag": False}

    async def watch(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.path == "/v1/risklist/delta":
            if switches["wrong_etag"] and response.status == 304:
                response = web.Response(status=304, headers={"ETag": '"v0"'})
            polls.append(
                (
                    request.headers.get("If-None-Match"),
                    response.status,
                    response.headers.get("ETag"),
                )
            )
        return response

    async with live_depot(pool, tmp_path, policy_toml=CURFEW, middlewares=(watch,)) as depot:
        field = depot.depot.cipher
        await seed_found(pool, field, depot.list_key, range(3))
        await depot.publish()
        secret = await depot.enrol("bus-0001")
        client = DepotClient(base_url=depot.url, device_id="bus-0001", secret=secret)
        risk_list = RiskList(tmp_path / "v", depot.signer.verifier())
        await risk_list.load()
        sync = ListSync(
            client=client, risk_list=risk_list, data_dir=tmp_path / "v", config=SyncSection()
        )
        try:
            await sync.sync_once()  # the snapshot, then the polls up to the depot's head
            head = risk_list.version
            assert head > 0
            assert polls[-1] == (f'"v{head}"', 304, f'"v{head}"')

            # Nothing new: 304, no page; the list counts as current from now.
            polls.clear()
            now_ms = int(time.time() * 1000) + 60_000
            age = risk_list.age_s(now_ms)
            await asyncio.sleep(0.05)
            await sync.fetch_deltas()
            assert polls == [(f'"v{head}"', 304, f'"v{head}"')]
            assert risk_list.version == head
            after = risk_list.age_s(now_ms)
            assert age is not None
            assert after is not None
            assert after < age

            # A change at the depot: the same conditional poll gets the page.
            polls.clear()
            await seed_found(pool, field, depot.list_key, [7], status=HealthStatus.RISKY)
            await sync.fetch_deltas()
            assert polls[0][:2] == (f'"v{head}"', 200)
            entry = risk_list.lookup(depot.key(code_of(7)))
            assert entry is not None
            assert entry.status is HealthStatus.RISKY
            assert risk_list.version > head

            # A 304 that does not name the version asked about is not taken as "current".
            switches["wrong_etag"] = True
            fresh = risk_list.age_s(now_ms)
            await asyncio.sleep(0.05)
            with pytest.raises(BadAnswer, match="304"):
                await sync.fetch_deltas()
            assert risk_list.age_s(now_ms) == fresh
        finally:
            await client.close()
            await risk_list.close()
