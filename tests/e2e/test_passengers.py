"""Riders: real QR codes, card frames and keypad entries the validator reads as meant."""

from __future__ import annotations

import random

import numpy as np
import pytest

from deploy.demo.passengers import (
    DECK,
    GARBAGE_FRAMES,
    Category,
    PassengerError,
    Pools,
    Presentation,
    present,
    tap_of,
)
from deploy.demo.qr import ScanFailed, read_code, scanner_frame
from deploy.demo.world import Medium
from protocol.credentials import ReadMethod
from protocol.frames import FrameError, parse_frame, parse_keypad
from protocol.reasons import DecidedBy, Decision, Reason
from tests.e2e.helpers import ADULT, CHANGING, NOW, PEOPLE, RISKY, world

#: What each category's rider must get when nothing is out of reach.
DESERVED = {
    Category.OK: {Reason.OK},
    Category.RISKY: {Reason.RISKY},
    Category.EXPIRED: {Reason.EXPIRED},
    Category.TIME_WINDOW: {Reason.TIME_WINDOW},
    Category.ONLINE: {Reason.OK},
    Category.NOT_FOUND: {Reason.NOT_FOUND},
    Category.UNKNOWN_CARD: {Reason.NOT_FOUND},
    Category.MISMATCH: {Reason.TCKN_MISMATCH},
    Category.GARBAGE: {Reason.UNREADABLE},
    Category.CHANGING: {Reason.OK},  # before its change
}


def test_a_qr_code_reads_back_as_a_scanner_in_aim_mode_sends_it() -> None:
    frame = scanner_frame(f"{ADULT.tckn}|{ADULT.hes_code}")
    assert frame == f"]Q1{ADULT.tckn}|{ADULT.hes_code}\r".encode()
    credential = parse_frame(frame)
    assert (credential.method, credential.value, credential.tckn_last3) == (
        ReadMethod.QR,
        ADULT.hes_code,
        ADULT.last3,
    )


def test_an_image_without_a_code_is_a_failed_scan() -> None:
    with pytest.raises(ScanFailed, match="read 0"):
        read_code(np.full((80, 80), 255, dtype=np.uint8))


@pytest.mark.parametrize("frame", GARBAGE_FRAMES)
def test_every_garbage_frame_is_refused_by_the_protocol(frame: bytes) -> None:
    with pytest.raises(FrameError):
        parse_frame(frame)


def read(presentation: Presentation) -> tuple[ReadMethod, str, str | None]:
    """What a validator reads from the presentation (a frame, or the keypad)."""
    if presentation.keypad is not None:
        credential = parse_keypad(*presentation.keypad)
    else:
        assert presentation.frame is not None
        credential = parse_frame(presentation.frame)
    return credential.method, credential.value, credential.tckn_last3


@pytest.mark.parametrize("category", list(Category))
def test_each_category_shows_what_it_means_and_the_validator_reads_it(category: Category) -> None:
    w = world()
    pools = Pools.of(w, NOW, changing=CHANGING.hes_code)
    rng = random.Random(3)
    for _ in range(40):
        presentation = present(category, pools, w, rng)
        shown = presentation.presented
        assert presentation.category is category
        assert w.truth(shown, NOW) in DESERVED[category]
        if not shown.readable:
            with pytest.raises(FrameError):
                read(presentation)
            continue
        method, value, last3 = read(presentation)
        if shown.medium is Medium.CARD:
            assert (method, value) == (ReadMethod.CARD, shown.card_uid)
        else:
            assert method is (ReadMethod.KEYPAD if shown.medium is Medium.KEYPAD else ReadMethod.QR)
            assert (value, last3) == (shown.hes_code, shown.tckn_last3)


def test_a_deck_brings_every_category() -> None:
    assert set(DECK) == set(Category)


def test_the_changing_rider_is_kept_apart_from_the_others() -> None:
    pools = Pools.of(world(), NOW, changing=CHANGING.hes_code)
    assert pools.changing == CHANGING
    assert CHANGING not in pools.ok
    assert RISKY in pools.risky


def test_a_world_without_risky_people_cannot_send_risky_riders() -> None:
    with pytest.raises(PassengerError, match="risky"):
        Pools.of(world([p for p in PEOPLE if p is not RISKY]), NOW)


def test_an_answer_becomes_a_tap() -> None:
    presentation = present(Category.OK, Pools.of(world(), NOW), world(), random.Random(1))
    answer = {
        "seq": 7,
        "time_ms": 1_800_000_000_123,
        "method": "qr",
        "reason": "STALE_LIST",
        "decision": "allow_flagged",
        "decided_by": "offline_policy",
        "latency_us": 812,
        "list_version": 470,
    }
    tap = tap_of("bus-1", 1_800_000_000_100, presentation, answer)
    assert (tap.seq, tap.reason, tap.decision, tap.decided_by) == (
        7,
        Reason.STALE_LIST,
        Decision.ALLOW_FLAGGED,
        DecidedBy.OFFLINE_POLICY,
    )
    assert tap.presented is presentation.presented
