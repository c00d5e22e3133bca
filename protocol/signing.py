r"""Device authentication: every validator request is signed with the device's secret.

Each validator has an id and a secret (32 random bytes) issued at enrolment.
A request carries four headers: the device id, the time (milliseconds since
the Unix epoch), a fresh nonce and an HMAC-SHA256 signature over the string::

    METHOD \n PATH_WITH_QUERY \n TIME \n NONCE \n HEX_SHA256_OF_BODY

(no spaces and no trailing newline; see :func:`signing_string`). The depot
refuses, with 401 and an :class:`AuthReason`, a request whose headers are
missing, whose time is outside the window, whose device is unknown or
revoked, whose signature is wrong, or whose nonce it has seen before.
"""

from __future__ import annotations

import enum
import hashlib
import heapq
import hmac
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from secrets import token_bytes, token_urlsafe
from typing import Final, Protocol

HEADER_DEVICE: Final = "X-Hesgate-Device"
HEADER_TIME: Final = "X-Hesgate-Time"
HEADER_NONCE: Final = "X-Hesgate-Nonce"
HEADER_SIGNATURE: Final = "X-Hesgate-Signature"

#: The size of a device secret issued at enrolment.
SECRET_BYTES: Final = 32
#: The shortest secret :func:`sign_request` accepts.
MIN_SECRET_BYTES: Final = 16
#: How far a request's time may be from the depot's clock, either way.
DEFAULT_WINDOW_MS: Final = 300_000
#: How many nonces a :class:`MemoryNonceStore` holds by default.
DEFAULT_MAX_NONCES: Final = 1_000_000

_DEVICE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_TIME: Final = re.compile(r"[0-9]{1,16}")
_NONCE: Final = re.compile(r"[A-Za-z0-9_-]{16,64}")
_SIGNATURE: Final = re.compile(r"[0-9a-fA-F]{64}")
_METHOD: Final = re.compile(r"[A-Z]{1,16}")


class AuthReason(enum.StrEnum):
    """Why the depot refused a request (sent back with the 401)."""

    MISSING_HEADERS = "missing_headers"  # a signing header is absent or malformed
    BAD_SIGNATURE = "bad_signature"
    TIMESTAMP_OUT_OF_WINDOW = "timestamp_out_of_window"
    NONCE_REUSED = "nonce_reused"
    UNKNOWN_DEVICE = "unknown_device"
    REVOKED_DEVICE = "revoked_device"


