"""Write a signed snapshot file from entries in any order, in bounded memory.

Entries are buffered up to ``run_size``; a full buffer is sorted and spilled
to an anonymous temporary file beside the target as one sorted run. On close
the runs are merged chunk by chunk (vectorised, at most 64 runs at a time,
never much more than ``run_size`` records in memory) into a temporary file
beside the target, which is hashed, signed, fsynced and renamed over the
target. The target is either the old file or the complete new one, never
anything in between.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import tempfile
import time
from array import array
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Final

import numpy as np
import structlog
from numpy.typing import NDArray

from protocol.listsign import ListSigner
from protocol.risk import ListEntry
from protocol.snapshot.format import (
    HEADER_SIZE,
    KEY_DTYPE,
    MAX_U63,
    RECORD_SIZE,
    Header,
    SnapshotError,
    SnapshotInfo,
    SnapshotReason,
    encode_entry,
)

#: Fewest records a run reader pulls from the spill file at once, unless runs are tiny.
_MIN_MERGE_CHUNK: Final = 1024
#: Most runs merged in one pass.
_MAX_FAN_IN: Final = 64

U64Array = NDArray[np.uint64]


class WriterClosed(ValueError):
    """The writer was already closed, or aborted after an error: start a new one."""


class SnapshotWriter:
    """Builds one snapshot file; a context manager that aborts on error.

    ``add`` refuses an invalid entry with :class:`SnapshotError` (BAD_ENTRY)
    and stays usable. A duplicate key (DUPLICATE_KEY, found when a run is
    sorted or when runs are merged) aborts the writer: nothing is written.
    """

    def __init__(
        self,
        path: Path,
        *,
        list_version: int,
        signer: ListSigner,
        created_ms: int | None = None,
        run_size: int = 1_000_000,
    ) -> None:
        if not 0 <= list_version <= MAX_U63:
            raise ValueError(f"list version {list_version} out of range")
        created = time.time_ns() // 1_000_000 if created_ms is None else created_ms
        if not 0 <= created <= MAX_U63:
            raise ValueError(f"creation time {created} out of range")
        if run_size < 1:
            raise ValueError(f"run size must be positive, got {run_size}")
        self._path = path
        self._list_version = list_version
        self._signer = signer
        self._created_ms = created
        self._run_size = run_size
        self._keys = array("Q")
        self._payloads = array("Q")
        self._spill: IO[bytes] | None = None
        self._spill_end = 0
        self._runs: list[tuple[int, int]] = []  # (byte offset in the spill file, records)
        self._count = 0
        self._open = True
        self._log = structlog.get_logger(__name__).bind(
            snapshot=str(path), list_version=list_version, key_id=signer.key_id
        )

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._open:
            return
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __len__(self) -> int:
        """Entries added so far."""
        return self._count

    def add(self, entry: ListEntry) -> None:
        """Add one entry (any order)."""
        if not self._open:
            raise WriterClosed("the snapshot writer is closed")
        key, payload = encode_entry(entry)
        self._keys.append(key)
        self._payloads.append(payload)
        self._count += 1
        if len(self._keys) >= self._run_size:
            try:
                self._spill_run()
            except BaseException:
                self.abort()
                raise

    def add_many(self, entries: Iterable[ListEntry]) -> None:
        """Add entries in any order."""
        if not self._open:
            raise WriterClosed("the snapshot writer is closed")
        # add() inlined: this loop carries whole lists of millions of entries.
        run_size = self._run_size
        keys, payloads = self._keys, self._payloads
        for entry in entries:
            key, payload = encode_entry(entry)
            keys.append(key)
            payloads.append(payload)
            self._count += 1
            if len(keys) >= run_size:
                try:
                    self._spill_run()
                except BaseException:
                    self.abort()
                    raise
                keys, payloads = self._keys, self._payloads

    def abort(self) -> None:
        """Give up: drop everything buffered and spilled; the target is left alone."""
        self._open = False
        self._keys = array("Q")
        self._payloads = array("Q")
        self._runs = []
        if self._spill is not None:
            self._spill.close()
            self._spill = None

    def close(self) -> SnapshotInfo:
        """Sort, merge, sign and atomically publish the file; what was written."""
        if not self._open:
            raise WriterClosed("the snapshot writer is closed")
        started = time.perf_counter()
        runs = max(1, len(self._runs) + (1 if self._runs and self._keys else 0))
        try:
            info = self._publish()
        finally:
            self.abort()
        self._log.info(
            "snapshot.written",
            count=info.count,
            size_bytes=info.size_bytes,
            sha256=info.sha256,
            runs=runs,
            seconds=round(time.perf_counter() - started, 3),
        )
        return info

    def _sorted_buffer(self) -> tuple[U64Array, U64Array]:
        """The buffered entries sorted by key (checked for duplicates); empties the buffer."""
        keys: U64Array = np.frombuffer(self._keys, dtype=np.uint64)
        payloads: U64Array = np.frombuffer(self._payloads, dtype=np.uint64)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order].astype(KEY_DTYPE, copy=False)
        sorted_payloads = payloads[order].astype(KEY_DTYPE, copy=False)
        del keys, payloads  # release the buffers' exports before replacing them
        self._keys = array("Q")
        self._payloads = array("Q")
        _check_increasing(sorted_keys, previous=None)
        return sorted_keys, sorted_payloads

    def _spill_run(self) -> None:
        """Sort the buffer and append it to the spill file as one run."""
        keys, payloads = self._sorted_buffer()
        if self._spill is None:
            # Lives across add() calls until close/abort, so no with-block.
            self._spill = tempfile.TemporaryFile(  # noqa: SIM115
                dir=self._path.parent, prefix=".snapshot-run."
            )
        fd = self._spill.fileno()
        offset = self._spill_end
        _pwrite_all(fd, keys, offset)
        _pwrite_all(fd, payloads, offset + keys.nbytes)
        self._spill_end = offset + keys.nbytes + payloads.nbytes
        self._runs.append((offset, len(keys)))

    def _publish(self) -> SnapshotInfo:
        path = self._path
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            count = self._count
            payload_at = HEADER_SIZE + count * KEY_DTYPE.itemsize
            if self._runs:
                if self._keys:
                    self._spill_run()
                self._merge_runs(fd, count)
            else:
                keys, payloads = self._sorted_buffer()
                _pwrite_all(fd, keys, HEADER_SIZE)
                _pwrite_all(fd, payloads, payload_at)
            header = Header(
                list_version=self._list_version,
                count=count,
                created_ms=self._created_ms,
                key_id=self._signer.key_id,
                body_sha256=_sha256_from(fd, HEADER_SIZE),
            )
            signed = header.signed_bytes()
            _pwrite_all(fd, signed + self._signer.sign(signed), 0)
            os.fsync(fd)
            sha256 = _sha256_from(fd, 0)
            size = _checked_size(fd, header.file_size)
            os.close(fd)
            fd = -1
            os.replace(tmp, path)
            _fsync_directory(path.parent)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        return SnapshotInfo(
            path=path,
            list_version=self._list_version,
            count=count,
            created_ms=self._created_ms,
            key_id=self._signer.key_id,
            size_bytes=size,
            sha256=sha256.hex(),
        )

    def _merge_runs(self, out_fd: int, count: int) -> None:
        """Merge the spilled runs into the key and payload columns of ``out_fd``.

        At most ``fan_in`` runs are merged at once, each read ``run_size //
        fan_in`` records at a time, so memory stays about ``run_size``
        records however many runs there are; more runs than that are first
        merged into longer runs appended to the spill file.
        """
        assert self._spill is not None
        spill_fd = self._spill.fileno()
        fan_in = max(2, min(_MAX_FAN_IN, self._run_size // _MIN_MERGE_CHUNK))
        chunk = max(1, self._run_size // fan_in)
        runs = self._runs
        while len(runs) > fan_in:
            merged: list[tuple[int, int]] = []
            for first in range(0, len(runs), fan_in):
                group = runs[first : first + fan_in]
                if len(group) == 1:
                    merged.append(group[0])
                    continue
                n = sum(records for _, records in group)
                offset = self._spill_end
                _merge([_RunReader(spill_fd, *run, chunk) for run in group], spill_fd, offset, n)
                self._spill_end = offset + n * RECORD_SIZE
                merged.append((offset, n))
            runs = merged
        _merge([_RunReader(spill_fd, *run, chunk) for run in runs], out_fd, HEADER_SIZE, count)


def _merge(readers: list[_RunReader], out_fd: int, at: int, count: int) -> None:
    """Merge sorted runs into a key column at ``at`` and a payload column right after it.

    Each round takes, from every run's buffered chunk, the keys up to the
    smallest last key among runs that still have records on disk: every key
    up to that bound is then in memory, so the round's records can be sorted
    and written out, and later rounds only hold larger keys.
    """
    payloads_at = at + count * KEY_DTYPE.itemsize
    written = 0
    previous: int | None = None
    while True:
        for reader in readers:
            reader.fill()
        live = [reader for reader in readers if reader.keys.size]
        if not live:
            break
        pending = [int(reader.keys[-1]) for reader in live if reader.on_disk]
        bound = min(pending) if pending else None
        taken = [reader.take(bound) for reader in live]
        keys = np.concatenate([k for k, _ in taken])
        payloads = np.concatenate([p for _, p in taken])
        if len(taken) > 1:
            order = np.argsort(keys, kind="stable")
            keys = keys[order]
            payloads = payloads[order]
        _check_increasing(keys, previous)
        _pwrite_all(out_fd, keys, at + written * KEY_DTYPE.itemsize)
        _pwrite_all(out_fd, payloads, payloads_at + written * KEY_DTYPE.itemsize)
        written += len(keys)
        previous = int(keys[-1])
    if written != count:
        raise RuntimeError(f"merged {written} records of {count}")


class _RunReader:
    """One sorted run in the spill file, read a chunk at a time."""

    __slots__ = ("_chunk", "_count", "_fd", "_keys_at", "_next", "_payloads_at", "keys", "payloads")

    def __init__(self, fd: int, offset: int, count: int, chunk: int) -> None:
        self._fd = fd
        self._keys_at = offset
        self._payloads_at = offset + count * KEY_DTYPE.itemsize
        self._count = count
        self._chunk = chunk
        self._next = 0
        self.keys: U64Array = np.empty(0, dtype=KEY_DTYPE)
        self.payloads: U64Array = np.empty(0, dtype=KEY_DTYPE)

    @property
    def on_disk(self) -> bool:
        """Whether records remain that are not yet buffered."""
        return self._next < self._count

    def fill(self) -> None:
        """Buffer the next chunk once the current one is used up."""
        if self.keys.size or not self.on_disk:
            return
        n = min(self._chunk, self._count - self._next)
        size = n * KEY_DTYPE.itemsize
        at = self._next * KEY_DTYPE.itemsize
        self.keys = np.frombuffer(_pread_exact(self._fd, size, self._keys_at + at), KEY_DTYPE)
        self.payloads = np.frombuffer(
            _pread_exact(self._fd, size, self._payloads_at + at), KEY_DTYPE
        )
        self._next += n

    def take(self, bound: int | None) -> tuple[U64Array, U64Array]:
        """Remove and return the buffered records with keys up to ``bound`` (all if None)."""
        if bound is None:
            n = self.keys.size
        else:
            n = int(np.searchsorted(self.keys, np.uint64(bound), side="right"))
        keys, self.keys = self.keys[:n], self.keys[n:]
        payloads, self.payloads = self.payloads[:n], self.payloads[n:]
        return keys, payloads


def write_snapshot(
    path: Path,
    entries: Iterable[ListEntry],
    *,
    list_version: int,
    signer: ListSigner,
    created_ms: int | None = None,
) -> SnapshotInfo:
    """Write ``entries`` (any order, no duplicate keys) as a signed snapshot at ``path``."""
    with SnapshotWriter(
        path, list_version=list_version, signer=signer, created_ms=created_ms
    ) as writer:
        writer.add_many(entries)
        return writer.close()


def _check_increasing(keys: U64Array, previous: int | None) -> None:
    """Refuse sorted ``keys`` that repeat a key, or do not start after ``previous``."""
    if keys.size == 0:
        return
    if previous is not None and int(keys[0]) <= previous:
        raise SnapshotError(SnapshotReason.DUPLICATE_KEY, f"key {int(keys[0]):016x} repeated")
    repeats = np.flatnonzero(keys[1:] == keys[:-1])
    if repeats.size:
        raise SnapshotError(
            SnapshotReason.DUPLICATE_KEY, f"key {int(keys[repeats[0]]):016x} repeated"
        )


def _checked_size(fd: int, expected: int) -> int:
    size = os.fstat(fd).st_size
    if size != expected:
        raise RuntimeError(f"wrote {size} bytes, expected {expected}")
    return size


def _pwrite_all(fd: int, data: U64Array | bytes, offset: int) -> None:
    view = memoryview(data if isinstance(data, bytes) else np.ascontiguousarray(data).data)
    view = view.cast("B")
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _pread_exact(fd: int, size: int, offset: int) -> bytes:
    data = os.pread(fd, size, offset)
    while len(data) < size:
        more = os.pread(fd, size - len(data), offset + len(data))
        if not more:
            raise OSError(f"spill file ended at {offset + len(data)}, expected {offset + size}")
        data += more
    return data


def _sha256_from(fd: int, start: int) -> bytes:
    """SHA-256 of the file's bytes from ``start`` to its end (mapped, not read)."""
    if os.fstat(fd).st_size <= start:
        return hashlib.sha256(b"").digest()
    with (
        mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped,
        memoryview(mapped) as whole,
        whole[start:] as part,
    ):
        return hashlib.sha256(part).digest()


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
