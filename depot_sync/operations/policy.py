"""The boarding policy: a TOML file on the depot, signed and served to every validator.

```toml
version = 7                       # optional: without it, one is derived from the content
timezone = "Europe/Istanbul"
offline_unknown = "allow_flagged" # or "deny": a code the list lacks while offline
stale_list = "allow_flagged"      # or "deny": the list is older than max_list_age_s
max_list_age_s = 86400

[[rules]]
group = "65+"                     # or "under_20"
windows = [
  { days = ["mon", "tue", "wed", "thu", "fri"], start = "10:00", end = "13:00" },
]
```

A group with a rule may board only inside one of its windows (no windows: not
at all); a group without a rule is not restricted. The file is read again when
it changes; a broken edit is logged and the last good policy stays in force.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog

from protocol import codec
from protocol.listsign import ListSigner, seal
from protocol.messages import (
    MAX_POLICY_RULES,
    PROTOCOL_VERSION,
    Behaviour,
    GroupRule,
    Policy,
    TimeWindow,
)
from protocol.risk import Groups
from runtime.config import ConfigError, build, read_toml

log = structlog.get_logger("hesgate.depot.policy")

DAY_NAMES: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FULL_DAY_NAMES: Final = (
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
)  # fmt: skip
_DAY_SETS: Final[Mapping[str, tuple[int, ...]]] = MappingProxyType(
    {
        "all": tuple(range(7)),
        "weekdays": tuple(range(5)),
        "weekend": (5, 6),
    }
)
GROUP_NAMES: Final[Mapping[str, Groups]] = MappingProxyType(
    {
        "65+": Groups.AGE_65_PLUS,
        "age_65_plus": Groups.AGE_65_PLUS,
        "under_20": Groups.UNDER_20,
    }
)


class PolicyError(ValueError):
    """The policy file is wrong; the message names the place."""


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """A window as written in the file."""

    days: tuple[str | int, ...]
    start: str
    end: str


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A rule as written in the file."""

    group: str
    windows: tuple[WindowSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class PolicyFile:
    """The policy file's shape; the defaults are the policy without a file."""

    version: int | None = None
    timezone: str = "Europe/Istanbul"
    offline_unknown: Behaviour = Behaviour.ALLOW_FLAGGED
    stale_list: Behaviour = Behaviour.ALLOW_FLAGGED
    max_list_age_s: int = 86400
    rules: tuple[RuleSpec, ...] = ()


def _minutes(text: str, where: str) -> int:
    hours, sep, minutes = text.strip().partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2:
        raise PolicyError(f"{where}: expected HH:MM, got {text!r}")
    value = int(hours) * 60 + int(minutes)
    if int(minutes) >= 60 or value > 1440:
        raise PolicyError(f"{where}: {text!r} is not a time of day (00:00 to 24:00)")
    return value


def _days(days: tuple[str | int, ...], where: str) -> list[int]:
    out: set[int] = set()
    for day in days:
        if isinstance(day, int):
            if not 0 <= day <= 6:
                raise PolicyError(f"{where}: day numbers are 0 (Monday) to 6 (Sunday)")
            out.add(day)
            continue
        name = day.strip().lower()
        if name in _DAY_SETS:
            out.update(_DAY_SETS[name])
        elif name in DAY_NAMES or name in FULL_DAY_NAMES:
            out.add(DAY_NAMES.index(name[:3]))
        else:
            raise PolicyError(
                f"{where}: unknown day {day!r} (mon..sun, 0..6, all, weekdays, weekend)"
            )
    if not out:
        raise PolicyError(f"{where}: a window needs at least one day")
    return sorted(out)


def _rule(spec: RuleSpec, index: int) -> GroupRule:
    where = f"rules[{index}]"
    group = GROUP_NAMES.get(spec.group.strip().lower())
    if group is None:
        raise PolicyError(f"{where}.group: expected 65+ or under_20, got {spec.group!r}")
    windows = []
    for w, window in enumerate(spec.windows):
        wwhere = f"{where}.windows[{w}]"
        start = _minutes(window.start, f"{wwhere}.start")
        end = _minutes(window.end, f"{wwhere}.end")
        if start >= end:
            raise PolicyError(f"{wwhere}: start must be before end (split windows over midnight)")
        windows.append(
            TimeWindow(weekdays=_days(window.days, f"{wwhere}.days"), start_min=start, end_min=end)
        )
    return GroupRule(group=group, windows=windows)


def policy_from(spec: PolicyFile, *, issued_ms: int, content: bytes = b"") -> Policy:
    """Check a parsed policy file and make the :class:`Policy` message."""
    try:
        ZoneInfo(spec.timezone)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise PolicyError(f"timezone: unknown time zone {spec.timezone!r}") from err
    if len(spec.rules) > MAX_POLICY_RULES:
        raise PolicyError(f"rules: at most {MAX_POLICY_RULES}")
    rules = [_rule(r, i) for i, r in enumerate(spec.rules)]
    groups = [r.group for r in rules]
    if len(set(groups)) != len(groups):
        raise PolicyError("rules: each group may have one rule (put all its windows in it)")
    if not 60 <= spec.max_list_age_s <= 30 * 86400:
        raise PolicyError("max_list_age_s: expected 60 to 2592000 (30 days)")
    version = spec.version
    if version is None:
        # Derived from the file's bytes: any edit gives validators a new version to fetch.
        version = int.from_bytes(hashlib.sha256(content).digest()[:8], "big") >> 1
    if not 0 <= version < 2**63:
        raise PolicyError("version: expected 0 to 2**63 - 1")
    policy = Policy(
        v=PROTOCOL_VERSION,
        version=version,
        issued_ms=issued_ms,
        timezone=spec.timezone,
        rules=rules,
        offline_unknown=spec.offline_unknown,
        stale_list=spec.stale_list,
        max_list_age_s=spec.max_list_age_s,
    )
    try:
        codec.encode(policy)
    except codec.MessageError as err:
        raise PolicyError(f"{err.path}: {err.problem}") from err
    return policy


def load_policy(path: Path | None, *, issued_ms: int) -> Policy:
    """Read and check the policy file (``None``: the default policy)."""
    if path is None:
        return policy_from(PolicyFile(version=0), issued_ms=issued_ms)
    try:
        content = path.read_bytes()
        spec = build(PolicyFile, read_toml(path))
    except OSError as err:
        raise PolicyError(f"cannot read {path}: {err}") from err
    except ConfigError as err:
        raise PolicyError(str(err)) from err
    return policy_from(spec, issued_ms=issued_ms, content=content)


@dataclass(frozen=True, slots=True)
class SignedPolicy:
    """The policy in force and its signed wire form."""

    policy: Policy
    wire: bytes

    @property
    def etag(self) -> str:
        """An entity tag that changes with the policy's content."""
        return '"' + hashlib.sha256(codec.encode(self.policy)).hexdigest()[:32] + '"'


class PolicySource:
    """The policy file, re-read when it changes; the last good policy if an edit breaks it."""

    def __init__(self, path: Path | None, signer: ListSigner) -> None:
        self._path = path
        self._signer = signer
        self._stamp: tuple[int, int] | None = None
        self._current = self._load()

    def _file_stamp(self) -> tuple[int, int] | None:
        if self._path is None:
            return None
        try:
            st = os.stat(self._path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _load(self) -> SignedPolicy:
        stamp = self._file_stamp()
        policy = load_policy(self._path, issued_ms=time.time_ns() // 1_000_000)
        self._stamp = stamp
        wire = codec.encode(seal(self._signer, codec.encode(policy)))
        log.info("policy loaded", version=policy.version, rules=len(policy.rules))
        return SignedPolicy(policy, wire)

    def current(self) -> SignedPolicy:
        """The policy in force (reloaded first if the file changed)."""
        if self._path is not None and self._file_stamp() != self._stamp:
            try:
                self._current = self._load()
            except PolicyError as err:
                # Do not retry on every request: only when the file changes again.
                self._stamp = self._file_stamp()
                log.error("policy file is invalid; keeping the last good policy", error=str(err))  # noqa: TRY400
        return self._current
