"""A simulated Ministry for the depot's tests, and the client settings to reach it."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from protocol import tckn
from protocol.ministry import MinistryClient, MinistrySettings
from protocol.ministry.simulator import (
    AuthSection,
    Population,
    PopulationRecord,
    SimulatorConfig,
    SimulatorHandle,
    running_simulator,
)
from protocol.risk import HealthStatus

USER = "IBB-G2G-HES"
PASSWORD = "test-password-not-real"


def person(
    code: str,
    *,
    status: HealthStatus = HealthStatus.RISKLESS,
    tckn_first9: str = "123456789",
    expires_in: dt.timedelta = dt.timedelta(days=90),
) -> PopulationRecord:
    """Someone the simulated Ministry knows."""
    return PopulationRecord(
        hes_code=code,
        tckn=tckn.make(tckn_first9),
        first_name="AYŞE",
        last_name="YILMAZ",
        status=status,
        expires_at=dt.datetime.now(dt.UTC).replace(microsecond=0) + expires_in,
    )


@asynccontextmanager
async def simulated_ministry(
    people: Iterable[PopulationRecord], **settings: float
) -> AsyncIterator[tuple[SimulatorHandle, MinistryClient]]:
    """A simulator on loopback and a client for it (quick retries, for tests)."""
    config = SimulatorConfig(auth=AuthSection(users=(f"{USER}:{PASSWORD}",)))
    async with running_simulator(config, population=Population(people)) as sim:
        client_settings = MinistrySettings(
            base_url=sim.base_url,
            username=USER,
            password=PASSWORD,
            **{
                "timeout_s": 2.0,
                "max_attempts": 2,
                "retry_wait_initial_s": 0.01,
                "retry_wait_max_s": 0.02,
                "retry_jitter_s": 0.0,
                **settings,
            },  # type: ignore[arg-type]
        )
        async with MinistryClient(client_settings) as client:
            yield sim, client
