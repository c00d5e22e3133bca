"""Polls when nothing changed: what a fleet costs the depot between changes.

The headline is the conditional delta poll, exactly as
:class:`validator.listsync.ListSync` sends it: ``GET
/v1/risklist/delta?since=<head>`` with ``If-None-Match: "v<head>"`` (the
validator's own :func:`~validator.listsync.delta_etag`), which the depot
answers 304 from the head it keeps in memory. Beside it: the same poll
without the header (200, an empty signed page, as a validator that predates
the ETag would get), and the snapshot and policy polls, both conditional
(304). Every answer is checked: status, ``ETag``, the list version header
where there is one, and the body (none for a 304; for the 200, byte for byte
the page verified once before the run, Ed25519 signatures being
deterministic). Each request is device-signed with a fresh nonce as it is
sent, from many devices, ``concurrency`` at a time.

Reference: the same client, the same concurrency, against a bare aiohttp
server in its own process that answers 304 and does nothing else (its
answers are checked the same way).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

import aiohttp
from multidict import CIMultiDictProxy

from bench import bare_server
from bench.context import BenchFailure, Context
from bench.depot import DepotStack, Device, free_port
from bench.measure import process_cpu_s, say
from bench.table import Reference, Result
from depot_sync.api.validator import HEADER_LIST_VERSION
from depot_sync.risklist.changes import list_head
from protocol.codec import decode
from protocol.listsign import unseal
from protocol.messages import DeltaPage, Signed
from validator.depot_client import MSGPACK
from validator.listsync import delta_etag

SECTION: Final = "delta_polls"
START_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class Poll:
    """One kind of request and the one answer every instance of it must get."""

    path: str
    status: int
    #: The answer's ``ETag``, exactly.
    etag: str
    #: The answer's body, exactly (``b""`` for a 304).
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Further answer headers that must have exactly these values.
    expect: Mapping[str, str] = field(default_factory=dict)

    def problem(self, status: int, headers: Mapping[str, str], body: bytes) -> str | None:
        """What is wrong with an answer (``None``: it is the one expected)."""
        if status != self.status:
            return f"HTTP {status}, expected {self.status}"
        if headers.get("ETag") != self.etag:
            return f"ETag {headers.get('ETag')!r}, expected {self.etag!r}"
        for name, value in self.expect.items():
            if headers.get(name) != value:
                return f"{name} {headers.get(name)!r}, expected {value!r}"
        if body != self.body:
            return f"a {len(body)}-byte body unlike the expected {len(self.body)} bytes"
        return None


async def _hammer(
    url: str, device_of: Callable[[int], Device | None], poll: Poll, count: int, concurrency: int
) -> float:
    """Seconds for ``count`` requests, ``concurrency`` in flight; each must get its answer."""
    numbers = iter(range(count))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for n in numbers:
                headers = dict(poll.headers)
                device = device_of(n)
                if device is not None:
                    headers.update(device.sign("GET", poll.path))
                async with session.get(url + poll.path, headers=headers) as response:
                    body = await response.read()
                    wrong = poll.problem(response.status, _plain(response.headers), body)
                if wrong is not None:
                    raise BenchFailure(f"GET {poll.path}: {wrong}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


def _plain(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    """The headers a poll checks, under the names it checks them by."""
    names = ("ETag", HEADER_LIST_VERSION)
    return {name: headers[name] for name in names if name in headers}


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
        poll = Poll(
            "/v1/risklist/delta?since=1",
            304,
            bare_server.ETAG,
            headers={"Accept": MSGPACK, "If-None-Match": bare_server.ETAG},
        )
        cpu = process_cpu_s(process.pid)
        seconds = await _hammer(url, lambda n: None, poll, count, concurrency)
        return count / seconds, (process_cpu_s(process.pid) - cpu) / count
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer as it came back."""

    status: int
    headers: Mapping[str, str]
    body: bytes


