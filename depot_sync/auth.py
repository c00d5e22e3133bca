"""Who is asking: validators by request signature, operators by bearer token.

:class:`PgDeviceSecrets` and :class:`PgNonceStore` give
:func:`protocol.signing.verify_request` what it needs from the database. A
decrypted secret is cached for a few seconds, so a revocation takes effect
within ``auth.secret_cache_s``; nonces live in PostgreSQL so a replay is
caught by every depot process and across restarts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import structlog

from depot_sync.crypto import DecryptionError, FieldCipher
from depot_sync.operations.devices import DeviceStatus, load_secret
from protocol.signing import AuthError, AuthReason

log = structlog.get_logger("hesgate.depot.auth")


@dataclass(frozen=True, slots=True)
class _Cached:
    expires: float
    status: DeviceStatus | None
    secret: bytes


class PgDeviceSecrets:
    """Device secrets from the ``devices`` table, decrypted and briefly cached."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        cipher: FieldCipher,
        *,
        cache_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._cipher = cipher
        self._cache_s = cache_s
        self._clock = clock
        self._cache: dict[str, _Cached] = {}

    def forget(self, device_id: str | None = None) -> None:
        """Drop cached secrets (one device's, or all)."""
        if device_id is None:
            self._cache.clear()
        else:
            self._cache.pop(device_id, None)

    async def secret_for(self, device_id: str) -> bytes:
        """See :class:`protocol.signing.DeviceSecrets`."""
        now = self._clock()
        cached = self._cache.get(device_id)
        if cached is None or cached.expires <= now:
            try:
                found = await load_secret(self._pool, self._cipher, device_id)
            except DecryptionError as err:
                log.error("device secret does not decrypt: wrong field key?", device=device_id)  # noqa: TRY400
                raise AuthError(
                    AuthReason.UNKNOWN_DEVICE, f"device {device_id} has no usable secret"
                ) from err
            if found is None:
                cached = _Cached(now + self._cache_s, None, b"")
            else:
                cached = _Cached(now + self._cache_s, found.status, found.secret)
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[device_id] = cached
        if cached.status is None:
            raise AuthError(AuthReason.UNKNOWN_DEVICE, f"device {device_id} is not enrolled")
        if cached.status is DeviceStatus.REVOKED:
            raise AuthError(AuthReason.REVOKED_DEVICE, f"device {device_id} is revoked")
        return cached.secret


class PgNonceStore:
    """Request nonces in ``request_nonces``; an expired one may be used again."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def remember(self, device_id: str, nonce: str, expires_ms: int) -> bool:
        """See :class:`protocol.signing.NonceStore`."""
        fresh = await self._pool.fetchval(
            "INSERT INTO request_nonces (device_id, nonce, expires_at) "
            "VALUES ($1, $2, to_timestamp($3 / 1000.0)) "
            "ON CONFLICT (device_id, nonce) DO UPDATE SET expires_at = excluded.expires_at "
            "WHERE request_nonces.expires_at < now() RETURNING true",
            device_id,
            nonce,
            expires_ms,
        )
        return bool(fresh)


async def purge_nonces(pool: asyncpg.Pool) -> int:
    """Forget expired nonces; returns how many."""
    status = await pool.execute("DELETE FROM request_nonces WHERE expires_at < now()")
    return int(status.rsplit(" ", 1)[1])
