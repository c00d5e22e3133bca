"""The Ministry of Health's HES code: 10 upper-case letters and digits, shown ``XXXX-XXXX-XX``."""

from __future__ import annotations

import re

HES_CODE_LENGTH = 10
_VALID = re.compile(r"[A-Z0-9]{10}")
_SEPARATORS = str.maketrans("", "", " -\t")


class InvalidHesCode(ValueError):
    """The text is not a HES code; ``reason`` says what is wrong with it."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"not a HES code: {reason}")
        self.text = text
        self.reason = reason


def normalize(text: str) -> str:
    """Strip spaces and dashes and upper-case, as every Ministry client does.

    Only meaningful for ASCII text: :func:`parse` refuses anything else first.
    """
    return text.translate(_SEPARATORS).upper()


def is_valid(code: str) -> bool:
    """Whether ``code`` is already a normalised HES code (10 of A-Z0-9)."""
    return _VALID.fullmatch(code) is not None


def parse(text: str) -> str:
    """Normalise ``text`` and return the HES code, or raise :class:`InvalidHesCode`."""
    # Check before upper-casing: the dotless i upper-cases to an ASCII "I", sharp s to "SS".
    if not text.isascii():
        raise InvalidHesCode(text, "contains non-ASCII characters")
    code = normalize(text)
    if len(code) != HES_CODE_LENGTH:
        raise InvalidHesCode(text, f"has {len(code)} characters, expected {HES_CODE_LENGTH}")
    if not is_valid(code):
        raise InvalidHesCode(text, "may hold only letters A-Z and digits 0-9")
    return code


def format_code(code: str) -> str:
    """Format a normalised code for people: ``R7G6915415`` -> ``R7G6-9154-15``."""
    code = parse(code)
    return f"{code[:4]}-{code[4:8]}-{code[8:]}"
