from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.tckn import (
    InvalidTckn,
    check_digits,
    is_valid,
    last3,
    last3_from_masked,
    make,
    validate,
    validate_last3,
)

first_nines = st.from_regex(r"[1-9][0-9]{8}", fullmatch=True)

# Worked by hand from the rule: 1+0+0+0+1 = 2, 7*2 - 0 = 14 -> 4, (2 + 4) mod 10 = 6.
KNOWN_VALID = ["10000000146", "12345678950", "11111111110"]


@pytest.mark.parametrize("number", KNOWN_VALID)
def test_known_valid_numbers(number: str) -> None:
    assert validate(number) == number
    assert is_valid(number)
    assert check_digits(number[:9]) == number[9:]


@pytest.mark.parametrize(
    ("number", "why"),
    [
        ("12345678901", "check digits"),
        ("10000000147", "check digits"),
        ("10000000156", "check digits"),
        ("01234567890", "does not start with 0"),
        ("1000000014", "11 digits"),
        ("100000001460", "11 digits"),
        ("1000000014a", "11 digits"),
        ("", "11 digits"),
        ("١٠٠٠٠٠٠٠١٤٦", "11 digits"),  # Arabic-Indic digits are not T.C. digits
        (" 10000000146", "11 digits"),
    ],
)
def test_invalid_numbers_say_why(number: str, why: str) -> None:
    with pytest.raises(InvalidTckn, match=why) as caught:
        validate(number)
    assert why in caught.value.reason
    assert not is_valid(number)


@given(first_nines)
def test_made_numbers_are_valid_and_end_in_an_even_digit(first_nine: str) -> None:
    number = make(first_nine)
    assert number.startswith(first_nine)
    assert is_valid(number)
    assert int(number[-1]) % 2 == 0
    assert validate_last3(last3(number)) == number[-3:]


@given(first_nines, st.integers(0, 10), st.integers(1, 9))
def test_every_single_digit_typo_is_caught(first_nine: str, at: int, delta: int) -> None:
    number = make(first_nine)
    typo = number[:at] + str((int(number[at]) + delta) % 10) + number[at + 1 :]
    assert not is_valid(typo)


@given(first_nines, st.integers(0, 9))
def test_swapping_neighbours_is_caught_unless_they_differ_by_0_or_5(
    first_nine: str, at: int
) -> None:
    number = make(first_nine)
    a, b = int(number[at]), int(number[at + 1])
    swapped = number[:at] + number[at + 1] + number[at] + number[at + 2 :]
    # Up to d10, neighbours weigh 7 and -1 in d10, so a swap moves d10 by 8*(b-a) mod 10;
    # swapping d10 and d11 is caught unless they are equal; a leading 0 is refused on its own.
    still_valid = a == b if at == 9 else (a - b) % 5 == 0
    assert is_valid(swapped) is (still_valid and swapped[0] != "0")


def test_check_digits_needs_nine_digits() -> None:
    for bad in ["", "12345678", "1234567890", "12345678a"]:
        with pytest.raises(InvalidTckn, match="nine digits"):
            check_digits(bad)


@pytest.mark.parametrize("first_nine", ["012345678", "12345678", "1234567890", "12345678x"])
def test_make_refuses_what_cannot_start_a_number(first_nine: str) -> None:
    with pytest.raises(InvalidTckn, match="nine digits"):
        make(first_nine)


def test_last3_of_an_invalid_number_is_refused() -> None:
    assert last3("10000000146") == "146"
    with pytest.raises(InvalidTckn):
        last3("12345678901")


@pytest.mark.parametrize("digits", ["000", "146", "950", "998"])
def test_even_endings_are_accepted(digits: str) -> None:
    assert validate_last3(digits) == digits


@given(st.integers(0, 99), st.sampled_from("13579"))
def test_an_odd_last_digit_is_called_a_typo(first_two: int, odd: str) -> None:
    with pytest.raises(InvalidTckn, match="even digit") as caught:
        validate_last3(f"{first_two:02d}{odd}")
    assert "check the last digit" in caught.value.reason


@pytest.mark.parametrize("digits", ["", "14", "1460", "14a", "abc", "٩٥٠", " 146"])
def test_last3_must_be_three_digits(digits: str) -> None:
    with pytest.raises(InvalidTckn, match="3 digits"):
        validate_last3(digits)


@pytest.mark.parametrize(
    ("masked", "digits"),
    [
        ("********792", "792"),
        ("********146", "146"),
        (" ********792 ", "792"),
        ("********79", None),
        ("*******792", None),
        ("*********792", None),
        ("12345678792", None),
        ("********7a2", None),
        ("", None),
        ("null", None),
    ],
)
def test_last3_from_masked_identity_number(masked: str, digits: str | None) -> None:
    assert last3_from_masked(masked) == digits


def test_invalid_tckn_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="11 digits"):
        validate("1")