async def _get(depot: DepotStack, path: str, headers: Mapping[str, str]) -> Answer:
    """One signed GET, as the first of the fleet's devices sends it."""
    signed = {**headers, **depot.devices[0].sign("GET", path)}
    async with (
        aiohttp.ClientSession() as session,
        session.get(depot.url + path, headers=signed) as response,
    ):
        body = await response.read()
        return Answer(response.status, _plain(response.headers), body)


async def _head_page(depot: DepotStack, head: int) -> bytes:
    """The unconditional answer at the head, checked once: an empty page the list key signed."""
    answer = await _get(depot, f"/v1/risklist/delta?since={head}", {"Accept": MSGPACK})
    if answer.status != 200:
        raise BenchFailure(f"delta poll: HTTP {answer.status}: {answer.body[:200]!r}")
    page = decode(DeltaPage, unseal(depot.signer.verifier(), decode(Signed, answer.body)))
    if page.changes or page.since != head or page.until != head or page.more:
        raise BenchFailure(f"an up-to-date delta poll returned changes: {page!r}"[:300])
    return answer.body


async def _not_at_head_gets_a_page(depot: DepotStack, head: int) -> None:
    """A tag that is not the head's must not be answered 304 (the 304 is not blind)."""
    stale = delta_etag(head + 1)
    answer = await _get(
        depot, f"/v1/risklist/delta?since={head}", {"Accept": MSGPACK, "If-None-Match": stale}
    )
    if answer.status != 200:
        raise BenchFailure(f"If-None-Match {stale} at head {head}: HTTP {answer.status}")


async def _policy_etag(depot: DepotStack) -> str:
    answer = await _get(depot, "/v1/policy", {})
    etag = answer.headers.get("ETag")
    if answer.status != 200 or not etag:
        raise BenchFailure(f"policy: HTTP {answer.status}, ETag {etag!r}")
    return etag


async def polls(depot: DepotStack) -> dict[str, Poll]:
    """The polls measured, by name, each with the answer it must get."""
    head = (await list_head(depot.pool)).version
    snapshot = depot.snapshot
    if snapshot is None:
        raise BenchFailure("the depot published no snapshot")
    await _not_at_head_gets_a_page(depot, head)
    delta_path = f"/v1/risklist/delta?since={head}"
    at_head = {HEADER_LIST_VERSION: str(head)}
    policy_etag = await _policy_etag(depot)
    return {
        'conditional delta poll, If-None-Match "v<head>" (304)': Poll(
            delta_path,
            304,
            delta_etag(head),
            headers={"Accept": MSGPACK, "If-None-Match": delta_etag(head)},
            expect=at_head,
        ),
        "delta poll at head, no If-None-Match (200, empty signed page)": Poll(
            delta_path,
            200,
            delta_etag(head),
            body=await _head_page(depot, head),
            headers={"Accept": MSGPACK},
            expect=at_head,
        ),
        "snapshot poll, If-None-Match (304)": Poll(
            "/v1/risklist/snapshot", 304, snapshot.etag, headers={"If-None-Match": snapshot.etag}
        ),
        "policy poll, If-None-Match (304)": Poll(
            "/v1/policy", 304, policy_etag, headers={"If-None-Match": policy_etag}
        ),
    }


async def run(ctx: Context) -> list[Result]:
    """Polls/s for each kind of poll, beside the bare server's 304s/s."""
    settings = ctx.config.delta_polls
    depot = await ctx.depot()
    measured = await polls(depot)
    devices = depot.devices
    fleet = max(1, min(len(devices), settings.concurrency * 4))
    say(f"delta_polls: {settings.polls:,} of each, {settings.concurrency} at a time")
    bare_rate, bare_cpu = await _bare(settings.polls, settings.concurrency)
    results = []
    for name, poll in measured.items():
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
                f"depot process CPU per poll, {name.split(',')[0]}",
                cpu_per_poll * 1e6,
                "us",
                Reference("bare aiohttp 304 server, CPU per request", bare_cpu * 1e6),
            ),
        ]
    return results
