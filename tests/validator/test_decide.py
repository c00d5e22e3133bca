from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.credentials import Credential, ReadMethod
from protocol.messages import (
    PROTOCOL_VERSION,
    Behaviour,
    CheckAnswer,
    CheckOutcome,
    GroupRule,
    Policy,
    TimeWindow,
)
from protocol.reasons import Colour, DecidedBy, Decision, Reason
from protocol.risk import ISTANBUL, Groups, HealthStatus, ListEntry, day_number
from validator.decide import (
    DEFAULT_POLICY,
    decide_local,
    decide_offline,
    decide_online,
    judge,
    list_is_stale,
)

KEY = b"\x01" * 8
QR = Credential(ReadMethod.QR, "R7G6915415")
TYPED = Credential(ReadMethod.KEYPAD, "R7G6915415", "792")
# 2024-03-04 is a Monday.
MONDAY = dt.date(2024, 3, 4)


def istanbul(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=ISTANBUL)


def policy(
    *,
    rules: list[GroupRule] | None = None,
    offline: Behaviour = Behaviour.DENY,
    stale: Behaviour = Behaviour.DENY,
) -> Policy:
    return Policy(
        v=PROTOCOL_VERSION,
        version=3,
        issued_ms=0,
        timezone="Europe/Istanbul",
        rules=rules or [],
        offline_unknown=offline,
        stale_list=stale,
        max_list_age_s=3600,
    )


CURFEW = policy(
    rules=[
        # 65+ may ride 10:00-13:00 on weekdays; under-20 13:00-16:00 every day.
        GroupRule(Groups.AGE_65_PLUS, [TimeWindow([0, 1, 2, 3, 4], 600, 780)]),
        GroupRule(Groups.UNDER_20, [TimeWindow([0, 1, 2, 3, 4, 5, 6], 780, 960)]),
    ]
)


def entry(
    *,
    status: HealthStatus = HealthStatus.RISKLESS,
    expiry: dt.date | None = None,
    last3: str | None = "792",
    groups: Groups = Groups.NONE,
) -> ListEntry:
    return ListEntry(
        key=KEY,
        status=status,
        expiry_day=None if expiry is None else day_number(expiry),
        tckn_last3=last3,
        groups=groups,
    )


NOON = istanbul(MONDAY, 12)


def test_riskless_code_boards_green() -> None:
    verdict = decide_local(entry(), QR, CURFEW, NOON, stale=False)
    assert (verdict.reason, verdict.decision, verdict.decided_by) == (
        Reason.OK,
        Decision.ALLOW,
        DecidedBy.LOCAL_LIST,
    )
    assert verdict.colour is Colour.GREEN


def test_tckn_mismatch_comes_before_risky() -> None:
    wrong = Credential(ReadMethod.KEYPAD, "R7G6915415", "790")
    risky = entry(status=HealthStatus.RISKY)
    assert judge(risky, wrong, CURFEW, NOON) is Reason.TCKN_MISMATCH
    assert judge(risky, TYPED, CURFEW, NOON) is Reason.RISKY


def test_entry_without_digits_cannot_mismatch() -> None:
    assert judge(entry(last3=None), TYPED, CURFEW, NOON) is Reason.OK


def test_risky_comes_before_expired_before_time_window() -> None:
    yesterday = MONDAY - dt.timedelta(days=1)
    old_risky = entry(status=HealthStatus.RISKY, expiry=yesterday, groups=Groups.AGE_65_PLUS)
    assert judge(old_risky, QR, CURFEW, istanbul(MONDAY, 20)) is Reason.RISKY
    old = entry(expiry=yesterday, groups=Groups.AGE_65_PLUS)
    assert judge(old, QR, CURFEW, istanbul(MONDAY, 20)) is Reason.EXPIRED