class AuthError(Exception):
    """A request is not authentic; ``reason`` says why, ``detail`` says more.

    ``detail`` is safe to send back to the device: it never holds a secret or
    the signature the depot expected.
    """

    def __init__(self, reason: AuthReason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
        self.detail = detail


class SigningError(ValueError):
    """:func:`sign_request` was given something it cannot sign (a local mistake)."""


class NonceStoreFull(Exception):
    """A nonce store holds as many live nonces as it may: the request cannot be checked.

    The depot answers 503 (try again later); it never lets such a request through.
    """


class NonceStore(Protocol):
    """Remembers the nonces of authenticated requests until they expire."""

    async def remember(self, device_id: str, nonce: str, expires_ms: int) -> bool:
        """Record ``nonce`` for ``device_id`` until ``expires_ms``.

        Returns ``False`` when the device already used that nonce and it has
        not expired yet (a replay), ``True`` otherwise.
        """
        ...


class DeviceSecrets(Protocol):
    """Where the depot looks up a device's secret."""

    async def secret_for(self, device_id: str) -> bytes:
        """The device's secret.

        Raises :class:`AuthError` with ``UNKNOWN_DEVICE`` or ``REVOKED_DEVICE``.
        """
        ...


def wall_ms() -> int:
    """Wall-clock milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


def new_secret() -> bytes:
    """A fresh device secret, as issued at enrolment."""
    return token_bytes(SECRET_BYTES)


def secret_from_hex(text: str) -> bytes:
    """A secret from the hex text a configuration file carries.

    Raises :class:`SigningError` for text that is not hex or is too short.
    """
    try:
        secret = bytes.fromhex(text.strip())
    except ValueError as err:
        raise SigningError("the device secret is not hex") from err
    if len(secret) < MIN_SECRET_BYTES:
        raise SigningError(
            f"the device secret is {len(secret)} bytes, at least {MIN_SECRET_BYTES} are needed"
        )
    return secret


def new_nonce() -> str:
    """A fresh random nonce (22 URL-safe characters, 128 bits)."""
    return token_urlsafe(16)


def body_digest(body: bytes) -> str:
    """The hex SHA-256 of a request body, as signed."""
    return hashlib.sha256(body).hexdigest()


def signing_string(*, method: str, path_qs: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    r"""The exact bytes the signature covers.

    The upper-case method, the path with its query exactly as on the request
    line, the time header, the nonce header and the hex SHA-256 of the body,
    joined by ``\n``, encoded as UTF-8 (bytes that are not UTF-8 in the path
    are kept as they came).
    """
    text = "\n".join((method.upper(), path_qs, timestamp, nonce, body_digest(body)))
    return text.encode("utf-8", "surrogateescape")


def signature(secret: bytes, message: bytes) -> str:
    """The lowercase hex HMAC-SHA256 of ``message`` under ``secret``."""
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign_request(
    *,
    device_id: str,
    secret: bytes,
    method: str,
    path_qs: str,
    body: bytes,
    now_ms: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The four headers that authenticate a request.

    ``path_qs`` is the path and query exactly as the request line will carry
    them (``/v1/risklist/delta?since=42``). ``now_ms`` and ``nonce`` default
    to the clock and a fresh random nonce.
    """
    if not _DEVICE_ID.fullmatch(device_id):
        raise SigningError(f"not a device id: {device_id!r}")
    if len(secret) < MIN_SECRET_BYTES:
        raise SigningError(f"the secret is {len(secret)} bytes, at least {MIN_SECRET_BYTES}")
    if not _METHOD.fullmatch(method.upper()):
        raise SigningError(f"not an HTTP method: {method!r}")
    if not path_qs.startswith("/") or not path_qs.isascii():
        raise SigningError(f"not an ASCII path starting with '/': {path_qs!r}")
    if nonce is None:
        nonce = new_nonce()
    elif not _NONCE.fullmatch(nonce):
        raise SigningError("a nonce is 16 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")
    timestamp = str(_clock(now_ms))
    if not _TIME.fullmatch(timestamp):
        raise SigningError(f"not a time in milliseconds since the epoch: {timestamp}")
    message = signing_string(
        method=method, path_qs=path_qs, timestamp=timestamp, nonce=nonce, body=body
    )
    return {
        HEADER_DEVICE: device_id,
        HEADER_TIME: timestamp,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: signature(secret, message),
    }


async def verify_request(
    *,
    method: str,
    path_qs: str,
    headers: Mapping[str, str],
    body: bytes,
    secrets: DeviceSecrets,
    nonces: NonceStore,
    window_ms: int = DEFAULT_WINDOW_MS,
    now_ms: int | None = None,
) -> str:
    """Check a request's signature headers; return the authenticated device id.

    ``path_qs`` must be the path and query exactly as received (aiohttp:
    ``request.raw_path``). The checks run cheapest first, and the nonce is
    recorded only once the signature is good, so requests that are not
    authentic cannot fill the nonce store. Raises :class:`AuthError`, or
    :class:`NonceStoreFull` when the store cannot take another nonce.
    """
    device_id = _header(headers, HEADER_DEVICE, _DEVICE_ID)
    timestamp = _header(headers, HEADER_TIME, _TIME)
    nonce = _header(headers, HEADER_NONCE, _NONCE)
    claimed = _header(headers, HEADER_SIGNATURE, None)

    sent_ms = int(timestamp)
    skew_ms = sent_ms - _clock(now_ms)
    if abs(skew_ms) > window_ms:
        direction = "ahead of" if skew_ms > 0 else "behind"
        raise AuthError(
            AuthReason.TIMESTAMP_OUT_OF_WINDOW,
            f"request time is {abs(skew_ms)} ms {direction} the depot's clock"
            f" (at most {window_ms} ms allowed)",
        )

    secret = await secrets.secret_for(device_id)

    if not _SIGNATURE.fullmatch(claimed):
        raise AuthError(AuthReason.BAD_SIGNATURE, "the signature is not 64 hex digits")
    message = signing_string(
        method=method, path_qs=path_qs, timestamp=timestamp, nonce=nonce, body=body
    )
    expected = hmac.digest(secret, message, hashlib.sha256)
    if not hmac.compare_digest(expected, bytes.fromhex(claimed)):
        raise AuthError(AuthReason.BAD_SIGNATURE, "the signature does not match the request")

    # The nonce must be remembered for as long as the time stays inside the window.
    if not await nonces.remember(device_id, nonce, sent_ms + window_ms):
        raise AuthError(AuthReason.NONCE_REUSED, "the nonce was already used")
    return device_id


def _clock(now: int | None) -> int:
    return wall_ms() if now is None else now


def _header(headers: Mapping[str, str], name: str, form: re.Pattern[str] | None) -> str:
    """A signing header's value, or :class:`AuthError` ``MISSING_HEADERS``."""
    value = headers.get(name)
    if value is None:
        # A plain mapping is case-sensitive; HTTP header names are not.
        folded = name.casefold()
        value = next((v for k, v in headers.items() if k.casefold() == folded), None)
    if value is None:
        raise AuthError(AuthReason.MISSING_HEADERS, f"no {name} header")
    if form is not None and not form.fullmatch(value):
        raise AuthError(AuthReason.MISSING_HEADERS, f"malformed {name} header")
    return value


class MemoryNonceStore:
    """A :class:`NonceStore` in memory, holding at most ``max_entries`` live nonces.

    Expired nonces are forgotten as new ones arrive. When every slot holds a
    live nonce, :meth:`remember` raises :class:`NonceStoreFull` rather than
    forget one early, which would let its request be replayed. ``clock`` gives
    the current time in milliseconds (the wall clock by default).
    """

    def __init__(
        self, *, max_entries: int = DEFAULT_MAX_NONCES, clock: Callable[[], int] = wall_ms
    ) -> None:
        if max_entries < 1:
            raise ValueError("a nonce store holds at least one nonce")
        self._max_entries = max_entries
        self._clock = clock
        self._expiry: dict[tuple[str, str], int] = {}
        self._by_expiry: list[tuple[int, str, str]] = []

    def __len__(self) -> int:
        """How many nonces the store holds (expired ones may linger until the next call)."""
        return len(self._expiry)

    async def remember(self, device_id: str, nonce: str, expires_ms: int) -> bool:
        """See :meth:`NonceStore.remember`."""
        self._forget_expired(self._clock())
        key = (device_id, nonce)
        if key in self._expiry:
            return False
        if len(self._expiry) >= self._max_entries:
            raise NonceStoreFull(f"{len(self._expiry)} live nonces; the limit is reached")
        self._expiry[key] = expires_ms
        heapq.heappush(self._by_expiry, (expires_ms, device_id, nonce))
        return True

    def _forget_expired(self, now: int) -> None:
        heap = self._by_expiry
        while heap and heap[0][0] < now:
            _, device_id, nonce = heapq.heappop(heap)
            del self._expiry[device_id, nonce]


@dataclass(frozen=True, slots=True)
class MemoryDeviceSecrets:
    """A fixed :class:`DeviceSecrets`: device id to secret, and the revoked ids."""

    secrets: Mapping[str, bytes]
    revoked: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, secrets: Mapping[str, bytes], revoked: Iterable[str] = ()) -> MemoryDeviceSecrets:
        """Build from any mapping and iterable of revoked ids (both copied)."""
        return cls(dict(secrets), frozenset(revoked))

    async def secret_for(self, device_id: str) -> bytes:
        """See :meth:`DeviceSecrets.secret_for`."""
        if device_id in self.revoked:
            raise AuthError(AuthReason.REVOKED_DEVICE, f"device {device_id} is revoked")
        secret = self.secrets.get(device_id)
        if secret is None:
            raise AuthError(AuthReason.UNKNOWN_DEVICE, f"device {device_id} is not enrolled")
        return secret
