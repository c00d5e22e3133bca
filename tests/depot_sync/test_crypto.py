from __future__ import annotations

import os

import pytest

from depot_sync.crypto import DecryptionError, FieldCipher, credential_context


def test_round_trip_and_fresh_nonce() -> None:
    cipher = FieldCipher(os.urandom(32))
    ctx = credential_context(b"\x01" * 8)
    a = cipher.seal_text("R7G6915415", context=ctx)
    b = cipher.seal_text("R7G6915415", context=ctx)
    assert a != b
    assert b"R7G6915415" not in a
    assert cipher.open_text(a, context=ctx) == "R7G6915415"


def test_value_moved_to_another_row_does_not_open() -> None:
    cipher = FieldCipher(os.urandom(32))
    sealed = cipher.seal(b"secret", context=credential_context(b"\x01" * 8))
    with pytest.raises(DecryptionError):
        cipher.open(sealed, context=credential_context(b"\x02" * 8))


def test_tampered_value_does_not_open() -> None:
    cipher = FieldCipher(os.urandom(32))
    sealed = bytearray(cipher.seal(b"secret", context=b"c"))
    sealed[-1] ^= 1
    with pytest.raises(DecryptionError):
        cipher.open(bytes(sealed), context=b"c")
    with pytest.raises(DecryptionError):
        cipher.open(b"\x01short", context=b"c")


def test_rotation_keeps_old_values_readable() -> None:
    old, new = os.urandom(32), os.urandom(32)
    sealed = FieldCipher(old).seal(b"v", context=b"c")
    assert FieldCipher(new, previous=[old]).open(sealed, context=b"c") == b"v"
    with pytest.raises(DecryptionError):
        FieldCipher(new).open(sealed, context=b"c")


def test_key_size_is_checked() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        FieldCipher(b"short")
