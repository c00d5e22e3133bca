"""The whole system on loopback: started in order, stopped in reverse, nothing left behind.

1. ``hes-ministry-sim`` with a seeded population; the demo reads its people
   and their card registrations back from its admin API.
2. ``hes-depot init-config``, plus the demo's sections (Ministry, policy,
   shortened intervals); ``hes-depot serve`` (an embedded PostgreSQL unless a
   DSN is given, migrated on start); then ``import-registrations`` (all but
   every ``unregistered_every``-th person, so some codes are known only to
   the Ministry), ``refresh`` and ``build-snapshot``.
3. ``provision-device`` for each validator and ``create-operator`` for the
   demo's operator token.
4. Each validator: a pseudo-terminal pair (its scanner), a screen port, its
   data directory, a configuration made from what provisioning printed, and
   ``hes-validator run``; one validator can reach the depot only through a
   :class:`~deploy.demo.proxy.CuttableProxy`.

Ports are picked free on 127.0.0.1. Logs go to ``root/logs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import secrets
import signal
import socket
import time
import tomllib
import tty
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
import structlog

from deploy.demo.children import Child, ChildError, child_env, program, run_command, spawn
from deploy.demo.clients import DepotOperator, MinistryAdmin, Screen, ServiceError
from deploy.demo.configs import (
    MINISTRY_USER,
    DemoPolicy,
    DepotTuning,
    ValidatorTuning,
    depot_sections,
    validator_toml,
)
from deploy.demo.passengers import Door
from deploy.demo.proxy import CuttableProxy
from deploy.demo.world import World, registration_csv, registration_rows

log = structlog.get_logger("hesgate.demo.stack")

#: The embedded PostgreSQL's first start (initdb) can take a while on a busy machine.
DEPOT_START_TIMEOUT_S: Final = 180.0
READY_TIMEOUT_S: Final = 60.0
_POLL_S: Final = 0.2
_TOKEN_PREFIX: Final = "hgo_"  # noqa: S105 - how a token starts, not a token


class StackError(RuntimeError):
    """The system could not be started as asked; the message says which part and why."""


@dataclass(frozen=True, slots=True)
class ValidatorSpec:
    """One validator to run: its device id, bus and route, and whether it sits behind the proxy."""

    device: str
    vehicle: str
    route: str
    behind_proxy: bool = False


#: The demo's fleet: three buses, the third one's link to the depot can be cut.
DEMO_FLEET: Final = (
    ValidatorSpec("bus-1-front", "34 HES 001", "500T"),
    ValidatorSpec("bus-2-front", "34 HES 002", "34AS"),
    ValidatorSpec("bus-3-front", "34 HES 003", "15F", behind_proxy=True),
)


@dataclass(frozen=True, slots=True)
class StackSpec:
    """What to run, and where its files go (``root``, created if missing)."""

    root: Path
    policy: DemoPolicy
    validators: tuple[ValidatorSpec, ...] = DEMO_FLEET
    population_size: int = 300
    seed: int = 7
    #: Every n-th person is not registered at the depot: only the Ministry knows their code.
    unregistered_every: int = 5
    #: A PostgreSQL DSN for the depot; ``None`` runs the embedded one in the depot's data dir.
    dsn: str | None = None
    depot_tuning: DepotTuning = field(default_factory=DepotTuning)
    validator_tuning: ValidatorTuning = field(default_factory=ValidatorTuning)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


@dataclass(slots=True)
class ValidatorHandle:
    """A running validator: its scanner line (a pty master), screen, proxy and process."""

    spec: ValidatorSpec
    screen: Screen
    config_path: Path
    master_fd: int
    slave_fd: int
    child: Child
    proxy: CuttableProxy | None = None

    @property
    def device(self) -> str:
        """The device id."""
        return self.spec.device

    @property
    def screen_url(self) -> str:
        """The screen page's address."""
        return self.screen.base_url + "/"

    def send_frame(self, frame: bytes) -> None:
        """Write one frame to the scanner line, as the scanner would."""
        view = memoryview(frame)
        while view:
            view = view[os.write(self.master_fd, view) :]

    def door(self) -> Door:
        """The validator as passengers meet it."""
        return Door(self.device, self.screen, self.send_frame)


