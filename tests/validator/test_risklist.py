from __future__ import annotations

import asyncio
import gc
import sqlite3
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from protocol.codec import encode
from protocol.listsign import ListSigner, seal
from protocol.messages import Signed
from protocol.risk import HealthStatus
from tests.validator.lists import (
    change,
    delta_page,
    entry,
    hes_key,
    pretend_identity_unchanged,
    rewrite_byte,
    snapshot_file,
    status_offset,
)
from validator.risklist import OVERLAY_NAME, SNAPSHOT_NAME, ListUpdateError, RiskList

A, B, C, D = (hes_key(c) for c in ("AAAA000001", "BBBB000002", "CCCC000003", "DDDD000004"))


@pytest.fixture
def signer() -> ListSigner:
    return ListSigner.generate("test-1")


async def opened(data: Path, signer: ListSigner) -> RiskList:
    rl = RiskList(data, signer.verifier())
    await rl.load()
    return rl


async def test_empty_list_knows_nothing(tmp_path: Path, signer: ListSigner) -> None:
    rl = await opened(tmp_path, signer)
    assert rl.lookup(A) is None
    assert (rl.version, rl.has_list, rl.age_s(0)) == (0, False, None)
    await rl.close()


async def test_snapshot_then_deltas_then_restart(tmp_path: Path, signer: ListSigner) -> None:
    rl = await opened(tmp_path, signer)
    download = snapshot_file(
        tmp_path / "dl", [entry(A), entry(B, HealthStatus.RISKY)], signer, version=10
    )
    assert await rl.install_snapshot(download)
    assert not download.exists()
    assert rl.lookup(A) == entry(A)
    assert rl.lookup(B) == entry(B, HealthStatus.RISKY)
    assert rl.version == 10
    await rl.apply_delta(
        delta_page(
            10,
            12,
            [
                change(11, entry(A, HealthStatus.RISKY)),
                change(12, entry(B), removed=True),
                change(12, entry(C, last3="792")),
            ],
        )
    )
    assert rl.lookup(A) == entry(A, HealthStatus.RISKY)
    assert rl.lookup(B) is None
    assert rl.lookup(C) == entry(C, last3="792")
    assert rl.version == 12
    await rl.close()

    again = await opened(tmp_path, signer)
    assert again.version == 12
    assert again.lookup(A) == entry(A, HealthStatus.RISKY)
    assert again.lookup(B) is None
    assert again.lookup(C) == entry(C, last3="792")
    await again.close()


async def test_later_change_of_a_key_wins_within_a_page(tmp_path: Path, signer: ListSigner) -> None:
    rl = await opened(tmp_path, signer)
    await rl.install_snapshot(snapshot_file(tmp_path / "dl", [], signer, version=1))
    await rl.apply_delta(delta_page(1, 3, [change(3, entry(A), removed=True), change(2, entry(A))]))
    assert rl.lookup(A) is None
    await rl.close()


async def test_tampered_snapshot_is_refused_and_old_list_serves(
    tmp_path: Path, signer: ListSigner
) -> None:
    rl = await opened(tmp_path, signer)
    await rl.install_snapshot(snapshot_file(tmp_path / "dl", [entry(A)], signer, version=5))
    bad = snapshot_file(
        tmp_path / "dl2", [entry(A, HealthStatus.RISKY), entry(B)], signer, version=6
    )
    data = bytearray(bad.read_bytes())
    data[-3] ^= 0x01  # one bit of one payload
    bad.write_bytes(bytes(data))
    with pytest.raises(ListUpdateError, match="snapshot refused"):
        await rl.install_snapshot(bad)
    assert not bad.exists()
    assert rl.version == 5
    assert rl.lookup(A) == entry(A)
    # A snapshot signed by another key is refused the same way.
    other = ListSigner.generate("test-1")
    with pytest.raises(ListUpdateError):
        await rl.install_snapshot(snapshot_file(tmp_path / "dl3", [entry(B)], other, version=7))
    assert rl.lookup(B) is None
    await rl.close()
    # And the file on disk is still the good one.
    again = await opened(tmp_path, signer)
    assert again.lookup(A) == entry(A)
    await again.close()


async def test_older_snapshot_is_not_installed(tmp_path: Path, signer: ListSigner) -> None:
    rl = await opened(tmp_path, signer)
    await rl.install_snapshot(snapshot_file(tmp_path / "dl", [entry(A)], signer, version=5))
    assert not await rl.install_snapshot(
        snapshot_file(tmp_path / "dl", [entry(B)], signer, version=4)
    )
    assert rl.lookup(A) is not None
    assert rl.lookup(B) is None
    await rl.close()


