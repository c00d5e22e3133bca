"""Reading a stored HES code back: the one place a row that does not decrypt is handled."""

from __future__ import annotations

import os

from structlog.testing import capture_logs

from depot_sync.crypto import FieldCipher, credential_context
from depot_sync.risklist.credentials import hes_key, stored_code

LIST_KEY = os.urandom(32)
CODE = "R7G6915415"


def test_a_stored_code_opens() -> None:
    field = FieldCipher(os.urandom(32))
    key = hes_key(LIST_KEY, CODE)
    assert stored_code(field, key, field.seal_text(CODE, context=credential_context(key))) == CODE


def test_an_old_key_still_opens_after_a_rotation() -> None:
    old_key = os.urandom(32)
    key = hes_key(LIST_KEY, CODE)
    sealed = FieldCipher(old_key).seal_text(CODE, context=credential_context(key))
    assert stored_code(FieldCipher(os.urandom(32), (old_key,)), key, sealed) == CODE


def test_a_code_under_an_unknown_key_is_none_and_logged_by_key_only() -> None:
    key = hes_key(LIST_KEY, CODE)
    sealed = FieldCipher(os.urandom(32)).seal_text(CODE, context=credential_context(key))
    with capture_logs() as logs:
        assert stored_code(FieldCipher(os.urandom(32)), key, sealed) is None
    assert [(e["log_level"], e["key"]) for e in logs] == [("error", key.hex())]
    assert "wrong field key" in logs[0]["event"]
    assert CODE not in repr(logs)


def test_a_code_moved_to_another_row_is_none() -> None:
    field = FieldCipher(os.urandom(32))
    key, other = hes_key(LIST_KEY, CODE), hes_key(LIST_KEY, "A1B2C3D4E5")
    with capture_logs():
        assert (
            stored_code(field, other, field.seal_text(CODE, context=credential_context(key)))
            is None
        )
