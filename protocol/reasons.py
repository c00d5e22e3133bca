"""Boarding answers: stable reason codes, their colours and screen texts.

The codes and their numbers are part of the wire protocol and of every stored
tap: never renumber, only add.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType


class Colour(enum.StrEnum):
    """What the rider sees: green boards, yellow boards flagged or tries again, red does not."""

    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"


class Reason(enum.IntEnum):
    """Why a rider was let on or not."""

    OK = 0
    RISKY = 1
    EXPIRED = 2
    NOT_FOUND = 3
    TCKN_MISMATCH = 4
    TIME_WINDOW = 5
    UNKNOWN_OFFLINE = 6
    STALE_LIST = 7
    UNREADABLE = 8


class DecidedBy(enum.IntEnum):
    """Where the answer came from."""

    LOCAL_LIST = 1
    ONLINE = 2
    OFFLINE_POLICY = 3
    NONE = 4  # nothing to decide on: the frame could not be read


class Decision(enum.IntEnum):
    """Whether the rider may board. Stored with every tap."""

    DENY = 0
    ALLOW = 1
    ALLOW_FLAGGED = 2


@dataclass(frozen=True, slots=True)
class ScreenText:
    """A reason's colour and its two texts for the validator screen."""

    colour: Colour
    tr: str
    en: str


#: The colour and texts of each reason. STALE_LIST and UNKNOWN_OFFLINE show
#: yellow here; when the policy says to refuse, the validator shows red.
SCREEN: MappingProxyType[Reason, ScreenText] = MappingProxyType(
    {
        Reason.OK: ScreenText(Colour.GREEN, "İyi yolculuklar", "Have a good trip"),
        Reason.RISKY: ScreenText(
            Colour.RED, "Riskli HES kodu: biniş yapılamaz", "Risky HES code: boarding refused"
        ),
        Reason.EXPIRED: ScreenText(Colour.RED, "HES kodunun süresi dolmuş", "HES code has expired"),
        Reason.NOT_FOUND: ScreenText(Colour.RED, "HES kodu bulunamadı", "HES code not found"),
        Reason.TCKN_MISMATCH: ScreenText(
            Colour.RED,
            "T.C. Kimlik No son 3 hanesi uyuşmuyor",
            "Last 3 digits of T.C. ID do not match",
        ),
        Reason.TIME_WINDOW: ScreenText(
            Colour.RED,
            "Yaş grubunuz için bu saatte seyahat yasak",
            "Your age group may not travel at this hour",
        ),
        Reason.UNKNOWN_OFFLINE: ScreenText(
            Colour.YELLOW,
            "Kod şu anda doğrulanamıyor",
            "Code cannot be verified right now",
        ),
        Reason.STALE_LIST: ScreenText(
            Colour.YELLOW, "Risk listesi güncel değil", "Risk list is out of date"
        ),
        Reason.UNREADABLE: ScreenText(
            Colour.YELLOW, "Okunamadı, tekrar deneyin", "Could not read, please try again"
        ),
    }
)


def colour_of(reason: Reason, decision: Decision) -> Colour:
    """The colour to show for an answer.

    An unreadable frame asks to try again (yellow); otherwise a refusal is
    red, a flagged boarding yellow and a plain boarding green.
    """
    if reason is Reason.UNREADABLE:
        return Colour.YELLOW
    if decision is Decision.DENY:
        return Colour.RED
    if decision is Decision.ALLOW_FLAGGED:
        return Colour.YELLOW
    return Colour.GREEN
