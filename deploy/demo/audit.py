"""The audit: every tap stored exactly once, every answer the one the truth called for.

Three checks over a :class:`~deploy.demo.scenario.RunResult`:

1. **Exactly once.** The auditor export holds each (device, sequence number)
   at most once, and for each validator exactly the numbers 1 to its last
   one; the depot's fleet view agrees (ack and count).
2. **The same tap.** Each answer a rider saw is the export's row of that
   number: reason, decision, how it was decided, read method, and the
   credential key worked out from what the rider showed.
3. **The right answer.** Each answer is the simulator's truth at that moment
   (:meth:`World.truth`), decided from the list or online. Answers the
   policy gives when something is out of reach (UNKNOWN_OFFLINE, STALE_LIST)
   are accepted only while something was: the validator's link cut, or the
   Ministry out for a HES code; and with the policy's decision. While a link
   is cut nothing may be answered online; while the Ministry is out, a code
   the depot never had an answer for may not be either.

Around every event there is a band in which either behaviour is right (a tap
that straddles the moment, the breaker's cool-down, a connection that dies
on first use); a status change has until it can have reached the validator
(refresh, then sync, later if an outage held it up). Each band is computed
from the configuration, not guessed.
"""

from __future__ import annotations

import collections
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from deploy.demo.passengers import Tap
from deploy.demo.scenario import EventKind, RunResult, Timeline
from deploy.demo.stack import StackSpec
from deploy.demo.world import Medium, Presented, World
from protocol.credentials import CredentialKind, credential_key
from protocol.messages import Behaviour
from protocol.reasons import DecidedBy, Decision, Reason

#: Around an event, a tap decided this close to it may go either way.
EDGE_S: Final = 1.0
_METHODS: Final = {Medium.QR: "QR", Medium.CARD: "CARD", Medium.KEYPAD: "KEYPAD"}


def _decision(behaviour: Behaviour) -> Decision:
    return Decision.ALLOW_FLAGGED if behaviour is Behaviour.ALLOW_FLAGGED else Decision.DENY


@dataclass(frozen=True, slots=True)
class Allowances:
    """What the policy and the configuration let answers do around events."""

    offline_unknown: Decision
    stale_list: Decision
    max_list_age_s: float
    #: The validators' delta, heartbeat and policy interval.
    sync_interval_s: float
    #: After the Ministry is back: the breaker's cool-down, the check budget and a margin.
    ministry_grace_s: float
    #: After a link returns: pooled connections that died fail once, backoffs end.
    link_grace_s: float
    #: From a change at the Ministry to the depot's list: a refresh round after recheck age.
    refresh_s: float

    @classmethod
    def of(cls, spec: StackSpec) -> Allowances:
        """The allowances of a stack as it was configured."""
        policy, depot, validator = spec.policy, spec.depot_tuning, spec.validator_tuning
        return cls(
            offline_unknown=_decision(policy.offline_unknown),
            stale_list=_decision(policy.stale_list),
            max_list_age_s=policy.max_list_age_s,
            sync_interval_s=validator.sync_interval_s,
            ministry_grace_s=depot.breaker_cooldown_s + depot.check_budget_ms / 1000 + EDGE_S,
            link_grace_s=validator.backoff_max_s + EDGE_S,
            refresh_s=depot.refresh_interval_s + depot.recheck_after_s + EDGE_S,
        )


