"""Shared test values: credentials, clocks, a simulator config and a way to pick people."""

from __future__ import annotations

import datetime as dt
from typing import Any

from protocol.ministry import MinistrySettings
from protocol.ministry.simulator import (
    AuthSection,
    Population,
    PopulationRecord,
    ServerSection,
    SimulatorConfig,
    SimulatorHandle,
)
from protocol.risk import HealthStatus

LIVE_USER = "IBB-G2G-HES"
LIVE_PASSWORD = "Gizli-Şifre-7731!"
TEST_USER = "IBB-TEST"
TEST_PASSWORD = "test-only-4402"
NOW = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
SEED = 7
SIZE = 1300


class SimClock:
    """The simulator's wall clock, moved by the test."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


class Ticker:
    """A monotonic clock moved by the test (for the circuit breaker)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def sim_config(**server: Any) -> SimulatorConfig:
    return SimulatorConfig(
        auth=AuthSection(
            live_users=(f"{LIVE_USER}:{LIVE_PASSWORD}",),
            test_users=(f"{TEST_USER}:{TEST_PASSWORD}",),
        ),
        server=ServerSection(shutdown_timeout_s=0.2, **server),
    )


def settings_for(sim: SimulatorHandle, **changes: Any) -> MinistrySettings:
    """Fast retries so failure tests stay quick; everything else as in production."""
    values: dict[str, Any] = {
        "base_url": sim.base_url,
        "username": LIVE_USER,
        "password": LIVE_PASSWORD,
        "retry_wait_initial_s": 0.01,
        "retry_wait_max_s": 0.05,
        "retry_jitter_s": 0.01,
    }
    values.update(changes)
    return MinistrySettings(**values)


def pick(
    population: Population,
    *,
    status: HealthStatus | None = HealthStatus.RISKLESS,
    expired: bool = False,
    now: dt.datetime = NOW,
) -> PopulationRecord:
    """The first person matching, so every test uses a known kind of code."""
    for record in population:
        if record.expired(now) != expired:
            continue
        if status is not None and record.status is not status:
            continue
        return record
    raise LookupError("no such person in the test population")
