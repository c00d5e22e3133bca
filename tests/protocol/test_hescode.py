from __future__ import annotations

import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.hescode import (
    HES_CODE_LENGTH,
    InvalidHesCode,
    format_code,
    is_valid,
    normalize,
    parse,
)

codes = st.text(alphabet=string.ascii_uppercase + string.digits, min_size=10, max_size=10)


@pytest.mark.parametrize(
    "text",
    [
        "R7G6915415",
        "r7g6915415",
        "R7G6-9154-15",
        "r7g6-9154-15",
        "R7G6 9154 15",
        " R7G6 - 9154 - 15 ",
        "R7G6\t9154\t15",
        "R-7-G-6-9-1-5-4-1-5",
    ],
)
def test_every_way_of_writing_a_code_parses_to_one_code(text: str) -> None:
    assert parse(text) == "R7G6915415"


def test_normalize_strips_spaces_and_dashes_and_upper_cases() -> None:
    assert normalize(" ab-cd 12-34\t56 ") == "ABCD123456"


@pytest.mark.parametrize(
    ("code", "valid"),
    [
        ("R7G6915415", True),
        ("0000000000", True),
        ("ZZZZZZZZZZ", True),
        ("r7g6915415", False),  # not normalised yet
        ("R7G6-9154-15", False),
        ("R7G691541", False),
        ("R7G69154151", False),
        ("", False),
        ("R7G6915415\n", False),
    ],
)
def test_is_valid_only_for_normalised_codes(code: str, valid: bool) -> None:
    assert is_valid(code) is valid


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("R7G691541", "9 characters"),
        ("R7G69154151", "11 characters"),
        ("", "0 characters"),
        ("----------", "0 characters"),
        ("R7G6_91541", "letters A-Z and digits 0-9"),
        ("R7G6.91541", "letters A-Z and digits 0-9"),
        ("hıjk123456", "non-ASCII"),  # Turkish dotless i would upper-case to I
        ("HİJK123456", "non-ASCII"),
        ("R7G6ş15415", "non-ASCII"),
        ("R7G691541ß", "non-ASCII"),  # sharp s would upper-case to SS
        ("R7G69154１5", "non-ASCII"),  # a full-width digit
    ],
)
def test_parse_refuses_what_is_not_a_code(text: str, why: str) -> None:
    with pytest.raises(InvalidHesCode, match=why) as caught:
        parse(text)
    assert caught.value.text == text
    assert why in caught.value.reason


def test_invalid_hes_code_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a HES code"):
        parse("nope")


def test_format_code_for_people() -> None:
    assert format_code("R7G6915415") == "R7G6-9154-15"
    assert format_code("r7g6 9154 15") == "R7G6-9154-15"


def test_format_code_refuses_what_is_not_a_code() -> None:
    with pytest.raises(InvalidHesCode):
        format_code("R7G691541")


@given(codes)
def test_formatted_code_reads_back(code: str) -> None:
    shown = format_code(code)
    assert re.fullmatch(r"[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{2}", shown)
    assert parse(shown) == code
    assert parse(shown.lower()) == code


@given(st.text(max_size=30))
def test_parse_gives_a_valid_code_or_its_own_error(text: str) -> None:
    try:
        code = parse(text)
    except InvalidHesCode:
        return  # any other exception fails the test
    assert is_valid(code)
    assert len(code) == HES_CODE_LENGTH
    assert text.isascii()
