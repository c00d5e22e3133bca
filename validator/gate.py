"""The gate: from a frame or a keypad entry to a recorded, shown answer.

One tap at a time: read the credential, look its key up in the local list,
ask the depot within the budget when the list does not know it, decide
(:mod:`validator.decide`), commit the tap record, then show the answer. A
storage failure does not stop the answer; it is shown with it, loudly.

The online budget is charged from the moment the frame came in (a tap that
waited behind another has less left), less a small reserve for deciding and
committing afterwards, so frame in to answer out stays within the budget.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from typing import Final, Protocol

import structlog

from protocol.credentials import Credential, CredentialKind, ReadMethod, key_of
from protocol.frames import FrameError, parse_frame, parse_keypad
from protocol.messages import PROTOCOL_VERSION, CheckAnswer, CheckRequest, Policy
from protocol.reasons import ScreenText
from protocol.risk import ListEntry
from validator.answer import Answer, screen_text
from validator.decide import (
    UNREADABLE,
    Verdict,
    decide_local,
    decide_offline,
    decide_online,
    list_is_stale,
)
from validator.queue import StorageError, TapDraft, TapQueue
from validator.scanner import GarbledFrame, ScanEvent, ScannedFrame

log = structlog.get_logger(__name__)

#: Less budget than this left is not worth a request: the tap is decided offline at once.
MIN_CHECK_S: Final = 0.002


class ListLookup(Protocol):
    """The local risk list as the gate sees it."""

    @property
    def version(self) -> int:
        """The list version lookups answer from (0: no list)."""

    def lookup(self, key: bytes) -> ListEntry | None:
        """The entry for a key, or ``None``."""

    def age_s(self, now_ms: int) -> float | None:
        """Seconds since the list was last known current; ``None`` without a list."""


class PolicySource(Protocol):
    """Where the policy in force comes from."""

    @property
    def current(self) -> Policy:
        """The policy to decide under now."""


class OnlineCheckFailed(Exception):
    """The depot did not answer the online check (down, refused, or malformed)."""


class OnlineChecker(Protocol):
    """Asks the depot about a credential the list does not know."""

    async def check(self, request: CheckRequest, timeout_s: float) -> CheckAnswer:
        """The depot's answer, or raise :class:`OnlineCheckFailed` / :class:`TimeoutError`."""


