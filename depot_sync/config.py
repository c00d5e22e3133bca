"""The depot's configuration: a TOML file plus ``HESGATE_SECTION__KEY`` overrides.

Loaded with :func:`runtime.config.load_config`. Only ``[keys]`` is required;
``hes-depot init-config`` writes a file with fresh keys. Every secret here
(the field key, the list key, the Ministry password) stays out of logs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from depot_sync.db.migrations_dir import default_migrations_dir
from protocol.credentials import LIST_KEY_SIZE
from protocol.messages import MAX_BODY_BYTES, MAX_DELTA_CHANGES
from protocol.ministry import MinistrySettings
from runtime.config import hex_bytes, load_config
from runtime.logs import LogSection

#: The file ``hes-depot`` reads when neither ``--config`` nor ``HESGATE_CONFIG`` says otherwise.
DEFAULT_CONFIG_PATH = Path("/etc/hesgate/depot.toml")
CONFIG_ENV = "HESGATE_CONFIG"
FIELD_KEY_SIZE = 32
#: Where the numbered migrations live: inside an installed wheel, else the checkout's ``sql/``.
DEFAULT_MIGRATIONS_DIR = default_migrations_dir()
#: Collect generation 0 after 100,000 net allocations, not 700: a tap batch allocates thousands
#: of objects that are freed by reference counting, never in cycles (docs/depot.md).
DEFAULT_GC_THRESHOLDS: tuple[int, ...] = (100_000, 50, 100)


@dataclass(frozen=True, slots=True)
class ServerSection:
    """Where ``hes-depot serve`` listens, and the URL validators reach it by."""

    host: str = "127.0.0.1"
    port: int = 8470
    #: The URL printed into each validator's configuration (the TLS front's URL in production).
    public_url: str = "http://127.0.0.1:8470"
    #: Bodies larger than this are refused with 413 before they are read.
    max_body_bytes: int = MAX_BODY_BYTES
    #: Requests in flight get this long to finish on shutdown.
    shutdown_timeout_s: float = 10.0
    #: One log line per request; a TLS front that logs them itself (nginx) makes it redundant.
    access_log: bool = True
    #: The cyclic garbage collector's thresholds once ``serve`` runs (``[]``: Python's own).
    gc_thresholds: tuple[int, ...] = DEFAULT_GC_THRESHOLDS
    #: Move every object alive once ``serve`` runs out of the collector's sight (``gc.freeze``).
    gc_freeze: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError("server.port: expected 0 to 65535")
        if not self.public_url.startswith(("http://", "https://")):
            raise ValueError("server.public_url: expected an http:// or https:// URL")
        if not 1024 <= self.max_body_bytes <= MAX_BODY_BYTES:
            raise ValueError(f"server.max_body_bytes: expected 1024 to {MAX_BODY_BYTES}")
        if self.gc_thresholds and (
            len(self.gc_thresholds) != 3 or not all(t >= 1 for t in self.gc_thresholds)
        ):
            raise ValueError(
                "server.gc_thresholds: expected three positive integers (generations 0, 1, 2) "
                "or [] for Python's own"
            )


@dataclass(frozen=True, slots=True)
class DatabaseSection:
    """PostgreSQL: ``dsn`` names a server; without it an embedded one runs in ``data_dir/pg``."""

    dsn: str | None = None
    pool_min: int = 2
    pool_max: int = 10
    command_timeout_s: float = 60.0
    #: ``serve`` applies pending migrations before it starts.
    migrate_on_start: bool = True
    migrations_dir: Path = DEFAULT_MIGRATIONS_DIR
    #: The database created in (and used from) the embedded server.
    embedded_database: str = "hesgate"

    def __post_init__(self) -> None:
        if not 1 <= self.pool_min <= self.pool_max:
            raise ValueError("database: expected 1 <= pool_min <= pool_max")
        if self.command_timeout_s <= 0:
            raise ValueError("database.command_timeout_s: must be positive")


@dataclass(frozen=True, slots=True)
class KeysSection:
    """Key material (hex). Keep this file readable only by the depot's user."""

    #: AES-256-GCM key for HES codes, card UIDs and device secrets at rest.
    field_key: str
    #: The credential-key HMAC key, given to every validator at enrolment.
    list_key: str
    #: The Ed25519 private key (PEM) that signs snapshots, deltas and the policy.
    signing_key_file: Path
    signing_key_id: str = "depot-1"
    #: Earlier field keys, still accepted for decryption after a rotation.
    previous_field_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        hex_bytes("keys.field_key", self.field_key, FIELD_KEY_SIZE)
        hex_bytes("keys.list_key", self.list_key, LIST_KEY_SIZE)
        for i, old in enumerate(self.previous_field_keys):
            hex_bytes(f"keys.previous_field_keys[{i}]", old, FIELD_KEY_SIZE)
        if not 1 <= len(self.signing_key_id) <= 64:
            raise ValueError("keys.signing_key_id: expected 1 to 64 characters")

    @property
    def field_key_bytes(self) -> bytes:
        """The current field key."""
        return hex_bytes("keys.field_key", self.field_key, FIELD_KEY_SIZE)

    @property
    def previous_field_key_bytes(self) -> tuple[bytes, ...]:
        """Older field keys, newest first."""
        return tuple(
            hex_bytes("keys.previous_field_keys", k, FIELD_KEY_SIZE)
            for k in self.previous_field_keys
        )

    @property
    def list_key_bytes(self) -> bytes:
        """The list key."""
        return hex_bytes("keys.list_key", self.list_key, LIST_KEY_SIZE)


