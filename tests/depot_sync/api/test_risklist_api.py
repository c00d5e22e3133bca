from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from depot_sync.app import publish_snapshot
from depot_sync.config import PolicySection, RiskListSection
from depot_sync.crypto import FieldCipher
from depot_sync.risklist.snapshots import build_snapshot
from protocol import codec
from protocol.listsign import ListSigner, unseal
from protocol.messages import (
    PROTOCOL_VERSION,
    Behaviour,
    DeltaPage,
    Heartbeat,
    HeartbeatAnswer,
    Policy,
    Signed,
)
from protocol.risk import Groups
from protocol.snapshot import Snapshot
from tests.depot_sync.api.conftest import Harness
from tests.depot_sync.conftest import Reads
from tests.depot_sync.helpers import seed_found, until


async def seeded(h: Harness, n: int, start: int = 0) -> None:
    await seed_found(h.pool, h.depot.cipher, h.depot.list_key, range(start, start + n))


async def test_no_snapshot_yet_is_404(harness: Harness) -> None:
    secret = await harness.enrol("bus-1")
    resp = await harness.signed("GET", "/v1/risklist/snapshot", device="bus-1", secret=secret)
    assert resp.status == 404
    assert (await resp.json())["error"] == "no_snapshot"


async def test_snapshot_download_etag_and_ranges(harness: Harness, tmp_path: Path) -> None:
    secret = await harness.enrol("bus-1")
    await seeded(harness, 30)
    await publish_snapshot(harness.depot)

    def get(headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        return harness.signed(
            "GET", "/v1/risklist/snapshot", device="bus-1", secret=secret, headers=headers
        )

    full = await get()
    assert full.status == 200
    data = await full.read()
    etag = full.headers["ETag"]
    assert etag == f'"{hashlib.sha256(data).hexdigest()}"'
    assert full.headers["Accept-Ranges"] == "bytes"
    assert int(full.headers["X-Hesgate-Snapshot-Entries"]) == 30
    saved = tmp_path / "got.hgsnap"
    saved.write_bytes(data)
    with Snapshot.open(saved, harness.signer.verifier()) as snap:
        assert len(snap) == 30
        assert snap.info().list_version == int(full.headers["X-Hesgate-List-Version"])

    head = await harness.signed("HEAD", "/v1/risklist/snapshot", device="bus-1", secret=secret)
    assert head.status == 200
    assert head.headers["ETag"] == etag
    assert int(head.headers["Content-Length"]) == len(data)
    assert await head.read() == b""

    same = await get({"If-None-Match": etag})
    assert same.status == 304
    assert same.headers["ETag"] == etag

    part = await get({"Range": "bytes=100-199", "If-Range": etag})
    assert part.status == 206
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert await part.read() == data[100:200]

    tail = await get({"Range": "bytes=-16"})
    assert (tail.status, await tail.read()) == (206, data[-16:])
    rest = await get({"Range": f"bytes={len(data) - 10}-"})
    assert (rest.status, await rest.read()) == (206, data[-10:])

    beyond = await get({"Range": f"bytes={len(data)}-"})
    assert beyond.status == 416
    assert beyond.headers["Content-Range"] == f"bytes */{len(data)}"

    # A resumed download of a file that was replaced gets the whole new one.
    await seeded(harness, 5, start=100)
    await publish_snapshot(harness.depot)
    stale = await get({"Range": "bytes=100-199", "If-Range": etag})
    assert stale.status == 200
    newer = await stale.read()
    assert stale.headers["ETag"] != etag
    assert len(newer) == len(data) + 5 * 16


async def test_delta_pages_are_signed_and_chained(make_harness: Callable[..., Any]) -> None:
    async with make_harness(risklist=RiskListSection(delta_page_size=4)) as h:
        secret = await h.enrol("bus-1")
        await seeded(h, 10)
        since, seen, pages = 0, [], 0
        while True:
            resp = await h.signed(
                "GET", f"/v1/risklist/delta?since={since}", device="bus-1", secret=secret
            )
            assert resp.status == 200
            envelope = codec.decode(Signed, await resp.read())
            page = codec.decode(DeltaPage, unseal(h.signer.verifier(), envelope))
            assert page.since == since
            assert int(resp.headers["X-Hesgate-List-Version"]) == page.until
            assert len(page.changes) <= 4
            seen += [c.key for c in page.changes]
            pages += 1
            since = page.until
            if not page.more:
                break
        assert pages == 3
        assert len(set(seen)) == 10


async def test_delta_below_horizon_is_410(make_harness: Callable[..., Any]) -> None:
    async with make_harness(risklist=RiskListSection(keep_snapshots=1)) as h:
        secret = await h.enrol("bus-1")
        await seeded(h, 5)
        await publish_snapshot(h.depot)
        await seeded(h, 5, start=10)
        await publish_snapshot(h.depot)
        resp = await h.signed("GET", "/v1/risklist/delta?since=2", device="bus-1", secret=secret)
        assert resp.status == 410
        body = await resp.json()
        assert (body["error"], body["horizon"], body["head"]) == ("gone", 10, 10)
        bad = await h.signed("GET", "/v1/risklist/delta?since=x", device="bus-1", secret=secret)
        assert bad.status == 400
        assert (await bad.json())["field"] == "since"


async def test_policy_is_signed_from_the_file(
    make_harness: Callable[..., Any], tmp_path: Path
) -> None:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(
        'version = 3\nstale_list = "deny"\nmax_list_age_s = 7200\n'
        '[[rules]]\ngroup = "65+"\n'
        'windows = [{ days = ["weekdays"], start = "10:00", end = "13:00" }]\n',
        encoding="utf-8",
    )
    async with make_harness(policy=PolicySection(file=policy_file)) as h:
        secret = await h.enrol("bus-1")
        resp = await h.signed("GET", "/v1/policy", device="bus-1", secret=secret)
        assert resp.status == 200
        policy = codec.decode(
            Policy, unseal(h.signer.verifier(), codec.decode(Signed, await resp.read()))
        )
        assert policy.version == 3
        assert policy.stale_list is Behaviour.DENY
        assert policy.offline_unknown is Behaviour.ALLOW_FLAGGED
        assert policy.rules[0].group is Groups.AGE_65_PLUS
        window = policy.rules[0].windows[0]
        assert (window.weekdays, window.start_min, window.end_min) == ([0, 1, 2, 3, 4], 600, 780)
        again = await h.signed(
            "GET",
            "/v1/policy",
            device="bus-1",
            secret=secret,
            headers={"If-None-Match": resp.headers["ETag"]},
        )
        assert again.status == 304


async def test_heartbeat_is_stored_and_answered(harness: Harness) -> None:
    secret = await harness.enrol("bus-1")
    await seeded(harness, 3)
    await publish_snapshot(harness.depot)
    beat = Heartbeat(
        v=PROTOCOL_VERSION,
        device="bus-1",
        time_ms=int(time.time() * 1000) + 5000,
        software="hes-validator 0.1.0",
        last_seq=10,
        backlog=4,
        oldest_unsent_ms=None,
        list_version=1,
        list_age_s=60,
        policy_version=0,
        online_failures=2,
    )
    resp = await harness.send("POST", "/v1/heartbeat", beat, device="bus-1", secret=secret)
    assert resp.status == 200
    answer = codec.decode(HeartbeatAnswer, await resp.read())
    assert (answer.list_version, answer.snapshot_version, answer.policy_version) == (3, 3, 0)
    row = await harness.pool.fetchrow("SELECT * FROM device_status WHERE device_id = 'bus-1'")
    assert row is not None
    assert (row["backlog"], row["software"], row["online_failures"]) == (
        4,
        "hes-validator 0.1.0",
        2,
    )
    assert 4000 < row["clock_skew_ms"] < 6000
    theirs = dataclasses.replace(beat, device="bus-2")
    resp = await harness.send("POST", "/v1/heartbeat", theirs, device="bus-1", secret=secret)
    assert resp.status == 403


async def delta(
    h: Harness, secret: bytes, since: int, if_none_match: str | None = None
) -> aiohttp.ClientResponse:
    headers = {} if if_none_match is None else {"If-None-Match": if_none_match}
    return await h.signed(
        "GET", f"/v1/risklist/delta?since={since}", device="bus-1", secret=secret, headers=headers
    )


def page_of(h: Harness, body: bytes) -> DeltaPage:
    return codec.decode(DeltaPage, unseal(h.signer.verifier(), codec.decode(Signed, body)))


async def test_delta_etag_and_304_at_the_head(harness: Harness) -> None:
    secret = await harness.enrol("bus-1")
    await seeded(harness, 3)

    first = await delta(harness, secret, 0)
    assert first.status == 200
    assert first.headers["ETag"] == '"v3"'
    assert page_of(harness, await first.read()).until == 3

    same = await delta(harness, secret, 3, '"v3"')
    assert same.status == 304
    assert same.headers["ETag"] == '"v3"'
    assert same.headers["X-Hesgate-List-Version"] == "3"
    assert await same.read() == b""
    weak = await delta(harness, secret, 3, 'W/"v3"')
    assert weak.status == 304

    # Without the header, or with a tag for another version, or "*": the signed empty page.
    for header in (None, '"v2"', "*", '"3"'):
        plain = await delta(harness, secret, 3, header)
        assert plain.status == 200, header
        assert plain.headers["ETag"] == '"v3"'
        page = page_of(harness, await plain.read())
        assert (page.since, page.until, page.changes, page.more) == (3, 3, [], False)

    # Behind the head: the changes, whatever the tag says.
    behind = await delta(harness, secret, 1, '"v1"')
    assert behind.status == 200
    assert behind.headers["ETag"] == '"v3"'
    assert len(page_of(harness, await behind.read()).changes) == 2

    # Ahead of the head (a depot database that was reset): still 410.
    ahead = await delta(harness, secret, 9, '"v9"')
    assert ahead.status == 410


async def test_conditional_delta_is_signed_like_any_other(harness: Harness) -> None:
    secret = await harness.enrol("bus-1")
    unsigned = await harness.client.get(
        "/v1/risklist/delta?since=0", headers={"If-None-Match": '"v0"'}
    )
    assert unsigned.status == 401
    assert (await unsigned.json())["reason"] == "missing_headers"
    wrong = await harness.signed(
        "GET",
        "/v1/risklist/delta?since=0",
        device="bus-1",
        secret=b"\0" * len(secret),
        headers={"If-None-Match": '"v0"'},
    )
    assert wrong.status == 401


async def test_an_up_to_date_validator_sees_a_change_made_elsewhere(harness: Harness) -> None:
    secret = await harness.enrol("bus-1")
    await seeded(harness, 3)
    watch = harness.depot.watch
    await until(lambda: watch.listening, "the depot to listen for list changes")
    assert (await delta(harness, secret, 3, '"v3"')).status == 304
    # An online check or a refresh in another depot process lists one more code.
    await seeded(harness, 1, start=50)
    for _ in range(500):
        resp = await delta(harness, secret, 3, '"v3"')
        if resp.status == 200:
            break
        await asyncio.sleep(0.01)
    assert resp.status == 200
    page = page_of(harness, await resp.read())
    assert (page.since, page.until, len(page.changes)) == (3, 4, 1)
    assert resp.headers["ETag"] == '"v4"'
    assert (await delta(harness, secret, 4, '"v4"')).status == 304


async def test_polls_at_the_head_read_nothing_from_the_database(
    make_harness: Callable[..., Any], reads: Reads, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    # The list and its snapshot are there before the depot starts: no change is on its way.
    await seed_found(pool, FieldCipher(os.urandom(32)), os.urandom(32), range(3))
    published = await build_snapshot(
        pool,
        ListSigner.generate("depot-test"),
        tmp_path / "data" / "snapshots",
        keep=3,
        max_shrink=0.1,
    )
    assert published is not None
    async with make_harness() as h:
        assert h.depot.snapshot_dir == published.path.parent
        secret = await h.enrol("bus-1")
        await until(lambda: h.depot.watch.listening, "the depot to listen for list changes")
        for _ in range(3):
            assert (await delta(h, secret, 3, '"v3"')).status == 304
        assert reads.head == 1
        snapshot = await h.signed("GET", "/v1/risklist/snapshot", device="bus-1", secret=secret)
        etag = snapshot.headers["ETag"]
        for _ in range(3):
            again = await h.signed(
                "GET",
                "/v1/risklist/snapshot",
                device="bus-1",
                secret=secret,
                headers={"If-None-Match": etag},
            )
            assert again.status == 304
        assert reads.snapshot == 1


async def test_a_snapshot_published_elsewhere_is_served(harness: Harness) -> None:
    secret = await harness.enrol("bus-1")
    await seeded(harness, 3)
    await publish_snapshot(harness.depot)
    await until(lambda: harness.depot.watch.listening, "the depot to listen for list changes")

    async def get(etag: str | None = None) -> aiohttp.ClientResponse:
        return await harness.signed(
            "GET",
            "/v1/risklist/snapshot",
            device="bus-1",
            secret=secret,
            headers={} if etag is None else {"If-None-Match": etag},
        )

    old = (await get()).headers["ETag"]
    assert (await get(old)).status == 304
    # hes-depot build-snapshot, or the snapshot job of another depot process.
    await seeded(harness, 2, start=20)
    newer = await build_snapshot(
        harness.pool,
        harness.signer,
        harness.depot.snapshot_dir,
        keep=3,
        max_shrink=0.1,
    )
    assert newer is not None
    for _ in range(500):
        resp = await get(old)
        if resp.status == 200:
            break
        await asyncio.sleep(0.01)
    assert resp.status == 200
    assert resp.headers["ETag"] == newer.etag
    assert resp.headers["X-Hesgate-List-Version"] == "5"
    assert len(await resp.read()) == newer.size_bytes