@dataclass(frozen=True, slots=True)
class AuditReport:
    """What the audit found: counts, and every problem in words."""

    taps: int
    exported: int
    recorded: Mapping[str, int]
    stored: Mapping[str, int]
    by_reason: Mapping[Reason, int]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong."""
        return not self.problems


def expected_key(list_key: bytes, presented: Presented) -> str | None:
    """The credential key (hex) a validator records for what was shown; ``None`` if unreadable."""
    if not presented.readable:
        return None
    if presented.medium is Medium.CARD:
        return credential_key(list_key, CredentialKind.CARD, presented.card_uid or "").hex()
    return credential_key(list_key, CredentialKind.HES_CODE, presented.hes_code or "").hex()


def _at(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


class _Judge:
    """Checks answers against the truth and the outage windows of one run."""

    def __init__(self, result: RunResult, allowances: Allowances) -> None:
        self.world: World = result.world
        self.allow = allowances
        timeline: Timeline = result.timeline()
        self.ministry = timeline.windows(EventKind.MINISTRY_DOWN, EventKind.MINISTRY_UP)
        devices = {t.device for t in result.taps}
        self.links = {
            d: timeline.windows(EventKind.LINK_CUT, EventKind.LINK_RESTORED, d) for d in devices
        }
        # When the depot first answered each HES code online: before that, it had no answer.
        self.first_online: dict[str, float] = {}
        for tap in sorted(result.taps, key=lambda t: t.time_ms):
            code = tap.presented.hes_code
            if tap.decided_by is DecidedBy.ONLINE and code is not None:
                self.first_online.setdefault(code, tap.time_ms / 1000)

    @staticmethod
    def _state(t: float, windows: Iterable[tuple[float, float]], grace_s: float) -> str:
        """``down`` inside a window, ``edge`` near its ends (or in its grace), else ``up``."""
        state = "up"
        for start, end in windows:
            if start + EDGE_S <= t < end:
                return "down"
            if start - EDGE_S <= t < start + EDGE_S or end <= t < end + grace_s:
                state = "edge"
        return state

    def link(self, device: str, t: float) -> str:
        return self._state(t, self.links.get(device, ()), self.allow.link_grace_s)

    def ministry_state(self, t: float) -> str:
        return self._state(t, self.ministry, self.allow.ministry_grace_s)

    def _seen_by(self, device: str, change_at: float) -> float:
        """When a change at the Ministry at ``change_at`` can have reached ``device``'s list."""
        allow = self.allow
        depot_by = change_at + allow.refresh_s
        for start, end in self.ministry:
            if start <= depot_by and end >= change_at:
                depot_by = max(depot_by, end + allow.ministry_grace_s + allow.refresh_s)
        seen_by = depot_by + allow.sync_interval_s + EDGE_S
        for start, end in self.links.get(device, ()):
            if start <= seen_by and end >= change_at:
                seen_by = max(seen_by, end + allow.link_grace_s + allow.sync_interval_s)
        return seen_by

    def truths(self, tap: Tap) -> set[Reason]:
        """The reasons right for this tap: the truth now, or before a change still on its way."""
        t = tap.time_ms / 1000
        right = {self.world.truth(tap.presented, _at(t))}
        person = self.world.person_of(tap.presented)
        if person is not None:
            for change in person.changes:
                at = change.at.timestamp()
                if at <= t <= self._seen_by(tap.device, at):
                    right.add(self.world.truth(tap.presented, _at(at - 0.001)))
        return right

    def _was_cut_long_enough(self, device: str, t: float) -> bool:
        allow = self.allow
        for start, end in self.links.get(device, ()):
            # Stale from max_list_age_s after the last sync before the cut, until the first after.
            earliest = start + allow.max_list_age_s - allow.sync_interval_s - EDGE_S
            if earliest <= t <= end + allow.link_grace_s + allow.sync_interval_s:
                return True
        return False

    def problem(self, tap: Tap) -> str | None:
        """What is wrong with this answer, or ``None``."""
        t = tap.time_ms / 1000
        presented = tap.presented
        is_code = presented.medium in (Medium.QR, Medium.KEYPAD)
        right = self.truths(tap)
        if tap.decided_by is DecidedBy.OFFLINE_POLICY:
            return self._offline_problem(tap, t, is_code=is_code, right=right)
        if tap.reason not in right:
            return f"answered {tap.reason.name}, the truth is {'/'.join(r.name for r in right)}"
        want = Decision.ALLOW if tap.reason is Reason.OK else Decision.DENY
        if tap.decision is not want:
            return f"{tap.reason.name} with decision {tap.decision.name}"
        if tap.decided_by is DecidedBy.NONE and tap.reason is not Reason.UNREADABLE:
            return f"{tap.reason.name} decided by nobody"
        if tap.decided_by is DecidedBy.ONLINE:
            if self.link(tap.device, t) == "down":
                return "answered online while its link to the depot was cut"
            first = self.first_online.get(presented.hes_code or "", t)
            registered = (
                person := self.world.person_of(presented)
            ) is not None and person.registered
            if is_code and not registered and first >= t and self.ministry_state(t) == "down":
                return "answered online while the Ministry was out, for a code never asked before"
        return None

    def _offline_problem(
        self, tap: Tap, t: float, *, is_code: bool, right: set[Reason]
    ) -> str | None:
        allow = self.allow
        if tap.reason is Reason.UNKNOWN_OFFLINE:
            cut = self.link(tap.device, t) != "up"
            ministry_out = is_code and self.ministry_state(t) != "up"
            if not (cut or ministry_out):
                return "UNKNOWN_OFFLINE while the depot and the Ministry were both reachable"
            if tap.decision is not allow.offline_unknown:
                wanted = allow.offline_unknown.name
                return f"UNKNOWN_OFFLINE with {tap.decision.name}, the policy says {wanted}"
            return None
        if tap.reason is Reason.STALE_LIST:
            if Reason.OK not in right:
                return (
                    f"STALE_LIST for a rider the truth refuses ({'/'.join(r.name for r in right)})"
                )
            if not self._was_cut_long_enough(tap.device, t):
                return "STALE_LIST though the list cannot have been older than the policy allows"
            if tap.decision is not allow.stale_list:
                return (
                    f"STALE_LIST with {tap.decision.name}, the policy says {allow.stale_list.name}"
                )
            return None
        return f"{tap.reason.name} decided by the offline policy"


