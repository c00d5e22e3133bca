"""The validator's risk list at each size: bytes an entry, open time, lookups, a delta under load.

Everything goes through the code a validator runs: :class:`protocol.snapshot.Snapshot`
and :class:`validator.risklist.RiskList` (snapshot plus SQLite overlay), fed
delta pages signed and encoded by the depot's own :func:`signed_page`, opened
the way :class:`validator.listsync.ListSync` opens them. The references are
the bare operations underneath: ``mmap`` plus ``numpy.frombuffer``, SHA-256
of the file, ``numpy.searchsorted``, a plain SQLite upsert, and the same delta
with nothing else running.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import mmap
import shutil
import sqlite3
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from bench.context import BenchFailure, Context
from bench.lists import EXPIRY_DAY, BenchList, place
from bench.measure import best_interleaved, best_of, mapped_rss_bytes, say
from bench.table import Bound, Reference, Result, Target
from depot_sync.config import RiskListSection
from depot_sync.risklist.changes import signed_page
from protocol.codec import decode
from protocol.listsign import ListSigner, ListVerifier, unseal
from protocol.messages import MAX_DELTA_CHANGES, PROTOCOL_VERSION, DeltaPage, ListChange, Signed
from protocol.risk import Groups, HealthStatus
from protocol.snapshot import HEADER_SIZE, KEY_DTYPE, Snapshot
from validator.risklist import RiskList

SECTION: Final = "risklist"
#: Lookups between two yields of the lookup task during a delta.
LOOKUP_CHUNK: Final = 500
#: Share of lookups for keys that are on the list.
HIT_SHARE: Final = 0.9

OPEN_TARGET: Final = Target(Bound.BELOW, 100.0)
LOOKUP_TARGET: Final = Target(Bound.AT_LEAST, 250_000.0)
BYTES_TARGET: Final = Target(Bound.AT_MOST, 16.0)
DELTA_TARGET: Final = Target(Bound.BELOW, 2.0)


@dataclass(frozen=True, slots=True)
class Probe:
    """The keys every lookup pass asks for, in the forms each path takes."""

    as_bytes: list[bytes]
    as_ints: NDArray[np.uint64]
    as_scalars: list[np.uint64]
    hits: int


@dataclass(frozen=True, slots=True)
class DeltaRun:
    """One delta applied while lookups went on."""

    apply_s: float
    lookups_per_s: float
    longest_stall_s: float


async def run(ctx: Context) -> list[Result]:
    """Every figure for every configured list size."""
    results: list[Result] = []
    for count in ctx.config.risklist.sizes:
        blist = ctx.lists.get(count)
        say(f"risklist: {count:,} entries")
        results.extend(await _one_size(ctx, blist))
    return results


def _label(count: int) -> str:
    if count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    if count % 1000 == 0:
        return f"{count // 1000}k"
    return str(count)


async def _one_size(ctx: Context, blist: BenchList) -> list[Result]:
    settings = ctx.config.risklist
    size = _label(blist.count)
    work = ctx.run_dir / f"risklist-{blist.count}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    results = [
        *_bytes_per_entry(blist, size),
        *await _open_times(blist, size, work, settings.repeats),
    ]
    probe = _probe(blist, settings.lookups, seed=blist.count)
    results.extend(await _lookups(blist, size, work, probe, settings.repeats))
    results.extend(
        await _delta(ctx, blist, size, work, probe, settings.delta_changes, settings.repeats)
    )
    shutil.rmtree(work, ignore_errors=True)
    return results


# -- bytes an entry ------------------------------------------------------------------------


def _bytes_per_entry(blist: BenchList, size: str) -> list[Result]:
    """On disk, and in memory once every page of the file has been touched.

    The 256-byte header (on disk) and the page holding it (in memory) are the
    same for every size, so they are left out: what grows with the list is
    what the target is about. Figures are rounded to 0.01 B, which also hides
    the last page's rounding and the few kB the open ``Snapshot`` object holds.
    """
    count = blist.count
    on_disk = round((blist.path.stat().st_size - HEADER_SIZE) / count, 2)
    tracemalloc.start()
    try:
        with Snapshot.open(blist.path, blist.verifier, verify_body=False) as snapshot:
            keys = snapshot.key_column()
            payloads = snapshot.payload_column()
            # Touch every page: the worst case, a validator that looked up every key.
            int(keys.sum(dtype=np.uint64))
            int(payloads["status"].sum(dtype=np.uint64))
            heap, _ = tracemalloc.get_traced_memory()
            resident = mapped_rss_bytes(blist.path)
            arrays = (keys.nbytes + payloads.nbytes) / count
            del keys, payloads
    finally:
        tracemalloc.stop()
    in_memory = round((max(0, resident - mmap.PAGESIZE) + heap) / count, 2)
    plain = Reference("key + payload numpy arrays", arrays)
    return [
        Result(
            SECTION,
            f"{size}: bytes/entry on disk (256 B header aside)",
            on_disk,
            "B",
            plain,
            targets=(BYTES_TARGET,),
        ),
        Result(
            SECTION,
            f"{size}: bytes/entry in memory, every page touched (header page aside)",
            in_memory,
            "B",
            plain,
            targets=(BYTES_TARGET,),
        ),
    ]


# -- open ----------------------------------------------------------------------------------


def _raw_map(path: Path, count: int) -> int:
    """The least any mapped list costs to open: map the file, view the key column."""
    with path.open("rb") as file:
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    keys = np.frombuffer(mapped, dtype=KEY_DTYPE, count=count, offset=HEADER_SIZE)
    n = int(keys.size)
    del keys
    mapped.close()
    return n


def _sha256(path: Path) -> bytes:
    """Hashing the whole file: the least a full verification costs."""
    with (
        path.open("rb") as file,
        mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped,
        memoryview(mapped) as view,
    ):
        return hashlib.sha256(view).digest()


def _open_close(path: Path, verifier: ListVerifier, *, verify_body: bool) -> int:
    with Snapshot.open(path, verifier, verify_body=verify_body) as snapshot:
        return snapshot.count


async def _validator_start(blist: BenchList, work: Path, repeats: int) -> float:
    """Best time of :meth:`RiskList.load`, what a validator does at start."""
    best = float("inf")
    for i in range(repeats):
        data_dir = work / f"start-{i}"
        place(blist, data_dir)
        risk_list = RiskList(data_dir, blist.verifier)
        started = time.perf_counter()
        await risk_list.load()
        best = min(best, time.perf_counter() - started)
        loaded = risk_list.snapshot_version
        await risk_list.close()
        shutil.rmtree(data_dir, ignore_errors=True)
        if loaded != blist.count:  # the bench lists use their size as their version
            raise BenchFailure(f"the validator did not load the {blist.count}-entry list")
    return best


async def _open_times(blist: BenchList, size: str, work: Path, repeats: int) -> list[Result]:
    path, verifier, count = blist.path, blist.verifier, blist.count
    _sha256(path)  # the file in the page cache, as on a running box
    best = best_interleaved(
        max(5, repeats),
        {
            "header": partial(_open_close, path, verifier, verify_body=False),
            "raw": partial(_raw_map, path, count),
            "verified": partial(_open_close, path, verifier, verify_body=True),
            "hash": partial(_sha256, path),
        },
    )
    header_s, raw_s, verified_s, hash_s = (
        best["header"],
        best["raw"],
        best["verified"],
        best["hash"],
    )
    start_s = await _validator_start(blist, work, repeats)
    sha = Reference("SHA-256 of the file", hash_s * 1000)
    return [
        Result(
            SECTION,
            f"{size}: open, header checked (verify_body=False)",
            header_s * 1000,
            "ms",
            Reference("mmap + np.frombuffer", raw_s * 1000),
            targets=(OPEN_TARGET,),
        ),
        Result(
            SECTION,
            f"{size}: open, body verified (verify_body=True)",
            verified_s * 1000,
            "ms",
            sha,
            targets=(OPEN_TARGET,),
        ),
        Result(
            SECTION,
            f"{size}: validator start, RiskList.load",
            start_s * 1000,
            "ms",
            sha,
            targets=(OPEN_TARGET,),
        ),
    ]


# -- lookups -------------------------------------------------------------------------------


def _probe(blist: BenchList, lookups: int, seed: int) -> Probe:
    """Keys to look up: 90% drawn from the list, 10% random (almost surely absent)."""
    rng = np.random.default_rng(seed)
    hits = int(lookups * HIT_SHARE)
    with Snapshot.open(blist.path, blist.verifier, verify_body=False) as snapshot:
        keys = snapshot.key_column()
        chosen = np.array(keys[rng.integers(0, blist.count, size=hits)], dtype=np.uint64)
        del keys
    misses = rng.integers(0, 2**64, size=lookups - hits, dtype=np.uint64, endpoint=False)
    wanted = np.concatenate([chosen, misses])
    rng.shuffle(wanted)
    return Probe(
        as_bytes=[k.to_bytes(8, "big") for k in wanted.tolist()],
        as_ints=wanted,
        as_scalars=list(wanted),
        hits=hits,
    )


def _loop(lookup: Callable[[Any], object], keys: Sequence[Any]) -> int:
    """Call ``lookup`` once per key; the same loop for the code under test and the reference."""
    for key in keys:
        lookup(key)
    return len(keys)


async def _lookups(
    blist: BenchList, size: str, work: Path, probe: Probe, repeats: int
) -> list[Result]:
    n = len(probe.as_bytes)
    data_dir = work / "lookups"
    place(blist, data_dir)
    risk_list = RiskList(data_dir, blist.verifier)
    await risk_list.load()
    try:
        found = sum(risk_list.lookup(k) is not None for k in probe.as_bytes)
        if found < probe.hits:
            raise BenchFailure(f"{found} of {probe.hits} listed keys found: the list is wrong")
        with Snapshot.open(blist.path, blist.verifier, verify_body=False) as snapshot:
            column = snapshot.key_column()
            gc.collect()
            best = best_interleaved(
                repeats,
                {
                    "list": partial(_loop, risk_list.lookup, probe.as_bytes),
                    "snapshot": partial(_loop, snapshot.lookup, probe.as_bytes),
                    "raw": partial(_loop, column.searchsorted, probe.as_scalars),
                    "many": partial(snapshot.find_many, probe.as_ints),
                    "vector": partial(np.searchsorted, column, probe.as_ints),
                },
            )
            del column
    finally:
        await risk_list.close()
    list_s, snap_s, raw_s = best["list"], best["snapshot"], best["raw"]
    many_s, vector_s = best["many"], best["vector"]
    raw = Reference("np.searchsorted, one key a call", n / raw_s)
    return [
        Result(
            SECTION,
            f"{size}: lookups/s, validator RiskList.lookup",
            n / list_s,
            "/s",
            raw,
            targets=(LOOKUP_TARGET,),
        ),
        Result(
            SECTION,
            f"{size}: lookups/s, Snapshot.lookup",
            n / snap_s,
            "/s",
            raw,
            targets=(LOOKUP_TARGET,),
        ),
        Result(
            SECTION,
            f"{size}: lookups/s, Snapshot.find_many (batch)",
            n / many_s,
            "/s",
            Reference("np.searchsorted, vectorised", n / vector_s),
        ),
    ]


# -- delta under load ------------------------------------------------------------------------


def _changes(
    blist: BenchList, total: int, since: int, seed: int
) -> tuple[list[ListChange], dict[str, list[bytes]]]:
    """``total`` changes after ``since``: half updates to risky, 40% new keys, 10% removals."""
    rng = np.random.default_rng(seed)
    updates = total // 2
    removals = total // 10
    new = total - updates - removals
    with Snapshot.open(blist.path, blist.verifier, verify_body=False) as snapshot:
        keys = snapshot.key_column()
        picked = np.unique(keys[rng.integers(0, blist.count, size=(updates + removals) * 2)])
        del keys
    rng.shuffle(picked)
    if picked.size < updates + removals:
        raise BenchFailure("the list is too small for that many changes")
    existing = [k.to_bytes(8, "big") for k in picked[: updates + removals].tolist()]
    fresh = [
        k.to_bytes(8, "big")
        for k in rng.integers(0, 2**64, size=new, dtype=np.uint64, endpoint=False).tolist()
    ]
    kinds = {"updated": existing[:updates], "removed": existing[updates:], "new": fresh}
    order = [("updated", k) for k in kinds["updated"]]
    order += [("removed", k) for k in kinds["removed"]]
    order += [("new", k) for k in kinds["new"]]
    shuffled = [order[i] for i in rng.permutation(len(order)).tolist()]
    changes = []
    for offset, (kind, key) in enumerate(shuffled, start=1):
        removed = kind == "removed"
        changes.append(
            ListChange(
                version=since + offset,
                key=key,
                removed=removed,
                status=HealthStatus.RISKLESS if removed else HealthStatus.RISKY,
                expiry_day=None if removed else EXPIRY_DAY,
                tckn_last3=None if removed else "000",
                groups=Groups.NONE,
            )
        )
    return changes, kinds


def _pages(
    signer: ListSigner, changes: list[ListChange], since: int, page_size: int
) -> list[bytes]:
    """The changes as the depot serves them: signed, encoded delta pages."""
    pages = []
    for first in range(0, len(changes), page_size):
        part = changes[first : first + page_size]
        start = since + first
        more = first + page_size < len(changes)
        page = DeltaPage(
            v=PROTOCOL_VERSION, since=start, until=part[-1].version, changes=part, more=more
        )
        pages.append(signed_page(signer, page))
    return pages


def _open_page(verifier: ListVerifier, wire: bytes) -> DeltaPage:
    """What :class:`validator.listsync.ListSync` does with each page that arrives."""
    return decode(DeltaPage, unseal(verifier, decode(Signed, wire)))


async def _apply_under_load(
    risk_list: RiskList, verifier: ListVerifier, pages: list[bytes], probe: Probe
) -> DeltaRun:
    """Apply every page while a task looks keys up between yields; time both."""
    done = asyncio.Event()
    counts = {"lookups": 0}
    stalls = [0.0]

    async def look() -> None:
        keys = probe.as_bytes
        lookup = risk_list.lookup
        at = 0
        while not done.is_set():
            for key in keys[at : at + LOOKUP_CHUNK]:
                lookup(key)
            counts["lookups"] += LOOKUP_CHUNK
            at = (at + LOOKUP_CHUNK) % (len(keys) - LOOKUP_CHUNK)
            paused = time.perf_counter()
            await asyncio.sleep(0)
            stalls[0] = max(stalls[0], time.perf_counter() - paused)

    looker = asyncio.create_task(look())
    await asyncio.sleep(0)
    started = time.perf_counter()
    for wire in pages:
        await risk_list.apply_delta(_open_page(verifier, wire))
    await risk_list.mark_fresh()
    elapsed = time.perf_counter() - started
    done.set()
    await looker
    return DeltaRun(elapsed, counts["lookups"] / elapsed, stalls[0])


async def _apply_alone(blist: BenchList, data_dir: Path, pages: list[bytes], head: int) -> float:
    """Seconds to apply the same pages with nothing else running."""
    place(blist, data_dir)
    risk_list = RiskList(data_dir, blist.verifier)
    await risk_list.load()
    try:
        gc.collect()
        started = time.perf_counter()
        for wire in pages:
            await risk_list.apply_delta(_open_page(blist.verifier, wire))
        await risk_list.mark_fresh()
        elapsed = time.perf_counter() - started
        if risk_list.version != head:
            raise BenchFailure(f"list at {risk_list.version}, not {head}")
    finally:
        await risk_list.close()
    shutil.rmtree(data_dir, ignore_errors=True)
    return elapsed


def _check_applied(risk_list: RiskList, kinds: dict[str, list[bytes]]) -> None:
    """The list after the delta says what the delta said (a sample of each kind)."""
    for key in kinds["updated"][:200] + kinds["new"][:200]:
        entry = risk_list.lookup(key)
        if entry is None or entry.status is not HealthStatus.RISKY:
            raise BenchFailure(f"key {key.hex()} should be risky after the delta")
    for key in kinds["removed"][:200]:
        if risk_list.lookup(key) is not None:
            raise BenchFailure(f"key {key.hex()} should be gone after the delta")


_BARE_SCHEMA: Final = """
CREATE TABLE overlay (
    key BLOB PRIMARY KEY, version INTEGER NOT NULL, removed INTEGER NOT NULL,
    status INTEGER NOT NULL, expiry_day INTEGER, tckn_last3 TEXT, groups INTEGER NOT NULL
) WITHOUT ROWID
"""


Row = tuple[bytes, int, int, int, int | None, str | None, int]


def _rows(changes: list[ListChange]) -> list[Row]:
    """The changes as overlay rows, as :class:`RiskList` stores them."""
    return [
        (c.key, c.version, int(c.removed), int(c.status), c.expiry_day, c.tckn_last3, int(c.groups))
        for c in changes
    ]


def _bare_upsert(path: Path, rows: list[Row]) -> None:
    """The same rows into a plain SQLite table, one transaction, same durability settings."""
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(_BARE_SCHEMA)
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO overlay VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
            " version = excluded.version, removed = excluded.removed, status = excluded.status,"
            " expiry_day = excluded.expiry_day, tckn_last3 = excluded.tckn_last3,"
            " groups = excluded.groups",
            rows,
        )
        db.execute("COMMIT")
    finally:
        db.close()


async def _delta(
    ctx: Context,
    blist: BenchList,
    size: str,
    work: Path,
    probe: Probe,
    total: int,
    repeats: int,
) -> list[Result]:
    page_size = RiskListSection().delta_page_size  # what the depot serves by default
    page_size = min(page_size, MAX_DELTA_CHANGES)
    since = blist.count  # bench lists carry their size as their version
    changes, kinds = _changes(blist, total, since, seed=blist.count + 1)
    pages = _pages(ctx.lists.signer, changes, since, page_size)
    rows = _rows(changes)
    head = changes[-1].version
    # Only the validator's own copies of the changes should be around while it applies them.
    del changes
    # Also builds the page decoder, as the first delta after a validator starts does.
    one_page_s, _ = best_of(3, lambda: _open_page(blist.verifier, pages[0]))
    runs: list[DeltaRun] = []
    alone = 0.0
    bare_s = quiet_s = float("inf")
    for i in range(repeats):
        data_dir = work / f"delta-{i}"
        place(blist, data_dir)
        risk_list = RiskList(data_dir, blist.verifier)
        await risk_list.load()
        try:
            alone_s, _ = best_of(1, partial(_loop, risk_list.lookup, probe.as_bytes))
            alone = max(alone, len(probe.as_bytes) / alone_s)
            gc.collect()
            runs.append(await _apply_under_load(risk_list, blist.verifier, pages, probe))
            _check_applied(risk_list, kinds)
            if risk_list.version != head:
                raise BenchFailure(f"list at {risk_list.version}, not {head}")
        finally:
            await risk_list.close()
        shutil.rmtree(data_dir, ignore_errors=True)
        quiet_s = min(quiet_s, await _apply_alone(blist, work / f"quiet-{i}", pages, head))
        bare_s = min(bare_s, best_of(1, partial(_bare_upsert, work / "bare.db", rows))[0])
    best = min(runs, key=lambda r: r.apply_s)
    label = f"{total // 1000}k" if total % 1000 == 0 else str(total)
    return [
        Result(
            SECTION,
            f"{size}: delta apply, {label} changes in {len(pages)} pages, lookups running",
            best.apply_s,
            "s",
            Reference("same delta, nothing else running", quiet_s),
            targets=(DELTA_TARGET,),
        ),
        Result(
            SECTION,
            f"{size}: delta apply, nothing else running",
            quiet_s,
            "s",
            Reference("bare SQLite upsert of the same rows", bare_s),
            targets=(DELTA_TARGET,),
        ),
        Result(
            SECTION,
            f"{size}: lookups/s while the delta applies",
            max(r.lookups_per_s for r in runs),
            "/s",
            Reference("RiskList.lookup, nothing else running", alone),
        ),
        Result(
            SECTION,
            f"{size}: longest lookup stall during the delta",
            min(r.longest_stall_s for r in runs) * 1000,
            "ms",
            Reference(f"decode + verify one {page_size}-change page", one_page_s * 1000),
        ),
    ]
