"""The depot's real app on loopback, for the validator's sync tests.

Built the way the depot's own HTTP tests build it (``build_depot`` +
``create_app`` on a migrated database), but served on a real TCP port so a
validator, in this process or another, reaches it as it would on the road.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Middleware

from depot_sync.app import build_depot, create_app, publish_snapshot
from depot_sync.config import PolicySection
from depot_sync.operations.devices import provision_device, validator_config
from depot_sync.risklist.credentials import hes_key
from depot_sync.risklist.snapshots import PublishedSnapshot, latest_snapshot
from depot_sync.state import Depot
from protocol.listsign import ListSigner
from protocol.ministry import MinistryClient
from tests.depot_sync.api.conftest import depot_config

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclasses.dataclass
class LiveDepot:
    """A depot serving on ``url``."""

    depot: Depot
    url: str
    signer: ListSigner

    @property
    def pool(self) -> asyncpg.Pool:
        return self.depot.pool

    @property
    def list_key(self) -> bytes:
        return self.depot.list_key

    async def enrol(self, device: str) -> bytes:
        async with self.pool.acquire() as conn:
            return await provision_device(conn, self.depot.cipher, device)

    async def provision(self, device: str) -> str:
        """What ``hes-depot provision-device`` prints for a new device."""
        secret = await self.enrol(device)
        return validator_config(
            device_id=device,
            secret=secret,
            list_key=self.list_key,
            depot_url=self.url,
            list_key_id=self.signer.key_id,
            list_public_pem=self.signer.public_pem().decode("ascii"),
        )

    async def publish(self) -> None:
        await publish_snapshot(self.depot, force=True)

    async def latest(self) -> PublishedSnapshot:
        found = await latest_snapshot(self.pool, self.depot.snapshot_dir)
        assert found is not None, "nothing published"
        return found

    def key(self, code: str) -> bytes:
        return hes_key(self.list_key, code)

    async def stored_seqs(self, device: str) -> list[int]:
        rows = await self.pool.fetch(
            "SELECT seq FROM taps WHERE device_id = $1 ORDER BY seq", device
        )
        return [r["seq"] for r in rows]


@contextlib.asynccontextmanager
async def live_depot(
    pool: asyncpg.Pool,
    tmp_path: Path,
    *,
    ministry: MinistryClient | None = None,
    policy_toml: str | None = None,
    port: int = 0,
    middlewares: tuple[Middleware, ...] = (),
    again: LiveDepot | None = None,
    **sections: Any,
) -> AsyncIterator[LiveDepot]:
    """The depot's app on ``127.0.0.1:port`` (a free port by default).

    ``again``: the same depot (keys, configuration) as an earlier one, restarted.
    """
    if again is not None:
        signer, config = again.signer, again.depot.config
    else:
        signer = ListSigner.generate("depot-test")
        where = tmp_path / "depot"
        where.mkdir(exist_ok=True)
        if policy_toml is not None:
            policy_file = where / "policy.toml"
            policy_file.write_text(policy_toml, encoding="utf-8")
            sections["policy"] = PolicySection(file=policy_file)
        config = depot_config(where, signer, **sections)
    depot = build_depot(config, pool, ministry, signer=signer)
    app = create_app(depot)
    for middleware in middlewares:
        app.middlewares.append(web.middleware(middleware))
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        host, bound = runner.addresses[0][:2]
        yield LiveDepot(depot, f"http://{host}:{bound}", signer)
    finally:
        await runner.cleanup()
