"""The snapshot writer: any input order, bounded-memory runs, refusals, atomic publishing."""

from __future__ import annotations

import hashlib
import random
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.credentials import key_to_int
from protocol.listsign import ListSigner
from protocol.risk import MAX_EXPIRY_DAY, Groups, HealthStatus, ListEntry
from protocol.snapshot import (
    Snapshot,
    SnapshotError,
    SnapshotReason,
    SnapshotWriter,
    WriterClosed,
    write_snapshot,
)

SIGNER = ListSigner.generate("writer-test")


def entry(n: int, **changes: object) -> ListEntry:
    """A valid entry whose fields vary with ``n``."""
    fields: dict[str, object] = {
        "key": random.Random(n).randbytes(8),
        "status": HealthStatus(n % 2),
        "expiry_day": None if n % 7 == 0 else 18_000 + n % 3000,
        "tckn_last3": None if n % 5 == 0 else f"{n % 1000:03d}",
        "groups": Groups(n % 4),
    }
    fields.update(changes)
    return ListEntry(**fields)  # type: ignore[arg-type]


def entries(count: int) -> list[ListEntry]:
    made = [entry(n) for n in range(count)]
    assert len({e.key for e in made}) == count
    return made


def read_all(path: Path) -> list[ListEntry]:
    with Snapshot.open(path, SIGNER.verifier()) as snap:
        return list(snap)


def add_and_close(writer: SnapshotWriter, given_entries: list[ListEntry]) -> None:
    writer.add_many(given_entries)
    writer.close()


def leftovers(directory: Path, keep: str) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != keep)


@pytest.mark.parametrize("order", ["sorted", "reversed", "shuffled"])
@pytest.mark.parametrize("run_size", [1, 7, 100, 1_000_000])
def test_any_input_order_comes_out_sorted_and_complete(
    tmp_path: Path, order: str, run_size: int
) -> None:
    given_entries = entries(700)
    expected = sorted(given_entries, key=lambda e: key_to_int(e.key))
    if order == "sorted":
        given_entries = expected
    elif order == "reversed":
        given_entries = expected[::-1]
    else:
        random.Random(3).shuffle(given_entries)
    path = tmp_path / "risk.snap"
    with SnapshotWriter(path, list_version=9, signer=SIGNER, run_size=run_size) as writer:
        writer.add_many(given_entries)
        assert len(writer) == 700
        info = writer.close()
    assert info.count == 700
    assert read_all(path) == expected
    assert leftovers(tmp_path, keep="risk.snap") == []


def test_memory_stays_bounded_by_the_run_size(tmp_path: Path) -> None:
    count, run_size = 30_000, 250

    def lazily() -> Iterator[ListEntry]:
        rng = random.Random(11)
        for _ in range(count):
            yield ListEntry(rng.randbytes(8), HealthStatus.RISKY, None, None, Groups.NONE)

    path = tmp_path / "risk.snap"
    # Warm up first, so one-time imports and caches do not count.
    write_snapshot(path, entries(3), list_version=1, signer=SIGNER)
    tracemalloc.start()
    try:
        with SnapshotWriter(path, list_version=1, signer=SIGNER, run_size=run_size) as writer:
            writer.add_many(lazily())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Holding the list at once takes 16 bytes an entry before any sorting.
    assert peak < count * 16 // 4, peak
    with Snapshot.open(path, SIGNER.verifier()) as snap:
        assert len(snap) == count
        assert list(snap) == sorted(lazily(), key=lambda e: e.key)


def test_order_is_bytewise_key_order(tmp_path: Path) -> None:
    keys = [b"\x80" + b"\x00" * 7, b"\x00" * 7 + b"\xff", b"\x7f" + b"\xff" * 7, b"\x01" * 8]
    path = tmp_path / "risk.snap"
    write_snapshot(
        path, [entry(i, key=k) for i, k in enumerate(keys)], list_version=1, signer=SIGNER
    )
    assert [e.key for e in read_all(path)] == sorted(keys)


