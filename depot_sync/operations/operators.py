"""Operators (people at the depot) and their bearer tokens.

A token is 32 random bytes shown once when made (``hgo_`` + URL-safe base64);
the depot keeps only its SHA-256, which is enough for a value that cannot be
guessed.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import hashlib
import secrets
from dataclasses import dataclass
from typing import Final

import asyncpg
import structlog

from depot_sync.db import Conn, Queryable

log = structlog.get_logger("hesgate.depot.operators")

TOKEN_PREFIX: Final = "hgo_"  # noqa: S105 - a prefix that marks tokens, not a secret
_TOKEN_BYTES: Final = 32


class Role(enum.StrEnum):
    """What an operator may do: ops watch the fleet, auditors export, admins do both."""

    OPS = "ops"
    AUDITOR = "auditor"
    ADMIN = "admin"

    def may(self, needed: Role) -> bool:
        """Whether this role covers ``needed``."""
        return self is Role.ADMIN or self is needed


class OperatorError(Exception):
    """An operator operation cannot be done; the message says why."""


class OperatorExists(OperatorError):
    """An operator with this name exists."""


@dataclass(frozen=True, slots=True)
class Operator:
    """An authenticated operator."""

    id: int
    name: str
    role: Role


def hash_token(token: str) -> bytes:
    """What the depot stores of a token."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_token() -> str:
    """A fresh bearer token."""
    raw = secrets.token_bytes(_TOKEN_BYTES)
    return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


async def create_operator(conn: Conn, name: str, role: Role) -> str:
    """Create an operator with one token; returns the token (shown once, never stored)."""
    if not 1 <= len(name) <= 64:
        raise OperatorError("an operator name is 1 to 64 characters")
    token = new_token()
    async with conn.transaction():
        try:
            operator_id = await conn.fetchval(
                "INSERT INTO operators (name, role) VALUES ($1, $2) RETURNING id", name, role.value
            )
        except asyncpg.UniqueViolationError as err:
            raise OperatorExists(
                f"operator {name!r} exists: use add-token for another token"
            ) from err
        await conn.execute(
            "INSERT INTO operator_tokens (operator_id, token_hash) VALUES ($1, $2)",
            operator_id,
            hash_token(token),
        )
    log.info("operator created", operator=name, role=role.value)
    return token


async def add_token(conn: Conn, name: str) -> str:
    """Issue another token to an existing operator."""
    token = new_token()
    operator_id = await conn.fetchval(
        "INSERT INTO operator_tokens (operator_id, token_hash) "
        "SELECT id, $2 FROM operators WHERE name = $1 AND disabled_at IS NULL "
        "RETURNING operator_id",
        name,
        hash_token(token),
    )
    if operator_id is None:
        raise OperatorError(f"no active operator {name!r}")
    log.info("operator token added", operator=name)
    return token


async def revoke_tokens(conn: Conn, name: str) -> int:
    """Revoke every token of an operator; returns how many were live."""
    status = await conn.execute(
        "UPDATE operator_tokens t SET revoked_at = now() FROM operators o "
        "WHERE o.id = t.operator_id AND o.name = $1 AND t.revoked_at IS NULL",
        name,
    )
    count = int(status.rsplit(" ", 1)[1])
    log.info("operator tokens revoked", operator=name, tokens=count)
    return count


async def authenticate(
    db: Queryable, token: str, *, now: dt.datetime | None = None
) -> Operator | None:
    """The operator a bearer token belongs to, or ``None`` (unknown, revoked or disabled)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    row = await db.fetchrow(
        "UPDATE operator_tokens t SET last_used_at = coalesce($2, now()) FROM operators o "
        "WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND o.id = t.operator_id "
        "AND o.disabled_at IS NULL RETURNING o.id, o.name, o.role",
        hash_token(token),
        now,
    )
    if row is None:
        return None
    return Operator(row["id"], row["name"], Role(row["role"]))
