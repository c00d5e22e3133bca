"""What to measure and how much: sizes per section, from flags, a TOML file or the environment.

Loaded with :func:`runtime.config.load_config` like every hesgate program's
configuration. Everything sits under one ``[bench]`` table, so the
environment overrides are ``HESGATE_BENCH__SECTION__KEY`` (for example
``HESGATE_BENCH__INGEST__TAPS=100000``) and never collide with the depot's
or the validator's own ``HESGATE_*`` variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from runtime.config import build, env_overrides, read_toml

#: Every section, in the order they run (the depot's sections share one server).
SECTIONS: Final = ("risklist", "decision", "snapshot_build", "ingest", "export", "delta_polls")
#: The repository's ignored scratch directory.
DEFAULT_DATA_DIR: Final = Path(__file__).resolve().parent.parent / "bench-data"
ENV_PREFIX: Final = "HESGATE_BENCH__"


@dataclass(frozen=True, slots=True)
class RiskListSettings:
    """The validator's risk list: sizes, lookups, delta."""

    sizes: tuple[int, ...] = (1_000_000, 10_000_000)
    #: Single-key lookups per timed pass (90% keys on the list, 10% not).
    lookups: int = 200_000
    #: Changes in the delta applied while lookups go on.
    delta_changes: int = 100_000
    repeats: int = 3

    def __post_init__(self) -> None:
        if not self.sizes or min(self.sizes) < 20_000:
            raise ValueError("risklist.sizes: at least one size, each of 20000 or more")
        if self.lookups < 1000 or self.delta_changes < 1 or self.repeats < 1:
            raise ValueError("risklist: lookups >= 1000, delta_changes >= 1, repeats >= 1")


@dataclass(frozen=True, slots=True)
class DecisionSettings:
    """Taps through the validator's gate."""

    taps: int = 3000
    warmup: int = 100
    #: Entries on the list the gate decides from.
    list_entries: int = 1_000_000

    def __post_init__(self) -> None:
        if self.taps < 100 or self.warmup < 0 or self.list_entries < 20_000:
            raise ValueError("decision: taps >= 100, warmup >= 0, list_entries >= 20000")


@dataclass(frozen=True, slots=True)
class SnapshotBuildSettings:
    """The depot building one snapshot from its credentials table."""

    credentials: int = 10_000_000

    def __post_init__(self) -> None:
        if self.credentials < 1000:
            raise ValueError("snapshot_build.credentials: at least 1000")


@dataclass(frozen=True, slots=True)
class IngestSettings:
    """Validators uploading tap batches over HTTP."""

    #: Taps per run (split evenly across the validators).
    taps: int = 480_000
    validators: tuple[int, ...] = (8, 64)
    #: Taps per request (the validator's default ``upload.batch_size``).
    batch_size: int = 1000
    #: HTTP and COPY runs per level, taking turns; the best of each counts.
    rounds: int = 2

    def __post_init__(self) -> None:
        if not self.validators or min(self.validators) < 1:
            raise ValueError("ingest.validators: at least one level, each 1 or more")
        if not 1 <= self.batch_size <= 5000 or self.rounds < 1:
            raise ValueError("ingest: batch_size 1 to 5000, rounds at least 1")
        if self.taps < max(self.validators) * self.batch_size:
            raise ValueError("ingest.taps: at least one batch per validator at every level")


@dataclass(frozen=True, slots=True)
class ExportSettings:
    """Trip exports."""

    #: Taps seeded for the export when no ingest run left any.
    seed_rows: int = 200_000
    repeats: int = 2


@dataclass(frozen=True, slots=True)
class PollSettings:
    """Validators asking for what changed when nothing has."""

    polls: int = 6000
    concurrency: int = 16

    def __post_init__(self) -> None:
        if self.polls < 100 or self.concurrency < 1:
            raise ValueError("delta_polls: polls >= 100, concurrency >= 1")


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """One benchmark run."""

    data_dir: Path = DEFAULT_DATA_DIR
    sections: tuple[str, ...] = SECTIONS
    #: Rebuild cached lists and databases instead of reusing them.
    fresh: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    risklist: RiskListSettings = field(default_factory=RiskListSettings)
    decision: DecisionSettings = field(default_factory=DecisionSettings)
    snapshot_build: SnapshotBuildSettings = field(default_factory=SnapshotBuildSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    export: ExportSettings = field(default_factory=ExportSettings)
    delta_polls: PollSettings = field(default_factory=PollSettings)

    def __post_init__(self) -> None:
        unknown = [s for s in self.sections if s not in SECTIONS]
        if unknown:
            raise ValueError(f"sections: unknown {unknown[0]!r}; known: {', '.join(SECTIONS)}")


@dataclass(frozen=True, slots=True)
class BenchFile:
    """The configuration's root: everything under ``[bench]``."""

    bench: BenchConfig = field(default_factory=BenchConfig)


#: ``--quick``: a smoke run of every section in a minute or two.
QUICK: Final[Mapping[str, Any]] = {
    "risklist": {"sizes": [100_000, 1_000_000], "lookups": 50_000, "delta_changes": 20_000},
    "decision": {"taps": 500, "warmup": 50, "list_entries": 100_000},
    "snapshot_build": {"credentials": 200_000},
    "ingest": {"taps": 64_000, "validators": [8, 64], "rounds": 1},
    "export": {"seed_rows": 50_000, "repeats": 1},
    "delta_polls": {"polls": 1500},
}


def load(
    path: Path | None = None,
    *,
    quick: bool = False,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> BenchConfig:
    """The run's settings: defaults, then ``--quick``, the file, the environment, the flags."""
    environ = os.environ if env is None else env
    data: dict[str, Any] = {"bench": {k: dict(v) for k, v in QUICK.items()} if quick else {}}
    if path is not None:
        _merge(data, read_toml(path))
    _merge(data, env_overrides({k: v for k, v in environ.items() if k.startswith(ENV_PREFIX)}))
    if flags:
        _merge(data, {"bench": dict(flags)})
    return build(BenchFile, data).bench


def _merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    """Merge nested tables, later values winning."""
    for key, value in new.items():
        if isinstance(value, Mapping):
            if not isinstance(into.get(key), dict):
                into[key] = {}
            _merge(into[key], value)
        else:
            into[key] = value
