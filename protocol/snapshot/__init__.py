"""The risk-list snapshot file: a signed, sorted, memory-mappable list of 16-byte records.

:mod:`protocol.snapshot.format` holds the byte layout, :mod:`~protocol.snapshot.writer`
builds files in bounded memory and :mod:`~protocol.snapshot.reader` opens and
searches them. docs/protocol.md describes the format for other implementations.
"""

from protocol.snapshot.format import (
    FORMAT_VERSION,
    HEADER_SIZE,
    KEY_DTYPE,
    MAGIC,
    PAYLOAD_DTYPE,
    RECORD_SIZE,
    SnapshotError,
    SnapshotInfo,
    SnapshotReason,
)
from protocol.snapshot.reader import InvalidKey, Snapshot, SnapshotClosed, read_info
from protocol.snapshot.writer import SnapshotWriter, WriterClosed, write_snapshot

__all__ = [
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "KEY_DTYPE",
    "MAGIC",
    "PAYLOAD_DTYPE",
    "RECORD_SIZE",
    "InvalidKey",
    "Snapshot",
    "SnapshotClosed",
    "SnapshotError",
    "SnapshotInfo",
    "SnapshotReason",
    "SnapshotWriter",
    "WriterClosed",
    "read_info",
    "write_snapshot",
]
