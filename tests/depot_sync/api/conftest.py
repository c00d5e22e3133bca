"""A real depot on loopback HTTP, on the test's own database."""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from depot_sync.app import build_depot, create_app
from depot_sync.config import AuthSection, DepotConfig, KeysSection
from depot_sync.operations.devices import provision_device
from depot_sync.operations.operators import Role, create_operator
from depot_sync.state import Depot
from protocol import codec
from protocol.listsign import ListSigner
from protocol.ministry import MinistryClient
from protocol.signing import sign_request


@dataclasses.dataclass
class Harness:
    """A depot under test, with helpers to talk to it as a validator or an operator."""

    depot: Depot
    client: TestClient[Any, Any]
    signer: ListSigner

    @property
    def pool(self) -> asyncpg.Pool:
        return self.depot.pool

    async def enrol(self, device: str) -> bytes:
        async with self.pool.acquire() as conn:
            return await provision_device(conn, self.depot.cipher, device)

    async def operator(self, role: Role, name: str | None = None) -> str:
        async with self.pool.acquire() as conn:
            return await create_operator(
                conn, name or f"op-{role.value}-{os.urandom(3).hex()}", role
            )

    async def signed(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        device: str,
        secret: bytes,
        headers: dict[str, str] | None = None,
        now_ms: int | None = None,
        nonce: str | None = None,
    ) -> aiohttp.ClientResponse:
        signature = sign_request(
            device_id=device,
            secret=secret,
            method=method,
            path_qs=path,
            body=body,
            now_ms=now_ms,
            nonce=nonce,
        )
        # aiohttp warns about large raw bodies; a stream of the same bytes is the same request.
        data: bytes | io.BytesIO = io.BytesIO(body) if len(body) > 512 * 1024 else body
        return await self.client.request(
            method, path, data=data, headers={**signature, **(headers or {})}
        )

    async def send(
        self, method: str, path: str, message: object | None, *, device: str, secret: bytes
    ) -> aiohttp.ClientResponse:
        body = b"" if message is None else codec.encode(message)
        return await self.signed(method, path, body, device=device, secret=secret)

    async def as_operator(self, path: str, token: str) -> aiohttp.ClientResponse:
        return await self.client.get(path, headers={"Authorization": f"Bearer {token}"})


def depot_config(tmp_path: Path, signer: ListSigner, **sections: Any) -> DepotConfig:
    key_file = tmp_path / "list-signing.pem"
    if not key_file.exists():
        signer.save(key_file)
    keys = KeysSection(
        field_key=os.urandom(32).hex(),
        list_key=os.urandom(32).hex(),
        signing_key_file=key_file,
        signing_key_id=signer.key_id,
    )
    config = DepotConfig(keys=keys, data_dir=tmp_path / "data", auth=AuthSection(secret_cache_s=0))
    return dataclasses.replace(config, **sections)


HarnessFactory = Callable[..., Any]


@pytest.fixture
def make_harness(pool: asyncpg.Pool, tmp_path: Path) -> Callable[..., Any]:
    """``async with make_harness(ministry=..., **config sections) as h``."""

    @asynccontextmanager
    async def make(
        ministry: MinistryClient | None = None, **sections: Any
    ) -> AsyncIterator[Harness]:
        signer = ListSigner.generate("depot-test")
        config = depot_config(tmp_path, signer, **sections)
        depot = build_depot(config, pool, ministry, signer=signer)
        client = TestClient(TestServer(create_app(depot)))
        await client.start_server()
        try:
            yield Harness(depot, client, signer)
        finally:
            await client.close()

    return make


@pytest.fixture
async def harness(make_harness: Callable[..., Any]) -> AsyncIterator[Harness]:
    async with make_harness() as h:
        yield h