def test_expiry_day_is_istanbul_local() -> None:
    valid_today = entry(expiry=MONDAY)
    # 23:30 in Istanbul is 20:30 UTC the same day: still valid.
    assert judge(valid_today, QR, CURFEW, istanbul(MONDAY, 23, 30)) is Reason.OK
    # 00:10 the next day in Istanbul is still Monday in UTC: expired all the same.
    after_midnight = istanbul(MONDAY + dt.timedelta(days=1), 0, 10)
    assert after_midnight.astimezone(dt.UTC).date() == MONDAY
    assert judge(valid_today, QR, CURFEW, after_midnight) is Reason.EXPIRED


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (istanbul(MONDAY, 9, 59), Reason.TIME_WINDOW),
        (istanbul(MONDAY, 10, 0), Reason.OK),
        (istanbul(MONDAY, 12, 59), Reason.OK),
        (istanbul(MONDAY, 13, 0), Reason.TIME_WINDOW),
        # Saturday is not in the 65+ weekdays.
        (istanbul(MONDAY + dt.timedelta(days=5), 11), Reason.TIME_WINDOW),
    ],
)
def test_age_group_hours_in_istanbul(when: dt.datetime, expected: Reason) -> None:
    assert judge(entry(groups=Groups.AGE_65_PLUS), QR, CURFEW, when) is expected


def test_time_window_uses_local_time_not_utc() -> None:
    # 10:30 in Istanbul is 07:30 UTC: inside the window only if read in Istanbul.
    when = istanbul(MONDAY, 10, 30).astimezone(dt.UTC)
    assert judge(entry(groups=Groups.AGE_65_PLUS), QR, CURFEW, when) is Reason.OK


def test_rider_in_two_groups_needs_both_windows() -> None:
    both = entry(groups=Groups.AGE_65_PLUS | Groups.UNDER_20)
    assert judge(both, QR, CURFEW, istanbul(MONDAY, 11)) is Reason.TIME_WINDOW
    assert judge(entry(groups=Groups.UNDER_20), QR, CURFEW, istanbul(MONDAY, 14)) is Reason.OK


def test_group_without_rule_rides_any_time() -> None:
    assert judge(entry(groups=Groups.UNDER_20), QR, policy(), istanbul(MONDAY, 3)) is Reason.OK


def test_rule_without_windows_bars_the_group() -> None:
    barred = policy(rules=[GroupRule(Groups.AGE_65_PLUS, [])])
    assert judge(entry(groups=Groups.AGE_65_PLUS), QR, barred, NOON) is Reason.TIME_WINDOW


def test_overnight_window_runs_into_next_day() -> None:
    night = policy(rules=[GroupRule(Groups.UNDER_20, [TimeWindow([4], 1320, 120)])])  # Fri 22-02
    friday = MONDAY + dt.timedelta(days=4)
    young = entry(groups=Groups.UNDER_20)
    assert judge(young, QR, night, istanbul(friday, 23)) is Reason.OK
    assert judge(young, QR, night, istanbul(friday + dt.timedelta(days=1), 1)) is Reason.OK
    assert judge(young, QR, night, istanbul(friday + dt.timedelta(days=1), 3)) is Reason.TIME_WINDOW
    assert judge(young, QR, night, istanbul(friday, 21)) is Reason.TIME_WINDOW


@pytest.mark.parametrize(
    ("behaviour", "decision", "colour"),
    [
        (Behaviour.ALLOW_FLAGGED, Decision.ALLOW_FLAGGED, Colour.YELLOW),
        (Behaviour.DENY, Decision.DENY, Colour.RED),
    ],
)
def test_stale_list_does_not_let_on_by_itself(
    behaviour: Behaviour, decision: Decision, colour: Colour
) -> None:
    verdict = decide_local(entry(), QR, policy(stale=behaviour), NOON, stale=True)
    assert verdict.reason is Reason.STALE_LIST
    assert verdict.decision is decision
    assert verdict.decided_by is DecidedBy.OFFLINE_POLICY
    assert verdict.colour is colour


def test_stale_list_refusal_stands() -> None:
    lenient = policy(stale=Behaviour.ALLOW_FLAGGED)
    verdict = decide_local(entry(status=HealthStatus.RISKY), QR, lenient, NOON, stale=True)
    assert (verdict.reason, verdict.decision) == (Reason.RISKY, Decision.DENY)


def test_list_staleness() -> None:
    assert list_is_stale(None, CURFEW)
    assert not list_is_stale(3600, CURFEW)
    assert list_is_stale(3601, CURFEW)


