"""The simulator's truth: which reason each credential deserves, and when."""

from __future__ import annotations

import datetime as dt

import pytest

from deploy.demo.configs import DemoPolicy
from deploy.demo.world import (
    Medium,
    Presented,
    World,
    WorldError,
    registration_csv,
    registration_rows,
)
from protocol.reasons import Reason
from protocol.risk import ISTANBUL
from tests.e2e.helpers import (
    ADULT,
    CHANGING,
    GARBAGE,
    LAPSED,
    NOW,
    OLD,
    RISKY,
    STRANGER,
    YOUNG,
    card,
    qr,
    typed,
    world,
)


@pytest.mark.parametrize(
    ("presented", "reason"),
    [
        (qr(ADULT), Reason.OK),
        (card(ADULT), Reason.OK),
        (typed(ADULT.hes_code, ADULT.last3), Reason.OK),
        (Presented(Medium.QR, hes_code=ADULT.hes_code), Reason.OK),  # no digits: no mismatch
        (qr(RISKY), Reason.RISKY),
        (card(RISKY), Reason.RISKY),
        (qr(OLD), Reason.TIME_WINDOW),
        (card(YOUNG), Reason.TIME_WINDOW),
        (qr(LAPSED), Reason.EXPIRED),
        (qr(STRANGER), Reason.OK),  # unregistered: no age group, so no time window
        (typed("NOBODY0000", "000"), Reason.NOT_FOUND),
        (Presented(Medium.CARD, card_uid="0000000000000A"), Reason.NOT_FOUND),
        (GARBAGE, Reason.UNREADABLE),
        (
            Presented(Medium.BAD_KEYPAD, hes_code=ADULT.hes_code, tckn_last3="001"),
            Reason.UNREADABLE,
        ),
    ],
)
def test_each_credential_gets_its_reason(presented: Presented, reason: Reason) -> None:
    assert world().truth(presented, NOW) is reason


def test_wrong_digits_are_a_mismatch_before_risky_but_expiry_comes_first() -> None:
    w = world()
    wrong = "000" if RISKY.last3 != "000" else "002"
    assert w.truth(typed(RISKY.hes_code, wrong), NOW) is Reason.TCKN_MISMATCH
    assert w.truth(typed(LAPSED.hes_code, "000"), NOW) is Reason.EXPIRED


def test_a_scheduled_change_counts_from_its_moment() -> None:
    w = world()
    at = CHANGING.changes[0].at
    assert w.truth(card(CHANGING), at - dt.timedelta(milliseconds=1)) is Reason.OK
    assert w.truth(card(CHANGING), at) is Reason.RISKY


def test_restricted_riders_may_board_inside_the_window() -> None:
    local = NOW.astimezone(ISTANBUL)
    minute = local.hour * 60 + local.minute
    open_now = DemoPolicy(window_start_min=minute, window_end_min=minute + 1)
    assert world(policy=open_now).truth(qr(OLD), NOW) is Reason.OK


def test_the_world_is_built_from_the_simulators_own_json_and_the_imported_rows() -> None:
    population = {
        "records": [
            {
                "hes_code": ADULT.hes_code,
                "tckn": ADULT.tckn,
                "status": "RISKLESS",
                "expires_at": "2099-12-31T20:59:59.000Z",
            },
            {
                "hes_code": STRANGER.hes_code,
                "tckn": STRANGER.tckn,
                "status": "RISKY",
                "expires_at": "2099-12-31T20:59:59.000Z",
            },
        ],
        "schedule": [
            {"hes_code": ADULT.hes_code, "at": "2030-01-01T00:00:00.000Z", "status": "RISKY"}
        ],
    }
    rows = registration_rows(
        registration_csv(
            [
                {
                    "card_uid": "04a1b2c3",
                    "hes_code": ADULT.hes_code,
                    "tckn": ADULT.tckn,
                    "birth_year": "1950",
                }
            ]
        )
    )
    built = World.build(population, rows, world().policy, NOW)
    assert built.unregistered == {STRANGER.hes_code}
    assert built.cards == {"04A1B2C3": ADULT.hes_code}
    assert built.people[ADULT.hes_code].birth_year == 1950
    assert built.people[ADULT.hes_code].changes[0].at.year == 2030
    assert built.truth(Presented(Medium.CARD, card_uid="04a1b2c3"), NOW) is Reason.TIME_WINDOW


def test_a_registration_for_a_code_the_ministry_lacks_is_refused() -> None:
    rows = [
        {"card_uid": "04A1B2C3", "hes_code": "NOBODY0000", "tckn": ADULT.tckn, "birth_year": "1980"}
    ]
    with pytest.raises(WorldError, match="does not know"):
        World.build({"records": []}, rows, world().policy, NOW)


def test_malformed_population_data_is_a_typed_error() -> None:
    with pytest.raises(WorldError, match="records"):
        World.build({}, [], world().policy, NOW)
    with pytest.raises(WorldError, match="expires_at"):
        World.build(
            {"records": [{"hes_code": "A", "tckn": "1", "status": "RISKY", "expires_at": "soon"}]},
            [],
            world().policy,
            NOW,
        )
    with pytest.raises(WorldError, match="columns"):
        registration_rows("hes_code\nABC\n")
