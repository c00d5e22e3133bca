"""The depot as deployed: ``hes-depot serve`` in its own process, on loopback.

The bench process prepares a fresh, migrated database with the depot's own
functions (devices enrolled with real secrets, an auditor with a token, a
small list recorded as online checks, a published snapshot), writes a
configuration file, starts ``hes-depot serve`` and waits for ``/healthz``.
It is then only a client: every request it sends is device-signed or
carries a bearer token, over real HTTP, so the depot's event loop shares
nothing with the load generator (the two still share the machine's cores).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp
import asyncpg

from bench.lists import LIST_KEY
from bench.measure import process_cpu_s, say
from bench.postgres import Postgres
from depot_sync.config import DEFAULT_MIGRATIONS_DIR
from depot_sync.config import load as load_depot_config
from depot_sync.crypto import FieldCipher, credential_context
from depot_sync.db import Conn
from depot_sync.db.migrations import migrate
from depot_sync.jobs.partitions import ensure_partitions
from depot_sync.operations.devices import provision_device
from depot_sync.operations.operators import Role, create_operator
from depot_sync.risklist.credentials import (
    MinistryFacts,
    MinistryState,
    hes_key,
    record_checked_code,
)
from depot_sync.risklist.snapshots import PublishedSnapshot, build_snapshot
from protocol.listsign import ListSigner
from protocol.risk import HealthStatus
from protocol.signing import sign_request

DATABASE: Final = "hesgate_bench"
KEY_ID: Final = "depot-bench"
#: HES codes the depot's small published list holds (recorded as online checks).
LISTED_CODES: Final = 500
START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 20.0
#: Runs the depot's console entry point with whatever Python runs the bench.
_ENTRY: Final = "import sys; from depot_sync.cli import main; sys.exit(main())"


class DepotFailure(RuntimeError):
    """The depot did not start, or stopped on its own."""


@dataclass(frozen=True, slots=True)
class Device:
    """An enrolled validator: its id and request-signing secret."""

    id: str
    secret: bytes

    def sign(self, method: str, path_qs: str, body: bytes = b"") -> dict[str, str]:
        """The signature headers for one request, made now (a fresh nonce each time)."""
        return sign_request(
            device_id=self.id, secret=self.secret, method=method, path_qs=path_qs, body=body
        )


def free_port() -> int:
    """A local port free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _toml(value: object) -> str:
    """A TOML basic string (JSON's escaping is valid TOML)."""
    return json.dumps(str(value))


def _child_env() -> dict[str, str]:
    """The environment without configuration overrides meant for some other depot."""
    return {k: v for k, v in os.environ.items() if not (k.startswith("HESGATE_") and "__" in k)}


def config_text(
    *, directory: Path, port: int, url: str, dsn: str, field_key: bytes, signing_key: Path
) -> str:
    """The depot's configuration file for the bench: what it needs, the rest at its defaults.

    Only what a depot cannot run without (where it listens, its database,
    its keys) is set, and one thing that would skew the figures: no
    snapshot job (the bench publishes its own). Everything that shapes
    performance is left as a depot runs by default, notably ``[server]
    access_log`` (on), ``gc_thresholds`` and ``gc_freeze``, and ``[ingest]
    max_concurrent_batches``.
    """
    return (
        f"data_dir = {_toml(directory)}\n"
        "[server]\n"
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
        f"public_url = {_toml(url)}\n"
        "[database]\n"
        f"dsn = {_toml(dsn)}\n"
        "[keys]\n"
        f"field_key = {_toml(field_key.hex())}\n"
        f"list_key = {_toml(LIST_KEY.hex())}\n"
        f"signing_key_file = {_toml(signing_key)}\n"
        f"signing_key_id = {_toml(KEY_ID)}\n"
        "[risklist]\n"
        f"snapshot_dir = {_toml(directory / 'snapshots')}\n"
        # The bench publishes snapshots itself; a job building one mid-run would skew it.
        "snapshot_interval_s = 0\n"
    )


