"""Passengers: riders presenting credentials at the validators, one after another.

Each validator has its own stream of riders. Who comes next is drawn from a
shuffled deck of categories (people the Ministry calls riskless, risky or
expired, riders barred at this hour, codes only the Ministry knows, codes
nobody knows, unregistered cards, wrong T.C. digits, garbage), so every
reason code comes up within a dozen taps whatever the run's length. A rider
shows the QR code of their HES code (a real image, read back as a scanner
reads it, written to the validator's pseudo-terminal), taps their linked
card (a card reader frame on the same line), or types the code and the last
3 T.C. digits on the screen's keypad (posted as the page posts it). Every
tap waits for its answer before the next rider comes, and is kept as a
:class:`Tap` for the audit.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import enum
import random
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import structlog

from deploy.demo.clients import Screen, ServiceError
from deploy.demo.qr import scanner_frame
from deploy.demo.world import Medium, Person, Presented, World
from protocol import hescode, tckn
from protocol.reasons import DecidedBy, Decision, Reason
from protocol.risk import HealthStatus

log = structlog.get_logger("hesgate.demo.passengers")

#: How long a validator may take to show an answer before the tap counts as unanswered.
ANSWER_TIMEOUT_S: Final = 10.0
_POLL_S: Final = 0.02
_CODE_ALPHABET: Final = string.ascii_uppercase + string.digits
#: Frames a scanner may send that are no credential (each refused by ``protocol.frames``).
GARBAGE_FRAMES: Final = (
    b"]Q1https://hes.saglik.gov.tr/?kod=1\r",  # a URL's QR code
    "İSTANBULKART".encode() + b"\r",  # Turkish letters typed on a keyboard
    b"\x00\x13\x7f\x00\r",  # line noise
    b"]Q1R7G6915415A1B2C3D4E5\r",  # two codes run together
    b"]Q1" + b"A" * 200 + b"\r",  # a long barcode, past the frame limit
    b"CARD:12345\r",  # a card read cut short
)


class PassengerError(RuntimeError):
    """The world lacks the people a category needs, or a tap cannot be made."""


class Category(enum.StrEnum):
    """Who the next rider is."""

    OK = "ok"  # registered, riskless, of an age that may ride now
    RISKY = "risky"  # registered, risky
    EXPIRED = "expired"  # an expired code
    TIME_WINDOW = "time_window"  # registered, 65+ or under 20
    ONLINE = "online"  # a code only the Ministry knows (not registered at the depot)
    NOT_FOUND = "not_found"  # a code nobody knows
    UNKNOWN_CARD = "unknown_card"  # a card nobody registered
    MISMATCH = "mismatch"  # the keypad with somebody else's last 3 digits
    GARBAGE = "garbage"  # something unreadable
    CHANGING = "changing"  # the rider whose status the Ministry changes mid-run


#: One round of riders; shuffled for each round.
DECK: Final = (
    Category.OK,
    Category.OK,
    Category.OK,
    Category.OK,
    Category.RISKY,
    Category.EXPIRED,
    Category.TIME_WINDOW,
    Category.ONLINE,
    Category.NOT_FOUND,
    Category.UNKNOWN_CARD,
    Category.MISMATCH,
    Category.GARBAGE,
    Category.CHANGING,
)


@dataclass(frozen=True, slots=True)
class Pools:
    """The people each category draws from, as things stand at the start of the run."""

    ok: tuple[Person, ...]
    risky: tuple[Person, ...]
    expired: tuple[Person, ...]
    restricted: tuple[Person, ...]
    unregistered: tuple[Person, ...]
    changing: Person | None = None

    @classmethod
    def of(cls, world: World, now: dt.datetime, *, changing: str | None = None) -> Pools:
        """Sort the world's people into pools; ``changing`` is kept apart for its category."""
        ok, risky, expired, restricted, unregistered = [], [], [], [], []
        for person in world.people.values():
            if person.hes_code == changing:
                continue
            status, expires_at = person.state_at(now)
            if expires_at <= now:
                expired.append(person)
            elif not person.registered:
                unregistered.append(person)
            elif status is HealthStatus.RISKY:
                risky.append(person)
            elif world.restricted(person):
                restricted.append(person)
            elif not person.changes:
                ok.append(person)
        pools = cls(
            tuple(ok),
            tuple(risky),
            tuple(expired),
            tuple(restricted),
            tuple(unregistered),
            None if changing is None else world.people[changing],
        )
        for name in ("ok", "risky", "expired", "restricted", "unregistered"):
            if not getattr(pools, name):
                raise PassengerError(f"the population has nobody for the {name} riders")
        return pools


@dataclass(frozen=True, slots=True)
class Presentation:
    """One rider's credential and how it reaches the validator (a frame, or the keypad)."""

    category: Category
    presented: Presented
    frame: bytes | None = None
    keypad: tuple[str, str] | None = None


