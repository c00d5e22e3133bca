"""Building real signed lists and policies for validator tests."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from protocol.codec import encode
from protocol.credentials import CredentialKind, credential_key
from protocol.listsign import ListSigner, seal
from protocol.messages import (
    PROTOCOL_VERSION,
    Behaviour,
    DeltaPage,
    GroupRule,
    ListChange,
    Policy,
    Signed,
)
from protocol.risk import Groups, HealthStatus, ListEntry
from protocol.snapshot import HEADER_SIZE, write_snapshot
from validator.listfile import file_identity
from validator.risklist import OVERLAY_NAME, SNAPSHOT_NAME

LIST_KEY = bytes(range(32))
SECRET = bytes(range(100, 132))


def hes_key(code: str) -> bytes:
    return credential_key(LIST_KEY, CredentialKind.HES_CODE, code)


def card_key(uid: str) -> bytes:
    return credential_key(LIST_KEY, CredentialKind.CARD, uid)


def entry(
    key: bytes,
    status: HealthStatus = HealthStatus.RISKLESS,
    *,
    expiry_day: int | None = None,
    last3: str | None = None,
    groups: Groups = Groups.NONE,
) -> ListEntry:
    return ListEntry(key, status, expiry_day, last3, groups)


def change(version: int, e: ListEntry, *, removed: bool = False) -> ListChange:
    return ListChange(
        version=version,
        key=e.key,
        removed=removed,
        status=e.status,
        expiry_day=e.expiry_day,
        tckn_last3=e.tckn_last3,
        groups=e.groups,
    )


def snapshot_file(
    path: Path,
    entries: list[ListEntry],
    signer: ListSigner,
    *,
    version: int,
    created_ms: int | None = None,
) -> Path:
    write_snapshot(
        path,
        entries,
        list_version=version,
        signer=signer,
        created_ms=int(time.time() * 1000) if created_ms is None else created_ms,
    )
    return path


def delta_page(
    since: int, until: int, changes: list[ListChange], *, more: bool = False
) -> DeltaPage:
    return DeltaPage(v=PROTOCOL_VERSION, since=since, until=until, changes=changes, more=more)


def sealed_policy(
    signer: ListSigner,
    *,
    version: int = 1,
    rules: list[GroupRule] | None = None,
    offline: Behaviour = Behaviour.DENY,
    stale: Behaviour = Behaviour.DENY,
    max_age_s: int = 3600,
    timezone: str = "Europe/Istanbul",
) -> Signed:
    policy = Policy(
        v=PROTOCOL_VERSION,
        version=version,
        issued_ms=int(time.time() * 1000),
        timezone=timezone,
        rules=rules or [],
        offline_unknown=offline,
        stale_list=stale,
        max_list_age_s=max_age_s,
    )
    return seal(signer, encode(policy))


def status_offset(keys: list[bytes], key: bytes) -> int:
    """Where ``key``'s status byte lies in a snapshot of ``keys`` (records sorted by key)."""
    index = sorted(keys).index(key)
    return HEADER_SIZE + 8 * len(keys) + 8 * index + 4


def rewrite_byte(path: Path, offset: int, value: int, *, keep_times: bool) -> None:
    """Change one byte in place (same inode, same size), optionally putting the times back."""
    before = path.stat()
    # Some file systems' clocks tick only every few ms: let one pass since the
    # file was written, as it would between two runs of a bus.
    time.sleep(0.02)
    with path.open("r+b") as file:
        file.seek(offset)
        file.write(bytes([value]))
    if keep_times:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size) == (before.st_ino, before.st_size)
    if keep_times:
        assert after.st_mtime_ns == before.st_mtime_ns
    # What gives the change away: no program without root can set the change time.
    assert after.st_ctime_ns != before.st_ctime_ns


def pretend_identity_unchanged(data: Path) -> None:
    """Record the file's present identity as the verified one, as if a medium flipped bits
    under the file system without it noticing (nothing a program can do without root)."""
    identity = file_identity(data / SNAPSHOT_NAME)
    db = sqlite3.connect(data / OVERLAY_NAME)
    with db:
        db.execute(
            "UPDATE snapshot_file SET size = ?, mtime_ns = ?, ctime_ns = ?, inode = ?,"
            " body_sha256 = ?",
            (
                identity.size,
                identity.mtime_ns,
                identity.ctime_ns,
                identity.inode,
                identity.body_sha256,
            ),
        )
    db.close()
