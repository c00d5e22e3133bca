"""What the validator is doing, in one place: for the screen, ``/api/status`` and the heartbeat.

The :class:`StatusBoard` holds the last answer and the screen's view (the
answer, or the start view after ``idle_s`` without a tap) and asks the
other parts for the rest when a status is wanted. Subscribers (the screen's
server-sent events) get every change; only the newest state matters, so a
slow subscriber skips states instead of queueing them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

from protocol.reasons import Colour, ScreenText
from validator.answer import Answer
from validator.queue import QueueStats
from validator.scanner import ScannerState

View = Literal["start", "answer"]


@dataclass(frozen=True, slots=True)
class LinkState:
    """How the depot connection is doing."""

    online: bool
    last_contact_ms: int | None
    clock_skew_s: float | None
    clock_skew_flagged: bool
    online_failures: int
    error: str | None


@dataclass(frozen=True, slots=True)
class ListState:
    """The local risk list as the status shows it."""

    version: int
    snapshot_version: int
    age_s: float | None
    stale: bool
    problem: str | None


@dataclass(frozen=True, slots=True)
class Sources:
    """Where the board reads the state of each part."""

    queue: Callable[[], QueueStats]
    risk_list: Callable[[], ListState]
    policy_version: Callable[[], int]
    link: Callable[[], LinkState]
    scanner: Callable[[], ScannerState]
    upload_error: Callable[[], str | None]


@dataclass(frozen=True, slots=True)
class Status:
    """One look at the whole validator."""

    device: str
    software: str
    time_ms: int
    view: View
    idle_s: float
    last_decision: Answer | None
    queue: QueueStats
    risk_list: ListState
    policy_version: int
    link: LinkState
    scanner: ScannerState
    upload_error: str | None

    @property
    def warnings(self) -> list[ScreenText]:
        """What the screen must say about trouble, in Turkish and English."""
        out: list[ScreenText] = []
        if self.queue.storage_error is not None:
            out.append(
                ScreenText(
                    Colour.RED,
                    "KAYIT HATASI: geçişler kaydedilemiyor, teknik ekibe bildirin",
                    "STORAGE FAULT: taps are not being recorded, call maintenance",
                )
            )
        if not self.scanner.connected:
            out.append(
                ScreenText(
                    Colour.YELLOW,
                    "Okuyucu bağlı değil: tuş takımını kullanın",
                    "Reader not connected: use the keypad",
                )
            )
        if self.risk_list.stale:
            out.append(
                ScreenText(Colour.YELLOW, "Risk listesi güncel değil", "Risk list is out of date")
            )
        if self.link.clock_skew_flagged:
            out.append(ScreenText(Colour.YELLOW, "Cihaz saati yanlış", "Device clock is wrong"))
        return out

    def to_json(self) -> dict[str, Any]:
        """The status as ``GET /api/status`` returns it."""
        age = self.risk_list.age_s
        skew = self.link.clock_skew_s
        return {
            "device": self.device,
            "software": self.software,
            "time_ms": self.time_ms,
            "view": self.view,
            "idle_s": self.idle_s,
            "last_decision": None if self.last_decision is None else self.last_decision.to_json(),
            "backlog": self.queue.backlog,
            "last_seq": self.queue.last_seq,
            "acked": self.queue.acked,
            "oldest_unsent_ms": self.queue.oldest_unsent_ms,
            "pending_in_memory": self.queue.pending_in_memory,
            "storage_error": self.queue.storage_error,
            "upload_error": self.upload_error,
            "list_version": self.risk_list.version,
            "snapshot_version": self.risk_list.snapshot_version,
            "list_age_s": None if age is None else int(age),
            "list_stale": self.risk_list.stale,
            "list_problem": self.risk_list.problem,
            "policy_version": self.policy_version,
            "online": self.link.online,
            "last_contact_ms": self.link.last_contact_ms,
            "clock_skew_s": None if skew is None else round(skew, 1),
            "clock_skew_flagged": self.link.clock_skew_flagged,
            "online_failures": self.link.online_failures,
            "depot_error": self.link.error,
            "scanner_connected": self.scanner.connected,
            "scanner_error": self.scanner.error,
            "warnings": [{"colour": w.colour.value, "tr": w.tr, "en": w.en} for w in self.warnings],
        }


class _Subscriber:
    """The newest state for one listener, and a flag that it changed."""

    def __init__(self) -> None:
        self.latest: dict[str, Any] | None = None
        self.changed = asyncio.Event()


class StatusBoard:
    """The last answer, the screen's view, and everyone who wants to hear of changes."""

    def __init__(
        self,
        *,
        device: str,
        software: str,
        sources: Sources,
        idle_s: float = 20.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._device = device
        self._software = software
        self._sources = sources
        self._idle_s = idle_s
        self._clock = clock
        self._last: Answer | None = None
        self._view: View = "start"
        self._idle_timer: asyncio.TimerHandle | None = None
        self._subscribers: set[_Subscriber] = set()
        self._closed = False
        self._last_sent: dict[str, Any] | None = None

    def status(self) -> Status:
        """The state of every part, now."""
        s = self._sources
        return Status(
            device=self._device,
            software=self._software,
            time_ms=int(self._clock() * 1000),
            view=self._view,
            idle_s=self._idle_s,
            last_decision=self._last,
            queue=s.queue(),
            risk_list=s.risk_list(),
            policy_version=s.policy_version(),
            link=s.link(),
            scanner=s.scanner(),
            upload_error=s.upload_error(),
        )

    @property
    def last_answer(self) -> Answer | None:
        """The last answer given, whatever the screen shows now."""
        return self._last

    @property
    def view(self) -> View:
        """What the screen shows: the last answer, or the start view."""
        return self._view

    def show(self, answer: Answer) -> None:
        """Show an answer now; the screen goes back to its start view after ``idle_s``."""
        self._last = answer
        self._view = "answer"
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._idle_timer = asyncio.get_running_loop().call_later(self._idle_s, self._go_idle)
        self.changed()

    def _go_idle(self) -> None:
        self._idle_timer = None
        self._view = "start"
        self.changed()

    def changed(self) -> None:
        """Tell every subscriber the state changed."""
        if self._subscribers:
            self._publish(self.status().to_json())

    def _publish(self, payload: dict[str, Any]) -> None:
        self._last_sent = payload
        for sub in self._subscribers:
            sub.latest = payload
            sub.changed.set()

    async def watch(self, interval_s: float = 1.0) -> None:
        """Publish when anything but the clock changed (list age, link, backlog, ...); forever."""
        while True:
            await asyncio.sleep(interval_s)
            if not self._subscribers:
                continue
            payload = self.status().to_json()
            if dict(self._last_sent or {}, time_ms=None) != dict(payload, time_ms=None):
                self._publish(payload)

    async def subscribe(self) -> AsyncIterator[dict[str, Any]]:
        """Each new state as it comes, starting with the current one, until :meth:`close`."""
        sub = _Subscriber()
        sub.latest = self.status().to_json()
        sub.changed.set()
        self._subscribers.add(sub)
        try:
            while True:
                await sub.changed.wait()
                sub.changed.clear()
                latest = sub.latest
                if self._closed or latest is None:
                    break
                yield latest
        finally:
            self._subscribers.discard(sub)

    def close(self) -> None:
        """End every subscription (on shutdown) and stop the idle timer."""
        self._closed = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        for sub in self._subscribers:
            sub.changed.set()
