"""What the rider is shown after a tap, and how it looks on the wire to the screen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocol.credentials import ReadMethod
from protocol.reasons import SCREEN, Colour, DecidedBy, Decision, Reason, ScreenText


@dataclass(frozen=True, slots=True)
class Answer:
    """One tap's answer as shown: reason, colour, both texts, and what became of its record.

    ``seq`` is ``None`` when the record could not be stored (``storage_error``
    says why); the answer is shown all the same.
    """

    seq: int | None
    time_ms: int
    method: ReadMethod | None
    reason: Reason
    decision: Decision
    decided_by: DecidedBy
    colour: Colour
    text: ScreenText
    list_version: int
    latency_us: int
    storage_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The answer as the status API and the screen page receive it."""
        return {
            "seq": self.seq,
            "time_ms": self.time_ms,
            "method": None if self.method is None else self.method.name.lower(),
            "reason": self.reason.name,
            "decision": self.decision.name.lower(),
            "decided_by": self.decided_by.name.lower(),
            "colour": self.colour.value,
            "tr": self.text.tr,
            "en": self.text.en,
            "list_version": self.list_version,
            "latency_us": self.latency_us,
            "recorded": self.seq is not None,
            "storage_error": self.storage_error,
        }


def screen_text(reason: Reason, colour: Colour, hint: ScreenText | None = None) -> ScreenText:
    """The texts for a reason in the colour actually shown (a hint refines UNREADABLE)."""
    base = hint if hint is not None and reason is Reason.UNREADABLE else SCREEN[reason]
    return ScreenText(colour, base.tr, base.en)
