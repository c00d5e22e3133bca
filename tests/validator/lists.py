"""Building real signed lists and policies for validator tests."""

from __future__ import annotations

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
from protocol.snapshot import write_snapshot

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
