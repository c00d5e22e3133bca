from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import segno
import zxingcpp
from hypothesis import example, given
from hypothesis import strategies as st

from protocol import hescode, tckn
from protocol.credentials import Credential, ReadMethod
from protocol.frames import (
    CARD_UID_HEX_LENGTHS,
    HINTS,
    MAX_FRAME_BYTES,
    FrameError,
    FrameProblem,
    frame_shape,
    parse_frame,
    parse_keypad,
)
from protocol.reasons import Colour

VECTORS = Path(__file__).parent.parent / "vectors" / "scanner_frames.json"
CODE = "R7G6915415"
TCKN = "12345678950"  # valid: last 3 are 950


@dataclass(frozen=True, slots=True)
class Vector:
    name: str
    frame: bytes
    expect: dict[str, Any]


def load_vectors() -> list[Vector]:
    vectors = []
    for entry in json.loads(VECTORS.read_text(encoding="utf-8"))["frames"]:
        if ("frame" in entry) == ("frame_hex" in entry):
            raise ValueError(f"{entry['name']}: give exactly one of frame and frame_hex")
        frame = (
            entry["frame"].encode("ascii")
            if "frame" in entry
            else bytes.fromhex(entry["frame_hex"])
        )
        vectors.append(Vector(entry["name"], frame, entry["expect"]))
    return vectors


GOLDEN = load_vectors()

# What a parsed credential must look like, whatever went in.
HES_VALUE = re.compile(r"[A-Z0-9]{10}")
HEX_VALUE = re.compile(r"[0-9A-F]+")

codes = st.text(alphabet=string.ascii_uppercase + string.digits, min_size=10, max_size=10)
valid_tcknos = st.from_regex(r"[1-9][0-9]{8}", fullmatch=True).map(tckn.make)
card_uids = st.sampled_from(sorted(CARD_UID_HEX_LENGTHS)).flatmap(
    lambda digits: st.binary(min_size=digits // 2, max_size=digits // 2).map(bytes.hex)
)
terminators = st.sampled_from([b"", b"\r", b"\n", b"\r\n"])
blanks = st.text(alphabet=" \t\r\n", max_size=3).map(str.encode)
aim_prefixes = st.sampled_from([b"", b"]Q1", b"]Q3", b"]C0", b"]d2"])
# Control bytes that are not whitespace: never stripped, always refused.
controls = st.sampled_from(
    [bytes([b]) for b in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F]]
)


def spelled(code: str, style: int) -> str:
    """One of the ways people and scanners write a code."""
    return [
        code,
        code.lower(),
        f"{code[:4]}-{code[4:8]}-{code[8:]}",
        f"{code[:4]} {code[4:8]} {code[8:]}",
        f"{code[:4]}-{code[4:8]}-{code[8:]}".lower(),
    ][style]


def assert_well_formed(credential: Credential) -> None:
    if credential.method is ReadMethod.CARD:
        assert HEX_VALUE.fullmatch(credential.value)
        assert len(credential.value) in CARD_UID_HEX_LENGTHS
        assert credential.tckn_last3 is None
    else:
        assert credential.method is ReadMethod.QR
        assert HES_VALUE.fullmatch(credential.value)
        if credential.tckn_last3 is not None:
            tckn.validate_last3(credential.tckn_last3)


def assert_credential_or_clear_error(frame: bytes) -> None:
    """Any other exception fails the test; an error must be one short log line."""
    try:
        credential = parse_frame(frame)
    except FrameError as err:
        error = err
    else:
        assert_well_formed(credential)
        return
    message = str(error)
    assert error.reason in HINTS
    assert len(message) <= 256
    assert "\n" not in message
    assert "\r" not in message


# -- the golden file --------------------------------------------------------------------


@pytest.mark.parametrize("vector", GOLDEN, ids=[v.name for v in GOLDEN])
def test_golden_frame(vector: Vector) -> None:
    if "error" in vector.expect:
        with pytest.raises(FrameError) as caught:
            parse_frame(vector.frame)
        assert caught.value.reason is FrameProblem[vector.expect["error"]], str(caught.value)
    else:
        credential = parse_frame(vector.frame)
        assert credential == Credential(
            ReadMethod[vector.expect["method"]],
            vector.expect["value"],
            vector.expect["tckn_last3"],
        )


