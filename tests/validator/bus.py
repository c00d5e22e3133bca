"""A validator on a test bench: provisioned config, fake cable, real process parts."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from depot_sync.operations.devices import validator_config
from protocol.codec import encode
from protocol.listsign import ListSigner
from protocol.messages import Signed
from protocol.risk import ListEntry
from runtime.config import load_config
from tests.validator.lists import LIST_KEY, SECRET, snapshot_file
from tests.validator.ptys import FakeCable, eventually
from validator.app import Validator
from validator.config import ValidatorConfig
from validator.policy import POLICY_NAME
from validator.risklist import SNAPSHOT_NAME


def provisioned_toml(
    *,
    device_id: str,
    depot_url: str,
    signer: ListSigner,
    scanner_port: Path,
    screen_port: int,
    data_dir: Path,
    secret: bytes = SECRET,
    idle_s: float = 20.0,
    extra: str = "",
) -> str:
    """What ``hes-depot provision-device`` prints, plus the bus's own sections."""
    printed = validator_config(
        device_id=device_id,
        secret=secret,
        list_key=LIST_KEY,
        depot_url=depot_url,
        list_key_id=signer.key_id,
        list_public_pem=signer.public_pem().decode("ascii"),
    )
    return on_the_bus(
        printed,
        scanner_port=scanner_port,
        screen_port=screen_port,
        data_dir=data_dir,
        idle_s=idle_s,
        extra=extra,
    )


def on_the_bus(
    printed: str,
    *,
    scanner_port: Path,
    screen_port: int,
    data_dir: Path,
    idle_s: float = 20.0,
    extra: str = "",
) -> str:
    """The provisioned configuration with the serial port and screen address added."""
    return (
        printed
        + f'\n[scanner]\nport = "{scanner_port}"\nreopen_interval_s = 0.1\n'
        + f'\n[screen]\nhost = "127.0.0.1"\nport = {screen_port}\nidle_s = {idle_s}\n'
        + f'\n[storage]\ndata_dir = "{data_dir}"\n'
        + extra
    )


def config_from(text: str, path: Path) -> ValidatorConfig:
    path.write_text(text, encoding="utf-8")
    return load_config(ValidatorConfig, path, env={})


def preload(
    data_dir: Path,
    signer: ListSigner,
    *,
    entries: list[ListEntry] | None = None,
    version: int = 1,
    created_ms: int | None = None,
    policy: Signed | None = None,
) -> None:
    """Put a list and a policy on the box as if they had been fetched before."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if entries is not None:
        snapshot_file(
            data_dir / SNAPSHOT_NAME, entries, signer, version=version, created_ms=created_ms
        )
    if policy is not None:
        (data_dir / POLICY_NAME).write_bytes(encode(policy))


@dataclass
class Bench:
    """A running validator, its cable and an HTTP session to its screen."""

    validator: Validator
    cable: FakeCable
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        assert self.validator.screen_url is not None
        return self.validator.screen_url

    async def status(self) -> dict[str, Any]:
        async with self.http.get(self.url + "/api/status") as r:
            assert r.status == 200
            data: dict[str, Any] = await r.json()
            return data

    async def tap(self, frame: bytes) -> dict[str, Any]:
        """Send a frame down the cable; the answer it got, as /api/status shows it."""
        before = self.validator.board.last_answer
        self.cable.send(frame)
        await eventually(lambda: self.validator.board.last_answer is not before)
        status = await self.status()
        last: dict[str, Any] = status["last_decision"]
        return last

    async def keypad(self, code: str, last3: str) -> tuple[int, dict[str, Any]]:
        async with self.http.post(
            self.url + "/api/keypad", json={"code": code, "tckn_last3": last3}
        ) as r:
            return r.status, json.loads(await r.text())


@contextlib.asynccontextmanager
async def bench(
    config: ValidatorConfig, cable: FakeCable, *, clock: Callable[[], float] = time.time
) -> AsyncIterator[Bench]:
    validator = Validator(config, clock=clock)
    async with validator, aiohttp.ClientSession() as http:
        b = Bench(validator, cable, http)
        await eventually(lambda: validator.scanner.state.connected)
        yield b