async def test_delta_must_follow_the_list(tmp_path: Path, signer: ListSigner) -> None:
    rl = await opened(tmp_path, signer)
    with pytest.raises(ListUpdateError, match="no snapshot"):
        await rl.apply_delta(delta_page(0, 1, [change(1, entry(A))]))
    await rl.install_snapshot(snapshot_file(tmp_path / "dl", [], signer, version=5))
    with pytest.raises(ListUpdateError, match="starts after version 4"):
        await rl.apply_delta(delta_page(4, 6, [change(6, entry(A))]))
    with pytest.raises(ListUpdateError, match="outside"):
        await rl.apply_delta(delta_page(5, 6, [change(7, entry(A))]))
    assert rl.lookup(A) is None
    assert rl.version == 5
    await rl.close()


async def test_new_snapshot_drops_overlay_it_covers(tmp_path: Path, signer: ListSigner) -> None:
    rl = await opened(tmp_path, signer)
    await rl.install_snapshot(snapshot_file(tmp_path / "dl", [entry(A)], signer, version=5))
    await rl.apply_delta(
        delta_page(5, 8, [change(6, entry(B, HealthStatus.RISKY)), change(8, entry(C))])
    )
    # The depot's snapshot 7 holds change 6 (B is riskless again by then) but not 8.
    await rl.install_snapshot(
        snapshot_file(tmp_path / "dl", [entry(A), entry(B)], signer, version=7)
    )
    assert rl.lookup(B) == entry(B)
    assert rl.lookup(C) == entry(C)
    assert rl.version == 8
    assert rl.overlay_size == 1
    await rl.close()


async def test_crash_between_snapshot_rename_and_overlay_update(
    tmp_path: Path, signer: ListSigner
) -> None:
    rl = await opened(tmp_path, signer)
    await rl.install_snapshot(snapshot_file(tmp_path / "dl", [], signer, version=5))
    await rl.apply_delta(delta_page(5, 6, [change(6, entry(A, HealthStatus.RISKY))]))
    await rl.close()
    # As if a newer snapshot was renamed into place and the process died right after.
    snapshot_file(tmp_path / SNAPSHOT_NAME, [entry(A)], signer, version=9)
    again = await opened(tmp_path, signer)
    assert again.lookup(A) == entry(A)
    assert again.version == 9
    await again.close()


async def test_corrupt_snapshot_on_disk_is_dropped_at_start(
    tmp_path: Path, signer: ListSigner
) -> None:
    rl = await opened(tmp_path, signer)
    await rl.install_snapshot(snapshot_file(tmp_path / "dl", [entry(A)], signer, version=5))
    await rl.apply_delta(delta_page(5, 6, [change(6, entry(B))]))
    await rl.close()
    path = tmp_path / SNAPSHOT_NAME
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x7F
    path.write_bytes(bytes(data))
    again = await opened(tmp_path, signer)
    assert (again.has_list, again.version) == (False, 0)
    assert again.lookup(A) is None
    assert again.lookup(B) is None  # the overlay went with its snapshot
    db = sqlite3.connect(tmp_path / OVERLAY_NAME)
    assert db.execute("SELECT count(*) FROM overlay").fetchone()[0] == 0
    db.close()
    await again.close()


async def test_age_restarts_when_marked_fresh(tmp_path: Path, signer: ListSigner) -> None:
    rl = await opened(tmp_path, signer)
    await rl.install_snapshot(
        snapshot_file(tmp_path / "dl", [], signer, version=1, created_ms=1_000_000)
    )
    assert rl.age_s(1_060_000) == 60
    await rl.mark_fresh(2_000_000)
    assert rl.age_s(2_030_000) == 30
    await rl.close()
    again = await opened(tmp_path, signer)
    assert again.age_s(2_030_000) == 30
    await again.close()


async def test_lookups_go_on_during_a_big_update(tmp_path: Path, signer: ListSigner) -> None:
    keys = [hes_key(f"K{i:09d}") for i in range(20_000)]
    rl = await opened(tmp_path, signer)
    await rl.install_snapshot(
        snapshot_file(tmp_path / "dl", [entry(k) for k in keys], signer, version=1)
    )
    page = delta_page(1, 2, [change(2, entry(k, HealthStatus.RISKY)) for k in keys])
    update = asyncio.create_task(rl.apply_delta(page))
    await asyncio.sleep(0)
    during = 0
    while not update.done():
        first, last = rl.lookup(keys[0]), rl.lookup(keys[-1])
        assert first is not None
        assert last is not None
        # Never half a page: the first and the last change land together.
        assert first.status is last.status
        during += 1
        await asyncio.sleep(0)
    await update
    assert during >= 5  # the update's disk work did not hold the lookups up
    assert all(rl.lookup(k) == entry(k, HealthStatus.RISKY) for k in keys)
    await rl.close()


