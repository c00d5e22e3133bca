"""How ``serve`` runs the application: the access log switch."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from depot_sync.app import app_runner, build_depot, create_app
from depot_sync.config import DepotConfig, ServerSection
from protocol.listsign import ListSigner
from runtime.config import load_config
from runtime.logs import configure_logging
from tests.depot_sync.api.conftest import depot_config


async def access_lines(
    pool: asyncpg.Pool, tmp_path: Path, server: ServerSection
) -> list[dict[str, Any]]:
    """The access log lines of one ``GET /healthz`` served as ``serve`` serves it."""
    out = io.StringIO()
    configure_logging("info", json=True, stream=out)
    signer = ListSigner.generate("depot-test")
    depot = build_depot(depot_config(tmp_path, signer), pool, None, signer=signer)
    runner = app_runner(create_app(depot), server)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://{host}:{port}/healthz") as resp,
        ):
            assert resp.status == 200
    finally:
        await runner.cleanup()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    return [line for line in lines if line.get("logger") == "aiohttp.access"]


@pytest.mark.usefixtures("restore_logging")
async def test_access_log_on_by_default(pool: asyncpg.Pool, tmp_path: Path) -> None:
    assert ServerSection().access_log is True
    lines = await access_lines(pool, tmp_path, ServerSection())
    assert len(lines) == 1
    assert '"GET /healthz HTTP/1.1" 200' in lines[0]["event"]


@pytest.mark.usefixtures("restore_logging")
async def test_access_log_off(pool: asyncpg.Pool, tmp_path: Path) -> None:
    assert await access_lines(pool, tmp_path, ServerSection(access_log=False)) == []


def test_access_log_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "depot.toml"
    path.write_text(
        "[keys]\n"
        f'field_key = "{"11" * 32}"\n'
        f'list_key = "{"22" * 32}"\n'
        'signing_key_file = "/nonexistent.pem"\n'
    )
    config = load_config(DepotConfig, path, env={"HESGATE_SERVER__ACCESS_LOG": "false"})
    assert config.server.access_log is False
