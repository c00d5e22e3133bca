"""Open a snapshot file memory-mapped, check it, and look keys up without loading it.

:meth:`Snapshot.open` always checks the magic, format version, key id,
header signature and file size. With ``verify_body=True`` (the default) it
also hashes the body against the signed SHA-256 and checks that keys are
strictly increasing and records well-formed: do that whenever a file
arrives. A file that passed that check and has not left the validator's own
disk since may be reopened with ``verify_body=False``, which touches only the
header and so opens a 10-million-entry list in milliseconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import mmap
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Final

import numpy as np
import structlog
from numpy.typing import NDArray

from protocol.credentials import KEY_SIZE
from protocol.listsign import ListVerifier, SignatureInvalid, UnknownKeyId
from protocol.risk import Groups, HealthStatus, ListEntry
from protocol.snapshot.format import (
    HEADER_SIZE,
    KEY_DTYPE,
    NONE_U16,
    PAYLOAD_DTYPE,
    SIGNED_SIZE,
    Header,
    SnapshotError,
    SnapshotInfo,
    SnapshotReason,
    parse_header,
)

#: Records checked or decoded per step when scanning the whole body.
_SCAN_CHUNK: Final = 1 << 18

# Lookup tables: indexing a tuple is cheaper than calling an enum per lookup.
_STATUS_OF: Final = tuple(HealthStatus)
_GROUPS_OF: Final = tuple(Groups(value) for value in range(256))
_LAST3_OF: Final = tuple(f"{value:03d}" for value in range(1000))
_KEY_AT: Final = struct.Struct("<Q").unpack_from
_PAYLOAD_AT: Final = struct.Struct("<HHBB").unpack_from

EntryMaker = Callable[[bytes, HealthStatus, "int | None", "str | None", Groups], ListEntry]


def _entry_maker() -> EntryMaker:
    """A faster ``ListEntry(...)`` for the lookup path.

    A frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__``, which costs more than the whole binary search.
    ListEntry has slots, so its fields can be set straight through their
    slot descriptors instead. Should ListEntry ever gain other fields, lose
    its slots or validate in ``__post_init__``, the plain constructor is used.
    """
    names = tuple(field.name for field in dataclasses.fields(ListEntry))
    if (
        names != ("key", "status", "expiry_day", "tckn_last3", "groups")
        or "__slots__" not in ListEntry.__dict__
        or hasattr(ListEntry, "__post_init__")
    ):
        return ListEntry
    new = object.__new__
    set_key, set_status, set_expiry, set_last3, set_groups = (
        ListEntry.__dict__[name].__set__ for name in names
    )

    def make(
        key: bytes, status: HealthStatus, expiry: int | None, last3: str | None, groups: Groups
    ) -> ListEntry:
        entry = new(ListEntry)
        set_key(entry, key)
        set_status(entry, status)
        set_expiry(entry, expiry)
        set_last3(entry, last3)
        set_groups(entry, groups)
        return entry

    return make


_make_entry: Final = _entry_maker()

_log = structlog.get_logger(__name__)


class SnapshotClosed(ValueError):
    """The snapshot was used after :meth:`Snapshot.close`."""


class InvalidKey(ValueError):
    """A lookup key must be 8 bytes."""


class Snapshot:
    """A verified, memory-mapped risk-list snapshot; a context manager.

    Lookups read the mapped file: the list costs its 16 bytes an entry in the
    page cache and nothing on the Python heap.
    """

    __slots__ = (
        "_keys",
        "_mm",
        "_payload_at",
        "_payloads",
        "count",
        "created_ms",
        "key_id",
        "list_version",
        "path",
    )

    path: Path
    list_version: int
    count: int
    created_ms: int
    key_id: str

    def __init__(self, path: Path, mapped: mmap.mmap, header: Header) -> None:
        self.path = path
        self.list_version = header.list_version
        self.count = header.count
        self.created_ms = header.created_ms
        self.key_id = header.key_id
        self._mm: mmap.mmap | None = mapped
        self._payload_at = HEADER_SIZE + header.count * KEY_DTYPE.itemsize
        # Views of the mapping, never copies: the key column is a native uint64 array.
        self._keys: NDArray[np.uint64] = np.frombuffer(
            mapped, dtype=KEY_DTYPE, count=header.count, offset=HEADER_SIZE
        )
        self._payloads: NDArray[np.void] = np.frombuffer(
            mapped, dtype=PAYLOAD_DTYPE, count=header.count, offset=self._payload_at
        )

    @classmethod
    def open(cls, path: Path, verifier: ListVerifier, *, verify_body: bool = True) -> Snapshot:
        """Map and check the snapshot at ``path``.

        Raises :class:`SnapshotError` for a file that must not be used, and
        ``OSError`` when it cannot be read at all.
        """
        with path.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size == 0:
                raise SnapshotError(SnapshotReason.TRUNCATED, "empty file")
            mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            header = _check_header(mapped, verifier)
            snapshot = cls(path, mapped, header)
        except BaseException:
            mapped.close()
            raise
        if verify_body:
            try:
                snapshot._verify_body(header)
            except BaseException:
                snapshot.close()
                raise
        _log.debug(
            "snapshot.opened",
            snapshot=str(path),
            list_version=header.list_version,
            count=header.count,
            key_id=header.key_id,
            verified_body=verify_body,
        )
        return snapshot

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __len__(self) -> int:
        """The number of entries."""
        return self.count

    def __repr__(self) -> str:
        state = "closed" if self._mm is None else "open"
        return (
            f"Snapshot({str(self.path)!r}, list_version={self.list_version}, "
            f"count={self.count}, key_id={self.key_id!r}, {state})"
        )

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._mm is None

    def lookup(self, key: bytes) -> ListEntry | None:
        """The entry for the 8-byte ``key``, or ``None`` if the list does not hold it."""
        mapped = self._mm
        if mapped is None:
            raise SnapshotClosed("the snapshot is closed")
        if not isinstance(key, bytes) or len(key) != KEY_SIZE:
            raise InvalidKey(f"a key is {KEY_SIZE} bytes, got {key!r}")
        wanted = int.from_bytes(key, "big")
        # np.uint64, never a Python int: mixing those would turn the search into float64 work.
        index = int(self._keys.searchsorted(np.uint64(wanted)))
        if index >= self.count or _KEY_AT(mapped, HEADER_SIZE + 8 * index)[0] != wanted:
            return None
        expiry, last3, status, groups = _PAYLOAD_AT(mapped, self._payload_at + 8 * index)
        try:
            return _make_entry(
                key,
                _STATUS_OF[status],
                None if expiry == NONE_U16 else expiry,
                None if last3 == NONE_U16 else _LAST3_OF[last3],
                _GROUPS_OF[groups],
            )
        except IndexError as err:
            raise SnapshotError(
                SnapshotReason.BAD_RECORD, f"record {index} (key {key.hex()}) malformed"
            ) from err

    def find_many(self, keys: NDArray[np.uint64]) -> NDArray[np.intp]:
        """Vectorised lookup: each key's record index, or -1 where absent.

        ``keys`` are the integer forms of credential keys
        (:func:`protocol.credentials.key_to_int`) as a uint64 array.
        """
        if self._mm is None:
            raise SnapshotClosed("the snapshot is closed")
        wanted = np.asarray(keys)
        if wanted.dtype != np.uint64:
            raise TypeError(f"keys must be a uint64 array, got {wanted.dtype}")
        if self.count == 0:
            return np.full(wanted.shape, -1, dtype=np.intp)
        index = np.searchsorted(self._keys, wanted)
        found = self._keys[np.minimum(index, self.count - 1)] == wanted
        result: NDArray[np.intp] = np.where(found, index, -1).astype(np.intp, copy=False)
        return result

    def key_column(self) -> NDArray[np.uint64]:
        """The sorted keys as a read-only uint64 view of the mapped file (no copy).

        The view keeps the mapping alive after :meth:`close` until it is dropped.
        """
        if self._mm is None:
            raise SnapshotClosed("the snapshot is closed")
        return self._keys

    def payload_column(self) -> NDArray[np.void]:
        """The records' payloads (:data:`PAYLOAD_DTYPE`) as a read-only view, in key order."""
        if self._mm is None:
            raise SnapshotClosed("the snapshot is closed")
        return self._payloads

    def __iter__(self) -> Iterator[ListEntry]:
        """Every entry in key order, decoded a chunk at a time."""
        if self._mm is None:
            raise SnapshotClosed("the snapshot is closed")
        return self._entries()

    def _entries(self) -> Iterator[ListEntry]:
        for start in range(0, self.count, _SCAN_CHUNK):
            yield from self._decode(start, min(start + _SCAN_CHUNK, self.count))

    def _decode(self, start: int, stop: int) -> list[ListEntry]:
        if self._mm is None:
            raise SnapshotClosed("the snapshot is closed")
        keys = self._keys[start:stop].tolist()
        payloads = self._payloads[start:stop]
        columns = zip(
            keys,
            payloads["status"].tolist(),
            payloads["expiry"].tolist(),
            payloads["last3"].tolist(),
            payloads["groups"].tolist(),
            strict=True,
        )
        del payloads
        try:
            return [
                _make_entry(
                    key.to_bytes(KEY_SIZE, "big"),
                    _STATUS_OF[status],
                    None if expiry == NONE_U16 else expiry,
                    None if last3 == NONE_U16 else _LAST3_OF[last3],
                    _GROUPS_OF[groups],
                )
                for key, status, expiry, last3, groups in columns
            ]
        except IndexError as err:
            raise SnapshotError(
                SnapshotReason.BAD_RECORD, f"a record in {start}..{stop} is malformed"
            ) from err

    def info(self) -> SnapshotInfo:
        """The file's description, with the SHA-256 of the whole file (reads it all)."""
        mapped = self._mm
        if mapped is None:
            raise SnapshotClosed("the snapshot is closed")
        with memoryview(mapped) as whole:
            digest = hashlib.sha256(whole).hexdigest()
        return SnapshotInfo(
            path=self.path,
            list_version=self.list_version,
            count=self.count,
            created_ms=self.created_ms,
            key_id=self.key_id,
            size_bytes=len(mapped),
            sha256=digest,
        )

    def close(self) -> None:
        """Unmap the file. Lookups afterwards raise :class:`SnapshotClosed`."""
        mapped = self._mm
        if mapped is None:
            return
        self._mm = None
        self._keys = np.empty(0, dtype=KEY_DTYPE)
        self._payloads = np.empty(0, dtype=PAYLOAD_DTYPE)
        try:
            mapped.close()
        except BufferError:
            # A view from key_column()/payload_column() is still alive; the
            # mapping goes when the last view does.
            _log.debug("snapshot.close_deferred", snapshot=str(self.path))

    def _verify_body(self, header: Header) -> None:
        """Check the body hash, key order and record values against the signed header."""
        mapped = self._mm
        assert mapped is not None
        with memoryview(mapped) as whole, whole[HEADER_SIZE:] as body:
            digest = hashlib.sha256(body).digest()
        if digest != header.body_sha256:
            raise SnapshotError(SnapshotReason.BAD_BODY_HASH, "body does not match the header")
        keys = self._keys
        for start in range(0, self.count, _SCAN_CHUNK):
            stop = min(start + _SCAN_CHUNK, self.count)
            part = keys[start : stop + 1]  # one past: the step into the next chunk counts too
            steps = part[1:] <= part[:-1]
            if steps.any():
                at = start + int(np.argmax(steps))
                reason = (
                    SnapshotReason.DUPLICATE_KEY
                    if keys[at] == keys[at + 1]
                    else SnapshotReason.UNSORTED
                )
                raise SnapshotError(reason, f"keys at {at} and {at + 1} out of order")
            payloads = self._payloads[start:stop]
            bad = (
                (payloads["status"] > max(_STATUS_OF))
                | ((payloads["last3"] > 999) & (payloads["last3"] != NONE_U16))
                | (payloads["reserved"] != 0)
            )
            if bad.any():
                at = start + int(np.argmax(bad))
                raise SnapshotError(SnapshotReason.BAD_RECORD, f"record {at} malformed")


def _check_header(mapped: mmap.mmap, verifier: ListVerifier) -> Header:
    """Parse the header, verify its signature, and check the file is exactly as long as it says."""
    header, signature = parse_header(mapped[:HEADER_SIZE])
    try:
        verifier.verify(mapped[:SIGNED_SIZE], signature, header.key_id)
    except UnknownKeyId as err:
        raise SnapshotError(SnapshotReason.UNKNOWN_KEY_ID, str(err)) from err
    except SignatureInvalid as err:
        raise SnapshotError(SnapshotReason.BAD_SIGNATURE, str(err)) from err
    size = len(mapped)
    if size < header.file_size:
        raise SnapshotError(
            SnapshotReason.TRUNCATED,
            f"{size} bytes, {header.count} entries need {header.file_size}",
        )
    if size > header.file_size:
        raise SnapshotError(
            SnapshotReason.SIZE_MISMATCH,
            f"{size} bytes, {header.count} entries need {header.file_size}",
        )
    return header


def read_info(path: Path, verifier: ListVerifier) -> SnapshotInfo:
    """Fully verify the snapshot at ``path`` and describe it (as the writer's ``close`` did)."""
    with Snapshot.open(path, verifier, verify_body=True) as snapshot:
        return snapshot.info()