def _row_problem(tap: Tap, row: Mapping[str, Any], list_key: bytes) -> str | None:
    want = {
        "reason": tap.reason.name,
        "decision": tap.decision.name,
        "decided_by": tap.decided_by.name,
        "method": _METHODS.get(tap.presented.medium)
        or ("KEYPAD" if tap.presented.medium is Medium.BAD_KEYPAD else None),
        "key": expected_key(list_key, tap.presented),
    }
    for name, value in want.items():
        if row.get(name) != value:
            return f"the depot stored {name} {row.get(name)!r}, the validator showed {value!r}"
    return None


def audit(result: RunResult, list_key: bytes, allowances: Allowances) -> AuditReport:
    """Check a run; every problem found is one line in the report."""
    problems: list[str] = []
    rows: dict[tuple[str, int], Mapping[str, Any]] = {}
    for stored_row in result.exported:
        ident = (str(stored_row["device"]), int(stored_row["seq"]))
        if ident in rows:
            problems.append(f"{ident[0]} #{ident[1]}: stored twice")
        rows[ident] = stored_row
    recorded = {d: int(s["last_seq"]) for d, s in result.statuses.items()}
    stored = collections.Counter(d for d, _ in rows)
    fleet = {d["id"]: d for d in result.fleet.get("devices", ())}
    for device, last_seq in recorded.items():
        held = {seq for d, seq in rows if d == device}
        missing = sorted(set(range(1, last_seq + 1)) - held)
        extra = sorted(held - set(range(1, last_seq + 1)))
        if missing:
            problems.append(
                f"{device}: {len(missing)} taps recorded but not stored, first #{missing[0]}"
            )
        if extra:
            problems.append(
                f"{device}: {len(extra)} taps stored but never recorded, first #{extra[0]}"
            )
        seen = fleet.get(device)
        if seen is None or seen["ack"] != last_seq or seen["taps_stored"] != last_seq:
            problems.append(f"{device}: the fleet view disagrees with {last_seq} taps recorded")
    for miss in result.unanswered:
        problems.append(
            f"{miss.device}: a {miss.category.value} rider got no answer ({miss.problem})"
        )
    judge = _Judge(result, allowances)
    answered = set()
    for tap in result.taps:
        answered.add((tap.device, tap.seq))
        where = f"{tap.device} #{tap.seq} ({tap.category.value}, {tap.presented.medium.value})"
        row = rows.get((tap.device, tap.seq))
        if row is None:
            problems.append(f"{where}: not in the auditor export")
        elif (issue := _row_problem(tap, row, list_key)) is not None:
            problems.append(f"{where}: {issue}")
        if (issue := judge.problem(tap)) is not None:
            problems.append(f"{where}: {issue}")
    strangers = sorted(set(rows) - answered)
    if strangers and not result.unanswered:
        problems.append(f"{len(strangers)} stored taps no rider made, first {strangers[0]}")
    by_reason = collections.Counter(Reason[str(row["reason"])] for row in rows.values())
    return AuditReport(
        taps=len(result.taps),
        exported=len(result.exported),
        recorded=recorded,
        stored=dict(stored),
        by_reason=dict(by_reason),
        problems=tuple(problems),
    )
