"""Opening snapshot files: the documented layout, and every way a file is refused."""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from protocol.listsign import ListSigner, ListVerifier
from protocol.risk import Groups, HealthStatus, ListEntry
from protocol.snapshot import (
    InvalidKey,
    Snapshot,
    SnapshotClosed,
    SnapshotError,
    SnapshotReason,
    read_info,
    reader,
    write_snapshot,
)

SIGNER = ListSigner.generate("reader-test")
VERIFIER = SIGNER.verifier()

# The header exactly as docs/protocol.md lays it out, written here independently of the code.
DOC_HEADER = struct.Struct("<8sHHIQQQ32s64s56x")
DOC_PAYLOAD = struct.Struct("<HHBBH")


def payload(expiry: int = 0xFFFF, last3: int = 0xFFFF, status: int = 0, groups: int = 0) -> bytes:
    return DOC_PAYLOAD.pack(expiry, last3, status, groups, 0)


def craft(
    path: Path,
    keys: list[int],
    payloads: list[bytes] | None = None,
    *,
    signer: ListSigner = SIGNER,
    key_id: bytes | None = None,
    version: int = 1,
    list_version: int = 1,
    created_ms: int = 0,
) -> Path:
    """A snapshot file built by hand from the documented layout, validly signed."""
    records = payloads if payloads is not None else [payload() for _ in keys]
    body = b"".join(k.to_bytes(8, "little") for k in keys) + b"".join(records)
    signed = DOC_HEADER.pack(
        b"HESGSNAP",
        version,
        16,
        0,
        list_version,
        len(keys),
        created_ms,
        hashlib.sha256(body).digest(),
        key_id if key_id is not None else signer.key_id.encode(),
    )
    path.write_bytes(signed + signer.sign(signed) + body)
    return path


def sample(n: int) -> list[ListEntry]:
    return [
        ListEntry(
            key=(0x0102030405060708 * (i + 1)).to_bytes(8, "big"),
            status=HealthStatus(i % 2),
            expiry_day=None if i % 3 == 0 else 19_000 + i,
            tckn_last3=None if i % 4 == 0 else f"{i * 7 % 1000:03d}",
            groups=Groups(i % 4),
        )
        for i in range(n)
    ]


@pytest.fixture
def written(tmp_path: Path) -> Path:
    path = tmp_path / "risk.snap"
    write_snapshot(path, sample(10), list_version=42, signer=SIGNER, created_ms=1_700_000_000_000)
    return path


def flipped(path: Path, at: int, mask: int = 0x01) -> Path:
    data = bytearray(path.read_bytes())
    data[at] ^= mask
    path.write_bytes(bytes(data))
    return path


def refusal(
    path: Path, verifier: ListVerifier = VERIFIER, *, verify_body: bool = True
) -> SnapshotReason:
    with pytest.raises(SnapshotError) as caught:
        Snapshot.open(path, verifier, verify_body=verify_body)
    return caught.value.reason


# --- the documented layout ---------------------------------------------------------------


def test_written_file_follows_the_documented_layout(written: Path) -> None:
    raw = written.read_bytes()
    magic, version, record_size, reserved, list_version, count, created, body_sha, key_id = (
        DOC_HEADER.unpack_from(raw)
    )
    assert (magic, version, record_size, reserved) == (b"HESGSNAP", 1, 16, 0)
    assert (list_version, count, created) == (42, 10, 1_700_000_000_000)
    assert key_id.rstrip(b"\x00") == b"reader-test"
    assert raw[136:192] == b"\x00" * 56
    assert len(raw) == 256 + 16 * count
    assert body_sha == hashlib.sha256(raw[256:]).digest()
    VERIFIER.verify(raw[:192], raw[192:256], "reader-test")
    keys = [int.from_bytes(raw[256 + 8 * i : 264 + 8 * i], "little") for i in range(count)]
    expected = sorted(sample(10), key=lambda e: e.key)
    assert keys == [int.from_bytes(e.key, "big") for e in expected]
    for i, entry in enumerate(expected):
        at = 256 + 8 * count + 8 * i
        expiry, last3, status, groups, pad = DOC_PAYLOAD.unpack_from(raw, at)
        assert expiry == (0xFFFF if entry.expiry_day is None else entry.expiry_day)
        assert last3 == (0xFFFF if entry.tckn_last3 is None else int(entry.tckn_last3))
        assert (status, groups, pad) == (entry.status, entry.groups, 0)