class Gate:
    """Decides taps one at a time and hands each answer to ``show``."""

    def __init__(
        self,
        *,
        list_key: bytes,
        risk_list: ListLookup,
        policy: PolicySource,
        checker: OnlineChecker,
        queue: TapQueue,
        show: Callable[[Answer], None],
        vehicle: str = "",
        route: str = "",
        trip: str = "",
        online_budget_s: float = 0.3,
        online_reserve_s: float = 0.01,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Build the gate; nothing runs before :meth:`run` or a ``tap_*`` call.

        ``online_budget_s`` bounds a tap the list does not know, frame in to
        answer out; ``online_reserve_s`` of it is kept for deciding and
        committing after the online check.
        """
        self._list_key = list_key
        self._list = risk_list
        self._policy = policy
        self._checker = checker
        self._queue = queue
        self._show = show
        self._where = (vehicle, route, trip)
        self._budget_ns = int(online_budget_s * 1e9)
        self._reserve_ns = int(online_reserve_s * 1e9)
        self._clock = clock
        self._lock = asyncio.Lock()
        self.online_failures = 0

    async def run(self, events: asyncio.Queue[ScanEvent]) -> None:
        """Answer every scanner event, forever."""
        while True:
            event = await events.get()
            if isinstance(event, ScannedFrame):
                await self.tap_frame(event.data, event.received_ns)
            else:
                await self.tap_garbled(event)

    async def tap_frame(self, frame: bytes, received_ns: int | None = None) -> Answer:
        """Answer one scanner frame (terminator removed or not)."""
        start = time.perf_counter_ns() if received_ns is None else received_ns
        async with self._lock:
            try:
                credential = parse_frame(frame)
            except FrameError as err:
                log.warning("frame_unreadable", problem=err.reason.value, shape=err.shape)
                return self._finish(UNREADABLE, start, None, None, err.hint)
            return await self._decide(credential, start)

    async def tap_garbled(self, event: GarbledFrame) -> Answer:
        """Answer bytes that never made a whole frame (over-long or cut off)."""
        async with self._lock:
            log.warning(
                "frame_unreadable", problem=event.problem, shape=event.shape, size=event.size
            )
            return self._finish(UNREADABLE, event.received_ns, None, None, None)

    async def tap_keypad(self, code: str, tckn_last3: str) -> Answer:
        """Answer a HES code and T.C. digits typed on the screen's keypad."""
        start = time.perf_counter_ns()
        async with self._lock:
            try:
                credential = parse_keypad(code, tckn_last3)
            except FrameError as err:
                log.info("keypad_unreadable", problem=err.reason.value, shape=err.shape)
                return self._finish(UNREADABLE, start, ReadMethod.KEYPAD, None, err.hint)
            return await self._decide(credential, start)

    async def _decide(self, credential: Credential, start_ns: int) -> Answer:
        key = key_of(self._list_key, credential)
        policy = self._policy.current
        now_s = self._clock()
        now = dt.datetime.fromtimestamp(now_s, dt.UTC)
        entry = self._list.lookup(key)
        if entry is not None:
            stale = list_is_stale(self._list.age_s(int(now_s * 1000)), policy)
            verdict = decide_local(entry, credential, policy, now, stale=stale)
        else:
            verdict = await self._ask_depot(credential, key, policy, now, start_ns)
        return self._finish(verdict, start_ns, credential.method, key, None)

    async def _ask_depot(
        self,
        credential: Credential,
        key: bytes,
        policy: Policy,
        now: dt.datetime,
        start_ns: int,
    ) -> Verdict:
        # Whatever the tap already spent (waiting behind another one, reading the
        # list) comes out of the budget; the reserve pays for the decision and commit.
        left_s = (start_ns + self._budget_ns - self._reserve_ns - time.perf_counter_ns()) / 1e9
        if left_s < MIN_CHECK_S:
            self.online_failures += 1
            log.warning("online_check_no_budget_left", budget_ms=self._budget_ns // 1_000_000)
            return decide_offline(policy)
        request = CheckRequest(
            v=PROTOCOL_VERSION,
            method=credential.method,
            key=key,
            # Only a HES code goes raw (the depot asks the Ministry); a card goes as its key.
            hes_code=credential.value if credential.kind is CredentialKind.HES_CODE else None,
            tckn_last3=credential.tckn_last3,
        )
        try:
            async with asyncio.timeout(left_s):
                answer = await self._checker.check(request, left_s)
        except TimeoutError:
            self.online_failures += 1
            log.warning(
                "online_check_timeout",
                budget_ms=self._budget_ns // 1_000_000,
                waited_ms=round(left_s * 1000),
            )
            return decide_offline(policy)
        except OnlineCheckFailed as err:
            self.online_failures += 1
            log.warning("online_check_failed", error=str(err))
            return decide_offline(policy)
        return decide_online(answer, credential, policy, now)

    def _finish(
        self,
        verdict: Verdict,
        start_ns: int,
        method: ReadMethod | None,
        key: bytes | None,
        hint: ScreenText | None,
    ) -> Answer:
        elapsed_us = max((time.perf_counter_ns() - start_ns) // 1000, 0)
        latency_us = min(elapsed_us, 2**32 - 1)
        # The tap's time is when the frame came in, not when the answer was ready.
        time_ms = int(self._clock() * 1000) - elapsed_us // 1000
        vehicle, route, trip = self._where
        list_version = self._list.version
        draft = TapDraft(
            time_ms=time_ms,
            method=method,
            key=key,
            decision=verdict.decision,
            reason=verdict.reason,
            decided_by=verdict.decided_by,
            list_version=list_version,
            latency_us=latency_us,
            vehicle=vehicle,
            route=route,
            trip=trip,
        )
        seq: int | None
        error: str | None = None
        try:
            seq = self._queue.record(draft)
        except StorageError as err:
            seq, error = None, str(err)
        colour = verdict.colour
        answer = Answer(
            seq=seq,
            time_ms=time_ms,
            method=method,
            reason=verdict.reason,
            decision=verdict.decision,
            decided_by=verdict.decided_by,
            colour=colour,
            text=screen_text(verdict.reason, colour, hint),
            list_version=list_version,
            latency_us=latency_us,
            storage_error=error,
        )
        log.info(
            "tap_decided",
            seq=seq,
            reason=verdict.reason.name,
            decision=verdict.decision.name,
            decided_by=verdict.decided_by.name,
            list_version=list_version,
            latency_us=latency_us,
        )
        self._show(answer)
        return answer