@dataclass(frozen=True, slots=True)
class AuthSection:
    """Device request signing and operator tokens."""

    #: A request's timestamp may be this far from the depot's clock.
    window_s: int = 300
    #: Decrypted device secrets are cached this long (a revocation takes at most this long).
    secret_cache_s: float = 5.0

    def __post_init__(self) -> None:
        if not 10 <= self.window_s <= 3600:
            raise ValueError("auth.window_s: expected 10 to 3600")
        if self.secret_cache_s < 0:
            raise ValueError("auth.secret_cache_s: must not be negative")


@dataclass(frozen=True, slots=True)
class IngestSection:
    """Tap batches."""

    #: Concurrent batch transactions (the rest wait); keeps the pool free for other requests.
    max_concurrent_batches: int = 8

    def __post_init__(self) -> None:
        if self.max_concurrent_batches < 1:
            raise ValueError("ingest.max_concurrent_batches: must be at least 1")


@dataclass(frozen=True, slots=True)
class RiskListSection:
    """Snapshots and deltas."""

    #: Where snapshot files are written (default: ``data_dir/snapshots``).
    snapshot_dir: Path | None = None
    #: Snapshot files kept; the oldest one's version is the delta horizon.
    keep_snapshots: int = 3
    #: How often ``serve`` builds a snapshot when the list changed (0 = never).
    snapshot_interval_s: float = 3600.0
    #: A new snapshot smaller than the last by more than this fraction is refused.
    max_shrink_fraction: float = 0.1
    #: Changes per delta page.
    delta_page_size: int = 5000
    #: The list's head and the newest snapshot row are kept in memory, dropped when PostgreSQL
    #: notifies a change, and re-read at least this often anyway (0: read them on every request).
    cache_max_age_s: float = 5.0

    def __post_init__(self) -> None:
        if self.keep_snapshots < 1:
            raise ValueError("risklist.keep_snapshots: must be at least 1")
        if self.snapshot_interval_s < 0:
            raise ValueError("risklist.snapshot_interval_s: must not be negative")
        if not 0 <= self.max_shrink_fraction <= 1:
            raise ValueError("risklist.max_shrink_fraction: expected 0 to 1")
        if not 1 <= self.delta_page_size <= MAX_DELTA_CHANGES:
            raise ValueError(f"risklist.delta_page_size: expected 1 to {MAX_DELTA_CHANGES}")
        if not 0 <= self.cache_max_age_s <= 3600:
            raise ValueError("risklist.cache_max_age_s: expected 0 to 3600")


