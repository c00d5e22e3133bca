"""Days of depot outage: a 100k backlog drains, in order, once the depot is back."""

from __future__ import annotations

import itertools
import shutil
import sqlite3
import time
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web

from protocol.codec import decode
from protocol.messages import TapBatch
from tests.depot_sync.helpers import code_of, reserved_port, seed_found
from tests.validator.bus import bench, config_from, on_the_bus
from tests.validator.depot import Handler, live_depot
from tests.validator.ptys import FakeCable, eventually
from validator.app import TAPS_DB
from validator.queue import TapQueue
from validator.risklist import SNAPSHOT_NAME

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

    # The depot's port stays ours through the outage: no other process can answer there.
    with reserved_port() as port:
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
            # Riders are answered all the while; operations see why nothing goes up.
            assert (await b.tap(code_of(1).encode() + b"\r"))["seq"] == BACKLOG + 1
            await eventually(lambda: b.validator.uploader.problem is not None)
            assert "POST /v1/taps" in (await b.status())["upload_error"]

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
                status = await b.status()
                assert (status["backlog"], status["upload_error"]) == (0, None)


def fill_to_the_cap(path: Path, cap_bytes: int) -> int:
    """Unsent taps until the capped database refuses more; how many went in."""
    TapQueue(path).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(
        f"PRAGMA max_page_count = {cap_bytes // db.execute('PRAGMA page_size').fetchone()[0]}"
    )
    now = int(time.time() * 1000)
    count = 0
    with pytest.raises(sqlite3.OperationalError, match="full"):  # noqa: PT012
        while True:
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO taps (time_ms, method, key, decision, reason, decided_by,"
                " list_version, latency_us, vehicle, route, trip)"
                " VALUES (?, 1, ?, 1, 0, 1, 1, 200, '34 HES 001', '', '')",
                ((now, (count + i).to_bytes(8, "big")) for i in range(20)),
            )
            db.execute("COMMIT")
            count += 20
    if db.in_transaction:  # SQLite may have rolled back already
        db.execute("ROLLBACK")
    db.close()
    return count


async def test_full_disk_still_answers_and_recording_resumes(
    pool: asyncpg.Pool, tmp_path: Path, cable: FakeCable
) -> None:
    data_dir = tmp_path / "validator"
    data_dir.mkdir()
    stored_before = fill_to_the_cap(data_dir / TAPS_DB, 1024 * 1024)
    with reserved_port() as port:
        async with live_depot(pool, tmp_path, port=port) as first:
            await seed_found(pool, first.depot.cipher, first.list_key, range(3))
            await first.publish()
            printed = await first.provision("bus-0001")
            # The list an earlier sync left on the box.
            shutil.copy((await first.latest()).path, data_dir / SNAPSHOT_NAME)
        text = on_the_bus(printed, scanner_port=cable.path, screen_port=0, data_dir=data_dir)
        text = text.replace("[storage]\n", "[storage]\nmax_db_mb = 1\nretention_s = 0\n")
        async with bench(config_from(text + FAST, tmp_path / "v.toml"), cable) as b:
            # The disk is full: riders are still answered, and the fault is loud.
            answers = []
            for n in range(200):
                answers.append(await b.tap(code_of(n % 3).encode() + b"\r"))
                if answers[-1]["seq"] is None:
                    break
            refused = answers[-1]
            assert (refused["reason"], refused["colour"], refused["recorded"]) == (
                "OK",
                "green",
                False,
            )
            assert "full" in refused["storage_error"]
            status = await b.status()
            assert "full" in status["storage_error"]
            assert any(w["colour"] == "red" and "STORAGE" in w["en"] for w in status["warnings"])
            kept = await b.tap(code_of(2).encode() + b"\r")
            assert kept["seq"] is None
            assert (await b.status())["pending_in_memory"] == 2
            recorded = [a["seq"] for a in answers if a["seq"] is not None]
            assert recorded == list(range(stored_before + 1, stored_before + 1 + len(recorded)))

            # The depot comes back: uploads are acknowledged, purged, and the kept taps stored.
            async with live_depot(pool, tmp_path, port=port, again=first) as depot:
                total = stored_before + len(recorded) + 2
                await eventually(lambda: b.validator.queue.acked == total, within=60)
                status = await b.status()
                assert status["storage_error"] is None
                assert status["pending_in_memory"] == 0
                assert await depot.stored_seqs("bus-0001") == list(range(1, total + 1))
                assert (await b.tap(code_of(0).encode() + b"\r"))["seq"] == total + 1
