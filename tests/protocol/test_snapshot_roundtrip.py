"""A million-entry snapshot written in random order answers every key it holds and no other."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from protocol.credentials import key_to_int
from protocol.listsign import ListSigner
from protocol.risk import Groups, HealthStatus, ListEntry
from protocol.snapshot import HEADER_SIZE, RECORD_SIZE, Snapshot, SnapshotInfo, write_snapshot

N = 1_000_000
SAMPLE = 5_000
pytestmark = pytest.mark.slow  # building a million ListEntry objects takes seconds

NO_LAST3 = 1000  # how the generator marks "last 3 digits unknown"
NEVER = 0xFFFF  # how the generator (and the file) marks "never expires"
SIGNER = ListSigner.generate("rt-1")


@dataclass(frozen=True)
class Big:
    path: Path
    info: SnapshotInfo
    keys: NDArray[np.uint64]  # in the order they were given to the writer
    absent: NDArray[np.uint64]
    status: NDArray[np.uint8]
    expiry: NDArray[np.uint16]
    last3: NDArray[np.uint16]
    groups: NDArray[np.uint8]

    def entry(self, i: int) -> ListEntry:
        expiry = int(self.expiry[i])
        last3 = int(self.last3[i])
        return ListEntry(
            key=int(self.keys[i]).to_bytes(8, "big"),
            status=HealthStatus(int(self.status[i])),
            expiry_day=None if expiry == NEVER else expiry,
            tckn_last3=None if last3 == NO_LAST3 else f"{last3:03d}",
            groups=Groups(int(self.groups[i])),
        )


def _entries(big: Big) -> Iterator[ListEntry]:
    statuses = tuple(HealthStatus)
    groups_of = tuple(Groups(g) for g in range(4))
    for key, status, expiry, last3, groups in zip(
        big.keys.tolist(),
        big.status.tolist(),
        big.expiry.tolist(),
        big.last3.tolist(),
        big.groups.tolist(),
        strict=True,
    ):
        yield ListEntry(
            key.to_bytes(8, "big"),
            statuses[status],
            None if expiry == NEVER else expiry,
            None if last3 == NO_LAST3 else f"{last3:03d}",
            groups_of[groups],
        )


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Big:
    rng = np.random.default_rng(20200401)
    top = np.uint64(2**64 - 1)
    drawn = np.sort(rng.integers(0, top, size=2 * N + 1000, dtype=np.uint64, endpoint=True))
    drawn = drawn[np.concatenate([[True], drawn[1:] != drawn[:-1]])]  # np.unique is slow here
    drawn = rng.permutation(drawn[(drawn != 0) & (drawn != top)])
    # Both ends of the key space are valid keys: put them in the list.
    keys = rng.permutation(np.concatenate([np.array([0, top], dtype=np.uint64), drawn[: N - 2]]))
    absent = drawn[N - 2 : 2 * N - 2]
    path = tmp_path_factory.mktemp("big") / "risk.snap"
    data = Big(
        path=path,
        info=SnapshotInfo(path, 0, 0, 0, "", 0, ""),
        keys=keys,
        absent=absent,
        status=rng.integers(0, 2, size=N, dtype=np.uint8),
        expiry=rng.integers(0, NEVER, size=N, dtype=np.uint16, endpoint=True),
        last3=rng.integers(0, NO_LAST3, size=N, dtype=np.uint16, endpoint=True),
        groups=rng.integers(0, 4, size=N, dtype=np.uint8),
    )
    info = write_snapshot(path, _entries(data), list_version=123_456, signer=SIGNER)
    return Big(**{**data.__dict__, "info": info})


@pytest.fixture
def snapshot(big: Big) -> Iterator[Snapshot]:
    with Snapshot.open(big.path, SIGNER.verifier()) as snap:
        yield snap


def test_header_describes_the_list(big: Big, snapshot: Snapshot) -> None:
    assert (snapshot.count, len(snapshot)) == (N, N)
    assert snapshot.list_version == 123_456
    assert snapshot.key_id == "rt-1"
    assert big.info.size_bytes == big.path.stat().st_size == HEADER_SIZE + N * RECORD_SIZE


def test_keys_come_out_sorted(big: Big, snapshot: Snapshot) -> None:
    column = snapshot.key_column()
    assert np.array_equal(column, np.sort(big.keys))


def test_every_key_is_found_with_its_record(big: Big, snapshot: Snapshot) -> None:
    at = snapshot.find_many(big.keys)
    assert (at >= 0).all()
    assert np.array_equal(snapshot.key_column()[at], big.keys)
    payloads = snapshot.payload_column()[at]
    assert np.array_equal(payloads["status"], big.status)
    assert np.array_equal(payloads["expiry"], big.expiry)
    assert np.array_equal(payloads["last3"], np.where(big.last3 == NO_LAST3, 0xFFFF, big.last3))
    assert np.array_equal(payloads["groups"], big.groups)


def test_no_absent_key_is_found(big: Big, snapshot: Snapshot) -> None:
    assert len(big.absent) == N
    assert (snapshot.find_many(big.absent) == -1).all()


def test_single_lookups_answer_a_sample_exactly(big: Big, snapshot: Snapshot) -> None:
    rng = np.random.default_rng(7)
    picks = rng.choice(N, size=SAMPLE, replace=False).tolist()
    smallest, largest = int(np.argmin(big.keys)), int(np.argmax(big.keys))
    for i in [smallest, largest, *picks]:
        expected = big.entry(i)
        assert snapshot.lookup(expected.key) == expected
    for key in big.absent[:SAMPLE].tolist():
        assert snapshot.lookup(key.to_bytes(8, "big")) is None


def test_extreme_keys_are_present(big: Big, snapshot: Snapshot) -> None:
    # The fixture put the lowest and highest possible keys in the list.
    for key in (b"\x00" * 8, b"\xff" * 8):
        entry = snapshot.lookup(key)
        assert entry is not None
        assert key_to_int(entry.key) in (0, 2**64 - 1)


def test_cheap_open_answers_the_same(big: Big) -> None:
    with Snapshot.open(big.path, SIGNER.verifier(), verify_body=False) as snap:
        for i in range(0, N, N // 100):
            assert snap.lookup(big.entry(i).key) == big.entry(i)
