from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import asyncpg
import pytest

from depot_sync.crypto import FieldCipher
from depot_sync.risklist.changes import DeltaUnavailable, delta_page, list_head, signed_page
from depot_sync.risklist.credentials import NOT_FOUND, MinistryFacts, MinistryState, record_facts
from depot_sync.risklist.registrations import import_registrations
from depot_sync.risklist.snapshots import SnapshotRefused, build_snapshot, latest_snapshot
from protocol import codec
from protocol.listsign import ListSigner, unseal
from protocol.messages import DeltaPage, Signed
from protocol.risk import HealthStatus, ListEntry
from protocol.snapshot import Snapshot
from tests.depot_sync.helpers import code_of, listed, seed_found

LIST_KEY = os.urandom(32)


@pytest.fixture
def signer() -> ListSigner:
    return ListSigner.generate("depot-test")


@pytest.fixture
def field() -> FieldCipher:
    return FieldCipher(os.urandom(32))


async def build(pool: asyncpg.Pool, signer: ListSigner, d: Path, **kw: object):  # type: ignore[no-untyped-def]
    return await build_snapshot(pool, signer, d, keep=3, max_shrink=0.1, **kw)  # type: ignore[arg-type]


async def fetch_all_deltas(
    pool: asyncpg.Pool, signer: ListSigner, since: int, limit: int
) -> tuple[int, list[DeltaPage]]:
    pages = []
    while True:
        async with pool.acquire() as conn:
            wire = signed_page(signer, await delta_page(conn, since, limit))
        page = codec.decode(DeltaPage, unseal(signer.verifier(), codec.decode(Signed, wire)))
        pages.append(page)
        since = page.until
        if not page.more:
            return since, pages


async def test_snapshot_plus_deltas_reproduce_the_list(
    pool: asyncpg.Pool, signer: ListSigner, field: FieldCipher, tmp_path: Path
) -> None:
    await seed_found(pool, field, LIST_KEY, range(40))
    await seed_found(pool, field, LIST_KEY, range(40, 45), status=HealthStatus.RISKY)
    first = await build(pool, signer, tmp_path)
    assert first is not None
    assert first.entries == 45

    # Changes after the snapshot: flips, removals, additions, cards, groups.
    now = dt.datetime.now(dt.UTC)
    later = now + dt.timedelta(days=90)
    risky = MinistryFacts(MinistryState.FOUND, HealthStatus.RISKY, later, "246")
    keys = await seed_found(pool, field, LIST_KEY, range(45, 60))
    async with pool.acquire() as conn:
        await record_facts(conn, [(keys[0], risky), (keys[1], NOT_FOUND)], now)
        csv = (
            "card_uid,hes_code,tckn,birth_year\n"
            f"04A224B2C61E80,{code_of(3)},246,1950\n"
            f"04A224B2C61E81,{code_of(1000)},468,1990\n"  # unknown to the Ministry yet
        )
        await import_registrations(conn, field, LIST_KEY, csv)
    await seed_found(pool, field, LIST_KEY, [1000])  # now it is found: its card follows

    with Snapshot.open(first.path, signer.verifier()) as snap:
        entries: dict[bytes, ListEntry] = {e.key: e for e in snap}
    until, pages = await fetch_all_deltas(pool, signer, first.list_version, limit=4)
    assert len(pages) > 1
    for page in pages:
        for change in page.changes:
            if change.removed:
                entries.pop(change.key, None)
            else:
                entries[change.key] = ListEntry(
                    change.key, change.status, change.expiry_day, change.tckn_last3, change.groups
                )
    assert until == (await list_head(pool)).version
    assert entries == await listed(pool)
    # 45 + 15 codes, one no longer found, plus code 1000 and the cards of codes 3 and 1000.
    assert len(entries) == 45 + 15 - 1 + 3


async def test_up_to_date_snapshot_is_not_rebuilt(
    pool: asyncpg.Pool, signer: ListSigner, field: FieldCipher, tmp_path: Path
) -> None:
    await seed_found(pool, field, LIST_KEY, range(5))
    assert await build(pool, signer, tmp_path) is not None
    assert await build(pool, signer, tmp_path) is None


async def test_empty_list_is_refused(
    pool: asyncpg.Pool, signer: ListSigner, tmp_path: Path
) -> None:
    with pytest.raises(SnapshotRefused, match="empty"):
        await build(pool, signer, tmp_path)
    assert await latest_snapshot(pool, tmp_path) is None
    forced = await build(pool, signer, tmp_path, force=True)
    assert forced is not None
    assert forced.entries == 0


async def test_shrink_guard_keeps_the_last_good_snapshot(
    pool: asyncpg.Pool, signer: ListSigner, field: FieldCipher, tmp_path: Path
) -> None:
    keys = await seed_found(pool, field, LIST_KEY, range(20))
    good = await build(pool, signer, tmp_path)
    assert good is not None
    async with pool.acquire() as conn:
        await record_facts(conn, [(k, NOT_FOUND) for k in keys[:3]], dt.datetime.now(dt.UTC))
    with pytest.raises(SnapshotRefused, match=r"15\.0% fewer") as refused:
        await build(pool, signer, tmp_path)
    assert (refused.value.entries, refused.value.previous) == (17, 20)
    served = await latest_snapshot(pool, tmp_path)
    assert served == good
    assert good.path.exists()
    forced = await build(pool, signer, tmp_path, force=True)
    assert forced is not None
    assert forced.entries == 17


async def test_old_snapshots_are_pruned_and_deltas_below_them_are_gone(
    pool: asyncpg.Pool, signer: ListSigner, field: FieldCipher, tmp_path: Path
) -> None:
    published = []
    for start in range(0, 40, 10):
        await seed_found(pool, field, LIST_KEY, range(start, start + 10))
        snap = await build_snapshot(pool, signer, tmp_path, keep=2, max_shrink=0.1)
        assert snap is not None
        published.append(snap)
    assert sorted(os.listdir(tmp_path)) == sorted(p.path.name for p in published[-2:])
    head = await list_head(pool)
    assert head.horizon == published[-2].list_version
    async with pool.acquire() as conn:
        with pytest.raises(DeltaUnavailable, match="older than the oldest kept change"):
            await delta_page(conn, published[0].list_version, 100)
        with pytest.raises(DeltaUnavailable, match="newer than this depot's list"):
            await delta_page(conn, head.version + 1, 100)
        page = await delta_page(conn, head.horizon, 100)
    assert len(page.changes) == 10
    assert (page.until, page.more) == (head.version, False)


async def test_empty_delta_at_head(pool: asyncpg.Pool, field: FieldCipher) -> None:
    await seed_found(pool, field, LIST_KEY, range(3))
    head = await list_head(pool)
    async with pool.acquire() as conn:
        page = await delta_page(conn, head.version, 100)
    assert (page.since, page.until, page.changes, page.more) == (
        head.version,
        head.version,
        [],
        False,
    )
