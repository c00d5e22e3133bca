"""Run a simulator on a real socket: for tests, the demo and the CLI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from protocol.ministry import wire
from protocol.ministry.simulator.app import STATE, Clock, make_simulator_app, utc_now
from protocol.ministry.simulator.config import SimulatorConfig
from protocol.ministry.simulator.faults import FaultController
from protocol.ministry.simulator.population import Population
from protocol.ministry.simulator.stats import SimulatorStats


@dataclass(frozen=True, slots=True)
class SimulatorHandle:
    """A running simulator: where it is and its live state.

    ``base_url`` is the live-path base URL and ``test_base_url`` the
    test-path one, each ready for :class:`~protocol.ministry.MinistrySettings`.
    ``faults`` can be changed while it runs; ``stats`` counts its calls.
    """

    app: web.Application
    root_url: str
    population: Population
    faults: FaultController
    stats: SimulatorStats

    @property
    def base_url(self) -> str:
        """The live environment's base URL on this simulator."""
        return self.root_url + wire.LIVE_PATH

    @property
    def test_base_url(self) -> str:
        """The test environment's base URL on this simulator."""
        return self.root_url + wire.TEST_PATH

    @property
    def admin_url(self) -> str:
        """The admin API's base URL (ends with ``/``)."""
        return self.root_url + "/admin/"


@asynccontextmanager
async def serve_app(
    app: web.Application, host: str, port: int, *, shutdown_timeout_s: float = 1.0
) -> AsyncIterator[str]:
    """Serve ``app`` on ``host:port`` (0 picks a free port); yields the root URL."""
    runner = web.AppRunner(
        app, handler_cancellation=True, shutdown_timeout=shutdown_timeout_s, access_log=None
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        yield f"http://{shown}:{bound_port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def running_simulator(
    config: SimulatorConfig,
    *,
    population: Population | None = None,
    clock: Clock = utc_now,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[SimulatorHandle]:
    """A simulator listening on loopback (a free port unless told) for the ``async with`` block."""
    app = make_simulator_app(config, population=population, clock=clock)
    async with serve_app(
        app, host, port, shutdown_timeout_s=config.server.shutdown_timeout_s
    ) as root_url:
        state = app[STATE]
        yield SimulatorHandle(
            app=app,
            root_url=root_url,
            population=state.population,
            faults=state.faults,
            stats=state.stats,
        )
