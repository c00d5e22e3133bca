"""kill -9 in the middle of an upload: the sequence continues, nothing is lost or stored twice."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from protocol.codec import decode
from protocol.messages import TapAck
from tests.depot_sync.helpers import code_of, reserved_port, seed_found
from tests.validator.bus import on_the_bus
from tests.validator.depot import Handler, live_depot
from tests.validator.ptys import FakeCable
from validator.app import TAPS_DB

REPO = Path(__file__).parents[2]
SETTINGS = """
[upload]
batch_size = 25
batch_age_s = 0.2
backoff_initial_s = 0.05
backoff_max_s = 0.3

[sync]
delta_interval_s = 0.5
heartbeat_interval_s = 0.5
backoff_initial_s = 0.05
backoff_max_s = 0.3
"""


class Process:
    """``python -m validator run`` as its own process, and its screen's status."""

    def __init__(self, config: Path, screen: str, log: Path) -> None:
        self.config = config
        self.screen = screen
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, http: aiohttp.ClientSession) -> int:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "validator",
                "run",
                "--config",
                str(self.config),
                cwd=REPO,
                stdout=out,
                stderr=out,
            )
        async with asyncio.timeout(30):
            while (await self.status(http)) is None:
                assert self.proc.returncode is None, self.log.read_text()
                await asyncio.sleep(0.1)
        return self.proc.pid

    async def status(self, http: aiohttp.ClientSession) -> dict[str, Any] | None:
        try:
            async with http.get(self.screen + "/api/status") as r:
                data: dict[str, Any] = await r.json()
                return data
        except aiohttp.ClientError:
            return None

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


@contextlib.asynccontextmanager
async def process(config: Path, screen: str, log: Path) -> AsyncIterator[Process]:
    p = Process(config, screen, log)
    try:
        yield p
    finally:
        await p.stop()


async def tap_until_recorded(
    http: aiohttp.ClientSession, p: Process, cable: FakeCable, code: str
) -> int:
    """One frame down the cable; the sequence number its answer got."""
    before = (await p.status(http) or {}).get("last_decision")
    cable.send(code.encode() + b"\r")
    async with asyncio.timeout(10):
        while True:
            status = await p.status(http)
            if status is not None and status["last_decision"] != before:
                seq: int = status["last_decision"]["seq"]
                return seq
            await asyncio.sleep(0.01)


def committed(data_dir: Path) -> tuple[int, int]:
    """The last sequence number and the ack in the validator's own database."""
    db = sqlite3.connect(data_dir / TAPS_DB)
    try:
        last = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'taps'").fetchone()[0]
        acked = db.execute("SELECT value FROM meta WHERE name = 'acked'").fetchone()[0]
    finally:
        db.close()
    return int(last), int(acked)


@pytest.mark.slow
async def test_kill_9_mid_upload_then_restart(
    pool: asyncpg.Pool, tmp_path: Path, cable: FakeCable
) -> None:
    victim: dict[str, Any] = {"pid": None, "after_batches": 3, "batches": 0, "acks": []}

    async def kill_mid_batch(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.path == "/v1/taps" and response.status == 200:
            assert isinstance(response, web.Response)
            victim["acks"].append(decode(TapAck, bytes(response.body)))  # type: ignore[arg-type]
            victim["batches"] += 1
            if victim["pid"] is not None and victim["batches"] == victim["after_batches"]:
                # The depot has stored the batch; the validator never hears the ack.
                os.kill(victim["pid"], signal.SIGKILL)
                victim["pid"] = None
        return response

    with reserved_port() as screen_port:
        async with (
            live_depot(pool, tmp_path, middlewares=(kill_mid_batch,)) as depot,
            aiohttp.ClientSession() as http,
        ):
            await seed_found(pool, depot.depot.cipher, depot.list_key, range(50))
            await depot.publish()
            data_dir = tmp_path / "validator"
            config = tmp_path / "validator.toml"
            config.write_text(
                on_the_bus(
                    await depot.provision("bus-0001"),
                    scanner_port=cable.path,
                    screen_port=screen_port,
                    data_dir=data_dir,
                    extra=SETTINGS,
                ),
                encoding="utf-8",
            )
            screen = f"http://127.0.0.1:{screen_port}"
            async with process(config, screen, tmp_path / "validator.log") as p:
                victim["pid"] = await p.start(http)
                seqs = []
                for n in range(200):
                    if p.proc is not None and p.proc.returncode is not None:
                        break
                    with contextlib.suppress(TimeoutError):
                        seqs.append(await tap_until_recorded(http, p, cable, code_of(n % 50)))
                assert p.proc is not None
                assert await p.proc.wait() == -signal.SIGKILL
                last, acked = committed(data_dir)
                # Every answer shown was committed; the killed batch is at the depot, unacked.
                assert seqs == list(range(1, len(seqs) + 1))
                assert last >= len(seqs)
                depot_ack = victim["acks"][-1].ack
                assert acked < depot_ack <= last

                # Restarted: the numbering goes on, the batch is sent again and stored once.
                await p.start(http)
                first_after = await tap_until_recorded(http, p, cable, code_of(1))
                assert first_after == last + 1
                for n in range(2, 6):
                    await tap_until_recorded(http, p, cable, code_of(n))
                final = last + 5
                async with asyncio.timeout(30):
                    while ((await p.status(http)) or {}).get("acked") != final:  # noqa: ASYNC110 - another process
                        await asyncio.sleep(0.05)
                assert await depot.stored_seqs("bus-0001") == list(range(1, final + 1))
                assert sum(a.duplicates for a in victim["acks"]) > 0
                assert sum(a.stored for a in victim["acks"]) == final
        log = (tmp_path / "validator.log").read_text()
        assert "Traceback" not in log
