from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from protocol.credentials import ReadMethod
from protocol.reasons import DecidedBy, Decision, Reason
from validator.queue import StorageError, TapDraft, TapQueue

DAY_MS = 86_400_000


def draft(n: int = 0, *, time_ms: int | None = None) -> TapDraft:
    return TapDraft(
        time_ms=int(time.time() * 1000) if time_ms is None else time_ms,
        method=ReadMethod.QR,
        key=n.to_bytes(8, "big"),
        decision=Decision.ALLOW,
        reason=Reason.OK,
        decided_by=DecidedBy.LOCAL_LIST,
        list_version=7,
        latency_us=120,
        vehicle="34 HES 01",
        route="500T",
        trip="t1",
    )


def test_sequence_starts_at_one_and_survives_restart(tmp_path: Path) -> None:
    q = TapQueue(tmp_path / "taps.db")
    assert [q.record(draft(i)) for i in range(3)] == [1, 2, 3]
    q.close()
    q = TapQueue(tmp_path / "taps.db")
    assert q.record(draft(3)) == 4
    assert [r.seq for r in q.unsent(10)] == [1, 2, 3, 4]
    assert q.unsent(10)[1].key == (1).to_bytes(8, "big")
    q.close()


def test_database_is_wal_and_fully_synchronous(tmp_path: Path) -> None:
    q = TapQueue(tmp_path / "taps.db")
    q.record(draft())
    q.close()
    db = sqlite3.connect(tmp_path / "taps.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_numbers_are_not_reused_after_purge_and_restart(tmp_path: Path) -> None:
    q = TapQueue(tmp_path / "taps.db", retention_s=0)
    for i in range(5):
        q.record(draft(i))
    q.mark_acked(5)
    assert q.purge() == 5
    assert q.unsent(10) == []
    q.close()
    q = TapQueue(tmp_path / "taps.db", retention_s=0)
    assert q.record(draft()) == 6
    q.close()


def test_unsent_is_in_order_and_ack_moves_it(tmp_path: Path) -> None:
    q = TapQueue(tmp_path / "taps.db")
    for i in range(10):
        q.record(draft(i))
    assert [r.seq for r in q.unsent(4)] == [1, 2, 3, 4]
    q.mark_acked(4)
    q.mark_acked(2)  # an older ack never moves it back
    assert [r.seq for r in q.unsent(3)] == [5, 6, 7]
    stats = q.stats()
    assert (stats.last_seq, stats.acked, stats.backlog) == (10, 4, 6)
    q.close()
    assert TapQueue(tmp_path / "taps.db").acked == 4


def test_only_acked_records_past_retention_are_deleted(tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    q = TapQueue(tmp_path / "taps.db", retention_s=86400)
    q.record(draft(1, time_ms=now - 3 * DAY_MS))  # acked, old: goes
    q.record(draft(2, time_ms=now - 2 * DAY_MS))  # not acked, old: stays
    q.mark_acked(1)
    q.record(draft(3, time_ms=now))
    assert q.purge(now) == 1
    q.mark_acked(3)
    assert q.purge(now) == 1  # seq 2 now acked and old; seq 3 is within retention
    assert q.stats().backlog == 0
    db = sqlite3.connect(tmp_path / "taps.db")
    assert [r[0] for r in db.execute("SELECT seq FROM taps")] == [3]
    db.close()


def test_full_disk_keeps_taps_in_memory_and_stores_them_when_space_returns(
    tmp_path: Path,
) -> None:
    q = TapQueue(tmp_path / "taps.db", retention_s=0, max_db_bytes=64 * 1024)
    stored: list[int] = []
    with pytest.raises(StorageError) as caught:  # noqa: PT012
        for i in range(100_000):
            stored.append(q.record(draft(i)))
    assert caught.value.kept
    assert q.storage_error is not None
    full_at = len(stored)
    assert stored == list(range(1, full_at + 1))
    # While full, every tap still raises, and is kept.
    with pytest.raises(StorageError):
        q.record(draft(-1 % 2**63))
    assert q.stats().pending_in_memory == 2
    # Nothing already stored is damaged.
    assert [r.seq for r in q.unsent(full_at + 10)] == stored
    # The depot acks; purge frees pages; the kept taps are stored next, in order.
    q.mark_acked(full_at)
    q.purge()
    assert q.retry_pending()
    assert q.stats().storage_error is None
    assert [r.seq for r in q.unsent(10)] == [full_at + 1, full_at + 2]
    assert q.record(draft()) == full_at + 3
    q.close()


def test_memory_buffer_is_bounded(tmp_path: Path) -> None:
    (tmp_path / "taps.db").mkdir()  # a path SQLite cannot open: a dead disk
    q = TapQueue(tmp_path / "taps.db", pending_limit=2)
    outcomes = []
    for i in range(3):
        with pytest.raises(StorageError) as caught:
            q.record(draft(i))
        outcomes.append(caught.value.kept)
    assert outcomes == [True, True, False]
    assert q.stats().backlog == 2


def test_unopenable_disk_recovers_when_it_comes_back(tmp_path: Path) -> None:
    path = tmp_path / "taps.db"
    path.mkdir()
    q = TapQueue(path)
    with pytest.raises(StorageError):
        q.record(draft(1))
    assert q.storage_error is not None
    path.rmdir()
    assert q.record(draft(2)) == 2  # the kept tap got 1
    assert [r.key for r in q.unsent(5)] == [(1).to_bytes(8, "big"), (2).to_bytes(8, "big")]
    assert q.stats().storage_error is None
    q.close()


def test_ack_beyond_local_sequence_skips_past_it(tmp_path: Path) -> None:
    # A wiped disk: the depot already holds 1..50 from this device's earlier life.
    q = TapQueue(tmp_path / "taps.db")
    q.record(draft())
    q.mark_acked(50)
    assert q.record(draft()) == 51
    q.close()
    assert TapQueue(tmp_path / "taps.db").record(draft()) == 52