def test_a_file_made_from_the_documentation_reads_back(tmp_path: Path) -> None:
    keys = [1, 2**63, 2**64 - 1]
    payloads = [
        payload(),
        payload(expiry=20_000, last3=7, status=1, groups=1),
        payload(expiry=0, last3=999, status=0, groups=3),
    ]
    path = craft(tmp_path / "doc.snap", keys, payloads, list_version=8, created_ms=5)
    with Snapshot.open(path, VERIFIER) as snap:
        assert (snap.list_version, snap.count, snap.created_ms) == (8, 3, 5)
        assert snap.lookup((1).to_bytes(8, "big")) == ListEntry(
            (1).to_bytes(8, "big"), HealthStatus.RISKLESS, None, None, Groups.NONE
        )
        assert snap.lookup(b"\x80" + b"\x00" * 7) == ListEntry(
            b"\x80" + b"\x00" * 7, HealthStatus.RISKY, 20_000, "007", Groups.AGE_65_PLUS
        )
        assert snap.lookup(b"\xff" * 8) == ListEntry(
            b"\xff" * 8, HealthStatus.RISKLESS, 0, "999", Groups.AGE_65_PLUS | Groups.UNDER_20
        )
        assert snap.lookup(b"\x00" * 8) is None
        assert snap.lookup(b"\x80" + b"\x00" * 6 + b"\x01") is None


# --- header tampering --------------------------------------------------------------------

HEADER_FIELDS = [
    ("magic", 0, SnapshotReason.BAD_MAGIC),
    ("magic-end", 7, SnapshotReason.BAD_MAGIC),
    ("format-version", 8, SnapshotReason.BAD_VERSION),
    ("format-version-high", 9, SnapshotReason.BAD_VERSION),
    ("record-size", 10, SnapshotReason.BAD_HEADER),
    ("reserved-u32", 12, SnapshotReason.BAD_HEADER),
    ("list-version", 16, SnapshotReason.BAD_SIGNATURE),
    ("count", 24, SnapshotReason.BAD_SIGNATURE),
    ("created", 32, SnapshotReason.BAD_SIGNATURE),
    ("body-sha256", 40, SnapshotReason.BAD_SIGNATURE),
    ("body-sha256-end", 71, SnapshotReason.BAD_SIGNATURE),
    ("key-id", 72, SnapshotReason.UNKNOWN_KEY_ID),
    ("key-id-padding", 72 + len("reader-test"), SnapshotReason.BAD_HEADER),
    ("reserved-tail", 136, SnapshotReason.BAD_HEADER),
    ("reserved-tail-end", 191, SnapshotReason.BAD_HEADER),
    ("signature", 192, SnapshotReason.BAD_SIGNATURE),
    ("signature-end", 255, SnapshotReason.BAD_SIGNATURE),
]


@pytest.mark.parametrize("verify_body", [True, False])
@pytest.mark.parametrize(
    ("at", "reason"),
    [(at, reason) for _, at, reason in HEADER_FIELDS],
    ids=[name for name, _, _ in HEADER_FIELDS],
)
def test_a_changed_header_byte_is_refused(
    written: Path, at: int, reason: SnapshotReason, verify_body: bool
) -> None:
    assert refusal(flipped(written, at), verify_body=verify_body) == reason


def test_every_single_byte_change_is_refused(written: Path) -> None:
    original = written.read_bytes()
    for at in range(len(original)):
        for mask in (0x01, 0x80):
            changed = bytearray(original)
            changed[at] ^= mask
            written.write_bytes(bytes(changed))
            with pytest.raises(SnapshotError):
                Snapshot.open(written, VERIFIER)


@pytest.mark.parametrize(
    "at", [256, 256 + 79, 256 + 80, 256 + 159], ids=["first-key", "last-key", "payload", "end"]
)
def test_a_changed_body_byte_fails_the_body_hash(written: Path, at: int) -> None:
    assert refusal(flipped(written, at)) == SnapshotReason.BAD_BODY_HASH


def test_a_signed_file_of_another_format_version_is_refused(tmp_path: Path) -> None:
    path = craft(tmp_path / "v2.snap", [1, 2], version=2)
    assert refusal(path) == SnapshotReason.BAD_VERSION


def test_a_signed_header_with_a_malformed_key_id_is_refused(tmp_path: Path) -> None:
    path = craft(tmp_path / "kid.snap", [1], key_id=b"bad key")
    assert refusal(path) == SnapshotReason.BAD_HEADER


