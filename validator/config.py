"""The validator's configuration: what ``hes-depot provision-device`` prints, plus the bus's parts.

Loaded with :func:`runtime.config.load_config` from a TOML file and
``HESGATE_SECTION__KEY`` environment overrides. The ``[device]`` and
``[depot]`` sections come from provisioning; ``[scanner] port`` and the
``[screen]`` address are added by whoever installs the box. Everything else
has a default that suits a bus.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final

from protocol.credentials import LIST_KEY_SIZE
from protocol.listsign import ListVerifier
from runtime.config import ConfigError, hex_bytes
from runtime.logs import LogSection

#: Names a terminator may be given by, besides the characters themselves.
TERMINATOR_NAMES: Final[Mapping[str, bytes]] = MappingProxyType(
    {
        "CR": b"\r",
        "LF": b"\n",
        "CRLF": b"\r\n",
        "TAB": b"\t",
        "ETX": b"\x03",
    }
)
SECRET_SIZE = 32


@dataclass(frozen=True, slots=True)
class DeviceSection:
    """Who this validator is: id, request-signing secret and list key, all from provisioning."""

    id: str
    secret: str
    list_key: str

    def __post_init__(self) -> None:
        hex_bytes("device.secret", self.secret, SECRET_SIZE)
        hex_bytes("device.list_key", self.list_key, LIST_KEY_SIZE)

    @property
    def secret_bytes(self) -> bytes:
        """The request-signing secret."""
        return hex_bytes("device.secret", self.secret, SECRET_SIZE)

    @property
    def list_key_bytes(self) -> bytes:
        """The key that turns credentials into risk-list keys."""
        return hex_bytes("device.list_key", self.list_key, LIST_KEY_SIZE)


@dataclass(frozen=True, slots=True)
class DepotSection:
    """Where the depot is and how to trust what it signs."""

    url: str
    list_key_id: str
    list_public_key: str
    #: A CA bundle for the depot's TLS front when it is not publicly trusted.
    ca_file: Path | None = None
    #: The most a tap the list does not know takes, frame in to answer out, online check included.
    online_budget_ms: int = 300
    #: Part of that budget kept for deciding and committing the tap after the online check.
    online_reserve_ms: int = 10
    #: Any other request (batches, snapshot chunks) gives up after this long.
    request_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("depot.url: expected an http:// or https:// URL")
        if "BEGIN PUBLIC KEY" not in self.list_public_key:
            raise ValueError("depot.list_public_key: expected a PEM public key")
        if not 10 <= self.online_budget_ms <= 10_000:
            raise ValueError("depot.online_budget_ms: expected 10 to 10000")
        if not 0 <= self.online_reserve_ms <= self.online_budget_ms // 2:
            raise ValueError("depot.online_reserve_ms: expected 0 to half of online_budget_ms")
        if self.request_timeout_s <= 0:
            raise ValueError("depot.request_timeout_s: must be positive")


@dataclass(frozen=True, slots=True)
class VehicleSection:
    """What every tap record says about where it happened."""

    vehicle: str = ""
    route: str = ""
    trip: str = ""

    def __post_init__(self) -> None:
        for name in ("vehicle", "route", "trip"):
            if len(getattr(self, name)) > 64:
                raise ValueError(f"vehicle.{name}: at most 64 characters")


@dataclass(frozen=True, slots=True)
class ScannerSection:
    """The serial QR scanner or card reader."""

    port: str
    baudrate: int = 9600
    #: The byte(s) ending a frame: CR, LF, CRLF, TAB, ETX, or the characters themselves.
    terminator: str = "CR"
    max_frame_bytes: int = 128
    #: Bytes without a terminator for this long are a partial frame, dropped as unreadable.
    frame_timeout_s: float = 1.0
    #: How often to try again while the device is gone.
    reopen_interval_s: float = 2.0

    def __post_init__(self) -> None:
        if not self.terminator_bytes:
            raise ValueError("scanner.terminator: must not be empty")
        if not 16 <= self.max_frame_bytes <= 4096:
            raise ValueError("scanner.max_frame_bytes: expected 16 to 4096")
        if self.baudrate <= 0:
            raise ValueError("scanner.baudrate: must be positive")
        if self.frame_timeout_s <= 0 or self.reopen_interval_s <= 0:
            raise ValueError("scanner: timeouts must be positive")

    @property
    def terminator_bytes(self) -> bytes:
        """The terminator as bytes."""
        named = TERMINATOR_NAMES.get(self.terminator.upper())
        return named if named is not None else self.terminator.encode("latin-1")


@dataclass(frozen=True, slots=True)
class ScreenSection:
    """The local web page the touchscreen shows."""

    host: str = "127.0.0.1"
    port: int = 8080
    #: Seconds without a tap before the screen returns to its start view.
    idle_s: float = 20.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError("screen.port: expected 0 to 65535")
        if self.idle_s <= 0:
            raise ValueError("screen.idle_s: must be positive")


@dataclass(frozen=True, slots=True)
class StorageSection:
    """Where the tap queue, the risk list and the policy live on the box."""

    data_dir: Path = Path("/var/lib/hes-validator")
    #: Acknowledged records stay this long (from their tap time) before deletion.
    retention_s: int = 7 * 86400
    #: Cap on the tap database (MiB; 0 = only the disk's size): keeps room for the OS.
    max_db_mb: int = 0
    #: Taps kept in memory while the disk refuses writes, stored once it works again.
    pending_limit: int = 10_000

    def __post_init__(self) -> None:
        if self.retention_s < 0 or self.max_db_mb < 0 or self.pending_limit < 0:
            raise ValueError("storage: values must not be negative")


@dataclass(frozen=True, slots=True)
class UploadSection:
    """How tap records go to the depot."""

    #: Send when this many records wait...
    batch_size: int = 1000
    #: ...or when the oldest has waited this long.
    batch_age_s: float = 5.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= 5000:
            raise ValueError("upload.batch_size: expected 1 to 5000")
        if self.batch_age_s <= 0 or self.backoff_initial_s <= 0:
            raise ValueError("upload: intervals must be positive")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("upload.backoff_max_s: must be at least backoff_initial_s")


@dataclass(frozen=True, slots=True)
class SyncSection:
    """How often the validator asks the depot for news."""

    delta_interval_s: float = 60.0
    policy_interval_s: float = 300.0
    heartbeat_interval_s: float = 60.0
    #: A clock further than this from the depot's is flagged on the screen and in the log.
    clock_skew_bound_s: float = 30.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0

    def __post_init__(self) -> None:
        values = (
            self.delta_interval_s,
            self.policy_interval_s,
            self.heartbeat_interval_s,
            self.clock_skew_bound_s,
            self.backoff_initial_s,
            self.backoff_max_s,
        )
        if any(v <= 0 for v in values):
            raise ValueError("sync: intervals must be positive")


@dataclass(frozen=True, slots=True)
class ValidatorConfig:
    """Everything one validator process needs."""

    device: DeviceSection
    depot: DepotSection
    scanner: ScannerSection
    vehicle: VehicleSection = field(default_factory=VehicleSection)
    screen: ScreenSection = field(default_factory=ScreenSection)
    storage: StorageSection = field(default_factory=StorageSection)
    upload: UploadSection = field(default_factory=UploadSection)
    sync: SyncSection = field(default_factory=SyncSection)
    log: LogSection = field(default_factory=LogSection)


def list_verifier(config: ValidatorConfig) -> ListVerifier:
    """The verifier of everything the depot signs, or a :class:`ConfigError` naming the key."""
    try:
        return ListVerifier.from_pem(
            config.depot.list_public_key.encode("ascii", "replace"), config.depot.list_key_id
        )
    except ValueError as err:
        raise ConfigError("depot.list_public_key", str(err)) from err