def _unknown_code(world: World, rng: random.Random) -> str:
    while True:
        code = "".join(rng.choices(_CODE_ALPHABET, k=hescode.HES_CODE_LENGTH))
        if code not in world.people:
            return code


def _random_tckn(rng: random.Random) -> str:
    return tckn.make(str(rng.randint(1, 9)) + "".join(rng.choices(string.digits, k=8)))


def _wrong_last3(right: str, rng: random.Random) -> str:
    while True:
        digits = f"{rng.randrange(100):02d}{rng.choice('02468')}"
        if digits != right:
            return digits


def _qr(category: Category, person: Person, *, with_tckn: bool = True) -> Presentation:
    payload = (
        f"{person.tckn}|{person.hes_code}" if with_tckn else hescode.format_code(person.hes_code)
    )
    return Presentation(
        category,
        Presented(
            Medium.QR, hes_code=person.hes_code, tckn_last3=person.last3 if with_tckn else None
        ),
        frame=scanner_frame(payload),
    )


def _card(category: Category, uid: str) -> Presentation:
    return Presentation(
        category, Presented(Medium.CARD, card_uid=uid.upper()), frame=f"CARD:{uid}\r".encode()
    )


def _typed(category: Category, code: str, last3: str) -> Presentation:
    return Presentation(
        category,
        Presented(Medium.KEYPAD, hes_code=code, tckn_last3=last3),
        keypad=(hescode.format_code(code), last3),
    )


def _shown(category: Category, person: Person, rng: random.Random) -> Presentation:
    """A known person's credential: QR (with or without the T.C. field), card or keypad."""
    draw = rng.random()
    if person.card_uid is not None and draw < 0.35:
        return _card(category, person.card_uid)
    if draw < 0.75:
        return _qr(category, person, with_tckn=rng.random() < 0.8)
    return _typed(category, person.hes_code, person.last3)


def present(category: Category, pools: Pools, world: World, rng: random.Random) -> Presentation:
    """The next rider of ``category`` and what they show."""
    if category is Category.OK:
        return _shown(category, rng.choice(pools.ok), rng)
    if category is Category.RISKY:
        return _shown(category, rng.choice(pools.risky), rng)
    if category is Category.EXPIRED:
        return _shown(category, rng.choice(pools.expired), rng)
    if category is Category.TIME_WINDOW:
        return _shown(category, rng.choice(pools.restricted), rng)
    if category is Category.ONLINE:
        person = rng.choice(pools.unregistered)
        if rng.random() < 0.6:
            return _qr(category, person)
        return _typed(category, person.hes_code, person.last3)
    if category is Category.NOT_FOUND:
        code = _unknown_code(world, rng)
        if rng.random() < 0.5:
            number = _random_tckn(rng)
            return Presentation(
                category,
                Presented(Medium.QR, hes_code=code, tckn_last3=number[-3:]),
                frame=scanner_frame(f"{number}|{code}"),
            )
        return _typed(category, code, _wrong_last3("", rng))
    if category is Category.UNKNOWN_CARD:
        while True:
            uid = rng.randbytes(7).hex().upper()
            if uid not in world.cards:
                return _card(category, uid)
    if category is Category.MISMATCH:
        person = rng.choice(pools.ok)
        return _typed(category, person.hes_code, _wrong_last3(person.last3, rng))
    if category is Category.GARBAGE:
        if rng.random() < 0.2:
            person = rng.choice(pools.ok)
            odd = person.last3[:2] + rng.choice("13579")
            return Presentation(
                category,
                Presented(Medium.BAD_KEYPAD, hes_code=person.hes_code, tckn_last3=odd),
                keypad=(hescode.format_code(person.hes_code), odd),
            )
        return Presentation(category, Presented(Medium.GARBAGE), frame=rng.choice(GARBAGE_FRAMES))
    if category is Category.CHANGING and pools.changing is not None:
        return _shown(category, pools.changing, rng)
    return _shown(Category.OK, rng.choice(pools.ok), rng)


@dataclass(frozen=True, slots=True)
class Tap:
    """One tap: who showed what where, and the answer the validator showed."""

    device: str
    seq: int
    sent_ms: int
    #: When the validator decided (its answer's time).
    time_ms: int
    category: Category
    presented: Presented
    reason: Reason
    decision: Decision
    decided_by: DecidedBy
    method: str | None
    latency_us: int
    list_version: int


@dataclass(frozen=True, slots=True)
class Unanswered:
    """A tap the validator showed no answer for in time."""

    device: str
    sent_ms: int
    category: Category
    problem: str


