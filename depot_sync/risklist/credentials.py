"""Writing what the depot knows of credentials: registrations and the Ministry's answers.

Every write to ``credentials`` goes through a transaction that takes the list
lock first (:func:`lock_list`): the trigger that records list changes takes
it too, and taking it up front keeps writers from deadlocking on each other's
rows. Updates are written only when something changed, so a refresh that
learns nothing new writes no list change.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import structlog

from depot_sync.crypto import DecryptionError, FieldCipher, credential_context
from depot_sync.db import Conn, Queryable
from protocol.credentials import CredentialKind, credential_key
from protocol.ministry import HesResult
from protocol.risk import Groups, HealthStatus, ListEntry, expiry_day_of

log = structlog.get_logger("hesgate.depot.credentials")

#: The transaction-scoped advisory lock ordering risk-list writers (see sql/001_initial.sql).
LIST_LOCK: Final = 4851001
#: Ages at or above this are in the 65+ group; below UNDER_20_AGE in the under-20 group.
AGE_65: Final = 65
UNDER_20_AGE: Final = 20


class MinistryState(enum.StrEnum):
    """What the Ministry last said of a HES code."""

    UNCHECKED = "unchecked"
    FOUND = "found"
    NOT_FOUND = "not_found"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class MinistryFacts:
    """The Ministry's answer about one code, as stored."""

    state: MinistryState
    status: HealthStatus | None = None
    expires_at: dt.datetime | None = None
    tckn_last3: str | None = None

    @property
    def expiry_day(self) -> int | None:
        """The Istanbul day the code is valid through."""
        return None if self.expires_at is None else expiry_day_of(self.expires_at)


NOT_FOUND: Final = MinistryFacts(MinistryState.NOT_FOUND)
EXPIRED: Final = MinistryFacts(MinistryState.EXPIRED)


def facts_of(result: HesResult) -> MinistryFacts:
    """The stored form of a Ministry result."""
    return MinistryFacts(MinistryState.FOUND, result.status, result.expires_at, result.tckn_last3)


def hes_key(list_key: bytes, code: str) -> bytes:
    """The risk-list key of a normalised HES code."""
    return credential_key(list_key, CredentialKind.HES_CODE, code)


def card_key(list_key: bytes, uid: str) -> bytes:
    """The risk-list key of a normalised (upper-case hex) card UID."""
    return credential_key(list_key, CredentialKind.CARD, uid)


def stored_code(cipher: FieldCipher, key: bytes, sealed: bytes) -> str | None:
    """The HES code sealed in the credential row of ``key``; ``None`` if it does not decrypt.

    A row that does not open was sealed under a field key the depot no longer
    has (rotated without keeping it in ``keys.previous_field_keys``), or was
    damaged. It is logged at error level by its key (never anything of the
    code) and the caller leaves that credential out: the depot cannot ask the
    Ministry about a code it cannot read.
    """
    try:
        return cipher.open_text(sealed, context=credential_context(key))
    except DecryptionError:
        log.error("stored HES code does not decrypt: wrong field key?", key=key.hex())  # noqa: TRY400
        return None


def groups_for_birth_year(birth_year: int, year: int) -> Groups:
    """The age groups of someone born in ``birth_year``, in ``year`` (by year of birth)."""
    age = year - birth_year
    if age >= AGE_65:
        return Groups.AGE_65_PLUS
    if age < UNDER_20_AGE:
        return Groups.UNDER_20
    return Groups.NONE


async def lock_list(conn: Conn) -> None:
    """Take the list lock for the rest of the transaction (call it first)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", LIST_LOCK)


_RECORD_FACTS: Final = """
UPDATE credentials c
   SET ministry_state = u.state, status = u.status, expires_at = u.expires_at,
       expiry_day = u.expiry_day, tckn_last3 = u.last3, last_checked_at = $6
  FROM unnest($1::bytea[], $2::text[], $3::smallint[], $4::timestamptz[], $5::text[],
              $7::int[]) AS u(key, state, status, expires_at, last3, expiry_day)
 WHERE c.key = u.key AND c.kind = 1
