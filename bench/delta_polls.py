"""Polls when nothing changed: what a fleet costs the depot between changes.

A validator asks ``GET /v1/risklist/delta?since=<its version>`` on an
interval; when it is up to date the depot answers 200 with an empty signed
page (the delta endpoint has no ETag, so it cannot answer 304). The
snapshot and the policy are conditional: ``If-None-Match`` with the ETag the
validator holds gives 304. Each request is device-signed with a fresh nonce
as it is sent, from many devices, ``concurrency`` at a time.

Reference: the same client, the same concurrency, against a bare aiohttp
server in its own process that answers 304 and does nothing else.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import Final

import aiohttp

from bench.context import BenchFailure, Context
from bench.depot import DepotStack, Device, free_port
from bench.measure import process_cpu_s, say
from bench.table import Reference, Result
from depot_sync.risklist.changes import list_head
from protocol.codec import decode
from protocol.listsign import unseal
from protocol.messages import DeltaPage, Signed

SECTION: Final = "delta_polls"
START_TIMEOUT_S: Final = 30.0

#: (path with query, extra headers, the status every answer must have)
Poll = tuple[str, dict[str, str], int]


async def _hammer(
    url: str, device_of: Callable[[int], Device | None], poll: Poll, count: int, concurrency: int
) -> float:
    """Seconds for ``count`` requests, ``concurrency`` in flight; each must get its status."""
    path, extra, status = poll
    numbers = iter(range(count))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for n in numbers:
                headers = dict(extra)
                device = device_of(n)
                if device is not None:
                    headers.update(device.sign("GET", path))
                async with session.get(url + path, headers=headers) as response:
                    await response.read()
                    if response.status != status:
                        raise BenchFailure(f"GET {path}: HTTP {response.status}, expected {status}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


async def _bare(count: int, concurrency: int) -> tuple[float, float]:
    """Requests/s against the bare 304 server in its own process, and its CPU s per request."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.bare_server",
        str(port),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(url + "/") as response:
                        if response.status == 304:
                            break
                except aiohttp.ClientError:
                    if (
                        process.returncode is not None
                        or asyncio.get_running_loop().time() > deadline
                    ):
                        raise BenchFailure("the bare reference server did not start") from None
                    await asyncio.sleep(0.1)
        cpu = process_cpu_s(process.pid)
        seconds = await _hammer(url, lambda n: None, ("/v1/policy", {}, 304), count, concurrency)
        return count / seconds, (process_cpu_s(process.pid) - cpu) / count
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


async def _check_delta_answer(depot: DepotStack, since: int) -> None:
    """The up-to-date answer is an empty page, signed by the depot's list key."""
    device = depot.devices[0]
    path = f"/v1/risklist/delta?since={since}"
    async with (
        aiohttp.ClientSession() as session,
        session.get(depot.url + path, headers=device.sign("GET", path)) as response,
    ):
        body = await response.read()
        if response.status != 200:
            raise BenchFailure(f"delta poll: HTTP {response.status}: {body[:200]!r}")
    page = decode(DeltaPage, unseal(depot.signer.verifier(), decode(Signed, body)))
    if page.changes or page.until != since or page.more:
        raise BenchFailure(f"an up-to-date delta poll returned changes: {page!r}"[:300])


async def _policy_etag(depot: DepotStack) -> str:
    device = depot.devices[0]
    async with (
        aiohttp.ClientSession() as session,
        session.get(depot.url + "/v1/policy", headers=device.sign("GET", "/v1/policy")) as response,
    ):
        await response.read()
        etag = response.headers.get("ETag")
        if response.status != 200 or not etag:
            raise BenchFailure(f"policy: HTTP {response.status}, ETag {etag!r}")
        return etag


async def run(ctx: Context) -> list[Result]:
    """Polls/s for each kind of poll, beside the bare server's 304s/s."""
    settings = ctx.config.delta_polls
    depot = await ctx.depot()
    head = (await list_head(depot.pool)).version
    await _check_delta_answer(depot, head)
    snapshot = depot.snapshot
    if snapshot is None:
        raise BenchFailure("the depot published no snapshot")
    polls: dict[str, Poll] = {
        "delta poll at head (200, empty signed page)": (
            f"/v1/risklist/delta?since={head}",
            {},
            200,
        ),
        "snapshot poll, If-None-Match (304)": (
            "/v1/risklist/snapshot",
            {"If-None-Match": snapshot.etag},
            304,
        ),
        "policy poll, If-None-Match (304)": (
            "/v1/policy",
            {"If-None-Match": await _policy_etag(depot)},
            304,
        ),
    }
    devices = depot.devices
    fleet = max(1, min(len(devices), settings.concurrency * 4))
    say(f"delta_polls: {settings.polls:,} of each, {settings.concurrency} at a time")
    bare_rate, bare_cpu = await _bare(settings.polls, settings.concurrency)
    results = []
    for name, poll in polls.items():
        cpu = depot.cpu_s()
        seconds = await _hammer(
            depot.url, lambda n: devices[n % fleet], poll, settings.polls, settings.concurrency
        )
        cpu_per_poll = (depot.cpu_s() - cpu) / settings.polls
        depot.check_running()
        results += [
            Result(
                SECTION,
                f"polls/s, {name}",
                settings.polls / seconds,
                "/s",
                Reference("bare aiohttp 304, own process", bare_rate),
            ),
            Result(
                SECTION,
                f"depot process CPU per poll, {name.split(' (')[0]}",
                cpu_per_poll * 1e6,
                "us",
                Reference("bare aiohttp 304 server, CPU per request", bare_cpu * 1e6),
            ),
        ]
    return results
