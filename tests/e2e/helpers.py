"""A small made-up world and run results, for the demo's parts tested without processes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from deploy.demo.audit import Allowances, expected_key
from deploy.demo.configs import DemoPolicy
from deploy.demo.passengers import Category, Tap
from deploy.demo.scenario import Event, EventKind, RunResult
from deploy.demo.world import Change, Medium, Person, Presented, World
from protocol import tckn
from protocol.reasons import DecidedBy, Decision, Reason
from protocol.risk import HealthStatus

LIST_KEY = bytes(range(32))
T0 = 1_800_000_000.0  # the run's start, seconds since the epoch
NOW = dt.datetime.fromtimestamp(T0, dt.UTC)
YEAR = 2027
FAR = NOW + dt.timedelta(days=200)
# A window that never contains the run's moments: restricted riders are barred throughout.
POLICY = DemoPolicy(window_start_min=0, window_end_min=1)
ALLOW = Allowances(
    offline_unknown=Decision.ALLOW_FLAGGED,
    stale_list=Decision.ALLOW_FLAGGED,
    max_list_age_s=60,
    sync_interval_s=2.0,
    ministry_grace_s=4.0,
    link_grace_s=3.0,
    refresh_s=5.0,
)


def person(
    code: str,
    nine: str,
    *,
    status: HealthStatus = HealthStatus.RISKLESS,
    expires_at: dt.datetime = FAR,
    card: str | None = None,
    born: int | None = 1980,
    changes: Sequence[Change] = (),
) -> Person:
    return Person(
        hes_code=code,
        tckn=tckn.make(nine),
        status=status,
        expires_at=expires_at,
        changes=tuple(changes),
        card_uid=card,
        birth_year=born if card is not None else None,
    )


ADULT = person("ADULT00001", "123456789", card="04A1B2C3D4E5F6")
RISKY = person("RISKY00002", "223456789", status=HealthStatus.RISKY, card="04A1B2C3D4E5F7")
OLD = person("SENIOR0003", "323456789", card="04A1B2C3D4E5F8", born=1950)
YOUNG = person("YOUNG00004", "423456789", card="04A1B2C3D4E5F9", born=2012)
LAPSED = person("LAPSED0005", "523456789", expires_at=NOW - dt.timedelta(days=3))
STRANGER = person("ONLINE0006", "623456789")  # known to the Ministry only
CHANGING = person(
    "CHANGE0007",
    "723456789",
    card="04A1B2C3D4E5FA",
    changes=[Change(NOW + dt.timedelta(seconds=10), status=HealthStatus.RISKY)],
)
PEOPLE = (ADULT, RISKY, OLD, YOUNG, LAPSED, STRANGER, CHANGING)


def world(people: Iterable[Person] = PEOPLE, policy: DemoPolicy = POLICY) -> World:
    crowd = {p.hes_code: p for p in people}
    cards = {p.card_uid: p.hes_code for p in crowd.values() if p.card_uid is not None}
    unregistered = frozenset(c for c, p in crowd.items() if not p.registered)
    return World(crowd, cards, policy, YEAR, unregistered)


def qr(p: Person) -> Presented:
    return Presented(Medium.QR, hes_code=p.hes_code, tckn_last3=p.last3)


def card(p: Person) -> Presented:
    return Presented(Medium.CARD, card_uid=p.card_uid)


def typed(code: str, last3: str) -> Presented:
    return Presented(Medium.KEYPAD, hes_code=code, tckn_last3=last3)


GARBAGE = Presented(Medium.GARBAGE)


def tap(
    seq: int,
    at_s: float,
    presented: Presented,
    reason: Reason,
    decided_by: DecidedBy,
    *,
    device: str = "bus-1",
    decision: Decision | None = None,
    category: Category = Category.OK,
) -> Tap:
    """A tap ``at_s`` seconds into the run; the decision defaults to what the reason implies."""
    if decision is None:
        decision = Decision.ALLOW if reason is Reason.OK else Decision.DENY
        if decided_by is DecidedBy.OFFLINE_POLICY:
            decision = Decision.ALLOW_FLAGGED
    methods = {Medium.QR: "qr", Medium.CARD: "card", Medium.KEYPAD: "keypad"}
    time_ms = int((T0 + at_s) * 1000)
    return Tap(
        device=device,
        seq=seq,
        sent_ms=time_ms - 1,
        time_ms=time_ms,
        category=category,
        presented=presented,
        reason=reason,
        decision=decision,
        decided_by=decided_by,
        method=methods.get(presented.medium),
        latency_us=400,
        list_version=10,
    )


def row(t: Tap) -> dict[str, Any]:
    """The auditor export's row for a tap, as the depot writes it."""
    methods = {Medium.QR: "QR", Medium.CARD: "CARD", Medium.KEYPAD: "KEYPAD"}
    return {
        "device": t.device,
        "seq": t.seq,
        "time_ms": t.time_ms,
        "method": methods.get(t.presented.medium),
        "key": expected_key(LIST_KEY, t.presented),
        "decision": t.decision.name,
        "reason": t.reason.name,
        "decided_by": t.decided_by.name,
        "latency_us": t.latency_us,
    }


def event(at_s: float, kind: EventKind, device: str | None = None) -> Event:
    return Event(T0 + at_s, kind, device)


def result(
    taps: Sequence[Tap],
    *,
    events: Sequence[Event] = (),
    rows: Sequence[dict[str, Any]] | None = None,
    the_world: World | None = None,
) -> RunResult:
    """A finished run of these taps, every one stored once unless ``rows`` says otherwise."""
    exported = [row(t) for t in taps] if rows is None else list(rows)
    devices = sorted({t.device for t in taps})
    last = {d: max((t.seq for t in taps if t.device == d), default=0) for d in devices}
    return RunResult(
        started_at=T0,
        ended_at=T0 + 60,
        taps=tuple(taps),
        unanswered=(),
        events=(event(0, EventKind.START), *events),
        world=the_world or world(),
        exported=tuple(exported),
        statuses={d: {"last_seq": last[d], "list_version": 10} for d in devices},
        fleet={
            "devices": [{"id": d, "ack": last[d], "taps_stored": last[d]} for d in devices],
            "list": {"version": 12, "snapshot": {"list_version": 10, "entries": 9}},
        },
        drained=True,
        interrupted=False,
        changing=CHANGING.hes_code,
    )