"""


async def record_facts(
    conn: Conn, facts: Sequence[tuple[bytes, MinistryFacts]], checked_at: dt.datetime
) -> int:
    """Store the Ministry's answers for known HES codes; returns how many changed.

    Codes whose answer is what the depot already had only get ``last_checked_at``.
    """
    if not facts:
        return 0
    keys = [key for key, _ in facts]
    async with conn.transaction():
        await lock_list(conn)
        current = {
            r["key"]: MinistryFacts(
                MinistryState(r["ministry_state"]),
                None if r["status"] is None else HealthStatus(r["status"]),
                r["expires_at"],
                r["tckn_last3"],
            )
            for r in await conn.fetch(
                "SELECT key, ministry_state, status, expires_at, tckn_last3 FROM credentials "
                "WHERE key = ANY($1::bytea[]) AND kind = 1 ORDER BY key FOR UPDATE",
                keys,
            )
        }
        changed = [(k, f) for k, f in facts if k in current and current[k] != f]
        same = [k for k, f in facts if k in current and current[k] == f]
        if same:
            await conn.execute(
                "UPDATE credentials SET last_checked_at = $2 WHERE key = ANY($1::bytea[])",
                same,
                checked_at,
            )
        if changed:
            await conn.execute(
                _RECORD_FACTS,
                [k for k, _ in changed],
                [f.state.value for _, f in changed],
                [f.status for _, f in changed],
                [f.expires_at for _, f in changed],
                [f.tckn_last3 for _, f in changed],
                checked_at,
                [f.expiry_day for _, f in changed],
            )
    return len(changed)


async def record_checked_code(
    conn: Conn,
    *,
    key: bytes,
    sealed_code: bytes,
    facts: MinistryFacts,
    checked_at: dt.datetime,
) -> None:
    """Store the answer of an online check, adding the code if the depot did not know it."""
    async with conn.transaction():
        await lock_list(conn)
        inserted = await conn.fetchval(
            "INSERT INTO credentials (key, kind, value_enc, ministry_state, status, expires_at, "
            "expiry_day, tckn_last3, source, last_checked_at) "
            "VALUES ($1, 1, $2, $3, $4, $5, $6, $7, 'online_check', $8) "
            "ON CONFLICT (key) DO NOTHING RETURNING true",
            key,
            sealed_code,
            facts.state.value,
            facts.status,
            facts.expires_at,
            facts.expiry_day,
            facts.tckn_last3,
            checked_at,
        )
        if not inserted:
            await record_facts(conn, [(key, facts)], checked_at)


@dataclass(frozen=True, slots=True)
class KnownCredential:
    """A stored credential as the online check sees it."""

    key: bytes
    kind: CredentialKind
    facts: MinistryFacts
    last_checked_at: dt.datetime | None
    groups: Groups
    registered_last3: str | None
    value_enc: bytes
    hes_key: bytes | None

    @property
    def entry(self) -> ListEntry | None:
        """Its risk-list entry, if it is on the list."""
        if self.facts.state is not MinistryState.FOUND or self.facts.status is None:
            return None
        return ListEntry(
            key=self.key,
            status=self.facts.status,
            expiry_day=self.facts.expiry_day,
            tckn_last3=self.facts.tckn_last3 or self.registered_last3,
            groups=self.groups,
        )


async def find(db: Queryable, key: bytes) -> KnownCredential | None:
    """The stored credential with ``key``, if any."""
    row = await db.fetchrow(
        "SELECT key, kind, ministry_state, status, expires_at, tckn_last3, registered_last3, "
        "groups, last_checked_at, value_enc, hes_key FROM credentials WHERE key = $1",
        key,
    )
    if row is None:
        return None
    return KnownCredential(
        key=row["key"],
        kind=CredentialKind(row["kind"]),
        facts=MinistryFacts(
            MinistryState(row["ministry_state"]),
            None if row["status"] is None else HealthStatus(row["status"]),
            row["expires_at"],
            row["tckn_last3"],
        ),
        last_checked_at=row["last_checked_at"],
        groups=Groups(row["groups"]),
        registered_last3=row["registered_last3"],
        value_enc=row["value_enc"],
        hes_key=row["hes_key"],
    )


async def refresh_groups(conn: Conn, year: int) -> int:
    """Recompute birth-year age groups for ``year``; returns how many changed."""
    async with conn.transaction():
        await lock_list(conn)
        status = await conn.execute(
            "UPDATE credentials SET groups = CASE "
            "WHEN $1 - birth_year >= $2 THEN $4 WHEN $1 - birth_year < $3 THEN $5 ELSE 0 END "
            "WHERE birth_year IS NOT NULL AND groups IS DISTINCT FROM CASE "
            "WHEN $1 - birth_year >= $2 THEN $4 WHEN $1 - birth_year < $3 THEN $5 ELSE 0 END",
            year,
            AGE_65,
            UNDER_20_AGE,
            int(Groups.AGE_65_PLUS),
            int(Groups.UNDER_20),
        )
    return int(status.rsplit(" ", 1)[1])