def test_golden_file_covers_every_frame_problem() -> None:
    seen = {FrameProblem[v.expect["error"]] for v in GOLDEN if "error" in v.expect}
    keypad_only = {FrameProblem.BAD_TCKN, FrameProblem.ODD_TCKN}
    assert seen == set(FrameProblem) - keypad_only


# -- what is accepted -------------------------------------------------------------------


@given(
    code=codes,
    style=st.integers(0, 4),
    aim=aim_prefixes,
    before=blanks,
    after=blanks,
    end=terminators,
)
def test_a_bare_code_in_any_accepted_form(
    code: str, style: int, aim: bytes, before: bytes, after: bytes, end: bytes
) -> None:
    frame = before + aim + spelled(code, style).encode() + after + end
    assert parse_frame(frame) == Credential(ReadMethod.QR, code)


@given(number=valid_tcknos, code=codes, sep=st.sampled_from(["|", ";"]), style=st.integers(0, 4))
def test_app_qr_with_a_valid_tckn_carries_its_last_three(
    number: str, code: str, sep: str, style: int
) -> None:
    frame = f"]Q1{number}{sep}{spelled(code, style)}\r\n".encode()
    assert parse_frame(frame) == Credential(ReadMethod.QR, code, number[-3:])


# Visible ASCII but the separators; no leading "]", which starts an AIM prefix.
qr_first_fields = st.text(
    alphabet=string.printable[:94].replace("|", "").replace(";", ""), min_size=11, max_size=11
).filter(lambda field: not field.startswith("]"))


@given(field=qr_first_fields, code=codes)
@example(field="***********", code=CODE)
@example(field="********950", code=CODE)
def test_app_qr_with_any_other_first_field_is_read_without_digits(field: str, code: str) -> None:
    credential = parse_frame(f"{field}|{code}".encode())
    assert credential.value == code
    expected = field[-3:] if tckn.is_valid(field) else None
    assert credential.tckn_last3 == expected


def test_a_leading_aim_like_prefix_is_always_read_as_one() -> None:
    # "]A0" + 8 characters is an AIM prefix and an 8-character field, not an 11-character one.
    with pytest.raises(FrameError) as caught:
        parse_frame(f"]A000000000|{CODE}".encode())
    assert caught.value.reason is FrameProblem.BAD_QR_FIELD


def test_qr_and_bare_code_read_the_same_code() -> None:
    assert parse_frame(f"{TCKN}|{CODE}".encode()).value == parse_frame(CODE.encode()).value


@given(
    uid=card_uids,
    upper=st.booleans(),
    prefix=st.sampled_from(["CARD:", "card:", "Card:"]),
    end=terminators,
)
def test_card_frames_give_upper_case_hex(uid: str, upper: bool, prefix: str, end: bytes) -> None:
    frame = (prefix + (uid.upper() if upper else uid)).encode() + end
    assert parse_frame(frame) == Credential(ReadMethod.CARD, uid.upper())


def test_the_longest_frame_is_accepted_and_one_more_byte_is_not() -> None:
    longest = b" " * (MAX_FRAME_BYTES - len(CODE) - 2) + CODE.encode() + b"\r\n"
    assert len(longest) == MAX_FRAME_BYTES
    assert parse_frame(longest).value == CODE
    with pytest.raises(FrameError) as caught:
        parse_frame(b" " + longest)
    assert caught.value.reason is FrameProblem.TOO_LONG


def qr_image(payload: str) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """A real QR code as a greyscale image: black modules, white quiet zone, 4 px a module."""
    modules = np.pad(np.array(segno.make_qr(payload, error="m").matrix, dtype=np.uint8), 4)
    image = np.where(modules > 0, 0, 255).astype(np.uint8)
    return np.kron(image, np.ones((4, 4), dtype=np.uint8))


@pytest.mark.parametrize("payload", [f"{TCKN}|{CODE}", f"{TCKN};r7g6-9154-15", "R7G6-9154-15"])
def test_a_real_qr_code_as_a_scanner_with_aim_prefix_sends_it(payload: str) -> None:
    (read,) = zxingcpp.read_barcodes(qr_image(payload))
    frame = (read.symbology_identifier + read.text + "\r\n").encode("ascii")
    credential = parse_frame(frame)
    assert credential.value == CODE
    assert credential.tckn_last3 == ("950" if TCKN in payload else None)


# -- what is refused --------------------------------------------------------------------