class DepotStack:
    """A fresh depot database and ``hes-depot serve`` on it."""

    def __init__(self, postgres: Postgres, directory: Path, *, devices: int) -> None:
        self.postgres = postgres
        self.dir = directory
        self.device_count = devices
        self.devices: list[Device] = []
        self.auditor_token = ""
        self.url = ""
        self.dsn = ""
        self.signer = ListSigner.generate(KEY_ID)
        self.field_key = os.urandom(32)
        self.snapshot: PublishedSnapshot | None = None
        self.log_path = directory / "depot.log"
        self._pool: asyncpg.Pool | None = None
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        """The bench's own pool on the depot's database (resets, checks, references)."""
        if self._pool is None:
            raise DepotFailure("the depot stack is not started")
        return self._pool

    async def start(self) -> None:
        """Prepare the database, start the server, wait until it answers."""
        self.dir.mkdir(parents=True, exist_ok=True)
        say("depot: fresh database, devices, a small published list")
        self.dsn = await self.postgres.recreate(DATABASE)
        self._pool = await asyncpg.create_pool(
            self.dsn, min_size=1, max_size=10, server_settings={"timezone": "UTC"}
        )
        cipher = FieldCipher(self.field_key)
        async with self.pool.acquire() as conn:
            await migrate(conn, DEFAULT_MIGRATIONS_DIR)
            await ensure_partitions(conn, dt.datetime.now(dt.UTC).date(), ahead=7)
            for i in range(self.device_count):
                device_id = f"bench-{i + 1:04d}"
                secret = await provision_device(conn, cipher, device_id, vehicle=f"34 BEN {i:03d}")
                self.devices.append(Device(device_id, secret))
            self.auditor_token = await create_operator(conn, "bench-auditor", Role.AUDITOR)
            await _record_codes(conn, cipher, LISTED_CODES)
        signing_key = self.dir / "list-signing.pem"
        self.signer.save(signing_key)
        self.snapshot = await build_snapshot(
            self.pool, self.signer, self.dir / "snapshots", keep=3, max_shrink=0.1
        )
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = self.dir / "depot.toml"
        config.write_text(self._config_text(port, signing_key), encoding="utf-8")
        config.chmod(0o600)
        await self._serve(config)

    def _config_text(self, port: int, signing_key: Path) -> str:
        return config_text(
            directory=self.dir,
            port=port,
            url=self.url,
            dsn=self.dsn,
            field_key=self.field_key,
            signing_key=signing_key,
        )

    def settings(self) -> dict[str, str]:
        """What the running depot says it runs with: access log and garbage collector.

        Read from the configuration it was given (loaded by the depot's own
        loader) and from its ``garbage collector set`` log line, so a depot
        that ignored its configuration shows here.
        """
        config = load_depot_config(self.dir / "depot.toml", env={})
        server = config.server
        notes = {
            "depot [server] access_log": str(server.access_log).lower(),
            "depot [server] gc_thresholds": str(list(server.gc_thresholds)),
            "depot [server] gc_freeze": str(server.gc_freeze).lower(),
        }
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict) and event.get("event") == "garbage collector set":
                notes["depot garbage collector at start"] = (
                    f"thresholds {event.get('thresholds')}, "
                    f"{event.get('frozen_objects')} objects frozen"
                )
        return notes

    async def _serve(self, config: Path) -> None:
        say(f"depot: hes-depot serve on {self.url} (log: {self.log_path})")
        log = self.log_path.open("ab")
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _ENTRY,
                "--config",
                str(config),
                "serve",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=_child_env(),
            )
        finally:
            log.close()
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        async with aiohttp.ClientSession() as session:
            while True:
                if self._process.returncode is not None:
                    raise DepotFailure(
                        f"hes-depot serve exited with {self._process.returncode}: {self._tail()}"
                    )
                try:
                    async with session.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise DepotFailure(f"hes-depot serve did not answer: {self._tail()}")
                await asyncio.sleep(0.2)

    def _tail(self) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as err:
            return f"(no log: {err})"
        return " | ".join(lines[-5:])

    def cpu_s(self) -> float:
        """CPU seconds the depot process has used so far (its worker threads included)."""
        process = self._process
        if process is None:
            raise DepotFailure("hes-depot serve is not running")
        return process_cpu_s(process.pid)

    def check_running(self) -> None:
        """Raise :class:`DepotFailure` if the server process has exited."""
        process = self._process
        if process is None or process.returncode is not None:
            raise DepotFailure(f"hes-depot serve is not running: {self._tail()}")

    async def stop(self) -> None:
        """Stop the server (SIGTERM, as systemd would) and close the pool."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def _record_codes(conn: Conn, cipher: FieldCipher, count: int) -> None:
    """Put ``count`` HES codes on the list as the online check would (encrypted, versioned)."""
    now = dt.datetime.now(dt.UTC)
    facts = MinistryFacts(
        MinistryState.FOUND, HealthStatus.RISKLESS, now + dt.timedelta(days=30), "246"
    )
    for i in range(count):
        code = f"D{i:09d}"
        key = hes_key(LIST_KEY, code)
        await record_checked_code(
            conn,
            key=key,
            sealed_code=cipher.seal_text(code, context=credential_context(key)),
            facts=facts,
            checked_at=now,
        )
