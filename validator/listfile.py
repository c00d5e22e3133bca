"""What the kept snapshot file is, to tell whether it is still the file verified at install.

A snapshot is verified whole (signature, body hash, key order, records) when
it is installed. Hashing 160 MB again at every start costs more than the
start is allowed, so the risk list records the file's :class:`FileIdentity`
when it has verified the file, and a later start that finds the same
identity opens it with the header checked only (docs/validator.md, "The kept
list at start", has the threat model).

The identity is what the file system changes whenever the file's bytes can
have changed: the size, the modification time, the inode (a file put in its
place) and the inode change time, which the kernel sets to *now* on every
write, rename, ``chmod`` and ``utime`` and which no unprivileged program can
set back. With it goes the body hash from the file's signed header, which
ties the record to that very list.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from protocol.snapshot import HEADER_SIZE
from protocol.snapshot.format import parse_header


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """The file-system facts of a snapshot file and the body hash its header names."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    body_sha256: bytes


def file_identity(path: Path) -> FileIdentity:
    """Stat the file and read its header's body hash (the header's signature is not checked).

    Raises :class:`protocol.snapshot.SnapshotError` for a file without a
    readable header and ``OSError`` for one that cannot be read.
    """
    with path.open("rb") as file:
        stat = os.fstat(file.fileno())
        head = file.read(HEADER_SIZE)
    header, _signature = parse_header(head)
    return FileIdentity(
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        ctime_ns=stat.st_ctime_ns,
        inode=stat.st_ino,
        body_sha256=header.body_sha256,
    )