@dataclass(slots=True)
class _Parts:
    """What :meth:`Stack.start` has made so far."""

    ministry: MinistryAdmin | None = None
    depot: DepotOperator | None = None
    validators: list[ValidatorHandle] = field(default_factory=list)
    world: World | None = None
    children: list[Child] = field(default_factory=list)


class Stack:
    """The Ministry simulator, the depot and the validators, as an async context manager."""

    def __init__(
        self,
        spec: StackSpec,
        session: aiohttp.ClientSession,
        *,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.spec = spec
        self._progress = progress
        self.session = session
        self.root = spec.root
        self.logs = spec.root / "logs"
        self.depot_dir = spec.root / "depot"
        self.depot_url = ""
        self.ops_token = ""
        self.list_key = b""
        self._depot_config = self.depot_dir / "depot.toml"
        self._env: dict[str, str] = {}
        self._parts = _Parts()
        self._exit = contextlib.AsyncExitStack()
        self._log = log.bind(root=str(spec.root))

    def _say(self, step: str) -> None:
        self._log.info("stack step", step=step)
        if self._progress is not None:
            self._progress(step)

    # -- what is running ---------------------------------------------------------------------

    @property
    def ministry(self) -> MinistryAdmin:
        """The simulator's admin API."""
        if self._parts.ministry is None:
            raise StackError("the Ministry simulator is not started")
        return self._parts.ministry

    @property
    def depot(self) -> DepotOperator:
        """The depot's operator API (admin token)."""
        if self._parts.depot is None:
            raise StackError("the depot is not started")
        return self._parts.depot

    @property
    def validators(self) -> tuple[ValidatorHandle, ...]:
        """The running validators, in the spec's order."""
        return tuple(self._parts.validators)

    @property
    def world(self) -> World:
        """The simulator's truth as of the start."""
        if self._parts.world is None:
            raise StackError("the stack is not started")
        return self._parts.world

    def running(self) -> list[str]:
        """The names of the programs still running."""
        return [child.name for child in self._parts.children if child.running]

    def check_alive(self) -> None:
        """Raise :class:`StackError` if any program has exited."""
        for child in self._parts.children:
            try:
                child.check_alive()
            except ChildError as err:
                raise StackError(str(err)) from err

    # -- start and stop ----------------------------------------------------------------------

    async def __aenter__(self) -> Stack:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Stop everything that was started, newest first."""
        await self._exit.aclose()

    async def start(self) -> None:
        """Start the whole system and wait until every validator has its list and policy."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.depot_dir.mkdir(exist_ok=True)
        password, admin_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self._say(f"starting the Ministry simulator ({self.spec.population_size} people)")
        population, registered = await self._start_ministry(password, admin_token)
        where = "its own PostgreSQL" if self.spec.dsn else "an embedded PostgreSQL"
        self._say(f"starting the depot on {where}")
        await self._start_depot(password, registered)
        self._say(f"provisioning {len(self.spec.validators)} validators and an operator")
        provisioned = await self._enrol()
        self._say("starting the validators on pseudo-terminals; they fetch their list and policy")
        await self._start_validators(provisioned)
        self._parts.world = World.build(
            population, registered, self.spec.policy, dt.datetime.now(dt.UTC)
        )
        self._log.info("stack ready", depot=self.depot_url, validators=len(self.validators))

    async def _start_child(self, name: str, argv: Sequence[str], env: dict[str, str]) -> Child:
        child = await spawn(name, argv, env=env, log_path=self.logs / f"{name}.log")
        self._parts.children.append(child)
        self._exit.push_async_callback(child.stop)
        return child

    async def _start_ministry(
        self, password: str, admin_token: str
    ) -> tuple[dict[str, Any], list[dict[str, str]]]:
        port = free_port()
        env = child_env(
            {
                "HESGATE_AUTH__USERS": f"{MINISTRY_USER}:{password}",
                "HESGATE_SERVER__ADMIN_TOKEN": admin_token,
            }
        )
        child = await self._start_child(
            "ministry",
            [
                program("hes-ministry-sim"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--seed",
                str(self.spec.seed),
                "--size",
                str(self.spec.population_size),
            ],
            env,
        )
        ministry = MinistryAdmin(self.session, f"http://127.0.0.1:{port}", admin_token)
        self._parts.ministry = ministry

        async def answers() -> bool:
            await ministry.healthz()
            return True

        await _wait_for("the Ministry simulator", answers, [child], READY_TIMEOUT_S)
        population = await ministry.population()
        rows = registration_rows(await ministry.registrations_csv())
        every = self.spec.unregistered_every
        registered = [row for i, row in enumerate(rows) if every <= 1 or i % every != every - 1]
        return population, registered

    def _depot_env(self, port: int, password: str) -> dict[str, str]:
        extra = {"HESGATE_SERVER__PORT": str(port), "HESGATE_MINISTRY__PASSWORD": password}
        if self.spec.dsn:
            extra["HESGATE_DATABASE__DSN"] = self.spec.dsn
        return child_env(extra)

    async def _depot_command(self, name: str, *args: str, timeout_s: float = 120.0) -> str:
        return await run_command(
            f"hes-depot {name}",
            [program("hes-depot"), "--config", str(self._depot_config), name, *args],
            env=self._env,
            log_path=self.logs / "depot-commands.log",
            timeout_s=timeout_s,
        )

    async def _start_depot(self, password: str, registered: list[dict[str, str]]) -> None:
        port = free_port()
        self.depot_url = f"http://127.0.0.1:{port}"
        self._env = self._depot_env(port, password)
        await run_command(
            "hes-depot init-config",
            [
                program("hes-depot"),
                "init-config",
                str(self._depot_config),
                "--data-dir",
                str(self.depot_dir / "data"),
                "--public-url",
                self.depot_url,
            ],
            env=self._env,
            log_path=self.logs / "depot-commands.log",
        )
        policy_file = self.depot_dir / "policy.toml"
        policy_file.write_text(self.spec.policy.toml(), encoding="utf-8")
        ministry_url = self.ministry.root + "/services/g2g/saglik/hes/"
        with self._depot_config.open("a", encoding="utf-8") as out:
            out.write(
                depot_sections(
                    ministry_base_url=ministry_url,
                    policy_file=policy_file,
                    tuning=self.spec.depot_tuning,
                )
            )
        self.list_key = bytes.fromhex(
            tomllib.loads(self._depot_config.read_text(encoding="utf-8"))["keys"]["list_key"]
        )
        if self.spec.dsn is None:
            # Registered before the depot's own stop, so it runs after it: a last resort.
            pg_dir = self.depot_dir / "data" / "pg"
            self._exit.push_async_callback(_stop_leftover_postgres, pg_dir)
        child = await self._start_child(
            "depot", [program("hes-depot"), "--config", str(self._depot_config), "serve"], self._env
        )
        depot = DepotOperator(self.session, self.depot_url, "")
        self._parts.depot = depot

        async def serving() -> bool:
            await depot.healthz()
            return True

        await _wait_for("the depot", serving, [child], DEPOT_START_TIMEOUT_S)
        self._say(
            f"importing {len(registered)} registrations, asking the Ministry about every code, "
            "building the first snapshot"
        )
        registrations = self.depot_dir / "registrations.csv"
        registrations.write_text(registration_csv(registered), encoding="utf-8")
        for name, args in (
            ("import-registrations", (str(registrations),)),
            ("refresh", ()),
            ("build-snapshot", ()),
        ):
            said = await self._depot_command(name, *args)
            self._log.info("depot command done", command=name, said=said.strip().splitlines()[0])

    async def _enrol(self) -> dict[str, dict[str, Any]]:
        specs = self.spec.validators
        outputs = await asyncio.gather(
            *(
                self._depot_command("provision-device", v.device, "--vehicle", v.vehicle)
                for v in specs
            ),
            self._depot_command("create-operator", "demo", "--role", "admin"),
        )
        tokens = [line for line in outputs[-1].split() if line.startswith(_TOKEN_PREFIX)]
        if len(tokens) != 1:
            raise StackError("create-operator did not print one token")
        self.ops_token = tokens[0]
        self._parts.depot = DepotOperator(self.session, self.depot_url, self.ops_token)
        provisioned: dict[str, dict[str, Any]] = {}
        for spec, text in zip(specs, outputs, strict=False):
            try:
                provisioned[spec.device] = tomllib.loads(text)
            except tomllib.TOMLDecodeError as err:
                raise StackError(f"provision-device {spec.device} printed no TOML: {err}") from err
        return provisioned

    async def _start_validators(self, provisioned: dict[str, dict[str, Any]]) -> None:
        for number, spec in enumerate(self.spec.validators, 1):
            self._parts.validators.append(await self._start_validator(number, spec, provisioned))
        fleet = await self.depot.fleet()
        policy_version = fleet["policy_version"]
        for handle in self.validators:

            async def ready(handle: ValidatorHandle = handle) -> bool:
                status = await handle.screen.status()
                return bool(
                    status["scanner_connected"]
                    and status["list_version"] > 0
                    and status["policy_version"] == policy_version
                )

            await _wait_for(f"validator {handle.device}", ready, [handle.child], READY_TIMEOUT_S)

    async def _start_validator(
        self, number: int, spec: ValidatorSpec, provisioned: dict[str, dict[str, Any]]
    ) -> ValidatorHandle:
        master, slave = os.openpty()
        # Raw, as a serial line: no echo, no line editing, CR passed as it is.
        tty.setraw(slave)
        self._exit.callback(os.close, master)
        self._exit.callback(os.close, slave)
        depot_url = self.depot_url
        proxy = None
        if spec.behind_proxy:
            host, _, port = self.depot_url.removeprefix("http://").partition(":")
            proxy = CuttableProxy(host, int(port), name=f"{spec.device}-link")
            await proxy.start()
            self._exit.push_async_callback(proxy.close)
            depot_url = proxy.url
        screen_port = free_port()
        data_dir = self.root / "validators" / spec.device
        data_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.root / "validators" / f"{spec.device}.toml"
        _write_private(
            config_path,
            validator_toml(
                provisioned[spec.device],
                depot_url=depot_url,
                scanner_port=os.ttyname(slave),
                screen_port=screen_port,
                data_dir=data_dir,
                vehicle=spec.vehicle,
                route=spec.route,
                trip=f"{spec.route}-{number:03d}",
                tuning=self.spec.validator_tuning,
            ),
        )
        child = await self._start_child(
            spec.device,
            [program("hes-validator"), "run", "--config", str(config_path)],
            child_env({}),
        )
        screen = Screen(self.session, f"http://127.0.0.1:{screen_port}")
        return ValidatorHandle(spec, screen, config_path, master, slave, child, proxy)


async def _wait_for(
    what: str, probe: Callable[[], Awaitable[bool]], children: Sequence[Child], timeout_s: float
) -> None:
    """Poll ``probe`` until it says yes; fail if a child exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while True:
        for child in children:
            try:
                child.check_alive()
            except ChildError as err:
                raise StackError(f"{what} did not start: {err}") from err
        try:
            if await probe():
                return
            last = "answering, not ready yet"
        except ServiceError as err:
            last = str(err)
        if time.monotonic() > deadline:
            raise StackError(f"{what} was not ready after {timeout_s:.0f} s ({last})")
        await asyncio.sleep(_POLL_S)


def _our_postgres(pg_dir: Path) -> int | None:
    """The pid of the PostgreSQL serving ``pg_dir``, if one runs; ``None`` otherwise."""
    try:
        pid = int((pg_dir / "postmaster.pid").read_text(encoding="ascii").split()[0])
        # A stale file's pid may belong to another program by now: only ours counts.
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if str(pg_dir).encode() in command else None


async def _stop_leftover_postgres(pg_dir: Path, timeout_s: float = 15.0) -> None:
    """Stop the embedded PostgreSQL of this run if the depot left it running (it was killed).

    Only the server whose ``postmaster.pid`` is in ``pg_dir`` and whose
    command line names ``pg_dir``: this run's own.
    """
    pid = _our_postgres(pg_dir)
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown
    except ProcessLookupError:
        return
    log.warning("stopping the embedded PostgreSQL the depot left behind", pid=pid)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        await asyncio.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGQUIT)