# --- keys -----------------------------------------------------------------------------


def test_a_verifier_for_another_key_id_is_refused(written: Path) -> None:
    other = ListVerifier.from_pem(SIGNER.public_pem(), "reader-test-2")
    assert refusal(written, other) == SnapshotReason.UNKNOWN_KEY_ID
    assert refusal(written, other, verify_body=False) == SnapshotReason.UNKNOWN_KEY_ID


def test_another_public_key_under_the_same_id_is_refused(written: Path) -> None:
    impostor = ListSigner.generate("reader-test").verifier()
    assert refusal(written, impostor) == SnapshotReason.BAD_SIGNATURE
    assert refusal(written, impostor, verify_body=False) == SnapshotReason.BAD_SIGNATURE


def test_a_file_signed_by_another_key_is_refused(tmp_path: Path) -> None:
    impostor = ListSigner.generate("reader-test")
    path = tmp_path / "forged.snap"
    write_snapshot(path, sample(3), list_version=1, signer=impostor)
    assert refusal(path) == SnapshotReason.BAD_SIGNATURE


# --- size -------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0, 1, 7, 8, 9, 10, 100, 191, 255, 256, 257, 256 + 80, -16, -1])
def test_a_truncated_file_is_refused(written: Path, keep: int) -> None:
    data = written.read_bytes()
    written.write_bytes(data[:keep])
    assert refusal(written) == SnapshotReason.TRUNCATED
    assert refusal(written, verify_body=False) == SnapshotReason.TRUNCATED


@pytest.mark.parametrize("extra", [b"\x00", b"\x00" * 16])
def test_a_file_with_trailing_bytes_is_refused(written: Path, extra: bytes) -> None:
    written.write_bytes(written.read_bytes() + extra)
    assert refusal(written, verify_body=False) == SnapshotReason.SIZE_MISMATCH


def test_a_file_that_is_not_a_snapshot_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a risk list, but long enough to hold a header " * 10)
    assert refusal(path) == SnapshotReason.BAD_MAGIC


def test_a_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Snapshot.open(tmp_path / "absent.snap", VERIFIER)


# --- signed but malformed bodies (only a broken signer makes these) ---------------------


@pytest.mark.parametrize("chunk", [2, 3, 1 << 18])
@pytest.mark.parametrize(
    ("keys", "reason"),
    [
        ([1, 2, 3, 5, 4, 6], SnapshotReason.UNSORTED),
        ([1, 2, 3, 3, 4, 6], SnapshotReason.DUPLICATE_KEY),
        ([2, 1], SnapshotReason.UNSORTED),
        ([1, 2, 3, 4, 5, 5], SnapshotReason.DUPLICATE_KEY),
    ],
)
def test_keys_out_of_order_are_refused_across_scan_chunks(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    chunk: int,
    keys: list[int],
    reason: SnapshotReason,
) -> None:
    monkeypatch.setattr(reader, "_SCAN_CHUNK", chunk)
    assert refusal(craft(tmp_path / "bad.snap", keys)) == reason


@pytest.mark.parametrize(
    "record",
    [
        payload(status=2),
        payload(last3=1000),
        payload(last3=0xFFFE),
        DOC_PAYLOAD.pack(0xFFFF, 0xFFFF, 0, 0, 1),
    ],
    ids=["status", "last3", "last3-high", "reserved"],
)
def test_malformed_records_are_refused(tmp_path: Path, record: bytes) -> None:
    path = craft(tmp_path / "bad.snap", [1, 2, 3], [payload(), record, payload()])
    assert refusal(path) == SnapshotReason.BAD_RECORD


@pytest.mark.parametrize(
    "record", [payload(status=2), payload(last3=1000)], ids=["status", "last3"]
)
def test_a_malformed_record_is_never_answered_even_unverified(
    tmp_path: Path, record: bytes
) -> None:
    path = craft(tmp_path / "bad.snap", [1, 2, 3], [payload(), record, payload()])
    with Snapshot.open(path, VERIFIER, verify_body=False) as snap:
        assert snap.lookup((1).to_bytes(8, "big")) is not None
        with pytest.raises(SnapshotError) as caught:
            snap.lookup((2).to_bytes(8, "big"))
        assert caught.value.reason is SnapshotReason.BAD_RECORD
        with pytest.raises(SnapshotError):
            list(snap)