async def test_depot_reset_replaces_a_newer_list(tmp_path: Path, signer: ListSigner) -> None:
    rl = await opened(tmp_path, signer)
    await rl.install_snapshot(snapshot_file(tmp_path / "dl", [entry(A)], signer, version=50))
    await rl.apply_delta(delta_page(50, 60, [change(60, entry(B, HealthStatus.RISKY))]))
    # The depot's list was rebuilt: its versions start again, below this list's.
    rebuilt = snapshot_file(tmp_path / "dl", [entry(C)], signer, version=7)
    assert not await rl.install_snapshot(rebuilt)  # an older snapshot is not taken...
    rebuilt = snapshot_file(tmp_path / "dl", [entry(C)], signer, version=7)
    assert await rl.install_snapshot(rebuilt, replace=True)  # ...unless told the depot reset
    assert (rl.version, rl.snapshot_version, rl.overlay_size) == (7, 7, 0)
    assert rl.lookup(A) is None
    assert rl.lookup(B) is None
    assert rl.lookup(C) == entry(C)
    await rl.apply_delta(delta_page(7, 8, [change(8, entry(D))]))
    await rl.close()
    again = await opened(tmp_path, signer)
    assert (again.version, again.lookup(B), again.lookup(D)) == (8, None, entry(D))
    await again.close()


# -- the kept list at start ------------------------------------------------------------------


async def test_a_kept_untouched_list_opens_without_a_body_check(
    tmp_path: Path, signer: ListSigner
) -> None:
    rl = await opened(tmp_path, signer)
    await rl.install_snapshot(
        snapshot_file(tmp_path / "dl", [entry(A), entry(B)], signer, version=5)
    )
    assert rl.body_checks == 1  # the download, verified whole before it was installed
    await rl.apply_delta(delta_page(5, 6, [change(6, entry(C, HealthStatus.RISKY))]))
    await rl.close()
    with capture_logs() as logs:
        again = await opened(tmp_path, signer)
    assert again.body_checks == 0
    loaded = [e for e in logs if e["event"] == "risk_list_loaded"]
    assert [e["body_checked"] for e in loaded] == [False]
    assert (again.lookup(A), again.lookup(C)) == (entry(A), entry(C, HealthStatus.RISKY))
    assert again.version == 6
    assert again.problem is None
    # The check after start then reads the body once, and only once.
    assert await again.verify_kept()
    assert await again.verify_kept()
    assert again.body_checks == 1
    assert again.lookup(B) == entry(B)
    await again.close()


async def test_a_list_put_there_by_hand_is_checked_whole_once(
    tmp_path: Path, signer: ListSigner
) -> None:
    snapshot_file(tmp_path / SNAPSHOT_NAME, [entry(A)], signer, version=3)
    first = await opened(tmp_path, signer)
    assert (first.body_checks, first.lookup(A)) == (1, entry(A))
    assert await first.verify_kept()
    assert first.body_checks == 1  # checked at start already: nothing left to check
    await first.close()
    second = await opened(tmp_path, signer)
    assert (second.body_checks, second.lookup(A)) == (0, entry(A))
    await second.close()


@pytest.mark.parametrize("keep_times", [False, True], ids=["mtime-changed", "mtime-restored"])
async def test_a_body_byte_changed_on_disk_is_refused_at_start(
    tmp_path: Path, signer: ListSigner, keep_times: bool
) -> None:
    rl = await opened(tmp_path, signer)
    await rl.install_snapshot(snapshot_file(tmp_path / "dl", [entry(A)], signer, version=5))
    await rl.apply_delta(delta_page(5, 6, [change(6, entry(B))]))
    await rl.close()
    # A still well-formed record: RISKLESS turned RISKY, the kind of change that matters.
    path = tmp_path / SNAPSHOT_NAME
    rewrite_byte(path, status_offset([A], A), int(HealthStatus.RISKY), keep_times=keep_times)
    # Same size, same inode, even the same mtime: the inode change time still moved.
    again = await opened(tmp_path, signer)
    assert again.body_checks == 1
    assert (again.has_list, again.version) == (False, 0)
    assert again.lookup(A) is None  # never answered from the damaged list...
    assert again.lookup(B) is None  # ...nor from the overlay that sat on it
    assert again.problem is not None
    assert "bad_body_hash" in again.problem
    assert not path.exists()
    await again.close()


