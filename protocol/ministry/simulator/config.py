"""The simulator's configuration: TOML sections read by :func:`runtime.config.load_config`.

```toml
[server]
host = "127.0.0.1"
port = 8089

[population]
seed = 1
size = 1000          # or: file = "people.csv"

[auth]
users = ["IBB-G2G-HES:secret"]   # both environments
test_users = ["IBB-TEST:other"]  # the test path only; on the live path: 403

[faults]
latency_max_s = 0.05
unavailable_rate = 0.01
```

Every key can be overridden from the environment, e.g.
``HESGATE_AUTH__USERS="IBB-TEST:pw1,IBB-G2G-HES:pw2"``.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from protocol.ministry.simulator.faults import Faults

Environment = Literal["live", "test"]


@dataclass(frozen=True, slots=True)
class ServerSection:
    """Where the simulator listens; ``admin_token`` (if set) guards ``/admin/``."""

    host: str = "127.0.0.1"
    port: int = 8089
    admin_token: str | None = field(default=None, repr=False)
    log_level: str = "info"
    shutdown_timeout_s: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be between 0 and 65535")


@dataclass(frozen=True, slots=True)
class PopulationSection:
    """Generate ``size`` people from ``seed``, or load them from ``file`` (CSV or JSON)."""

    seed: int = 1
    size: int = 1000
    file: Path | None = None
    risky_rate: float = 0.05
    expired_rate: float = 0.02
    never_expires_rate: float = 0.1

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError("size must not be negative")


def parse_user(entry: str) -> tuple[str, str]:
    """``NAME:PASSWORD`` as a pair; the message never repeats the password."""
    name, sep, password = entry.partition(":")
    if not sep or not name.strip() or not password:
        raise ValueError("a user is NAME:PASSWORD with both parts non-empty")
    return name.strip(), password


@dataclass(frozen=True, slots=True)
class AuthSection:
    """Who may call: ``NAME:PASSWORD`` entries for both environments, or for one."""

    users: tuple[str, ...] = field(default=(), repr=False)
    live_users: tuple[str, ...] = field(default=(), repr=False)
    test_users: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        for entry in (*self.users, *self.live_users, *self.test_users):
            parse_user(entry)
        if not (self.users or self.live_users or self.test_users):
            raise ValueError("configure at least one user (NAME:PASSWORD)")

    def credentials(self, environment: Environment) -> dict[str, str]:
        """User name to password for ``environment``."""
        own = self.live_users if environment == "live" else self.test_users
        return dict(parse_user(entry) for entry in (*self.users, *own))

    def check(self, environment: Environment, name: str, password: str) -> bool | None:
        """``True`` if valid here, ``False`` if only in the other environment, else ``None``."""
        if _matches(self.credentials(environment), name, password):
            return True
        other: Environment = "test" if environment == "live" else "live"
        if _matches(self.credentials(other), name, password):
            return False
        return None


def _matches(users: dict[str, str], name: str, password: str) -> bool:
    expected = users.get(name)
    # Compare even for unknown names, so timing does not tell which names exist.
    candidate = expected if expected is not None else "\x00" + password
    return hmac.compare_digest(candidate.encode(), password.encode()) and expected is not None


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Everything ``hes-ministry-sim`` reads at start."""

    auth: AuthSection
    server: ServerSection = field(default_factory=ServerSection)
    population: PopulationSection = field(default_factory=PopulationSection)
    faults: Faults = field(default_factory=Faults)
