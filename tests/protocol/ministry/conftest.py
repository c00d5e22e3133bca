"""A simulator on loopback and a client pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from protocol.ministry import MinistryClient
from protocol.ministry.simulator import (
    Population,
    PopulationRecord,
    SimulatorHandle,
    running_simulator,
)
from tests.protocol.ministry.helpers import NOW, SEED, SIZE, SimClock, settings_for, sim_config


@pytest.fixture
def sim_clock() -> SimClock:
    return SimClock(NOW)


@pytest.fixture(scope="session")
def people() -> list[PopulationRecord]:
    """Generated once: records are immutable, each test gets its own Population of them."""
    return list(Population.generate(SEED, SIZE, now=NOW))


@pytest.fixture
def population(people: list[PopulationRecord]) -> Population:
    return Population(people)


@pytest.fixture
async def sim(population: Population, sim_clock: SimClock) -> AsyncIterator[SimulatorHandle]:
    async with running_simulator(sim_config(), population=population, clock=sim_clock) as handle:
        yield handle


@pytest.fixture
async def client(sim: SimulatorHandle) -> AsyncIterator[MinistryClient]:
    async with MinistryClient(settings_for(sim)) as ministry:
        yield ministry
