"""The validator's risk list at each size: bytes an entry, open time, lookups, a delta under load.

Everything goes through the code a validator runs: :class:`protocol.snapshot.Snapshot`
and :class:`validator.risklist.RiskList` (snapshot plus SQLite overlay). The
validator's start is :meth:`RiskList.load` of a kept list it verified before
(its file identity recorded, the file untouched since: header only), then
:meth:`RiskList.verify_kept`, the whole-body check it runs in its worker
thread after start, timed while lookups go on. Deltas are pages signed and
encoded by the depot's own :func:`signed_page`, handed over as the wire
carries them to :meth:`RiskList.apply_signed_delta`, as
:class:`validator.listsync.ListSync` does (decoded and verified in the
worker). After every load the list's answers are checked against the file.
The references are the bare operations underneath: ``mmap`` plus
``numpy.frombuffer``, SHA-256 of the file, ``numpy.searchsorted``, a plain
SQLite upsert, and the same work with nothing else running.
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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

import numpy as np
from numpy.typing import NDArray

from bench.context import BenchFailure, Context
from bench.lists import (
    CARDS,
    CODES,
    EXPIRY_DAY,
    LIST_KEY,
    BenchList,
    card_of,
    code_of,
    place,
    tckn_of,
)
from bench.measure import best_interleaved, best_of, mapped_rss_bytes, say
from bench.table import Bound, Reference, Result, Target
from depot_sync.config import RiskListSection
from depot_sync.risklist.changes import signed_page
from protocol.credentials import CredentialKind, credential_key
from protocol.listsign import ListSigner, ListVerifier
from protocol.messages import MAX_DELTA_CHANGES, PROTOCOL_VERSION, DeltaPage, ListChange
from protocol.risk import Groups, HealthStatus
from protocol.snapshot import HEADER_SIZE, KEY_DTYPE, Snapshot
from validator.risklist import RiskList, open_delta_page

SECTION: Final = "risklist"
T = TypeVar("T")
#: Lookups between two yields of the lookup task during a delta.
LOOKUP_CHUNK: Final = 500
#: Share of lookups for keys that are on the list.
HIT_SHARE: Final = 0.9
#: Probe keys whose answers are checked against the file after each load.
CHECKED_KEYS: Final = 20_000
#: Every how many of the known codes and cards one is checked after each load.
KNOWN_STRIDE: Final = 20

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
    #: Whether each key is on the list, found with ``numpy.searchsorted`` on the file's keys.
    listed: NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class LoadedRun:
    """Some work on the list (a delta, a body check) done while lookups went on."""

    work_s: float
    lookups_per_s: float
    longest_stall_s: float


@dataclass(frozen=True, slots=True)
class StartRun:
    """One validator start: first (body checked), again (header only), then the body check."""

    first_s: float
    start_s: float
    lookups_alone_per_s: float
    check: LoadedRun


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
    probe = make_probe(blist, settings.lookups, seed=blist.count)
    results = [
        *_bytes_per_entry(blist, size),
        *await _open_times(blist, size, work, probe, settings.repeats),
    ]
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


def check_answers(risk_list: RiskList, probe: Probe) -> None:
    """The list answers what its file holds: known credentials, listed and unlisted keys."""
    for i in range(0, CODES, KNOWN_STRIDE):
        key = credential_key(LIST_KEY, CredentialKind.HES_CODE, code_of(i))
        _check_known(risk_list, key, tckn_of(i)[-3:], f"code {code_of(i)}")
    for i in range(0, CARDS, KNOWN_STRIDE):
        key = credential_key(LIST_KEY, CredentialKind.CARD, card_of(i))
        _check_known(risk_list, key, tckn_of(i)[-3:], f"card {card_of(i)}")
    checked = min(CHECKED_KEYS, len(probe.as_bytes))
    for key, listed in zip(probe.as_bytes[:checked], probe.listed[:checked].tolist(), strict=True):
        if (risk_list.lookup(key) is not None) != listed:
            state = "on" if listed else "not on"
            raise BenchFailure(f"key {key.hex()} is {state} the list, the validator says otherwise")


def _check_known(risk_list: RiskList, key: bytes, last3: str, what: str) -> None:
    entry = risk_list.lookup(key)
    if (
        entry is None
        or entry.status is not HealthStatus.RISKLESS
        or entry.expiry_day != EXPIRY_DAY
        or entry.tckn_last3 != last3
    ):
        raise BenchFailure(f"{what}: the validator answers {entry!r}, not what the list holds")


async def _under_lookups(
    risk_list: RiskList, probe: Probe, work: Awaitable[T]
) -> tuple[LoadedRun, T]:
    """Await ``work`` while a task looks keys up, 500 between yields, as the gate would."""
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
    try:
        result = await work
    finally:
        elapsed = time.perf_counter() - started
        done.set()
        await looker
    return LoadedRun(elapsed, counts["lookups"] / elapsed, stalls[0]), result


async def validator_start(blist: BenchList, data_dir: Path, probe: Probe) -> StartRun:
    """Start a validator on a list twice, as after its install and at every start after.

    The first load finds no recorded identity and checks the file whole, as
    a validator does with a file it has not verified itself; it records the
    identity, as an install does. The second is the start that counts: the
    kept list, untouched, opened on its identity with the header checked
    only. Its answers are checked, then its body is checked in the worker
    while lookups go on, as the validator does after start.
    """
    place(blist, data_dir)
    first = RiskList(data_dir, blist.verifier)
    started = time.perf_counter()
    await first.load()
    first_s = time.perf_counter() - started
    checks, loaded = first.body_checks, first.snapshot_version
    await first.close()
    # The bench lists use their size as their version.
    if loaded != blist.count or checks != 1:
        raise BenchFailure(f"first start: version {loaded}, {checks} body checks (expected 1)")
    kept = RiskList(data_dir, blist.verifier)
    try:
        started = time.perf_counter()
        await kept.load()
        start_s = time.perf_counter() - started
        if kept.snapshot_version != blist.count or kept.problem is not None:
            raise BenchFailure(f"the kept list did not load: {kept.problem}")
        if kept.body_checks != 0:
            raise BenchFailure("the untouched kept list was checked whole at start")
        check_answers(kept, probe)
        alone_s, _ = best_of(1, partial(_loop, kept.lookup, probe.as_bytes))
        gc.collect()
        check, kept_ok = await _under_lookups(kept, probe, kept.verify_kept())
        if not kept_ok or kept.body_checks != 1 or not kept.has_list:
            raise BenchFailure(
                f"body check after start: {kept.body_checks} checks, list kept: {kept.has_list}"
            )
    finally:
        await kept.close()
    shutil.rmtree(data_dir, ignore_errors=True)
    return StartRun(first_s, start_s, len(probe.as_bytes) / alone_s, check)


async def _open_times(
    blist: BenchList, size: str, work: Path, probe: Probe, repeats: int
) -> list[Result]:
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
    starts = [await validator_start(blist, work / f"start-{i}", probe) for i in range(repeats)]
    first_s = min(r.first_s for r in starts)
    start_s = min(r.start_s for r in starts)
    check = min((r.check for r in starts), key=lambda c: c.work_s)
    alone = max(r.lookups_alone_per_s for r in starts)
    raw = Reference("mmap + np.frombuffer", raw_s * 1000)
    sha = Reference("SHA-256 of the file", hash_s * 1000)
    return [
        Result(
            SECTION,
            f"{size}: open, header checked (verify_body=False)",
            header_s * 1000,
            "ms",
            raw,
            targets=(OPEN_TARGET,),
        ),
        Result(
            SECTION,
            f"{size}: open, body verified (verify_body=True)",
            verified_s * 1000,
            "ms",
            sha,
        ),
        Result(
            SECTION,
            f"{size}: validator start, kept list (RiskList.load: identity, header only)",
            start_s * 1000,
            "ms",
            Reference("Snapshot.open, header checked", header_s * 1000),
            targets=(OPEN_TARGET,),
        ),
        Result(
            SECTION,
            f"{size}: body check after start (RiskList.verify_kept, worker), lookups running",
            check.work_s * 1000,
            "ms",
            sha,
        ),
        Result(
            SECTION,
            f"{size}: lookups/s during the body check after start",
            max(r.check.lookups_per_s for r in starts),
            "/s",
            Reference("RiskList.lookup, nothing else running", alone),
        ),
        Result(
            SECTION,
            f"{size}: longest lookup stall during the body check",
            min(r.check.longest_stall_s for r in starts) * 1000,
            "ms",
            Reference("body check after start", check.work_s * 1000),
        ),
        Result(
            SECTION,
            f"{size}: first start on an unverified file (RiskList.load, body checked)",
            first_s * 1000,
            "ms",
            sha,
        ),
    ]


# -- lookups -------------------------------------------------------------------------------


def make_probe(blist: BenchList, lookups: int, seed: int) -> Probe:
    """Keys to look up: 90% drawn from the list, 10% random (almost surely absent)."""
    rng = np.random.default_rng(seed)
    hits = int(lookups * HIT_SHARE)
    with Snapshot.open(blist.path, blist.verifier, verify_body=False) as snapshot:
        keys = snapshot.key_column()
        chosen = np.array(keys[rng.integers(0, blist.count, size=hits)], dtype=np.uint64)
        misses = rng.integers(0, 2**64, size=lookups - hits, dtype=np.uint64, endpoint=False)
        wanted = np.concatenate([chosen, misses])
        rng.shuffle(wanted)
        at = np.minimum(np.searchsorted(keys, wanted), blist.count - 1)
        listed = np.asarray(keys[at] == wanted, dtype=np.bool_)
        del keys, at
    return Probe(
        as_bytes=[k.to_bytes(8, "big") for k in wanted.tolist()],
        as_ints=wanted,
        as_scalars=list(wanted),
        hits=hits,
        listed=listed,
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
        check_answers(risk_list, probe)
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


async def _apply_pages(risk_list: RiskList, pages: list[bytes]) -> None:
    """What :class:`validator.listsync.ListSync` does with the pages of one sync."""
    for wire in pages:
        await risk_list.apply_signed_delta(wire)
    await risk_list.mark_fresh()


async def _apply_alone(blist: BenchList, data_dir: Path, pages: list[bytes], head: int) -> float:
    """Seconds to apply the same pages with nothing else running."""
    place(blist, data_dir)
    risk_list = RiskList(data_dir, blist.verifier)
    await risk_list.load()
    try:
        gc.collect()
        started = time.perf_counter()
        await _apply_pages(risk_list, pages)
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
    one_page_s, _ = best_of(3, lambda: open_delta_page(blist.verifier, pages[0]))
    runs: list[LoadedRun] = []
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
            run, _ = await _under_lookups(risk_list, probe, _apply_pages(risk_list, pages))
            runs.append(run)
            _check_applied(risk_list, kinds)
            if risk_list.version != head:
                raise BenchFailure(f"list at {risk_list.version}, not {head}")
        finally:
            await risk_list.close()
        shutil.rmtree(data_dir, ignore_errors=True)
        quiet_s = min(quiet_s, await _apply_alone(blist, work / f"quiet-{i}", pages, head))
        bare_s = min(bare_s, best_of(1, partial(_bare_upsert, work / "bare.db", rows))[0])
    best = min(runs, key=lambda r: r.work_s)
    label = f"{total // 1000}k" if total % 1000 == 0 else str(total)
    return [
        Result(
            SECTION,
            f"{size}: delta apply, {label} changes in {len(pages)} pages, lookups running",
            best.work_s,
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
            Reference(f"decode + verify one {page_size}-change page (worker)", one_page_s * 1000),
        ),
    ]