async def test_bits_flipped_under_the_file_system_are_caught_after_start(
    tmp_path: Path, signer: ListSigner
) -> None:
    rl = await opened(tmp_path, signer)
    await rl.install_snapshot(
        snapshot_file(tmp_path / "dl", [entry(A), entry(B)], signer, version=5)
    )
    await rl.close()
    # Record 0's status becomes a value no status has, and the identity stays as recorded.
    path = tmp_path / SNAPSHOT_NAME
    rewrite_byte(path, status_offset([A, B], A), 0x7F, keep_times=True)
    pretend_identity_unchanged(tmp_path)
    again = await opened(tmp_path, signer)
    assert (again.body_checks, again.has_list) == (0, True)
    # A lookup that meets the malformed record does not answer from it.
    assert again.lookup(A) is None
    assert again.problem is not None
    assert "malformed" in again.problem
    # The check after start finds the body wrong and drops the whole list.
    assert not await again.verify_kept()
    assert (again.has_list, again.version, again.lookup(B)) == (False, 0, None)
    assert again.problem is not None
    assert "bad_body_hash" in again.problem
    assert not path.exists()
    await again.close()
    # Nothing of it comes back at the next start.
    third = await opened(tmp_path, signer)
    assert (third.has_list, third.version) == (False, 0)
    await third.close()


async def test_a_new_snapshot_clears_the_damage(tmp_path: Path, signer: ListSigner) -> None:
    rl = await opened(tmp_path, signer)
    await rl.install_snapshot(snapshot_file(tmp_path / "dl", [entry(A)], signer, version=5))
    await rl.close()
    rewrite_byte(tmp_path / SNAPSHOT_NAME, status_offset([A], A), 1, keep_times=False)
    again = await opened(tmp_path, signer)
    assert "kept risk list refused" in (again.problem or "")
    assert await again.install_snapshot(
        snapshot_file(tmp_path / "dl", [entry(A)], signer, version=6)
    )
    assert (again.problem, again.lookup(A)) == (None, entry(A))
    await again.close()


# -- deltas as the depot sends them ----------------------------------------------------------


async def test_a_signed_page_is_opened_and_applied(tmp_path: Path, signer: ListSigner) -> None:
    rl = await opened(tmp_path, signer)
    await rl.install_snapshot(snapshot_file(tmp_path / "dl", [entry(A)], signer, version=5))
    page = delta_page(5, 7, [change(6, entry(A, HealthStatus.RISKY)), change(7, entry(B))])
    wire = encode(seal(signer, encode(page)))
    assert await rl.apply_signed_delta(wire) == page
    assert (rl.version, rl.lookup(A), rl.lookup(B)) == (7, entry(A, HealthStatus.RISKY), entry(B))
    await rl.close()


async def test_a_bad_signed_page_changes_nothing(tmp_path: Path, signer: ListSigner) -> None:
    rl = await opened(tmp_path, signer)
    await rl.install_snapshot(snapshot_file(tmp_path / "dl", [entry(A)], signer, version=5))
    page = delta_page(5, 6, [change(6, entry(A, HealthStatus.RISKY))])
    envelope = seal(signer, encode(page))
    flipped = bytearray(envelope.body)
    flipped[-2] ^= 0x01
    tampered = encode(
        Signed(v=envelope.v, key_id=envelope.key_id, body=bytes(flipped), sig=envelope.sig)
    )
    with pytest.raises(ListUpdateError, match="delta refused"):
        await rl.apply_signed_delta(tampered)
    foreign = encode(seal(ListSigner.generate("test-1"), encode(page)))
    with pytest.raises(ListUpdateError, match="delta refused"):
        await rl.apply_signed_delta(foreign)
    with pytest.raises(ListUpdateError, match="does not decode"):
        await rl.apply_signed_delta(b"\x93not a page")
    wrong_start = encode(seal(signer, encode(delta_page(4, 6, [change(6, entry(A))]))))
    with pytest.raises(ListUpdateError, match="starts after version 4"):
        await rl.apply_signed_delta(wrong_start)
    assert (rl.version, rl.lookup(A)) == (5, entry(A))
    await rl.close()


async def test_a_big_overlay_gives_the_garbage_collector_nothing_to_track(
    tmp_path: Path, signer: ListSigner
) -> None:
    keys = [hes_key(f"G{i:09d}") for i in range(20_000)]
    rl = await opened(tmp_path, signer)
    await rl.install_snapshot(snapshot_file(tmp_path / "dl", [], signer, version=1))
    pages = [
        encode(
            seal(signer, encode(delta_page(1, 2, [change(2, entry(k)) for k in keys[:10_000]])))
        ),
        encode(
            seal(signer, encode(delta_page(2, 3, [change(3, entry(k)) for k in keys[10_000:]])))
        ),
    ]
    gc.collect()
    tracked_before = len(gc.get_objects())
    for wire in pages:
        await rl.apply_signed_delta(wire)
    await asyncio.sleep(0)  # the loop lets go of the last page it handed back
    gc.collect()
    grown = len(gc.get_objects()) - tracked_before
    assert rl.overlay_size == 20_000
    # One object a changed key would be 20,000 more for every full collection to walk.
    assert grown < 500
    assert all(rl.lookup(k) == entry(k) for k in keys[::997])
    await rl.close()
