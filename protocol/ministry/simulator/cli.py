"""``hes-ministry-sim``: run the simulated Ministry service, or export its population.

Configuration comes from ``--config`` (TOML), then ``HESGATE_SECTION__KEY``
environment variables, then these flags. Examples::

    hes-ministry-sim --user IBB-TEST:secret --seed 7 --size 5000 --port 8089
    hes-ministry-sim --user A:B --seed 7 --size 5000 --export people.csv --export-only
    hes-ministry-sim --user A:B --seed 7 --size 5000 --export-registrations regs.csv --export-only
    hes-ministry-sim --config sim.toml --faults '{"latency_max_s": 0.05, "unavailable_rate": 0.02}'

The listening line is logged as ``simulator listening`` with ``base_url``,
``test_base_url`` and ``admin_url``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from protocol.ministry.simulator.app import make_simulator_app, population_from_config, utc_now
from protocol.ministry.simulator.config import SimulatorConfig
from protocol.ministry.simulator.population import Population, PopulationError
from protocol.ministry.simulator.registrations import write_registrations
from protocol.ministry.simulator.running import serve_app
from protocol.ministry.wire import LIVE_PATH, TEST_PATH
from runtime.config import ConfigError, load_config
from runtime.logs import configure_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hes-ministry-sim",
        description="A faithful simulator of the Ministry of Health G2G HES service.",
    )
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (0: any free port)")
    parser.add_argument("--seed", type=int, help="seed of the generated population")
    parser.add_argument("--size", type=int, help="number of generated people")
    parser.add_argument("--population", type=Path, help="load people from this CSV or JSON file")
    parser.add_argument(
        "--user", action="append", default=[], metavar="NAME:PASSWORD", help="user, both paths"
    )
    parser.add_argument("--live-user", action="append", default=[], metavar="NAME:PASSWORD")
    parser.add_argument("--test-user", action="append", default=[], metavar="NAME:PASSWORD")
    parser.add_argument("--faults", help="initial faults as a JSON object (or @file.json)")
    parser.add_argument("--admin-token", help="require this bearer token on /admin/")
    parser.add_argument("--export", type=Path, help="write the population to this .csv/.json")
    parser.add_argument(
        "--export-registrations",
        type=Path,
        metavar="PATH",
        help="write card registrations (card_uid,hes_code,tckn,birth_year) for the population",
    )
    parser.add_argument(
        "--export-only", action="store_true", help="exit after exporting instead of serving"
    )
    parser.add_argument("--log-level", help="debug, info, warning or error")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, dict[str, Any]] = {"server": {}, "population": {}, "auth": {}}
    for flag, section, key in (
        ("host", "server", "host"),
        ("port", "server", "port"),
        ("admin_token", "server", "admin_token"),
        ("log_level", "server", "log_level"),
        ("seed", "population", "seed"),
        ("size", "population", "size"),
        ("population", "population", "file"),
    ):
        value = getattr(args, flag)
        if value is not None:
            out[section][key] = str(value) if isinstance(value, Path) else value
    for flag, key in (("user", "users"), ("live_user", "live_users"), ("test_user", "test_users")):
        if getattr(args, flag):
            out["auth"][key] = list(getattr(args, flag))
    if args.faults is not None:
        text = args.faults
        if text.startswith("@"):
            text = Path(text[1:]).read_text(encoding="utf-8")
        faults = json.loads(text)
        if not isinstance(faults, dict):
            raise ConfigError("faults", "--faults must be a JSON object")
        out["faults"] = faults
    return {section: values for section, values in out.items() if values}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``hes-ministry-sim``."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(
            SimulatorConfig, args.config, env=os.environ, overrides=_overrides(args)
        )
        configure_logging(config.server.log_level)
        population = population_from_config(config.population, now=utc_now())
        if args.export is not None:
            population.dump(args.export)
        if args.export_registrations is not None:
            write_registrations(population, args.export_registrations)
    except (ConfigError, PopulationError, OSError, json.JSONDecodeError) as err:
        parser.exit(2, f"hes-ministry-sim: {err}\n")
    log = structlog.get_logger("hesgate.ministry.simulator")
    if args.export is not None:
        log.info("population exported", path=str(args.export), codes=len(population))
    if args.export_registrations is not None:
        log.info("registrations exported", path=str(args.export_registrations))
    if args.export_only:
        return 0
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config, population))
    return 0


async def _serve(config: SimulatorConfig, population: Population) -> None:
    log = structlog.get_logger("hesgate.ministry.simulator")
    app = make_simulator_app(config, population=population)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server = config.server
    async with serve_app(
        app, server.host, server.port, shutdown_timeout_s=server.shutdown_timeout_s
    ) as root:
        log.info(
            "simulator listening",
            base_url=root + LIVE_PATH,
            test_base_url=root + TEST_PATH,
            admin_url=root + "/admin/",
            codes=len(population),
        )
        await stop.wait()
        log.info("simulator stopping")


if __name__ == "__main__":
    sys.exit(main())
