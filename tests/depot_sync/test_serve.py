"""``hes-depot serve`` as a real process: embedded PostgreSQL, HTTP, clean stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from protocol import codec
from protocol.messages import PROTOCOL_VERSION, TapAck, TapBatch
from protocol.signing import sign_request
from tests.depot_sync.helpers import reserved_port, taps


async def hes_depot(config: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "depot_sync",
        "--config",
        str(config),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.slow
async def test_serve_with_embedded_postgres(tmp_path: Path) -> None:
    with reserved_port() as port:
        config = tmp_path / "depot.toml"
        rc, _, err = await hes_depot(
            config, "init-config", str(config), "--data-dir", str(tmp_path / "data")
        )
        assert rc == 0, err
        text = config.read_text().replace("port = 8470", f"port = {port}")
        config.write_text(text + '\n[log]\nlevel = "info"\njson = true\n')

        rc, out, err = await hes_depot(config, "provision-device", "bus-1")
        assert rc == 0, err
        secret = bytes.fromhex(out.split('secret = "')[1].split('"')[0])

        env = {k: v for k, v in os.environ.items() if not k.startswith("HESGATE_")}
        server = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "depot_sync",
            "--config",
            str(config),
            "serve",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
                for _ in range(400):  # initdb alone takes seconds on a busy machine
                    try:
                        async with http.get("/healthz") as resp:
                            if resp.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        pass
                    await asyncio.sleep(0.1)
                else:
                    pytest.fail("the depot did not come up")
                body = codec.encode(
                    TapBatch(v=PROTOCOL_VERSION, device="bus-1", taps=taps([1, 2, 3]))
                )
                headers = sign_request(
                    device_id="bus-1", secret=secret, method="POST", path_qs="/v1/taps", body=body
                )
                async with http.post("/v1/taps", data=body, headers=headers) as resp:
                    assert resp.status == 200
                    assert codec.decode(TapAck, await resp.read()).ack == 3
                # Nothing listed yet: a validator at version 0 is up to date.
                path = "/v1/risklist/delta?since=0"
                headers = sign_request(
                    device_id="bus-1", secret=secret, method="GET", path_qs=path, body=b""
                )
                async with http.get(path, headers={**headers, "If-None-Match": '"v0"'}) as resp:
                    assert resp.status == 304
                    assert resp.headers["ETag"] == '"v0"'
        finally:
            server.send_signal(signal.SIGTERM)
            _, logs = await asyncio.wait_for(server.communicate(), 30)
        assert server.returncode == 0
        log = logs.decode()
        assert "starting embedded PostgreSQL" in log
        assert "listening for list changes" in log
        lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        tuned = next(line for line in lines if line["event"] == "garbage collector set")
        assert tuned["thresholds"] == [100_000, 50, 100]
        assert tuned["frozen_objects"] > 0
        # The access log is on unless [server] access_log = false.
        access = [line["event"] for line in lines if line["logger"] == "aiohttp.access"]
        assert any('"POST /v1/taps HTTP/1.1" 200' in event for event in access)
        assert "stopping embedded PostgreSQL" in log
        assert not (tmp_path / "data" / "pg" / "postmaster.pid").exists()
        assert secret.hex() not in log