@given(st.binary(max_size=MAX_FRAME_BYTES + 8))
@example(b"\xff" * (MAX_FRAME_BYTES + 1))
@example(b"]Q1")
@example(b"|;|")
@example(b"CARD:CARD:")
@example(b"\r\n\r\n\x00")
def test_any_bytes_give_a_credential_or_a_typed_error(frame: bytes) -> None:
    assert_credential_or_clear_error(frame)


@given(
    head=st.text(alphabet=string.ascii_letters + string.digits + "|;-: ", max_size=30),
    tail=st.text(alphabet=string.ascii_letters + string.digits + "|;-: ", max_size=30),
    end=terminators,
)
def test_frames_of_plausible_characters_give_a_credential_or_a_typed_error(
    head: str, tail: str, end: bytes
) -> None:
    assert_credential_or_clear_error(f"{head}{CODE}{tail}".encode() + end)


@given(
    code=codes,
    char=st.characters(min_codepoint=0x80, exclude_categories=["Cs"]),
    at=st.integers(0, 10),
    end=terminators,
)
@example(code="HIJK123456", char="ı", at=1, end=b"")
@example(code="HIJK123456", char="İ", at=1, end=b"\r\n")
def test_non_ascii_anywhere_is_refused(code: str, char: str, at: int, end: bytes) -> None:
    frame = (code[:at] + char + code[at:]).encode() + end
    with pytest.raises(FrameError) as caught:
        parse_frame(frame)
    assert caught.value.reason is FrameProblem.NON_ASCII


def test_a_turkish_letter_is_named_in_the_log_message() -> None:
    with pytest.raises(FrameError) as caught:
        parse_frame("hıjk123456".encode())
    assert "U+0131" in str(caught.value)
    assert "offset 1" in str(caught.value)


@given(code=codes, control=controls, at=st.integers(0, 10), end=terminators)
def test_control_bytes_anywhere_are_refused(code: str, control: bytes, at: int, end: bytes) -> None:
    frame = code[:at].encode() + control + code[at:].encode() + end
    with pytest.raises(FrameError) as caught:
        parse_frame(frame)
    assert caught.value.reason is FrameProblem.CONTROL_BYTES


@pytest.mark.parametrize(
    ("frame", "named"),
    [
        (b"R7G6915415\r\n\x00", "0x00 at offset 12"),
        (b"R7\x1bG6\r\n915415", "0x1b at offset 2"),
        (b"R7G6\r\n915415", "0x0d at offset 4"),
        (b"  R7G6\n915415", "0x0a at offset 6"),
    ],
)
def test_the_log_message_names_the_first_offending_control_byte(frame: bytes, named: str) -> None:
    with pytest.raises(FrameError) as caught:
        parse_frame(frame)
    assert caught.value.reason is FrameProblem.CONTROL_BYTES
    assert named in str(caught.value)


@given(code=codes, drop=st.integers(0, 9))
def test_nine_characters_are_a_bad_length(code: str, drop: int) -> None:
    with pytest.raises(FrameError) as caught:
        parse_frame((code[:drop] + code[drop + 1 :]).encode())
    assert caught.value.reason is FrameProblem.BAD_LENGTH


@given(
    code=codes, extra=st.sampled_from(string.ascii_uppercase + string.digits), at=st.integers(0, 10)
)
def test_eleven_characters_are_a_bad_length(code: str, extra: str, at: int) -> None:
    with pytest.raises(FrameError) as caught:
        parse_frame((code[:at] + extra + code[at:]).encode())
    assert caught.value.reason is FrameProblem.BAD_LENGTH


@given(
    first=codes,
    second=codes,
    between=st.sampled_from(["", " ", "\r\n", "\n", ";"]),
    style=st.integers(0, 4),
)
def test_two_codes_in_one_frame_are_refused(
    first: str, second: str, between: str, style: int
) -> None:
    frame = (spelled(first, style) + between + spelled(second, style) + "\r\n").encode()
    with pytest.raises(FrameError) as caught:
        parse_frame(frame)
    assert caught.value.reason is FrameProblem.TWO_CODES


@given(number=valid_tcknos, code=codes, other=codes, bad=st.sampled_from(["9", "0", "12"]))
def test_messages_never_hold_the_code_or_the_tckn(
    number: str, code: str, other: str, bad: str
) -> None:
    for frame in [
        f"{number}|{code}{bad}",
        f"{number}|{code}\r\n{number}|{other}",
        f"{number}|{code}|{other}",
        f"{code}{bad}",
        f"{code}\x00",
        f"{code}ş",
    ]:
        with pytest.raises(FrameError) as caught:
            parse_frame(frame.encode())
        message = str(caught.value)
        assert code not in message
        assert number not in message
        assert number[-3:] not in message


