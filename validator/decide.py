"""The boarding decision: a pure function of what the list says, the policy and the time.

Precedence, first match wins:

1. UNREADABLE: the frame or keypad entry could not be read.
2. TCKN_MISMATCH: the rider gave T.C. digits and the list holds different ones
   (a list entry without digits cannot mismatch).
3. RISKY: the Ministry says the code is risky.
4. EXPIRED: today (Europe/Istanbul) is after the code's expiry day.
5. TIME_WINDOW: the rider is in a group the policy restricts, and now (in the
   policy's time zone) is outside every window of that group's rule.
6. OK.

A key the list does not know goes to the depot (:func:`decide_online`);
without an answer in time it is UNKNOWN_OFFLINE with the policy's
``offline_unknown`` behaviour (:func:`decide_offline`). A stale list (older
than ``policy.max_list_age_s``) is not trusted to let anyone on: an OK it would
give becomes STALE_LIST with the policy's ``stale_list`` behaviour, while a
refusal it gives stands (a stale list cannot make a risky code less risky).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from protocol.credentials import Credential
from protocol.messages import PROTOCOL_VERSION, Behaviour, CheckAnswer, CheckOutcome, Policy
from protocol.reasons import Colour, DecidedBy, Decision, Reason, colour_of
from protocol.risk import ISTANBUL, Groups, HealthStatus, ListEntry, local_day

#: The policy in force before the depot's first signed policy arrives: refuse whatever
#: cannot be checked, so a validator out of the box never says OK by accident.
DEFAULT_POLICY = Policy(
    v=PROTOCOL_VERSION,
    version=0,
    issued_ms=0,
    timezone="Europe/Istanbul",
    rules=[],
    offline_unknown=Behaviour.DENY,
    stale_list=Behaviour.DENY,
    max_list_age_s=86400,
)

_MINUTES_PER_DAY = 1440


@dataclass(frozen=True, slots=True)
class Verdict:
    """An answer: why, whether the rider boards, and where it came from."""

    reason: Reason
    decision: Decision
    decided_by: DecidedBy

    @property
    def colour(self) -> Colour:
        """The colour the screen shows for this answer."""
        return colour_of(self.reason, self.decision)


UNREADABLE = Verdict(Reason.UNREADABLE, Decision.DENY, DecidedBy.NONE)


def behaviour_decision(behaviour: Behaviour) -> Decision:
    """What a policy behaviour means for the rider."""
    return Decision.ALLOW_FLAGGED if behaviour is Behaviour.ALLOW_FLAGGED else Decision.DENY


def judge(entry: ListEntry, credential: Credential, policy: Policy, now: dt.datetime) -> Reason:
    """The reason an entry gives for this credential at ``now`` (an aware datetime)."""
    given = credential.tckn_last3
    if given is not None and entry.tckn_last3 is not None and given != entry.tckn_last3:
        return Reason.TCKN_MISMATCH
    if entry.status is HealthStatus.RISKY:
        return Reason.RISKY
    if entry.expiry_day is not None and local_day(now) > entry.expiry_day:
        return Reason.EXPIRED
    if not may_travel_now(entry.groups, policy, now):
        return Reason.TIME_WINDOW
    return Reason.OK


def may_travel_now(groups: Groups, policy: Policy, now: dt.datetime) -> bool:
    """Whether riders in ``groups`` may board at ``now`` under the policy's group rules.

    A rider in several restricted groups must be inside a window of each. A
    window whose end is not after its start runs overnight into the next day.
    """
    if not groups:
        return True
    local = now.astimezone(policy_zone(policy))
    weekday = local.weekday()
    minute = local.hour * 60 + local.minute
    for rule in policy.rules:
        if not rule.group & groups:
            continue
        if not any(
            _in_window(w.weekdays, w.start_min, w.end_min, weekday, minute) for w in rule.windows
        ):
            return False
    return True


def _in_window(weekdays: list[int], start: int, end: int, weekday: int, minute: int) -> bool:
    if start < end:
        return weekday in weekdays and start <= minute < end
    # Overnight: the evening part on the listed day, the morning part on the day after.
    if weekday in weekdays and minute >= start:
        return True
    return (weekday - 1) % 7 in weekdays and minute < end


def policy_zone(policy: Policy) -> ZoneInfo:
    """The policy's time zone; Europe/Istanbul when the policy names none this box knows."""
    try:
        return ZoneInfo(policy.timezone)
    except (ValueError, KeyError, OSError):
        return ISTANBUL


def decide_local(
    entry: ListEntry,
    credential: Credential,
    policy: Policy,
    now: dt.datetime,
    *,
    stale: bool,
) -> Verdict:
    """Decide on the local list's entry; a stale list may refuse but not let on."""
    reason = judge(entry, credential, policy, now)
    if reason is Reason.OK:
        if stale:
            return Verdict(
                Reason.STALE_LIST,
                behaviour_decision(policy.stale_list),
                DecidedBy.OFFLINE_POLICY,
            )
        return Verdict(Reason.OK, Decision.ALLOW, DecidedBy.LOCAL_LIST)
    return Verdict(reason, Decision.DENY, DecidedBy.LOCAL_LIST)


def decide_offline(policy: Policy) -> Verdict:
    """A credential neither the list nor the depot (in time) could vouch for."""
    return Verdict(
        Reason.UNKNOWN_OFFLINE,
        behaviour_decision(policy.offline_unknown),
        DecidedBy.OFFLINE_POLICY,
    )


def decide_online(
    answer: CheckAnswer, credential: Credential, policy: Policy, now: dt.datetime
) -> Verdict:
    """Decide on the depot's online check answer.

    UNAVAILABLE, and a FOUND without a status, are never read as riskless:
    they fall back to the offline-unknown behaviour.
    """
    if answer.outcome is CheckOutcome.NOT_FOUND:
        return Verdict(Reason.NOT_FOUND, Decision.DENY, DecidedBy.ONLINE)
    if answer.outcome is CheckOutcome.EXPIRED:
        return Verdict(Reason.EXPIRED, Decision.DENY, DecidedBy.ONLINE)
    if answer.outcome is not CheckOutcome.FOUND or answer.status is None:
        return decide_offline(policy)
    entry = ListEntry(
        key=b"",
        status=answer.status,
        expiry_day=answer.expiry_day,
        tckn_last3=answer.tckn_last3,
        groups=answer.groups,
    )
    reason = judge(entry, credential, policy, now)
    decision = Decision.ALLOW if reason is Reason.OK else Decision.DENY
    return Verdict(reason, decision, DecidedBy.ONLINE)


def list_is_stale(list_age_s: float | None, policy: Policy) -> bool:
    """Whether a list of this age (``None``: no list at all) is too old to let anyone on."""
    return list_age_s is None or list_age_s > policy.max_list_age_s
