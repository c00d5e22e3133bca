"""The whole system, small: real processes on loopback, real ptys, real QR codes, in CI.

The Ministry simulator, the depot (on the test PostgreSQL), two validators
(the second behind the cuttable proxy) and the passengers, for 24 seconds:
a rider turns RISKY at the Ministry at 1 s, the Ministry is out from 7 to
13 s, the second validator's link is cut from 10 to 17 s. Then every tap
recorded at a validator must be stored at the depot exactly once (checked
through the auditor export), each answer must be the simulator's truth at its
moment, and the outages may have changed answers only as the policy says.
STALE_LIST cannot happen here: the protocol's shortest list age is 60 s
(``make demo`` shows it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import pytest

from deploy.demo.audit import Allowances, AuditReport, audit
from deploy.demo.configs import DepotTuning, ValidatorTuning, policy_barring
from deploy.demo.passengers import Tap
from deploy.demo.scenario import EventKind, Run, RunResult, Scenario
from deploy.demo.stack import Stack, StackSpec, ValidatorSpec
from protocol.reasons import Decision, Reason
from tests.pg import PgCluster, unique_name

SCENARIO = Scenario(
    duration_s=24,
    change_at_s=1,
    ministry_down_s=7,
    ministry_up_s=13,
    cut_device="bus-2",
    cut_at_s=10,
    restore_by_s=17,
    pace_s=0.25,
    drain_timeout_s=30,
)


def between(taps: Sequence[Tap], start: float, end: float) -> list[Tap]:
    return [t for t in taps if start <= t.time_ms / 1000 <= end]


def within(taps: Sequence[Tap], *windows: tuple[float, float]) -> list[Tap]:
    return [t for t in taps if any(a <= t.time_ms / 1000 <= b for a, b in windows)]


@pytest.fixture(scope="module")
def played(
    postgres: PgCluster, tmp_path_factory: pytest.TempPathFactory
) -> tuple[RunResult, AuditReport]:
    """One run for every test of this module (it takes most of a minute)."""

    async def play(dsn: str, root: Path) -> tuple[RunResult, AuditReport]:
        spec = StackSpec(
            root=root,
            policy=policy_barring(dt.datetime.now(dt.UTC)),
            validators=(
                ValidatorSpec("bus-1", "34 HES 101", "500T"),
                ValidatorSpec("bus-2", "34 HES 102", "15F", behind_proxy=True),
            ),
            population_size=200,
            dsn=dsn,
            depot_tuning=DepotTuning(refresh_interval_s=2.0, recheck_after_s=2),
            validator_tuning=ValidatorTuning(
                sync_interval_s=2.0, backoff_max_s=2.0, upload_batch_age_s=1.0
            ),
        )
        async with aiohttp.ClientSession() as session, Stack(spec, session) as stack:
            result = await Run(stack, SCENARIO).play(asyncio.Event())
        return result, audit(result, stack.list_key, Allowances.of(spec))

    name = unique_name("e2e")
    dsn = postgres.create_database_sync(name)
    try:
        return asyncio.run(play(dsn, tmp_path_factory.mktemp("stack")))
    finally:
        postgres.drop_database_sync(name)


pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_every_tap_recorded_at_a_validator_is_stored_exactly_once(
    played: tuple[RunResult, AuditReport],
) -> None:
    result, report = played
    assert result.drained
    assert not result.unanswered
    rows = [(r["device"], r["seq"]) for r in result.exported]
    assert len(rows) == len(set(rows))  # nothing stored twice
    for device, last_seq in report.recorded.items():
        assert last_seq > 20
        assert sorted(s for d, s in rows if d == device) == list(range(1, last_seq + 1))
    assert report.taps == len(rows) == sum(report.recorded.values())
    assert [p for p in report.problems if "stored" in p or "export" in p] == []


def test_each_answer_is_the_simulators_truth_at_its_moment(
    played: tuple[RunResult, AuditReport],
) -> None:
    _, report = played
    assert report.problems == ()
    # Every reason a minute-long run can give, given.
    assert set(report.by_reason) == set(Reason) - {Reason.STALE_LIST}


def test_the_outages_changed_answers_only_as_the_policy_says(
    played: tuple[RunResult, AuditReport],
) -> None:
    result, _ = played
    timeline = result.timeline()
    ((down, up),) = timeline.windows(EventKind.MINISTRY_DOWN, EventKind.MINISTRY_UP)
    ((cut, restored),) = timeline.windows(EventKind.LINK_CUT, EventKind.LINK_RESTORED, "bus-2")
    offline = [t for t in result.taps if t.reason is Reason.UNKNOWN_OFFLINE]
    # The policy lets unknown credentials on, flagged, while the depot cannot vouch for them...
    assert {t.decision for t in offline} == {Decision.ALLOW_FLAGGED}
    # ...at the validator that still reaches the depot only while the Ministry is out...
    grace = 5.0
    at_bus_1 = [t for t in offline if t.device == "bus-1"]
    assert between(at_bus_1, down, up)
    assert at_bus_1 == between(at_bus_1, down, up + grace)
    # ...and at the cut-off one also while it is cut off.
    at_bus_2 = [t for t in offline if t.device == "bus-2"]
    assert between(at_bus_2, cut, restored)
    assert at_bus_2 == [
        t for t in at_bus_2 if down <= t.time_ms / 1000 <= max(up, restored) + grace
    ]


def test_a_status_changed_at_the_ministry_reaches_the_validators(
    played: tuple[RunResult, AuditReport],
) -> None:
    result, _ = played
    assert result.changing is not None
    person = result.world.people[result.changing]
    change = result.timeline().first(EventKind.STATUS_CHANGE)
    assert change is not None
    theirs = [
        t
        for t in result.taps
        if t.presented.hes_code == person.hes_code or t.presented.card_uid == person.card_uid
    ]
    assert {t.reason for t in theirs if t.time_ms / 1000 < change.at} <= {Reason.OK}
    assert any(t.reason is Reason.RISKY for t in theirs if t.time_ms / 1000 > change.at)