def test_the_shape_masks_letters_and_digits_and_escapes_the_rest() -> None:
    assert frame_shape(b"]Q1R7g6-9154\r\n") == r"']A9A9a9-9999\r\n'"
    assert frame_shape(b"\x00\xc4\xb1'\\") == r"'\x00\xc4\xb1\'\\'"
    assert frame_shape("hıj") == r"'a\xc4\xb1a'"


def test_the_shape_of_a_long_frame_is_cut_short() -> None:
    shape = frame_shape(b"A" * 500)
    assert shape == "'" + "A" * 24 + "'..."


def test_every_problem_has_a_short_yellow_hint_in_both_languages() -> None:
    assert set(HINTS) == set(FrameProblem)
    for hint in HINTS.values():
        assert hint.colour is Colour.YELLOW
        assert 0 < len(hint.tr) <= 64
        assert 0 < len(hint.en) <= 64
        assert hint.tr != hint.en


def test_frame_error_is_a_value_error_with_its_reason() -> None:
    with pytest.raises(ValueError, match="bad_length") as caught:
        parse_frame(b"R7G691541")
    assert isinstance(caught.value, FrameError)
    assert caught.value.reason is FrameProblem.BAD_LENGTH
    assert caught.value.hint == HINTS[FrameProblem.BAD_LENGTH]


# -- the keypad -------------------------------------------------------------------------


@given(code=codes, style=st.integers(0, 4), number=valid_tcknos)
def test_keypad_accepts_a_code_and_the_last_three(code: str, style: int, number: str) -> None:
    typed = parse_keypad(spelled(code, style), number[-3:])
    assert typed == Credential(ReadMethod.KEYPAD, code, number[-3:])


def test_keypad_strips_blanks_around_both_fields() -> None:
    assert parse_keypad("  R7G6-9154-15 \n", " 950 ") == Credential(ReadMethod.KEYPAD, CODE, "950")


@given(first_two=st.from_regex(r"[0-9]{2}", fullmatch=True), odd=st.sampled_from("13579"))
def test_keypad_odd_last_digit_is_its_own_problem(first_two: str, odd: str) -> None:
    with pytest.raises(FrameError) as caught:
        parse_keypad(CODE, first_two + odd)
    assert caught.value.reason is FrameProblem.ODD_TCKN
    assert "even" in caught.value.hint.en
    assert "çift" in caught.value.hint.tr


@pytest.mark.parametrize("digits", ["", "95", "9500", "95a", "abc", "٩٥٠", "9 0"])
def test_keypad_refuses_anything_but_three_digits(digits: str) -> None:
    with pytest.raises(FrameError) as caught:
        parse_keypad(CODE, digits)
    assert caught.value.reason is FrameProblem.BAD_TCKN


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("", FrameProblem.EMPTY),
        ("   ", FrameProblem.EMPTY),
        ("hıjk123456", FrameProblem.NON_ASCII),
        ("HİJK123456", FrameProblem.NON_ASCII),
        ("R7G6ş15415", FrameProblem.NON_ASCII),
        ("R7G6\x009154", FrameProblem.CONTROL_BYTES),
        ("R7G691541", FrameProblem.BAD_LENGTH),
        ("R7G69154151", FrameProblem.BAD_LENGTH),
        ("R7G6_915415", FrameProblem.BAD_CHARACTERS),
        (f"{TCKN}|{CODE}", FrameProblem.BAD_CHARACTERS),
        ("R7G6" * 40, FrameProblem.TOO_LONG),
    ],
)
def test_keypad_refuses_what_is_not_a_code(code: str, problem: FrameProblem) -> None:
    with pytest.raises(FrameError) as caught:
        parse_keypad(code, "950")
    assert caught.value.reason is problem


def test_keypad_checks_the_code_before_the_digits() -> None:
    with pytest.raises(FrameError) as caught:
        parse_keypad("R7G691541", "951")
    assert caught.value.reason is FrameProblem.BAD_LENGTH


def test_keypad_message_names_the_turkish_letter_but_not_the_code() -> None:
    with pytest.raises(FrameError) as caught:
        parse_keypad("hıjk123456", "950")
    message = str(caught.value)
    assert "U+0131" in message
    assert "jk123456" not in message
    assert hescode.normalize("hijk123456") not in message
