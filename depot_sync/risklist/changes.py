"""The list's versions and the signed delta pages validators catch up with.

Versions come from one sequence, assigned under the list lock, so they become
visible in order: a reader that saw version V will never later find a change
below V. Changes up to ``compacted_through`` have been deleted; a validator
behind that takes a snapshot instead (410).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import asyncpg

from depot_sync.db import Conn, Queryable
from protocol import codec
from protocol.listsign import ListSigner, seal
from protocol.messages import PROTOCOL_VERSION, DeltaPage, ListChange
from protocol.risk import Groups, HealthStatus

_HEAD: Final = (
    "SELECT greatest((SELECT coalesce(max(version), 0) FROM list_changes), compacted_through) "
    "AS head, compacted_through FROM list_state"
)


class DeltaUnavailable(Exception):
    """No delta can start at ``since``: the validator must take a snapshot.

    ``horizon`` is the oldest version a delta may start from, ``head`` the newest.
    """

    def __init__(self, since: int, horizon: int, head: int) -> None:
        if since < horizon:
            message = f"version {since} is older than the oldest kept change ({horizon})"
        else:
            message = f"version {since} is newer than this depot's list ({head})"
        super().__init__(message + ": take a snapshot")
        self.since = since
        self.horizon = horizon
        self.head = head


@dataclass(frozen=True, slots=True)
class ListHead:
    """The newest list version and the oldest a delta may start from."""

    version: int
    horizon: int


async def list_head(db: Queryable) -> ListHead:
    """The list's current version and delta horizon."""
    row = await db.fetchrow(_HEAD)
    if row is None:  # pragma: no cover - the migration inserts the row
        return ListHead(0, 0)
    return ListHead(row["head"], row["compacted_through"])


def _change(r: asyncpg.Record) -> ListChange:
    return ListChange(
        version=r["version"],
        key=r["key"],
        removed=r["removed"],
        status=HealthStatus(r["status"]),
        expiry_day=r["expiry_day"],
        tckn_last3=r["tckn_last3"],
        groups=Groups(r["groups"]),
    )


async def delta_page(conn: Conn, since: int, limit: int) -> DeltaPage:
    """The changes after ``since``, at most ``limit``, read from one consistent snapshot."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        head = await list_head(conn)
        if since < head.horizon or since > head.version:
            raise DeltaUnavailable(since, head.horizon, head.version)
        rows = await conn.fetch(
            "SELECT version, key, removed, status, expiry_day, tckn_last3, groups "
            "FROM list_changes WHERE version > $1 ORDER BY version LIMIT $2",
            since,
            limit + 1,
        )
    more = len(rows) > limit
    changes = [_change(r) for r in rows[:limit]]
    until = changes[-1].version if more else head.version
    return DeltaPage(v=PROTOCOL_VERSION, since=since, until=until, changes=changes, more=more)


def signed_page(signer: ListSigner, page: DeltaPage) -> bytes:
    """The page as the wire carries it: an encoded :class:`~protocol.messages.Signed` envelope."""
    return codec.encode(seal(signer, codec.encode(page)))
