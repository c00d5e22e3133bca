"""The risk-list snapshot file: byte layout, header, record encoding and errors.

Layout (all integers little-endian; docs/protocol.md has the same table)::

    0    256            header (the first 192 bytes are signed, then the signature)
    256  8 * count      key column: sorted, strictly increasing uint64
    ...  8 * count      payload column: one 8-byte record per key, same order

A key column entry is the 8-byte credential key read as a big-endian
unsigned integer (:func:`protocol.credentials.key_to_int`) and stored as a
little-endian uint64, so the column is a native array on the hosts we run on
and ``numpy.searchsorted`` works on the mapped file without a copy. A payload
is ``expiry u16, last3 u16, status u8, groups u8, reserved u16 (zero)``.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final

import numpy as np

from protocol.credentials import KEY_SIZE
from protocol.listsign import MAX_KEY_ID_LENGTH, SIGNATURE_SIZE, InvalidKeyId, check_key_id
from protocol.risk import MAX_EXPIRY_DAY, Groups, HealthStatus, ListEntry

MAGIC: Final = b"HESGSNAP"
FORMAT_VERSION: Final = 1
HEADER_SIZE: Final = 256
#: The signature covers the header up to here; the signature itself follows.
SIGNED_SIZE: Final = HEADER_SIZE - SIGNATURE_SIZE
#: Bytes an entry takes on disk and in memory: an 8-byte key and an 8-byte payload.
RECORD_SIZE: Final = 16
#: ``expiry`` and ``last3`` value for "never expires" and "last 3 digits unknown".
NONE_U16: Final = 0xFFFF
#: Header integers (list version, creation time) stay in the signed 63-bit range the messages use.
MAX_U63: Final = 2**63 - 1

KEY_DTYPE: Final = np.dtype("<u8")
PAYLOAD_DTYPE: Final = np.dtype(
    [("expiry", "<u2"), ("last3", "<u2"), ("status", "u1"), ("groups", "u1"), ("reserved", "<u2")]
)

# magic, format version, record size, reserved u32, list version, count, created ms,
# body SHA-256, key id (NUL-padded), reserved to SIGNED_SIZE.
_HEADER = struct.Struct(f"<8sHHIQQQ32s{MAX_KEY_ID_LENGTH}s56x")
assert _HEADER.size == SIGNED_SIZE
_VERSION = struct.Struct("<H")
#: Header bytes after the key id, up to the signature: zero in format version 1.
_RESERVED = slice(136, SIGNED_SIZE)

_STATUS_CODE: Final[Mapping[object, int]] = MappingProxyType(
    {status: int(status) for status in HealthStatus}
)
#: Every flag combination a byte holds: flags added later still round-trip.
_GROUPS_CODE: Final[Mapping[object, int]] = MappingProxyType(
    {Groups(value): value for value in range(256)}
)
_LAST3_CODE: Final[Mapping[object, int]] = MappingProxyType(
    {f"{value:03d}": value for value in range(1000)}
)


class SnapshotReason(enum.StrEnum):
    """Why a snapshot file, or the writer's input, was refused."""

    BAD_MAGIC = "bad_magic"
    BAD_VERSION = "bad_version"
    BAD_HEADER = "bad_header"
    TRUNCATED = "truncated"
    SIZE_MISMATCH = "size_mismatch"
    UNKNOWN_KEY_ID = "unknown_key_id"
    BAD_SIGNATURE = "bad_signature"
    BAD_BODY_HASH = "bad_body_hash"
    UNSORTED = "unsorted"
    DUPLICATE_KEY = "duplicate_key"
    BAD_RECORD = "bad_record"
    BAD_ENTRY = "bad_entry"


