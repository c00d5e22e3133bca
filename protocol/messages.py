"""Every message between a validator and the depot (protocol v1).

MessagePack on the wire, encoded and checked by :mod:`protocol.codec`. Each
top-level message has a ``v`` field (the protocol version). Field names are
the wire names; docs/protocol.md lists them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Annotated, Final

from protocol.credentials import ReadMethod
from protocol.reasons import DecidedBy, Decision, Reason
from protocol.risk import Groups, HealthStatus
from protocol.schema import Length, Pattern, Range, compact

PROTOCOL_VERSION: Final = 1

#: Limits on what one message may hold.
MAX_BATCH_TAPS: Final = 5000
MAX_DELTA_CHANGES: Final = 20000
MAX_POLICY_RULES: Final = 32
MAX_BODY_BYTES: Final = 4 * 1024 * 1024

U63 = Range(0, 2**63 - 1)
U32 = Range(0, 2**32 - 1)
Version = Annotated[int, Range(PROTOCOL_VERSION, PROTOCOL_VERSION)]
DeviceId = Annotated[str, Length(1, 64), Pattern(r"[A-Za-z0-9][A-Za-z0-9._-]*")]
Key = Annotated[bytes, Length(8, 8)]
Label = Annotated[str, Length(0, 64)]
Last3 = Annotated[str, Length(3, 3), Pattern(r"[0-9]{3}")]
ExpiryDay = Annotated[int, Range(0, 0xFFFE)]
TimeMs = Annotated[int, U63]
ListVersion = Annotated[int, U63]


@compact
@dataclass(frozen=True, slots=True)
class TapRecord:
    """One boarding decision as the validator recorded it.

    ``method`` and ``key`` are ``None`` only for an UNREADABLE frame.
    """

    seq: Annotated[int, Range(1, 2**63 - 1)]
    time_ms: TimeMs
    method: ReadMethod | None
    key: Key | None
    decision: Decision
    reason: Reason
    decided_by: DecidedBy
    list_version: ListVersion
    latency_us: Annotated[int, U32]
    vehicle: Label
    route: Label
    trip: Label
    lat: Annotated[float, Range(-90, 90)] | None = None
    lon: Annotated[float, Range(-180, 180)] | None = None


@dataclass(frozen=True, slots=True)
class TapBatch:
    """``POST /v1/taps``: records of one device, in any order, possibly already sent."""

    v: Version
    device: DeviceId
    taps: Annotated[list[TapRecord], Length(1, MAX_BATCH_TAPS)]


@dataclass(frozen=True, slots=True)
class TapAck:
    """The answer to a batch.

    ``ack`` is the highest sequence number stored contiguously from 1 for the
    device; the validator may forget every record up to it. ``stored`` counts
    the batch's new records, ``duplicates`` the ones the depot already had.
    """

    v: Version
    ack: Annotated[int, U63]
    stored: Annotated[int, Range(0, MAX_BATCH_TAPS)]
    duplicates: Annotated[int, Range(0, MAX_BATCH_TAPS)]


@compact
@dataclass(frozen=True, slots=True)
class ListChange:
    """One change to the risk list: an entry added or replaced, or removed."""

    version: ListVersion
    key: Key
    removed: bool
    status: HealthStatus
    expiry_day: ExpiryDay | None
    tckn_last3: Last3 | None
    groups: Groups


@dataclass(frozen=True, slots=True)
class DeltaPage:
    """Signed changes after ``since`` up to ``until`` (inclusive).

    ``more`` says another page follows: ask again with ``since=until``.
    """

    v: Version
    since: ListVersion
    until: ListVersion
    changes: Annotated[list[ListChange], Length(0, MAX_DELTA_CHANGES)]
    more: bool


class Behaviour(enum.StrEnum):
    """What a validator does when it cannot be sure (offline unknown, stale list)."""

    ALLOW_FLAGGED = "allow_flagged"
    DENY = "deny"


@compact
@dataclass(frozen=True, slots=True)
class TimeWindow:
    """On these weekdays (0 = Monday), from ``start_min`` to ``end_min`` (local minutes)."""

    weekdays: Annotated[list[Annotated[int, Range(0, 6)]], Length(1, 7)]
    start_min: Annotated[int, Range(0, 1440)]
    end_min: Annotated[int, Range(0, 1440)]


@compact
@dataclass(frozen=True, slots=True)
class GroupRule:
    """Riders in ``group`` may board only inside one of ``windows``."""

    group: Groups
    windows: Annotated[list[TimeWindow], Length(0, 14)]


@dataclass(frozen=True, slots=True)
class Policy:
    """The boarding policy the depot signs and every validator applies."""

    v: Version
    version: Annotated[int, U63]
    issued_ms: TimeMs
    timezone: Annotated[str, Length(1, 64)]
    rules: Annotated[list[GroupRule], Length(0, MAX_POLICY_RULES)]
    offline_unknown: Behaviour
    stale_list: Behaviour
    max_list_age_s: Annotated[int, Range(60, 30 * 86400)]


@dataclass(frozen=True, slots=True)
class Signed:
    """A signed envelope: ``body`` is an encoded :class:`DeltaPage` or :class:`Policy`."""

    v: Version
    key_id: Annotated[str, Length(1, 64)]
    body: Annotated[bytes, Length(0, MAX_BODY_BYTES)]
    sig: Annotated[bytes, Length(64, 64)]


@dataclass(frozen=True, slots=True)
class CheckRequest:
    """``POST /v1/check``: a credential the validator's list does not know.

    ``hes_code`` (normalised) is sent only for a HES code, so the depot can
    ask the Ministry; a card travels as its key alone.
    """

    v: Version
    method: ReadMethod
    key: Key
    hes_code: Annotated[str, Length(10, 10), Pattern(r"[A-Z0-9]{10}")] | None
    tckn_last3: Last3 | None


class CheckOutcome(enum.IntEnum):
    """What the depot learnt of the credential."""

    FOUND = 0
    NOT_FOUND = 1
    EXPIRED = 2
    UNAVAILABLE = 3  # the Ministry did not answer in time: never read as riskless


@dataclass(frozen=True, slots=True)
class CheckAnswer:
    """The online check's answer; ``status`` and the rest are set when FOUND."""

    v: Version
    outcome: CheckOutcome
    status: HealthStatus | None
    expiry_day: ExpiryDay | None
    tckn_last3: Last3 | None
    groups: Groups
    list_version: ListVersion


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """``POST /v1/heartbeat``: how a validator is doing."""

    v: Version
    device: DeviceId
    time_ms: TimeMs
    software: Annotated[str, Length(1, 64)]
    last_seq: Annotated[int, U63]
    backlog: Annotated[int, U63]
    oldest_unsent_ms: TimeMs | None
    list_version: ListVersion
    list_age_s: Annotated[int, U63] | None
    policy_version: Annotated[int, U63]
    online_failures: Annotated[int, U32]


@dataclass(frozen=True, slots=True)
class HeartbeatAnswer:
    """What the depot has now, so a validator knows to fetch."""

    v: Version
    server_ms: TimeMs
    list_version: ListVersion
    policy_version: Annotated[int, U63]
    snapshot_version: ListVersion