# --- the read API ---------------------------------------------------------------------


def test_a_looked_up_entry_is_an_ordinary_frozen_list_entry(written: Path) -> None:
    expected = sample(10)[4]
    with Snapshot.open(written, VERIFIER) as snap:
        found = snap.lookup(expected.key)
    assert type(found) is ListEntry
    assert found == expected
    assert hash(found) == hash(expected)
    assert repr(found) == repr(expected)
    assert {found: 1}[expected] == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.status = HealthStatus.RISKLESS  # type: ignore[misc]


def test_lookups_at_and_beyond_both_ends(tmp_path: Path) -> None:
    path = craft(tmp_path / "ends.snap", [10, 20, 30])
    with Snapshot.open(path, VERIFIER) as snap:
        found = [k for k in range(0, 40) if snap.lookup(k.to_bytes(8, "big")) is not None]
        assert found == [10, 20, 30]
        assert snap.lookup(b"\xff" * 8) is None


@pytest.mark.parametrize("key", [b"", b"\x00" * 7, b"\x00" * 9, bytearray(8), "01234567", 5])
def test_a_malformed_key_is_refused(written: Path, key: object) -> None:
    with Snapshot.open(written, VERIFIER) as snap, pytest.raises(InvalidKey):
        snap.lookup(key)  # type: ignore[arg-type]


def test_iteration_yields_every_entry_in_key_order(
    written: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "_SCAN_CHUNK", 3)
    with Snapshot.open(written, VERIFIER) as snap:
        assert list(snap) == sorted(sample(10), key=lambda e: e.key)
        assert len(snap) == 10


def test_find_many_marks_absent_keys(written: Path) -> None:
    keys = sorted(int.from_bytes(e.key, "big") for e in sample(10))
    wanted = np.array([keys[3], 0, keys[0], 2**64 - 1, keys[9]], dtype=np.uint64)
    with Snapshot.open(written, VERIFIER) as snap:
        assert snap.find_many(wanted).tolist() == [3, -1, 0, -1, 9]
        with pytest.raises(TypeError, match="uint64"):
            snap.find_many(np.array([1, 2], dtype=np.int64))


def test_find_many_on_an_empty_list(tmp_path: Path) -> None:
    path = craft(tmp_path / "empty.snap", [])
    with Snapshot.open(path, VERIFIER) as snap:
        assert snap.find_many(np.array([0, 5], dtype=np.uint64)).tolist() == [-1, -1]


def test_a_closed_snapshot_refuses_every_use(written: Path) -> None:
    snap = Snapshot.open(written, VERIFIER)
    key = sample(10)[0].key
    assert snap.lookup(key) is not None
    assert repr(snap).endswith(", open)")
    snap.close()
    snap.close()
    assert snap.closed
    with pytest.raises(SnapshotClosed):
        snap.lookup(key)
    with pytest.raises(SnapshotClosed):
        iter(snap)
    with pytest.raises(SnapshotClosed):
        snap.find_many(np.array([1], dtype=np.uint64))
    with pytest.raises(SnapshotClosed):
        snap.key_column()
    with pytest.raises(SnapshotClosed):
        snap.info()


def test_the_context_manager_closes(written: Path) -> None:
    with Snapshot.open(written, VERIFIER) as snap:
        pass
    assert snap.closed


def test_iteration_stops_when_the_snapshot_is_closed(
    written: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "_SCAN_CHUNK", 2)
    snap = Snapshot.open(written, VERIFIER)
    entries: Iterator[ListEntry] = iter(snap)
    next(entries)
    snap.close()
    with pytest.raises(SnapshotClosed):
        list(entries)


def test_a_column_view_outlives_close(written: Path) -> None:
    snap = Snapshot.open(written, VERIFIER)
    column = snap.key_column()
    expected = sorted(int.from_bytes(e.key, "big") for e in sample(10))
    snap.close()
    assert column.tolist() == expected
    assert not column.flags.writeable


def test_read_info_matches_what_the_writer_reported(tmp_path: Path) -> None:
    path = tmp_path / "risk.snap"
    info = write_snapshot(path, sample(25), list_version=3, signer=SIGNER)
    assert read_info(path, VERIFIER) == info


def test_repr_names_the_list(written: Path) -> None:
    with Snapshot.open(written, VERIFIER) as snap:
        assert "list_version=42" in repr(snap)
        assert repr(snap).endswith(", open)")
    assert repr(snap).endswith(", closed)")