def answer(outcome: CheckOutcome, status: HealthStatus | None = None, **kw: object) -> CheckAnswer:
    fields: dict[str, object] = {
        "v": PROTOCOL_VERSION,
        "outcome": outcome,
        "status": status,
        "expiry_day": None,
        "tckn_last3": None,
        "groups": Groups.NONE,
        "list_version": 9,
    }
    fields.update(kw)
    return CheckAnswer(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("reply", "reason", "decision", "by"),
    [
        (answer(CheckOutcome.NOT_FOUND), Reason.NOT_FOUND, Decision.DENY, DecidedBy.ONLINE),
        (answer(CheckOutcome.EXPIRED), Reason.EXPIRED, Decision.DENY, DecidedBy.ONLINE),
        (
            answer(CheckOutcome.FOUND, HealthStatus.RISKLESS),
            Reason.OK,
            Decision.ALLOW,
            DecidedBy.ONLINE,
        ),
        (
            answer(CheckOutcome.FOUND, HealthStatus.RISKY),
            Reason.RISKY,
            Decision.DENY,
            DecidedBy.ONLINE,
        ),
        (
            answer(CheckOutcome.FOUND, HealthStatus.RISKLESS, tckn_last3="000"),
            Reason.TCKN_MISMATCH,
            Decision.DENY,
            DecidedBy.ONLINE,
        ),
        (
            answer(CheckOutcome.UNAVAILABLE),
            Reason.UNKNOWN_OFFLINE,
            Decision.ALLOW_FLAGGED,
            DecidedBy.OFFLINE_POLICY,
        ),
        # FOUND without a status is never read as riskless.
        (
            answer(CheckOutcome.FOUND, None),
            Reason.UNKNOWN_OFFLINE,
            Decision.ALLOW_FLAGGED,
            DecidedBy.OFFLINE_POLICY,
        ),
    ],
)
def test_online_answers(
    reply: CheckAnswer, reason: Reason, decision: Decision, by: DecidedBy
) -> None:
    verdict = decide_online(reply, TYPED, policy(offline=Behaviour.ALLOW_FLAGGED), NOON)
    assert (verdict.reason, verdict.decision, verdict.decided_by) == (reason, decision, by)


def test_default_policy_refuses_what_it_cannot_check() -> None:
    verdict = decide_offline(DEFAULT_POLICY)
    assert (verdict.reason, verdict.decision, verdict.colour) == (
        Reason.UNKNOWN_OFFLINE,
        Decision.DENY,
        Colour.RED,
    )
    stale = decide_local(entry(), QR, DEFAULT_POLICY, NOON, stale=True)
    assert stale.decision is Decision.DENY


@given(
    status=st.sampled_from(HealthStatus),
    expiry=st.none() | st.integers(19000, 21000),
    last3=st.none() | st.sampled_from(["792", "000"]),
    given_last3=st.none() | st.sampled_from(["792", "000"]),
    groups=st.sampled_from([Groups(g) for g in range(4)]),
    stale=st.booleans(),
    when=st.datetimes(
        min_value=dt.datetime(2020, 1, 1),
        max_value=dt.datetime(2030, 1, 1),
        timezones=st.just(dt.UTC),
    ),
)
def test_only_ok_from_a_fresh_list_lets_on_unflagged(
    status: HealthStatus,
    expiry: int | None,
    last3: str | None,
    given_last3: str | None,
    groups: Groups,
    stale: bool,
    when: dt.datetime,
) -> None:
    e = ListEntry(KEY, status, expiry, last3, groups)
    cred = Credential(ReadMethod.KEYPAD, "R7G6915415", given_last3)
    verdict = decide_local(e, cred, policy(stale=Behaviour.ALLOW_FLAGGED), when, stale=stale)
    if verdict.decision is Decision.ALLOW:
        assert verdict.reason is Reason.OK
        assert not stale
    if status is HealthStatus.RISKY:
        assert verdict.decision is Decision.DENY
    if given_last3 is not None and last3 is not None and given_last3 != last3:
        assert verdict.reason is Reason.TCKN_MISMATCH
