"""What a rider presents, and the key the risk list knows it by.

A credential is a HES code or a transit card. A scanned QR and a typed code are
the same HES code and give the same key; how it was read is recorded in the tap
(:class:`ReadMethod`), not in the key.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from dataclasses import dataclass

KEY_SIZE = 8
LIST_KEY_SIZE = 32


class CredentialKind(enum.IntEnum):
    """What the key was made from. The values are on the wire and in the key."""

    HES_CODE = 1
    CARD = 2


class ReadMethod(enum.IntEnum):
    """How the validator read the credential. The values are on the wire."""

    QR = 1
    KEYPAD = 2
    CARD = 3

    @property
    def kind(self) -> CredentialKind:
        """The kind of credential this way of reading yields."""
        return CredentialKind.CARD if self is ReadMethod.CARD else CredentialKind.HES_CODE


@dataclass(frozen=True, slots=True)
class Credential:
    """A credential as read: a normalised HES code or an upper-case hex card UID.

    ``tckn_last3`` holds the last three T.C. Kimlik No digits when the rider
    gave them (keypad) or the QR carried them.
    """

    method: ReadMethod
    value: str
    tckn_last3: str | None = None

    @property
    def kind(self) -> CredentialKind:
        """The kind of credential, which goes into its key."""
        return self.method.kind


class InvalidListKey(ValueError):
    """The list key is not 32 bytes."""


class InvalidCredentialValue(ValueError):
    """The value is not a normalised, ASCII credential."""


def credential_key(list_key: bytes, kind: CredentialKind, value: str) -> bytes:
    """The first 8 bytes of HMAC-SHA256(list key, kind byte + normalised value).

    ``value`` must already be normalised (see :mod:`protocol.hescode`, and
    upper-case hex for card UIDs): the key is only as stable as its input.
    """
    if len(list_key) != LIST_KEY_SIZE:
        raise InvalidListKey(f"the list key is {LIST_KEY_SIZE} bytes, got {len(list_key)}")
    try:
        raw = value.encode("ascii")
    except UnicodeEncodeError as err:
        raise InvalidCredentialValue("a credential value is ASCII once normalised") from err
    mac = hmac.new(list_key, bytes([kind]) + raw, hashlib.sha256)
    return mac.digest()[:KEY_SIZE]


def key_of(list_key: bytes, credential: Credential) -> bytes:
    """The risk-list key of a credential as read."""
    return credential_key(list_key, credential.kind, credential.value)


def key_to_int(key: bytes) -> int:
    """A key as the unsigned integer the snapshot sorts by (big-endian)."""
    return int.from_bytes(key, "big")
