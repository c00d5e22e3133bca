"""One run: passengers at every door while the Ministry fails and a validator loses the depot.

The director follows the scenario's timeline (seconds from the start): the
Ministry's status change for one rider, the Ministry outage (the simulator
answers 503 to everything) and its end, the cut of one validator's link
(through its proxy) and its return. Every event is recorded with the wall
time it took effect, so the audit can tell what each answer had to be. At
the end (or on request) everything is restored, the validators' backlogs
drain, and the auditor export fetches what the depot stored.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from deploy.demo.clients import ServiceError
from deploy.demo.passengers import Category, Passengers, Pools, Tap, Unanswered
from deploy.demo.stack import Stack, StackError, ValidatorHandle
from deploy.demo.world import Person, World
from protocol.reasons import Reason
from protocol.risk import HealthStatus

log = structlog.get_logger("hesgate.demo.scenario")

_TICK_S: Final = 0.25
#: Taps a cut-off validator answers STALE_LIST before an early restore.
STALE_TAPS_BEFORE_RESTORE: Final = 3


class EventKind(enum.StrEnum):
    """Something the director did (or saw) during the run."""

    START = "start"
    STATUS_CHANGE = "status_change"
    MINISTRY_DOWN = "ministry_down"
    MINISTRY_UP = "ministry_up"
    LINK_CUT = "link_cut"
    LINK_RESTORED = "link_restored"
    STOP = "stop"


@dataclass(frozen=True, slots=True)
class Event:
    """An event at a wall-clock time (seconds since the epoch)."""

    at: float
    kind: EventKind
    device: str | None = None
    note: str = ""


@dataclass(slots=True)
class Timeline:
    """The events of a run, in order."""

    events: list[Event] = field(default_factory=list)

    def record(self, kind: EventKind, device: str | None = None, note: str = "") -> Event:
        """Record an event as happening now."""
        event = Event(time.time(), kind, device, note)
        self.events.append(event)
        log.info("event", kind=kind.value, device=device, note=note)
        return event

    def windows(
        self, start: EventKind, end: EventKind, device: str | None = None
    ) -> list[tuple[float, float]]:
        """``[from, to)`` intervals between each ``start`` and the next ``end`` (``inf``: open)."""
        out: list[tuple[float, float]] = []
        opened: float | None = None
        for event in self.events:
            if event.device != device:
                continue
            if event.kind is start and opened is None:
                opened = event.at
            elif event.kind is end and opened is not None:
                out.append((opened, event.at))
                opened = None
        if opened is not None:
            out.append((opened, float("inf")))
        return out

    def first(self, kind: EventKind) -> Event | None:
        """The first event of a kind."""
        return next((e for e in self.events if e.kind is kind), None)


@dataclass(frozen=True, slots=True)
class Scenario:
    """When things happen, in seconds from the start of the run."""

    duration_s: float
    ministry_down_s: float
    ministry_up_s: float
    #: The validator whose link is cut (it must sit behind a proxy), or ``None``.
    cut_device: str | None
    cut_at_s: float
    #: The link returns at this time at the latest...
    restore_by_s: float
    #: ...or, when set, as soon as the cut validator's list has gone stale and it said
    #: STALE_LIST a few times, but not before this time.
    restore_on_stale_after_s: float | None = None
    #: A registered rider turns RISKY at the Ministry at this time (``None``: nobody does).
    change_at_s: float | None = None
    #: The mean pause between one rider's answer and the next rider, at each door.
    pace_s: float = 0.5
    drain_timeout_s: float = 40.0
    seed: int = 1

    @classmethod
    def demo(cls, duration_s: float, cut_device: str | None) -> Scenario:
        """The demo's timeline for a run of ``duration_s``.

        The Ministry is out from a quarter to half of the run. The validator is
        cut off two seconds in and gets its link back once its list has gone
        stale (the policy's shortest list age is 60 s, so that needs a run of
        about 70 s or more) or at the latest eight seconds before the end.
        """
        return cls(
            duration_s=duration_s,
            ministry_down_s=0.25 * duration_s,
            ministry_up_s=0.5 * duration_s,
            cut_device=cut_device,
            cut_at_s=2.0,
            restore_by_s=max(duration_s - 8.0, 0.6 * duration_s),
            restore_on_stale_after_s=0.6 * duration_s,
            change_at_s=0.08 * duration_s,
        )


@dataclass(frozen=True, slots=True)
class RunResult:
    """What happened, what the validators said, and what the depot stored."""

    started_at: float
    ended_at: float
    taps: tuple[Tap, ...]
    unanswered: tuple[Unanswered, ...]
    events: tuple[Event, ...]
    world: World
    exported: tuple[Mapping[str, Any], ...]
    statuses: Mapping[str, Mapping[str, Any]]
    fleet: Mapping[str, Any]
    drained: bool
    interrupted: bool
    changing: str | None

    def timeline(self) -> Timeline:
        """The events as a :class:`Timeline`."""
        return Timeline(list(self.events))


def changing_rider(world: World) -> Person:
    """The rider whose status the Ministry changes: registered, riskless, unrestricted, valid."""
    now = dt.datetime.now(dt.UTC)
    for code in sorted(world.people):
        person = world.people[code]
        status, expires_at = person.state_at(now)
        if (
            person.registered
            and status is HealthStatus.RISKLESS
            and expires_at > now + dt.timedelta(days=2)
            and not world.restricted(person)
        ):
            return person
    raise StackError("the population has no rider whose status could change")


class Run:
    """One scenario played on a started stack; the live table reads it while it runs."""

    def __init__(self, stack: Stack, scenario: Scenario) -> None:
        self.stack = stack
        self.scenario = scenario
        self.timeline = Timeline()
        self.phase = "starting"
        self.started_at = time.time()
        self.passengers: Passengers | None = None
        self.world = stack.world
        self.changing: Person | None = None

    @property
    def elapsed_s(self) -> float:
        """Seconds since the run started."""
        return time.time() - self.started_at

    def link_cut(self, device: str) -> bool:
        """Whether the device's link to the depot is cut now."""
        handle = self._handle(device)
        return handle is not None and handle.proxy is not None and handle.proxy.is_cut

    def _handle(self, device: str | None) -> ValidatorHandle | None:
        return next((v for v in self.stack.validators if v.device == device), None)

    async def play(self, stop: asyncio.Event) -> RunResult:
        """Play the scenario until its end or ``stop``; then restore, drain and export."""
        scenario = self.scenario
        cut = self._handle(scenario.cut_device)
        if scenario.cut_device is not None and (cut is None or cut.proxy is None):
            raise StackError(f"{scenario.cut_device} is not a validator behind a proxy")
        if scenario.change_at_s is not None:
            self.changing = changing_rider(self.world)
            await self.stack.ministry.schedule(
                self.changing.hes_code, scenario.change_at_s, "RISKY"
            )
            self.world = self.world.with_schedule(await self.stack.ministry.population())
        pools = Pools.of(
            self.world,
            dt.datetime.now(dt.UTC),
            changing=None if self.changing is None else self.changing.hes_code,
        )
        passengers = Passengers(
            self.world,
            [v.door() for v in self.stack.validators],
            pools=pools,
            seed=scenario.seed,
            pace_s=scenario.pace_s,
        )
        self.passengers = passengers
        self.started_at = time.time()
        self.timeline.record(EventKind.START)
        self.phase = "running"
        riders_stop = asyncio.Event()
        riders = asyncio.create_task(passengers.run(riders_stop))
        interrupted = False
        try:
            interrupted = await self._direct(stop, riders)
        finally:
            riders_stop.set()
            await riders
            await self._restore_all()
            self.timeline.record(EventKind.STOP, note="interrupted" if interrupted else "")
        ended_at = time.time()
        self.phase = "draining"
        drained = await self._drain()
        self.phase = "exporting"
        since = dt.datetime.fromtimestamp(self.started_at - 3600, dt.UTC).isoformat()
        exported = await self.stack.depot.trips(since)
        statuses = {v.device: await v.screen.status() for v in self.stack.validators}
        fleet = await self.stack.depot.fleet()
        self.phase = "done"
        return RunResult(
            started_at=self.started_at,
            ended_at=ended_at,
            taps=tuple(passengers.taps),
            unanswered=tuple(passengers.unanswered),
            events=tuple(self.timeline.events),
            world=self.world,
            exported=tuple(exported),
            statuses=statuses,
            fleet=fleet,
            drained=drained,
            interrupted=interrupted,
            changing=None if self.changing is None else self.changing.hes_code,
        )

    async def _direct(self, stop: asyncio.Event, riders: asyncio.Task[None]) -> bool:
        """Apply the timeline's events until the end; returns whether ``stop`` cut it short."""
        scenario = self.scenario
        changed = ministry_down = ministry_up = link_cut = restored = False
        while True:
            if riders.done():
                riders.result()  # a crash among the riders ends the run with its error
                return False
            self.stack.check_alive()
            t = self.elapsed_s
            if t >= scenario.duration_s:
                return False
            if not changed and scenario.change_at_s is not None and t >= scenario.change_at_s:
                changed = True
                code = None if self.changing is None else self.changing.hes_code
                self.timeline.record(EventKind.STATUS_CHANGE, note=f"{code} turns RISKY")
            if not ministry_down and t >= scenario.ministry_down_s:
                ministry_down = True
                await self.stack.ministry.outage()
                self.timeline.record(EventKind.MINISTRY_DOWN)
                # Someone with a code nobody knows comes to every door: the outage shows.
                self._send(Category.NOT_FOUND)
            if ministry_down and not ministry_up and t >= scenario.ministry_up_s:
                ministry_up = True
                await self.stack.ministry.recover()
                self.timeline.record(EventKind.MINISTRY_UP)
            cut = self._handle(scenario.cut_device)
            if cut is not None and cut.proxy is not None:
                if not link_cut and t >= scenario.cut_at_s:
                    link_cut = True
                    cut.proxy.cut()
                    self.timeline.record(EventKind.LINK_CUT, cut.device)
                    self._send(Category.UNKNOWN_CARD, cut.device)
                    self._send(Category.NOT_FOUND, cut.device)
                if link_cut and not restored and self._restore_due(t, cut):
                    restored = True
                    cut.proxy.restore()
                    self.timeline.record(EventKind.LINK_RESTORED, cut.device)
            try:
                async with asyncio.timeout(_TICK_S):
                    await stop.wait()
            except TimeoutError:
                continue
            return True

    def _send(self, category: Category, device: str | None = None) -> None:
        if self.passengers is not None:
            self.passengers.send(category, None if device is None else [device])

    def _restore_due(self, t: float, cut: ValidatorHandle) -> bool:
        scenario = self.scenario
        if t >= scenario.restore_by_s:
            return True
        if scenario.restore_on_stale_after_s is None or t < scenario.restore_on_stale_after_s:
            return False
        passengers = self.passengers
        stale = 0 if passengers is None else passengers.counts[cut.device][Reason.STALE_LIST]
        return stale >= STALE_TAPS_BEFORE_RESTORE

    async def _restore_all(self) -> None:
        """Whatever was broken comes back, so the backlogs can drain."""
        for handle in self.stack.validators:
            if handle.proxy is not None and handle.proxy.is_cut:
                handle.proxy.restore()
                self.timeline.record(EventKind.LINK_RESTORED, handle.device, "at the end")
        downs = len(self.timeline.windows(EventKind.MINISTRY_DOWN, EventKind.MINISTRY_UP))
        ups = sum(1 for e in self.timeline.events if e.kind is EventKind.MINISTRY_UP)
        if downs > ups:
            await self.stack.ministry.recover()
            self.timeline.record(EventKind.MINISTRY_UP, note="at the end")

    async def _drain(self) -> bool:
        """Wait until every tap recorded at a validator is acknowledged by the depot."""
        deadline = time.monotonic() + self.scenario.drain_timeout_s
        while time.monotonic() < deadline:
            try:
                if await self._all_stored():
                    return True
            except ServiceError as err:
                log.warning("drain check failed", error=str(err))
            await asyncio.sleep(0.5)
        return False

    async def _all_stored(self) -> bool:
        fleet = await self.stack.depot.fleet()
        stored = {d["id"]: d for d in fleet["devices"]}
        for handle in self.stack.validators:
            status = await handle.screen.status()
            device = stored.get(handle.device)
            if device is None or status["backlog"] != 0:
                return False
            if device["ack"] != status["last_seq"] or device["taps_stored"] != status["last_seq"]:
                return False
        return True
