"""T.C. Kimlik No checks, and the last three digits a HES result carries.

An 11-digit number d1..d11 with d1 != 0,
d10 = (7*(d1+d3+d5+d7+d9) - (d2+d4+d6+d8)) mod 10 and d11 = (d1+...+d10) mod 10.
d11 is always even, so of the 1000 possible endings only 500 exist: an odd last
digit is a typing error.
"""

from __future__ import annotations

import re

_NINE = re.compile(r"[0-9]{9}")
_ELEVEN = re.compile(r"[0-9]{11}")
_THREE = re.compile(r"[0-9]{3}")
_MASKED = re.compile(r"\*{8}([0-9]{3})")


class InvalidTckn(ValueError):
    """A T.C. Kimlik No (or its last three digits) fails a check; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_digits(first_nine: str) -> str:
    """Return d10 and d11 for the first nine digits, or raise :class:`InvalidTckn`."""
    if not _NINE.fullmatch(first_nine):
        raise InvalidTckn("nine digits are needed to compute the check digits")
    d = [int(c) for c in first_nine]
    d10 = (7 * (d[0] + d[2] + d[4] + d[6] + d[8]) - (d[1] + d[3] + d[5] + d[7])) % 10
    d11 = (sum(d) + d10) % 10
    return f"{d10}{d11}"


def validate(number: str) -> str:
    """Return ``number`` if it is a valid T.C. Kimlik No, else raise :class:`InvalidTckn`."""
    if not _ELEVEN.fullmatch(number):
        raise InvalidTckn("a T.C. Kimlik No is 11 digits")
    if number[0] == "0":
        raise InvalidTckn("a T.C. Kimlik No does not start with 0")
    if number[9:] != check_digits(number[:9]):
        raise InvalidTckn("the check digits do not match")
    return number


def is_valid(number: str) -> bool:
    """Whether ``number`` is a valid T.C. Kimlik No."""
    try:
        validate(number)
    except InvalidTckn:
        return False
    return True


def validate_last3(digits: str) -> str:
    """Return ``digits`` if they can end a T.C. Kimlik No, else raise :class:`InvalidTckn`."""
    if not _THREE.fullmatch(digits):
        raise InvalidTckn("the last digits of a T.C. Kimlik No are 3 digits")
    if int(digits[-1]) % 2:
        raise InvalidTckn("a T.C. Kimlik No always ends in an even digit: check the last digit")
    return digits


def last3(number: str) -> str:
    """The last three digits of a valid T.C. Kimlik No."""
    return validate(number)[-3:]


def last3_from_masked(masked: str) -> str | None:
    """The last three digits from the Ministry's ``masked_identity_number`` (``********792``).

    ``None`` when the field does not have that shape: the caller then has no
    digits to match against, which is not the same as a mismatch.
    """
    match = _MASKED.fullmatch(masked.strip())
    return match.group(1) if match else None


def make(first_nine: str) -> str:
    """A valid T.C. Kimlik No from nine digits (for simulators and tests)."""
    if not re.fullmatch(r"[1-9][0-9]{8}", first_nine):
        raise InvalidTckn("nine digits, the first not 0, are needed")
    return first_nine + check_digits(first_nine)
