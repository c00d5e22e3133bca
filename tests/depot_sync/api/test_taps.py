from __future__ import annotations

import asyncio
from typing import Any, Literal

import msgpack
import pytest

from depot_sync.api import validator as validator_api
from depot_sync.api.common import decode_body
from protocol import codec
from protocol.messages import MAX_BATCH_TAPS, PROTOCOL_VERSION, TapAck, TapBatch
from tests.depot_sync.api.conftest import Harness
from tests.depot_sync.helpers import taps, until


async def post(h: Harness, device: str, secret: bytes, seqs: list[int]) -> TapAck:
    batch = TapBatch(v=PROTOCOL_VERSION, device=device, taps=taps(seqs))
    resp = await h.send("POST", "/v1/taps", batch, device=device, secret=secret)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/msgpack"
    return codec.decode(TapAck, await resp.read())


async def test_same_batch_three_times(harness: Harness) -> None:
    secret = await harness.enrol("bus-1")
    acks = [await post(harness, "bus-1", secret, list(range(1, 51))) for _ in range(3)]
    assert [(a.ack, a.stored, a.duplicates) for a in acks] == [
        (50, 50, 0),
        (50, 0, 50),
        (50, 0, 50),
    ]
    assert await harness.pool.fetchval("SELECT count(*) FROM taps") == 50


async def test_overlap_out_of_order_and_gap(harness: Harness) -> None:
    secret = await harness.enrol("bus-1")
    a = await post(harness, "bus-1", secret, [3, 1, 2, 7])
    assert (a.ack, a.stored) == (3, 4)
    b = await post(harness, "bus-1", secret, [2, 3, 4, 8])
    assert (b.ack, b.stored, b.duplicates) == (4, 2, 2)
    fleet_gaps = await harness.pool.fetch("SELECT first_seq, last_seq FROM tap_gaps")
    assert [tuple(g) for g in fleet_gaps] == [(5, 6)]
    c = await post(harness, "bus-1", secret, [6, 5])
    assert (c.ack, c.stored) == (8, 2)
    seqs = [r["seq"] for r in await harness.pool.fetch("SELECT seq FROM taps ORDER BY seq")]
    assert seqs == list(range(1, 9))


async def test_fifty_devices_at_once(harness: Harness) -> None:
    devices = [f"bus-{i:02d}" for i in range(50)]
    secrets = {d: await harness.enrol(d) for d in devices}

    async def device_life(device: str) -> list[int]:
        # Each device sends overlapping batches, one of them twice.
        acks = []
        for seqs in ([1, 2, 3, 4], [3, 4, 5, 6], [3, 4, 5, 6], [8, 7]):
            acks.append((await post(harness, device, secrets[device], seqs)).ack)
        return acks

    results = await asyncio.gather(*(device_life(d) for d in devices))
    assert all(r == [4, 6, 6, 8] for r in results)
    rows = await harness.pool.fetch(
        "SELECT device_id, count(*) AS n, count(DISTINCT seq) AS d FROM taps GROUP BY device_id"
    )
    assert len(rows) == 50
    assert all(r["n"] == r["d"] == 8 for r in rows)


async def test_another_devices_records_are_forbidden(harness: Harness) -> None:
    secret = await harness.enrol("bus-1")
    await harness.enrol("bus-2")
    batch = TapBatch(v=PROTOCOL_VERSION, device="bus-2", taps=taps([1]))
    resp = await harness.send("POST", "/v1/taps", batch, device="bus-1", secret=secret)
    assert resp.status == 403
    body = await resp.json()
    assert (body["error"], body["field"]) == ("wrong_device", "device")
    assert await harness.pool.fetchval("SELECT count(*) FROM taps") == 0


async def test_malformed_batch_names_the_field(harness: Harness) -> None:
    secret = await harness.enrol("bus-1")
    batch = codec._plain(TapBatch(v=PROTOCOL_VERSION, device="bus-1", taps=taps([1, 2])))
    assert isinstance(batch, dict)
    records = [list(codec._plain(t)) for t in batch["taps"]]  # type: ignore[call-overload]
    records[1][0] = 0  # seq must be >= 1
    body = msgpack.packb({**batch, "taps": records}, use_bin_type=True)
    resp = await harness.signed("POST", "/v1/taps", body, device="bus-1", secret=secret)
    assert resp.status == 400
    problem = await resp.json()
    assert problem["error"] == "malformed"
    assert problem["field"] == "taps[1].seq"
    garbage = await harness.signed("POST", "/v1/taps", b"\xc1", device="bus-1", secret=secret)
    assert garbage.status == 400
    assert await harness.pool.fetchval("SELECT count(*) FROM taps") == 0


async def test_too_large_is_413(harness: Harness) -> None:
    secret = await harness.enrol("bus-1")
    too_many = msgpack.packb(
        {
            "v": PROTOCOL_VERSION,
            "device": "bus-1",
            "taps": [list(codec._plain(t)) for t in taps(range(1, MAX_BATCH_TAPS + 2))],  # type: ignore[call-overload]
        },
        use_bin_type=True,
    )
    resp = await harness.signed("POST", "/v1/taps", too_many, device="bus-1", secret=secret)
    assert resp.status == 413
    assert (await resp.json())["field"] == "taps"
    huge = b"\x00" * (harness.depot.config.server.max_body_bytes + 1)
    resp = await harness.signed("POST", "/v1/taps", huge, device="bus-1", secret=secret)
    assert resp.status == 413
    assert (await resp.json())["error"] == "too_large"


class CountedSlots(asyncio.Semaphore):
    """Ingest slots that say how many requests have come to wait for one."""

    def __init__(self) -> None:
        super().__init__(0)  # every slot taken until the test frees one
        self.arrived = 0

    async def acquire(self) -> Literal[True]:
        self.arrived += 1
        return await super().acquire()


async def test_a_batch_is_decoded_only_once_it_holds_a_slot(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = await harness.enrol("bus-1")
    decoded: list[str] = []

    def counting_decode(cls: type[Any], body: bytes, *, max_bytes: int) -> Any:
        decoded.append(cls.__name__)
        return decode_body(cls, body, max_bytes=max_bytes)

    monkeypatch.setattr(validator_api, "decode_body", counting_decode)
    slots = CountedSlots()
    object.__setattr__(harness.depot, "ingest_slots", slots)  # the app's own depot

    sends = [
        asyncio.create_task(post(harness, "bus-1", secret, list(range(first, first + 10))))
        for first in (1, 11, 21)
    ]
    await until(lambda: slots.arrived == 3, "three batches waiting for a slot")
    # Read and signature-checked, waiting: none decoded yet.
    assert decoded == []
    slots.release()  # one slot: the batches go one after another
    acks = await asyncio.gather(*sends)
    assert decoded == ["TapBatch"] * 3
    assert sorted(a.stored for a in acks) == [10, 10, 10]
    assert max(a.ack for a in acks) == 30
    assert await harness.pool.fetchval("SELECT count(*) FROM taps") == 30
