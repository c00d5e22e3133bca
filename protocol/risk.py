"""What the risk list says about one credential key.

Shared by the snapshot file, the delta messages and the online check answer,
so a validator decides the same way whichever of them told it.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from zoneinfo import ZoneInfo

#: Boarding rules, expiry days and age-group hours are all in Turkish local time.
ISTANBUL = ZoneInfo("Europe/Istanbul")
_EPOCH = dt.date(1970, 1, 1)
#: The largest expiry day a snapshot record can hold (2149-06-05); later dates are clamped.
MAX_EXPIRY_DAY = 0xFFFE


class HealthStatus(enum.IntEnum):
    """The Ministry's answer for the HES code (for a card: the code it is linked to)."""

    RISKLESS = 0
    RISKY = 1


class Groups(enum.IntFlag):
    """Groups whose boarding hours the policy may restrict."""

    NONE = 0
    AGE_65_PLUS = 1
    UNDER_20 = 2


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One risk-list record.

    ``expiry_day`` is the day (Europe/Istanbul, days since 1970-01-01) through
    which the HES code is valid, or ``None`` when it never expires.
    ``tckn_last3`` is the last three digits of the owner's T.C. Kimlik No when
    known.
    """

    key: bytes
    status: HealthStatus
    expiry_day: int | None
    tckn_last3: str | None
    groups: Groups = Groups.NONE


def day_number(day: dt.date) -> int:
    """Days since 1970-01-01."""
    return (day - _EPOCH).days


def day_of(number: int) -> dt.date:
    """The date ``number`` days after 1970-01-01."""
    return _EPOCH + dt.timedelta(days=number)


def expiry_day_of(expires_at: dt.datetime) -> int:
    """The Istanbul-local day of an expiry instant, clamped to what a record holds."""
    if expires_at.tzinfo is None:
        raise ValueError("expiry must be an aware datetime")
    return min(day_number(expires_at.astimezone(ISTANBUL).date()), MAX_EXPIRY_DAY)


def local_day(now: dt.datetime) -> int:
    """Today's day number in Istanbul for an aware ``now``."""
    return day_number(now.astimezone(ISTANBUL).date())
