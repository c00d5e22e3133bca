from __future__ import annotations

import pytest

from protocol.reasons import SCREEN, Colour, DecidedBy, Decision, Reason, colour_of


def test_reason_numbers_never_change() -> None:
    # Stored in every tap and sent on the wire: renumbering would rewrite history.
    assert {r.name: r.value for r in Reason} == {
        "OK": 0,
        "RISKY": 1,
        "EXPIRED": 2,
        "NOT_FOUND": 3,
        "TCKN_MISMATCH": 4,
        "TIME_WINDOW": 5,
        "UNKNOWN_OFFLINE": 6,
        "STALE_LIST": 7,
        "UNREADABLE": 8,
    }


def test_decision_and_decided_by_numbers_never_change() -> None:
    assert {d.name: d.value for d in Decision} == {"DENY": 0, "ALLOW": 1, "ALLOW_FLAGGED": 2}
    assert {d.name: d.value for d in DecidedBy} == {
        "LOCAL_LIST": 1,
        "ONLINE": 2,
        "OFFLINE_POLICY": 3,
        "NONE": 4,
    }


def test_colour_values_are_what_the_screen_uses() -> None:
    assert [c.value for c in Colour] == ["green", "yellow", "red"]


def test_every_reason_has_short_texts_in_both_languages() -> None:
    assert set(SCREEN) == set(Reason)
    for reason, text in SCREEN.items():
        assert 0 < len(text.tr) <= 64, reason
        assert 0 < len(text.en) <= 64, reason
        assert text.tr != text.en, reason


def test_turkish_texts_keep_their_letters() -> None:
    # Turkish written in plain ASCII letters reads wrong to riders.
    assert SCREEN[Reason.OK].tr == "İyi yolculuklar"
    assert "ü" in SCREEN[Reason.EXPIRED].tr
    assert "ı" in SCREEN[Reason.NOT_FOUND].tr


@pytest.mark.parametrize(
    ("reason", "colour"),
    [
        (Reason.OK, Colour.GREEN),
        (Reason.RISKY, Colour.RED),
        (Reason.EXPIRED, Colour.RED),
        (Reason.NOT_FOUND, Colour.RED),
        (Reason.TCKN_MISMATCH, Colour.RED),
        (Reason.TIME_WINDOW, Colour.RED),
        (Reason.UNKNOWN_OFFLINE, Colour.YELLOW),
        (Reason.STALE_LIST, Colour.YELLOW),
        (Reason.UNREADABLE, Colour.YELLOW),
    ],
)
def test_screen_colour_of_each_reason(reason: Reason, colour: Colour) -> None:
    assert SCREEN[reason].colour is colour


@pytest.mark.parametrize(
    ("reason", "decision", "colour"),
    [
        (Reason.OK, Decision.ALLOW, Colour.GREEN),
        (Reason.RISKY, Decision.DENY, Colour.RED),
        (Reason.NOT_FOUND, Decision.DENY, Colour.RED),
        # The policy decides what offline and stale mean: the colour follows the decision.
        (Reason.UNKNOWN_OFFLINE, Decision.ALLOW_FLAGGED, Colour.YELLOW),
        (Reason.UNKNOWN_OFFLINE, Decision.DENY, Colour.RED),
        (Reason.UNKNOWN_OFFLINE, Decision.ALLOW, Colour.GREEN),
        (Reason.STALE_LIST, Decision.ALLOW_FLAGGED, Colour.YELLOW),
        (Reason.STALE_LIST, Decision.DENY, Colour.RED),
        # Unreadable always asks to try again, whatever was recorded.
        (Reason.UNREADABLE, Decision.DENY, Colour.YELLOW),
        (Reason.UNREADABLE, Decision.ALLOW, Colour.YELLOW),
    ],
)
def test_colour_of_an_answer(reason: Reason, decision: Decision, colour: Colour) -> None:
    assert colour_of(reason, decision) is colour
