"""The demo's configuration files: the depot's extra sections, each validator's file, the policy.

Everything is written as TOML text for the real programs to read with their
own loaders; nothing here bypasses them. The boarding policy is built to bar
the restricted age groups at the hour the demo runs, so TIME_WINDOW answers
happen whenever it is started.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from protocol.messages import Behaviour
from protocol.risk import ISTANBUL

#: The Ministry user the depot calls the simulator as.
MINISTRY_USER: Final = "IBB-G2G-HES"
#: Both restricted groups, as the policy file names them.
RESTRICTED_GROUPS: Final = ("65+", "under_20")
_MINUTES_PER_DAY: Final = 1440


def toml_value(value: object) -> str:
    """One TOML value: strings as basic strings, numbers, booleans, paths and flat lists."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path):
        return json.dumps(str(value))
    if isinstance(value, str):
        # JSON's escapes (\n, \", \\, \uXXXX) are all valid in TOML basic strings.
        return json.dumps(value)
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def toml_table(name: str, values: Mapping[str, object]) -> str:
    """``[name]`` and one ``key = value`` line per entry."""
    lines = [f"[{name}]"]
    lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class DemoPolicy:
    """The boarding policy the demo's depot serves.

    Both restricted groups may board only inside ``window`` (local minutes
    since midnight, every day); the rest of the fields are the policy file's.
    """

    window_start_min: int
    window_end_min: int
    offline_unknown: Behaviour = Behaviour.ALLOW_FLAGGED
    stale_list: Behaviour = Behaviour.ALLOW_FLAGGED
    max_list_age_s: int = 60
    timezone: str = "Europe/Istanbul"

    def __post_init__(self) -> None:
        if not 0 <= self.window_start_min < self.window_end_min <= _MINUTES_PER_DAY:
            raise ValueError("the window must lie within one day, start before end")
        if not 60 <= self.max_list_age_s <= 30 * 86400:
            raise ValueError("max_list_age_s: 60 s to 30 days, as the protocol allows")

    def restricted_may_board(self, moment: dt.datetime) -> bool:
        """Whether a rider of a restricted group may board at ``moment`` (aware)."""
        local = moment.astimezone(ISTANBUL)
        minute = local.hour * 60 + local.minute
        return self.window_start_min <= minute < self.window_end_min

    def toml(self) -> str:
        """The policy file (docs/depot.md, "The boarding policy file")."""
        start, end = _clock(self.window_start_min), _clock(self.window_end_min)
        head = (
            "# The demo's boarding policy: both restricted groups may ride only from "
            f"{start} to {end},\n# so at the hour the demo runs they get TIME_WINDOW.\n"
            f"timezone = {toml_value(self.timezone)}\n"
            f"offline_unknown = {toml_value(self.offline_unknown.value)}\n"
            f"stale_list = {toml_value(self.stale_list.value)}\n"
            f"max_list_age_s = {self.max_list_age_s}\n"
        )
        rules = "".join(
            f"\n[[rules]]\ngroup = {toml_value(group)}\n"
            f'windows = [{{ days = ["all"], start = "{start}", end = "{end}" }}]\n'
            for group in RESTRICTED_GROUPS
        )
        return head + rules


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def policy_barring(now: dt.datetime, *, max_list_age_s: int = 60) -> DemoPolicy:
    """A policy whose one-hour window is twelve hours from ``now``: closed for the next 11 hours."""
    local = now.astimezone(ISTANBUL)
    start_hour = (local.hour + 12) % 24
    return DemoPolicy(
        window_start_min=start_hour * 60,
        window_end_min=start_hour * 60 + 60,
        max_list_age_s=max_list_age_s,
    )


@dataclass(frozen=True, slots=True)
class DepotTuning:
    """Depot settings the demo shortens so changes show within a minute."""

    #: The Ministry refresh job's period and how old an answer must be to be asked again.
    refresh_interval_s: float = 3.0
    recheck_after_s: int = 3
    #: How long the Ministry client's breaker stays open after an outage.
    breaker_cooldown_s: float = 3.0
    #: The online check's Ministry budget.
    check_budget_ms: int = 250


def depot_sections(
    *, ministry_base_url: str, policy_file: Path, tuning: DepotTuning = DepotTuning()
) -> str:
    """Sections appended to the file ``hes-depot init-config`` wrote.

    The Ministry password is not here: it reaches the depot through
    ``HESGATE_MINISTRY__PASSWORD``, as docs/ministry.md advises.
    """
    return "\n".join(
        (
            "",
            "# Added by the demo (deploy/demo/configs.py).",
            toml_table("policy", {"file": policy_file}),
            toml_table(
                "ministry",
                {
                    "base_url": ministry_base_url,
                    "username": MINISTRY_USER,
                    "breaker_cooldown_s": tuning.breaker_cooldown_s,
                },
            ),
            # Snapshots only when asked (hes-depot build-snapshot): deltas carry the rest.
            toml_table("risklist", {"snapshot_interval_s": 0.0}),
            toml_table(
                "refresh",
                {
                    "interval_s": tuning.refresh_interval_s,
                    "recheck_after_s": tuning.recheck_after_s,
                    "max_codes_per_s": 5000.0,
                },
            ),
            toml_table("check", {"budget_ms": tuning.check_budget_ms}),
        )
    )


@dataclass(frozen=True, slots=True)
class ValidatorTuning:
    """Validator settings the demo shortens (the defaults suit a bus, not a one-minute run)."""

    sync_interval_s: float = 5.0
    backoff_max_s: float = 5.0
    upload_batch_age_s: float = 2.0
    request_timeout_s: float = 5.0
    idle_s: float = 5.0


def validator_toml(
    provisioned: Mapping[str, Mapping[str, object]],
    *,
    depot_url: str,
    scanner_port: str,
    screen_port: int,
    data_dir: Path,
    vehicle: str,
    route: str,
    trip: str,
    tuning: ValidatorTuning = ValidatorTuning(),
) -> str:
    """A validator's whole file: ``provision-device``'s sections, then the bus's own.

    ``depot_url`` replaces the provisioned URL (a validator behind the demo's
    proxy reaches the depot through it).
    """
    device = provisioned["device"]
    depot = provisioned["depot"]
    sync = tuning.sync_interval_s
    return "\n".join(
        (
            "# Made by the demo from hes-depot provision-device's output. Holds secrets.",
            toml_table("device", {k: device[k] for k in ("id", "secret", "list_key")}),
            toml_table(
                "depot",
                {
                    "url": depot_url,
                    "list_key_id": depot["list_key_id"],
                    "list_public_key": depot["list_public_key"],
                    "request_timeout_s": tuning.request_timeout_s,
                },
            ),
            toml_table("scanner", {"port": scanner_port, "terminator": "CR"}),
            toml_table(
                "screen", {"host": "127.0.0.1", "port": screen_port, "idle_s": tuning.idle_s}
            ),
            toml_table("vehicle", {"vehicle": vehicle, "route": route, "trip": trip}),
            toml_table("storage", {"data_dir": data_dir}),
            toml_table(
                "upload",
                {"batch_age_s": tuning.upload_batch_age_s, "backoff_max_s": tuning.backoff_max_s},
            ),
            toml_table(
                "sync",
                {
                    "delta_interval_s": sync,
                    "policy_interval_s": sync,
                    "heartbeat_interval_s": sync,
                    "backoff_max_s": tuning.backoff_max_s,
                },
            ),
        )
    )
