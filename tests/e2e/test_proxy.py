"""The link proxy over real loopback TCP: passes bytes, cuts like a tunnel, comes back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from deploy.demo.proxy import CuttableProxy, ProxyError

SHORT = aiohttp.ClientTimeout(total=0.5)


@pytest.fixture
async def upstream() -> AsyncIterator[int]:
    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=b"echo:" + await request.read())

    app = web.Application()
    app.router.add_post("/", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield runner.addresses[0][1]
    await runner.cleanup()


@pytest.fixture
async def proxy(upstream: int) -> AsyncIterator[CuttableProxy]:
    p = CuttableProxy("127.0.0.1", upstream, name="test-link")
    await p.start()
    yield p
    await p.close()


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> bytes:
    async with session.post(url + "/", data=body, timeout=SHORT) as response:
        return await response.read()


async def test_bytes_pass_both_ways(proxy: CuttableProxy) -> None:
    async with aiohttp.ClientSession() as session:
        big = bytes(range(256)) * 1000
        assert await post(session, proxy.url, big) == b"echo:" + big
        assert await post(session, proxy.url, b"again") == b"echo:again"
    assert proxy.stats.passed >= 1
    assert proxy.stats.bytes_up > len(big)
    assert proxy.stats.bytes_down > len(big)


async def test_a_cut_drops_live_connections_and_swallows_new_ones(proxy: CuttableProxy) -> None:
    async with aiohttp.ClientSession() as session:
        assert await post(session, proxy.url, b"before") == b"echo:before"
        proxy.cut()
        assert proxy.is_cut
        # The kept-alive connection is gone, and a new one gets no answer: a time-out.
        with pytest.raises((aiohttp.ClientError, TimeoutError)):
            await post(session, proxy.url, b"during")
        with pytest.raises(TimeoutError):
            await post(session, proxy.url, b"during, new connection")
        assert proxy.stats.swallowed >= 1


async def test_restoring_ends_swallowed_connections_and_passes_again(proxy: CuttableProxy) -> None:
    async with aiohttp.ClientSession() as session:
        proxy.cut()
        waiting = asyncio.create_task(
            post(session, proxy.url, b"held")  # held until the link returns
        )
        while proxy.stats.swallowed == 0:  # noqa: ASYNC110 - waiting for the proxy's own task
            await asyncio.sleep(0.01)
        proxy.restore()
        with pytest.raises(aiohttp.ClientError):
            await waiting
        assert await post(session, proxy.url, b"after") == b"echo:after"
        assert proxy.stats.cuts == 1


async def test_an_unreachable_upstream_closes_the_client() -> None:
    dead = CuttableProxy("127.0.0.1", 1)
    await dead.start()
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientError):
                await post(session, dead.url, b"x")
    finally:
        await dead.close()


def test_the_port_needs_a_started_proxy() -> None:
    with pytest.raises(ProxyError, match="not started"):
        _ = CuttableProxy("127.0.0.1", 80).port