@dataclass(frozen=True, slots=True)
class CheckSection:
    """The online check (``POST /v1/check``)."""

    #: The Ministry gets this long to answer; past it the answer is UNAVAILABLE.
    #: Below the validators' online budget (300 ms less a 10 ms reserve) by a
    #: mobile round trip, so the depot's answer reaches a validator still waiting.
    budget_ms: int = 250
    #: A FOUND answer younger than this is served from the database.
    cache_s: int = 3600
    #: So is a NOT_FOUND or EXPIRED answer younger than this.
    negative_cache_s: int = 600

    def __post_init__(self) -> None:
        if not 10 <= self.budget_ms <= 10_000:
            raise ValueError("check.budget_ms: expected 10 to 10000")
        if self.cache_s < 0 or self.negative_cache_s < 0:
            raise ValueError("check: cache times must not be negative")


@dataclass(frozen=True, slots=True)
class RefreshSection:
    """The job that re-checks known HES codes with the Ministry."""

    enabled: bool = True
    #: Pause between refresh rounds.
    interval_s: float = 600.0
    #: A code is re-checked once its last check is older than this.
    recheck_after_s: int = 86400
    #: Codes per bulk call (the Ministry takes at most 500).
    batch_size: int = 500
    #: The Ministry is asked about at most this many codes a second.
    max_codes_per_s: float = 50.0

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= 500:
            raise ValueError("refresh.batch_size: expected 1 to 500")
        if self.max_codes_per_s <= 0 or self.interval_s <= 0:
            raise ValueError("refresh: rate and interval must be positive")
        if self.recheck_after_s < 0:
            raise ValueError("refresh.recheck_after_s: must not be negative")


@dataclass(frozen=True, slots=True)
class RetentionSection:
    """How long data stays."""

    #: Tap records older than this many days are dropped by ``serve`` (0 = keep; see ``purge``).
    tap_days: int = 0
    #: Day partitions created ahead of today.
    partitions_ahead_days: int = 7
    #: Export log entries older than this many days are deleted (0 = keep).
    export_log_days: int = 730

    def __post_init__(self) -> None:
        if self.tap_days < 0 or self.export_log_days < 0:
            raise ValueError("retention: days must not be negative")
        if not 1 <= self.partitions_ahead_days <= 366:
            raise ValueError("retention.partitions_ahead_days: expected 1 to 366")


@dataclass(frozen=True, slots=True)
class PolicySection:
    """The boarding policy file (see docs/depot.md); without one, no group is restricted."""

    file: Path | None = None


@dataclass(frozen=True, slots=True)
class DepotConfig:
    """Everything the depot needs."""

    keys: KeysSection
    data_dir: Path = Path("/var/lib/hes-depot")
    server: ServerSection = field(default_factory=ServerSection)
    database: DatabaseSection = field(default_factory=DatabaseSection)
    auth: AuthSection = field(default_factory=AuthSection)
    ingest: IngestSection = field(default_factory=IngestSection)
    risklist: RiskListSection = field(default_factory=RiskListSection)
    check: CheckSection = field(default_factory=CheckSection)
    refresh: RefreshSection = field(default_factory=RefreshSection)
    retention: RetentionSection = field(default_factory=RetentionSection)
    policy: PolicySection = field(default_factory=PolicySection)
    #: The Ministry's G2G service; without it online checks answer UNAVAILABLE and no refresh runs.
    ministry: MinistrySettings | None = None
    log: LogSection = field(default_factory=LogSection)

    @property
    def snapshot_dir(self) -> Path:
        """Where snapshot files go."""
        return self.risklist.snapshot_dir or self.data_dir / "snapshots"

    @property
    def embedded_pg_dir(self) -> Path:
        """The embedded PostgreSQL's data directory."""
        return self.data_dir / "pg"


def config_path(explicit: Path | None, env: Mapping[str, str] | None = None) -> Path:
    """The configuration file: ``--config``, else ``$HESGATE_CONFIG``, else the default."""
    if explicit is not None:
        return explicit
    environ = os.environ if env is None else env
    named = environ.get(CONFIG_ENV)
    return Path(named) if named else DEFAULT_CONFIG_PATH


def load(path: Path, env: Mapping[str, str] | None = None) -> DepotConfig:
    """Read the depot's configuration from ``path`` and the environment."""
    return load_config(DepotConfig, path, env=os.environ if env is None else env)
