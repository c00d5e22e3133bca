"""The audit catches every kind of wrong: lost, doubled or altered taps, and wrong answers."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from deploy.demo.audit import audit
from deploy.demo.passengers import Tap
from deploy.demo.scenario import Event, EventKind
from protocol.reasons import DecidedBy, Decision, Reason
from tests.e2e.helpers import (
    ADULT,
    ALLOW,
    CHANGING,
    GARBAGE,
    LAPSED,
    LIST_KEY,
    OLD,
    RISKY,
    STRANGER,
    card,
    event,
    qr,
    result,
    row,
    tap,
    typed,
)

LOCAL, ONLINE, OFFLINE, NONE = (
    DecidedBy.LOCAL_LIST,
    DecidedBy.ONLINE,
    DecidedBy.OFFLINE_POLICY,
    DecidedBy.NONE,
)
# The Ministry is out from 20 s to 30 s; bus-2's link is cut from 5 s to 100 s.
OUTAGES = (
    event(20, EventKind.MINISTRY_DOWN),
    event(30, EventKind.MINISTRY_UP),
    event(5, EventKind.LINK_CUT, "bus-2"),
    event(100, EventKind.LINK_RESTORED, "bus-2"),
)


def problems(
    *taps: Tap, rows: Sequence[dict[str, Any]] | None = None, events: Sequence[Event] = OUTAGES
) -> tuple[str, ...]:
    return audit(result(taps, events=events, rows=rows), LIST_KEY, ALLOW).problems


def test_a_clean_run_has_no_problems_and_counts_by_reason() -> None:
    taps = [
        tap(1, 1, qr(ADULT), Reason.OK, LOCAL),
        tap(2, 2, card(RISKY), Reason.RISKY, LOCAL),
        tap(3, 3, qr(OLD), Reason.TIME_WINDOW, LOCAL),
        tap(4, 4, qr(LAPSED), Reason.EXPIRED, ONLINE),
        tap(5, 5, qr(STRANGER), Reason.OK, ONLINE),
        tap(6, 6, typed("NOBODY0000", "000"), Reason.NOT_FOUND, ONLINE),
        tap(7, 7, typed(ADULT.hes_code, "000"), Reason.TCKN_MISMATCH, LOCAL),
        tap(8, 8, GARBAGE, Reason.UNREADABLE, NONE),
    ]
    report = audit(result(taps, events=OUTAGES), LIST_KEY, ALLOW)
    assert report.problems == ()
    assert report.ok
    assert report.taps == report.exported == 8
    assert report.recorded == report.stored == {"bus-1": 8}
    assert report.by_reason[Reason.OK] == 2


def test_a_tap_stored_twice_is_found() -> None:
    taps = [tap(1, 1, qr(ADULT), Reason.OK, LOCAL), tap(2, 2, qr(ADULT), Reason.OK, LOCAL)]
    rows = [row(t) for t in taps] + [row(taps[1])]
    assert any("stored twice" in p for p in problems(*taps, rows=rows))


def test_a_tap_recorded_but_never_stored_is_found() -> None:
    taps = [tap(1, 1, qr(ADULT), Reason.OK, LOCAL), tap(2, 2, qr(ADULT), Reason.OK, LOCAL)]
    found = problems(*taps, rows=[row(taps[0])])
    assert any("recorded but not stored, first #2" in p for p in found)
    assert any("not in the auditor export" in p for p in found)


def test_a_stored_row_that_differs_from_the_answer_shown_is_found() -> None:
    shown = tap(1, 1, qr(ADULT), Reason.OK, LOCAL)
    altered = {**row(shown), "reason": "RISKY"}
    assert any("stored reason 'RISKY'" in p for p in problems(shown, rows=[altered]))
    wrong_key = {**row(shown), "key": "00" * 8}
    assert any("stored key" in p for p in problems(shown, rows=[wrong_key]))


def test_an_answer_other_than_the_truth_is_found() -> None:
    assert any(
        "answered OK, the truth is RISKY" in p
        for p in problems(tap(1, 1, card(RISKY), Reason.OK, LOCAL))
    )
    shown = tap(1, 1, qr(ADULT), Reason.OK, LOCAL, decision=Decision.DENY)
    assert any("OK with decision DENY" in p for p in problems(shown))


def test_unknown_offline_only_while_something_is_out_of_reach() -> None:
    unknown = typed("NOBODY0000", "000")
    assert problems(tap(1, 25, unknown, Reason.UNKNOWN_OFFLINE, OFFLINE)) == ()
    assert problems(tap(1, 50, unknown, Reason.UNKNOWN_OFFLINE, OFFLINE, device="bus-2")) == ()
    found = problems(tap(1, 50, unknown, Reason.UNKNOWN_OFFLINE, OFFLINE))
    assert any("both reachable" in p for p in found)


def test_a_card_does_not_need_the_ministry() -> None:
    stranger_card = dataclasses.replace(card(ADULT), card_uid="0000000000000A")
    found = problems(tap(1, 25, stranger_card, Reason.UNKNOWN_OFFLINE, OFFLINE))
    assert any("both reachable" in p for p in found)
    assert problems(tap(1, 25, stranger_card, Reason.NOT_FOUND, ONLINE)) == ()


def test_the_offline_answer_must_take_the_policys_decision() -> None:
    shown = tap(1, 25, qr(STRANGER), Reason.UNKNOWN_OFFLINE, OFFLINE, decision=Decision.DENY)
    assert any("the policy says ALLOW_FLAGGED" in p for p in problems(shown))


def test_nothing_is_answered_online_through_a_cut_link() -> None:
    found = problems(tap(1, 50, qr(STRANGER), Reason.OK, ONLINE, device="bus-2"))
    assert any("link to the depot was cut" in p for p in found)


def test_a_fresh_code_cannot_be_answered_online_while_the_ministry_is_out() -> None:
    found = problems(tap(1, 25, typed("NOBODY0000", "000"), Reason.NOT_FOUND, ONLINE))
    assert any("Ministry was out" in p for p in found)
    # Asked before the outage, the depot has the answer stored: it may give it.
    earlier = tap(1, 10, qr(STRANGER), Reason.OK, ONLINE)
    assert problems(earlier, tap(2, 25, qr(STRANGER), Reason.OK, ONLINE)) == ()


def test_stale_list_only_after_the_list_can_have_gone_stale() -> None:
    assert problems(tap(1, 70, qr(ADULT), Reason.STALE_LIST, OFFLINE, device="bus-2")) == ()
    early = problems(tap(1, 30, qr(ADULT), Reason.STALE_LIST, OFFLINE, device="bus-2"))
    assert any("cannot have been older" in p for p in early)
    never_cut = problems(tap(1, 70, qr(ADULT), Reason.STALE_LIST, OFFLINE))
    assert any("cannot have been older" in p for p in never_cut)
    refused = problems(tap(1, 70, card(RISKY), Reason.STALE_LIST, OFFLINE, device="bus-2"))
    assert any("truth refuses" in p for p in refused)


def test_a_status_change_may_take_until_it_can_have_reached_the_list() -> None:
    # CHANGING turns RISKY at 10 s; refresh (5 s) + sync (2 s) + 1 s: old answers end by 18 s.
    assert problems(tap(1, 12, card(CHANGING), Reason.OK, LOCAL)) == ()
    assert problems(tap(1, 12, card(CHANGING), Reason.RISKY, LOCAL)) == ()
    late = problems(tap(1, 19, card(CHANGING), Reason.OK, LOCAL))
    assert any("answered OK, the truth is RISKY" in p for p in late)
    before = problems(tap(1, 9, card(CHANGING), Reason.RISKY, LOCAL))
    assert any("answered RISKY, the truth is OK" in p for p in before)
    # bus-2 is cut from 5 s to 100 s: the change cannot reach it before it is back.
    assert problems(tap(1, 60, card(CHANGING), Reason.OK, LOCAL, device="bus-2")) == ()


def test_a_change_held_up_by_the_ministry_outage_has_longer() -> None:
    events = (event(12, EventKind.MINISTRY_DOWN), event(30, EventKind.MINISTRY_UP))
    assert problems(tap(1, 35, card(CHANGING), Reason.OK, LOCAL), events=events) == ()
    assert problems(tap(1, 50, card(CHANGING), Reason.OK, LOCAL), events=events) != ()
