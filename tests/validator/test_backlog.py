"""Days of depot outage: a 100k backlog drains, in order, once the depot is back."""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web

from protocol.codec import decode
from protocol.messages import TapBatch
from tests.depot_sync.helpers import code_of, seed_found
from tests.validator.bus import bench, config_from, free_port, on_the_bus
from tests.validator.depot import Handler, live_depot
from tests.validator.ptys import FakeCable, eventually
from validator.app import TAPS_DB
from validator.queue import TapQueue

BACKLOG = 100_000
THREE_DAYS_MS = 3 * 86_400_000
FAST = """
[upload]
batch_size = 5000
batch_age_s = 0.1
backoff_initial_s = 0.05
backoff_max_s = 0.5

[sync]
heartbeat_interval_s = 0.5
backoff_initial_s = 0.05
backoff_max_s = 0.5
"""


@pytest.fixture
def cable(tmp_path: Path) -> Iterator[FakeCable]:
    c = FakeCable(tmp_path / "ttyScanner")
    c.plug()
    yield c
    c.unplug()


def offline_days(path: Path, count: int) -> None:
    """The queue as three days without a depot left it: ``count`` taps, none acknowledged."""
    TapQueue(path).close()
    start = int(time.time() * 1000) - THREE_DAYS_MS
    step = THREE_DAYS_MS // count
    db = sqlite3.connect(path)
    with db:
        db.executemany(
            "INSERT INTO taps (time_ms, method, key, decision, reason, decided_by, list_version,"
            " latency_us, vehicle, route, trip) VALUES (?, 1, ?, 1, 0, 1, 1, 200, ?, '', '')",
            ((start + i * step, i.to_bytes(8, "big"), "34 HES 001") for i in range(count)),
        )
    db.close()


@pytest.mark.slow
async def test_backlog_drains_in_order_when_the_depot_returns(
    pool: asyncpg.Pool, tmp_path: Path, cable: FakeCable
) -> None:
    data_dir = tmp_path / "validator"
    data_dir.mkdir()
    offline_days(data_dir / TAPS_DB, BACKLOG)
    batches: list[tuple[int, int]] = []

    async def watch(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/v1/taps":
            batch = decode(TapBatch, await request.read())
            batches.append((batch.taps[0].seq, batch.taps[-1].seq))
        return await handler(request)

    port = free_port()
    # The depot the bus was provisioned against, then gone for days.
    async with live_depot(pool, tmp_path, port=port) as first:
        await seed_found(pool, first.depot.cipher, first.list_key, range(3))
        await first.publish()
        printed = await first.provision("bus-0001")
    text = on_the_bus(
        printed, scanner_port=cable.path, screen_port=0, data_dir=data_dir, extra=FAST
    )
    async with bench(config_from(text, tmp_path / "v.toml"), cable) as b:
        status = await b.status()
        assert (status["online"], status["backlog"]) == (False, BACKLOG)
        # Riders are answered all the while.
        assert (await b.tap(code_of(1).encode() + b"\r"))["seq"] == BACKLOG + 1

        async with live_depot(
            pool, tmp_path, port=port, middlewares=(watch,), again=first
        ) as depot:
            await eventually(lambda: b.validator.queue.acked >= BACKLOG // 2, within=120)
            assert (await b.tap(code_of(2).encode() + b"\r"))["seq"] == BACKLOG + 2
            await eventually(lambda: b.validator.queue.acked == BACKLOG + 2, within=120)

            stored = await depot.stored_seqs("bus-0001")
            assert stored == list(range(1, BACKLOG + 3))
            # Oldest first, each batch where the last one ended, nothing sent twice.
            assert batches[0][0] == 1
            assert all(nxt[0] == prev[1] + 1 for prev, nxt in itertools.pairwise(batches))
            assert (await b.status())["backlog"] == 0
