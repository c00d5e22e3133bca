"""Constraints that message fields carry, read by the codec (:mod:`protocol.codec`).

A field is typed ``Annotated[int, Range(0, 10)]``, ``Annotated[str, Length(1, 64)]``,
``Annotated[bytes, Length(8, 8)]`` or ``Annotated[list[X], Length(0, 5000)]``.
Every ``str``, ``bytes`` and ``list`` field must carry a :class:`Length` and every
``int`` a :class:`Range`, so no untrusted message is unbounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

C = TypeVar("C")


@dataclass(frozen=True, slots=True)
class Range:
    """Inclusive bounds of an integer or float field."""

    low: float
    high: float


@dataclass(frozen=True, slots=True)
class Length:
    """Inclusive bounds of the length of a string, bytes or list field."""

    low: int
    high: int


@dataclass(frozen=True, slots=True)
class Pattern:
    """A regular expression a string field must match in full."""

    regex: str


#: Marks a message class whose instances are encoded as arrays in field order
#: rather than maps: for the records that come by the thousand.
COMPACT = "__hesgate_compact__"


def compact(cls: type[C]) -> type[C]:
    """Class decorator: encode instances as MessagePack arrays in field order."""
    setattr(cls, COMPACT, True)
    return cls