def test_every_field_value_survives(tmp_path: Path) -> None:
    cases = [
        entry(1, expiry_day=None, tckn_last3=None, groups=Groups.NONE),
        entry(2, expiry_day=0, tckn_last3="000", groups=Groups.AGE_65_PLUS),
        entry(3, expiry_day=MAX_EXPIRY_DAY, tckn_last3="999", groups=Groups.UNDER_20),
        entry(4, status=HealthStatus.RISKY, groups=Groups.AGE_65_PLUS | Groups.UNDER_20),
        entry(5, status=HealthStatus.RISKLESS, groups=Groups(0x80)),  # a flag added later
    ]
    path = tmp_path / "risk.snap"
    write_snapshot(path, cases, list_version=1, signer=SIGNER)
    with Snapshot.open(path, SIGNER.verifier()) as snap:
        for case in cases:
            assert snap.lookup(case.key) == case


def test_info_describes_the_published_file(tmp_path: Path) -> None:
    path = tmp_path / "risk.snap"
    info = write_snapshot(path, entries(10), list_version=77, signer=SIGNER, created_ms=1_600_000)
    data = path.read_bytes()
    assert info.path == path
    assert (info.list_version, info.count, info.created_ms, info.key_id) == (
        77,
        10,
        1_600_000,
        "writer-test",
    )
    assert info.size_bytes == len(data) == 256 + 10 * 16
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    with Snapshot.open(path, SIGNER.verifier()) as snap:
        assert (snap.list_version, snap.created_ms, snap.key_id) == (77, 1_600_000, "writer-test")


def test_creation_time_defaults_to_now(tmp_path: Path) -> None:
    before = time.time_ns() // 1_000_000
    info = write_snapshot(tmp_path / "risk.snap", entries(1), list_version=1, signer=SIGNER)
    after = time.time_ns() // 1_000_000
    assert before <= info.created_ms <= after


def test_empty_list_is_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "risk.snap"
    info = write_snapshot(path, [], list_version=5, signer=SIGNER)
    assert (info.count, info.size_bytes) == (0, 256)
    with Snapshot.open(path, SIGNER.verifier()) as snap:
        assert len(snap) == 0
        assert list(snap) == []
        assert snap.lookup(b"\x00" * 8) is None


@pytest.mark.parametrize("run_size", [1_000_000, 10, 1])
@pytest.mark.parametrize("gap", [1, 37, 399])
def test_duplicate_keys_are_refused_and_nothing_is_published(
    tmp_path: Path, run_size: int, gap: int
) -> None:
    path = tmp_path / "risk.snap"
    given_entries = entries(400)
    given_entries.insert(gap, entry(999, key=given_entries[0].key))
    writer = SnapshotWriter(path, list_version=1, signer=SIGNER, run_size=run_size)
    with pytest.raises(SnapshotError) as caught:
        add_and_close(writer, given_entries)
    assert caught.value.reason is SnapshotReason.DUPLICATE_KEY
    assert given_entries[0].key.hex() in str(caught.value)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(WriterClosed):
        writer.add(entry(5000))


def test_a_failed_write_leaves_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "risk.snap"
    old = write_snapshot(path, entries(5), list_version=1, signer=SIGNER)
    duplicate = [*entries(5), entries(1)[0]]
    with pytest.raises(SnapshotError):
        write_snapshot(path, duplicate, list_version=2, signer=SIGNER)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == old.sha256
    assert leftovers(tmp_path, keep="risk.snap") == []


def test_an_error_inside_the_with_block_aborts(tmp_path: Path) -> None:
    path = tmp_path / "risk.snap"
    old = write_snapshot(path, entries(5), list_version=1, signer=SIGNER)

    class Interrupted(Exception):
        pass

    def interrupted_write() -> None:
        with SnapshotWriter(path, list_version=2, signer=SIGNER, run_size=2) as writer:
            writer.add_many(entries(9))
            raise Interrupted

    with pytest.raises(Interrupted):
        interrupted_write()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == old.sha256
    assert leftovers(tmp_path, keep="risk.snap") == []


def test_a_new_file_replaces_the_old_atomically_while_readers_keep_theirs(tmp_path: Path) -> None:
    path = tmp_path / "risk.snap"
    first = entries(20)
    write_snapshot(path, first[:10], list_version=1, signer=SIGNER)
    with Snapshot.open(path, SIGNER.verifier()) as old:
        write_snapshot(path, first[10:], list_version=2, signer=SIGNER)
        # The open snapshot still maps the file it opened.
        assert old.list_version == 1
        assert old.lookup(first[0].key) == first[0]
    with Snapshot.open(path, SIGNER.verifier()) as new:
        assert new.list_version == 2
        assert new.lookup(first[0].key) is None
        assert new.lookup(first[15].key) == first[15]


