"""Fields encrypted at rest: AES-256-GCM under the depot's field key.

Each value is sealed with a fresh 96-bit nonce and bound to what it belongs to
(``context``: a credential key, a device id) as associated data, so a
ciphertext copied to another row does not decrypt. Layout:
``version (1 byte) || nonce (12 bytes) || ciphertext || tag (16 bytes)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_VERSION: Final = 1
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
KEY_SIZE: Final = 32


class DecryptionError(ValueError):
    """A sealed value is damaged, belongs elsewhere, or was sealed under an unknown key."""


class FieldCipher:
    """Seals and opens field values; opens with older keys too, after a key rotation."""

    __slots__ = ("_all", "_current")

    def __init__(self, key: bytes, previous: Sequence[bytes] = ()) -> None:
        for k in (key, *previous):
            if len(k) != KEY_SIZE:
                raise ValueError(f"a field key is {KEY_SIZE} bytes, got {len(k)}")
        self._current = AESGCM(key)
        self._all = (self._current, *(AESGCM(k) for k in previous))

    def __repr__(self) -> str:
        return f"FieldCipher(keys={len(self._all)})"

    def seal(self, plaintext: bytes, *, context: bytes) -> bytes:
        """Encrypt ``plaintext`` bound to ``context``."""
        nonce = os.urandom(NONCE_SIZE)
        return bytes([FORMAT_VERSION]) + nonce + self._current.encrypt(nonce, plaintext, context)

    def open(self, sealed: bytes, *, context: bytes) -> bytes:
        """Decrypt what :meth:`seal` made for the same ``context``."""
        if len(sealed) < 1 + NONCE_SIZE + TAG_SIZE or sealed[0] != FORMAT_VERSION:
            raise DecryptionError("not a sealed field value")
        nonce, body = sealed[1 : 1 + NONCE_SIZE], sealed[1 + NONCE_SIZE :]
        for aead in self._all:
            try:
                return aead.decrypt(nonce, body, context)
            except InvalidTag:
                continue
        raise DecryptionError("the value does not open under any configured field key")

    def seal_text(self, text: str, *, context: bytes) -> bytes:
        """:meth:`seal` for text (UTF-8)."""
        return self.seal(text.encode("utf-8"), context=context)

    def open_text(self, sealed: bytes, *, context: bytes) -> str:
        """:meth:`open` for text (UTF-8)."""
        return self.open(sealed, context=context).decode("utf-8")


def credential_context(key: bytes) -> bytes:
    """The associated data binding a credential's raw value to its risk-list key."""
    return b"credential:" + key


def device_context(device_id: str) -> bytes:
    """The associated data binding a device secret to its device id."""
    return b"device:" + device_id.encode("utf-8")
