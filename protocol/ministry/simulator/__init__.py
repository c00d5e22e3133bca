"""A faithful simulator of the Ministry's G2G HES service, for tests, the demo and development.

``make_simulator_app(config)`` builds the aiohttp application;
``running_simulator(config)`` serves it on loopback for an ``async with``
block; ``hes-ministry-sim`` runs it from the command line.
"""

from protocol.ministry.simulator.app import (
    SimulatorState,
    make_simulator_app,
    population_from_config,
    utc_now,
)
from protocol.ministry.simulator.config import (
    AuthSection,
    PopulationSection,
    ServerSection,
    SimulatorConfig,
)
from protocol.ministry.simulator.faults import FaultAction, FaultController, Faults, Injection
from protocol.ministry.simulator.population import (
    FAR_FUTURE,
    Population,
    PopulationError,
    PopulationRecord,
    ScheduledChange,
)
from protocol.ministry.simulator.registrations import (
    Registration,
    registration_of,
    registrations_csv,
    write_registrations,
)
from protocol.ministry.simulator.running import SimulatorHandle, running_simulator, serve_app
from protocol.ministry.simulator.stats import SimulatorStats

__all__ = [
    "FAR_FUTURE",
    "AuthSection",
    "FaultAction",
    "FaultController",
    "Faults",
    "Injection",
    "Population",
    "PopulationError",
    "PopulationRecord",
    "PopulationSection",
    "Registration",
    "ScheduledChange",
    "ServerSection",
    "SimulatorConfig",
    "SimulatorHandle",
    "SimulatorState",
    "SimulatorStats",
    "make_simulator_app",
    "population_from_config",
    "registration_of",
    "registrations_csv",
    "running_simulator",
    "serve_app",
    "utc_now",
    "write_registrations",
]