BAD_ENTRIES = [
    ("short key", entry(1, key=b"\x01" * 7)),
    ("long key", entry(1, key=b"\x01" * 9)),
    ("str key", entry(1, key="01234567")),
    ("bytearray key", entry(1, key=bytearray(8))),
    ("unknown status", entry(1, status=2)),
    ("bool status", entry(1, status=True)),
    ("status None", entry(1, status=None)),
    ("negative expiry", entry(1, expiry_day=-1)),
    ("expiry too late", entry(1, expiry_day=MAX_EXPIRY_DAY + 1)),
    ("float expiry", entry(1, expiry_day=19000.0)),
    ("bool expiry", entry(1, expiry_day=True)),
    ("two digits", entry(1, tckn_last3="12")),
    ("four digits", entry(1, tckn_last3="1234")),
    ("letters", entry(1, tckn_last3="12a")),
    ("arabic-indic digits", entry(1, tckn_last3="\u0661\u0662\u0663")),
    ("int last3", entry(1, tckn_last3=123)),
    ("unhashable last3", entry(1, tckn_last3=["1", "2", "3"])),
    ("groups too big", entry(1, groups=256)),
    ("negative groups", entry(1, groups=-1)),
]


@pytest.mark.parametrize(("name", "bad"), BAD_ENTRIES, ids=[name for name, _ in BAD_ENTRIES])
def test_an_invalid_entry_is_refused_and_the_writer_stays_usable(
    tmp_path: Path, name: str, bad: ListEntry
) -> None:
    path = tmp_path / "risk.snap"
    with SnapshotWriter(path, list_version=1, signer=SIGNER) as writer:
        writer.add(entry(10))
        with pytest.raises(SnapshotError) as caught:
            writer.add(bad)
        assert caught.value.reason is SnapshotReason.BAD_ENTRY
        with pytest.raises(SnapshotError):
            writer.add_many([entry(11), bad, entry(12)])
        writer.add(entry(13))
        info = writer.close()
    assert info.count == 3
    assert {e.key for e in read_all(path)} == {entry(n).key for n in (10, 11, 13)}


def test_the_writer_cannot_be_used_after_close(tmp_path: Path) -> None:
    writer = SnapshotWriter(tmp_path / "risk.snap", list_version=1, signer=SIGNER)
    writer.close()
    with pytest.raises(WriterClosed):
        writer.add(entry(1))
    with pytest.raises(WriterClosed):
        writer.add_many([entry(1)])
    with pytest.raises(WriterClosed):
        writer.close()


@pytest.mark.parametrize(
    "kwargs",
    [{"list_version": -1}, {"list_version": 2**63}, {"created_ms": -5}, {"run_size": 0}],
)
def test_out_of_range_settings_are_refused(tmp_path: Path, kwargs: dict[str, int]) -> None:
    settings_: dict[str, int] = {"list_version": 1, **kwargs}
    with pytest.raises(ValueError, match=r"range|positive"):
        SnapshotWriter(tmp_path / "risk.snap", signer=SIGNER, **settings_)


entry_strategy = st.builds(
    ListEntry,
    key=st.binary(min_size=8, max_size=8),
    status=st.sampled_from(HealthStatus),
    expiry_day=st.none() | st.integers(0, MAX_EXPIRY_DAY),
    tckn_last3=st.none() | st.from_regex(r"[0-9]{3}", fullmatch=True),
    groups=st.integers(0, 255).map(Groups),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    given_entries=st.lists(entry_strategy, max_size=120, unique_by=lambda e: e.key),
    run_size=st.integers(1, 50),
)
def test_whatever_goes_in_comes_out_sorted(
    tmp_path: Path, given_entries: list[ListEntry], run_size: int
) -> None:
    path = tmp_path / "risk.snap"
    with SnapshotWriter(path, list_version=3, signer=SIGNER, run_size=run_size) as writer:
        writer.add_many(given_entries)
    assert read_all(path) == sorted(given_entries, key=lambda e: e.key)