@dataclass(frozen=True, slots=True)
class Door:
    """One validator as a rider meets it: its scanner line and its screen."""

    device: str
    screen: Screen
    send_frame: Callable[[bytes], None]


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def tap_of(device: str, sent_ms: int, presentation: Presentation, answer: dict[str, Any]) -> Tap:
    """A :class:`Tap` from the answer JSON a screen gives (keypad, or ``last_decision``)."""
    return Tap(
        device=device,
        seq=int(answer["seq"]),
        sent_ms=sent_ms,
        time_ms=int(answer["time_ms"]),
        category=presentation.category,
        presented=presentation.presented,
        reason=Reason[answer["reason"]],
        decision=Decision[str(answer["decision"]).upper()],
        decided_by=DecidedBy[str(answer["decided_by"]).upper()],
        method=answer["method"],
        latency_us=int(answer["latency_us"]),
        list_version=int(answer["list_version"]),
    )


class Passengers:
    """Riders at every door until told to stop; keeps every tap and every count."""

    def __init__(
        self,
        world: World,
        doors: Sequence[Door],
        *,
        pools: Pools,
        seed: int = 1,
        pace_s: float = 0.5,
    ) -> None:
        self.world = world
        self.doors = tuple(doors)
        self.pools = pools
        self._seed = seed
        self._pace_s = pace_s
        self.taps: list[Tap] = []
        self.unanswered: list[Unanswered] = []
        self.counts: dict[str, collections.Counter[Reason]] = {
            door.device: collections.Counter() for door in self.doors
        }
        self.last: dict[str, Tap] = {}
        self._next: dict[str, list[Category]] = {door.device: [] for door in self.doors}

    def send(self, category: Category, devices: Sequence[str] | None = None) -> None:
        """Send a rider of ``category`` to each door (or to ``devices``) before the deck goes on."""
        for device in self._next if devices is None else devices:
            self._next[device].append(category)

    async def run(self, stop: asyncio.Event) -> None:
        """Send riders to every door until ``stop`` is set; the first failure ends them all."""
        doors = [
            asyncio.create_task(
                self._door(door, random.Random(self._seed * 1000 + i), stop)  # noqa: S311 - made-up riders
            )
            for i, door in enumerate(self.doors)
        ]
        try:
            # gather, not a TaskGroup: the caller gets the failure itself, not an ExceptionGroup.
            await asyncio.gather(*doors)
        finally:
            for task in doors:
                task.cancel()
            await asyncio.wait(doors)
            for task in doors:
                if not task.cancelled() and (error := task.exception()) is not None:
                    log.debug("door stopped by a failure", error=repr(error))

    async def _door(self, door: Door, rng: random.Random, stop: asyncio.Event) -> None:
        status = await door.screen.status()
        last_seq = int(status["last_seq"])
        deck: list[Category] = []
        while not stop.is_set():
            if not deck:
                deck = list(DECK)
                rng.shuffle(deck)
            queued = self._next[door.device]
            category = queued.pop(0) if queued else deck.pop()
            presentation = present(category, self.pools, self.world, rng)
            sent_ms = _wall_ms()
            try:
                answer = await self._tap(door, presentation, last_seq)
            except (ServiceError, TimeoutError, PassengerError) as err:
                problem = f"{type(err).__name__}: {err}"
                log.warning("tap unanswered", device=door.device, problem=problem)
                self.unanswered.append(
                    Unanswered(door.device, sent_ms, presentation.category, problem)
                )
                status = await door.screen.status()
                last_seq = int(status["last_seq"])
            else:
                tap = tap_of(door.device, sent_ms, presentation, answer)
                last_seq = tap.seq
                self.taps.append(tap)
                self.counts[door.device][tap.reason] += 1
                self.last[door.device] = tap
            pause = self._pace_s * rng.uniform(0.5, 1.5)
            try:
                async with asyncio.timeout(pause):
                    await stop.wait()
            except TimeoutError:
                continue

    async def _tap(self, door: Door, presentation: Presentation, last_seq: int) -> dict[str, Any]:
        if presentation.keypad is not None:
            code, last3 = presentation.keypad
            typed = await door.screen.keypad(code, last3)
            if typed.get("seq") is None:
                raise PassengerError(f"not recorded: {typed.get('storage_error')}")
            return typed
        if presentation.frame is None:
            raise ValueError("a presentation needs a frame or keypad input")
        door.send_frame(presentation.frame)
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            while True:
                answer = (await door.screen.status())["last_decision"]
                if answer is not None and answer["seq"] is not None and answer["seq"] > last_seq:
                    if answer["seq"] != last_seq + 1:
                        raise PassengerError(
                            f"{door.device} answered #{answer['seq']}, expected #{last_seq + 1}"
                        )
                    result: dict[str, Any] = answer
                    return result
                await asyncio.sleep(_POLL_S)