class SnapshotError(ValueError):
    """A snapshot file that must not be used, or an entry that cannot be written."""

    def __init__(self, reason: SnapshotReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """What a written snapshot file is; ``sha256`` (hex of the whole file) serves as its ETag."""

    path: Path
    list_version: int
    count: int
    created_ms: int
    key_id: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Header:
    """The signed part of a snapshot header."""

    list_version: int
    count: int
    created_ms: int
    key_id: str
    body_sha256: bytes

    def signed_bytes(self) -> bytes:
        """The first :data:`SIGNED_SIZE` header bytes: what the signature covers."""
        return _HEADER.pack(
            MAGIC,
            FORMAT_VERSION,
            RECORD_SIZE,
            0,
            self.list_version,
            self.count,
            self.created_ms,
            self.body_sha256,
            self.key_id.encode("ascii"),
        )

    @property
    def file_size(self) -> int:
        """The exact size of the file this header describes."""
        return HEADER_SIZE + self.count * RECORD_SIZE


def parse_header(raw: bytes) -> tuple[Header, bytes]:
    """Read a header and its signature from the first bytes of a file.

    Checks magic, format version and the header's own consistency; the
    signature is returned unchecked.
    """
    if len(raw) < len(MAGIC):
        raise SnapshotError(SnapshotReason.TRUNCATED, f"{len(raw)} bytes: not even a magic number")
    if raw[: len(MAGIC)] != MAGIC:
        raise SnapshotError(SnapshotReason.BAD_MAGIC, f"magic {raw[: len(MAGIC)]!r}")
    if len(raw) < len(MAGIC) + _VERSION.size:
        raise SnapshotError(SnapshotReason.TRUNCATED, f"{len(raw)} bytes: no format version")
    (version,) = _VERSION.unpack_from(raw, len(MAGIC))
    if version != FORMAT_VERSION:
        raise SnapshotError(
            SnapshotReason.BAD_VERSION, f"format version {version}, expected {FORMAT_VERSION}"
        )
    if len(raw) < HEADER_SIZE:
        raise SnapshotError(
            SnapshotReason.TRUNCATED, f"{len(raw)} bytes, the header alone is {HEADER_SIZE}"
        )
    (_, _, record_size, reserved, list_version, count, created_ms, body_sha256, raw_key_id) = (
        _HEADER.unpack_from(raw)
    )
    if record_size != RECORD_SIZE or reserved != 0 or any(raw[_RESERVED]):
        raise SnapshotError(SnapshotReason.BAD_HEADER, "record size or reserved bytes wrong")
    if list_version > MAX_U63 or created_ms > MAX_U63:
        raise SnapshotError(SnapshotReason.BAD_HEADER, "list version or creation time too large")
    key_id_bytes = raw_key_id.rstrip(b"\x00")
    try:
        key_id = check_key_id(key_id_bytes.decode("ascii"))
    except (UnicodeDecodeError, InvalidKeyId) as err:
        raise SnapshotError(SnapshotReason.BAD_HEADER, f"key id {key_id_bytes!r}") from err
    header = Header(list_version, count, created_ms, key_id, body_sha256)
    return header, raw[SIGNED_SIZE:HEADER_SIZE]


def encode_entry(entry: ListEntry) -> tuple[int, int]:
    """An entry as its (key, payload) uint64 pair; :class:`SnapshotError` BAD_ENTRY if invalid.

    The payload integer, stored little-endian, gives the payload bytes.
    """
    # Fields are widened to object: entries come from other code and may not
    # match their annotations. Dict look-ups both validate and convert, at a
    # fraction of the cost of int() on an enum.
    key: object = entry.key
    if type(key) is not bytes or len(key) != KEY_SIZE:
        raise SnapshotError(SnapshotReason.BAD_ENTRY, f"key must be {KEY_SIZE} bytes: {key!r}")
    status: object = entry.status
    last3: object = entry.tckn_last3
    groups: object = entry.groups
    try:
        status_code = _STATUS_CODE.get(status)
        last3_code = NONE_U16 if last3 is None else _LAST3_CODE.get(last3)
        groups_code = _GROUPS_CODE.get(groups)
    except TypeError as err:  # an unhashable value is certainly not a valid one
        raise SnapshotError(SnapshotReason.BAD_ENTRY, f"{entry!r} is malformed") from err
    if status_code is None or type(status) is bool:
        raise SnapshotError(SnapshotReason.BAD_ENTRY, f"status {status!r} for key {key.hex()}")
    expiry: object = entry.expiry_day
    if expiry is None:
        expiry = NONE_U16
    elif type(expiry) is not int or not 0 <= expiry <= MAX_EXPIRY_DAY:
        raise SnapshotError(SnapshotReason.BAD_ENTRY, f"expiry day {expiry!r} for key {key.hex()}")
    if last3_code is None:
        raise SnapshotError(
            SnapshotReason.BAD_ENTRY, f"last 3 digits {last3!r} for key {key.hex()}"
        )
    if groups_code is None or type(groups) is bool:
        raise SnapshotError(SnapshotReason.BAD_ENTRY, f"groups {groups!r} for key {key.hex()}")
    payload = expiry | last3_code << 16 | status_code << 32 | groups_code << 40
    return int.from_bytes(key, "big"), payload
