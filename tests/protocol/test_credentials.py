from __future__ import annotations

import dataclasses
import json
import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.credentials import (
    KEY_SIZE,
    LIST_KEY_SIZE,
    Credential,
    CredentialKind,
    InvalidCredentialValue,
    InvalidListKey,
    ReadMethod,
    credential_key,
    key_of,
    key_to_int,
)
from protocol.frames import parse_frame, parse_keypad

VECTORS = Path(__file__).parent.parent / "vectors" / "credential_keys.json"
GOLDEN = json.loads(VECTORS.read_text(encoding="utf-8"))["vectors"]
LIST_KEY = bytes(range(32))

codes = st.text(alphabet=string.ascii_uppercase + string.digits, min_size=10, max_size=10)
list_keys = st.binary(min_size=LIST_KEY_SIZE, max_size=LIST_KEY_SIZE)


@pytest.mark.parametrize(
    "vector", GOLDEN, ids=[f"{v['kind']}-{v['value']}-{v['list_key'][:6]}" for v in GOLDEN]
)
def test_keys_match_the_golden_vectors(vector: dict[str, str]) -> None:
    key = credential_key(
        bytes.fromhex(vector["list_key"]), CredentialKind[vector["kind"]], vector["value"]
    )
    assert key.hex() == vector["key"]


def test_wire_values_never_change() -> None:
    assert {k.name: k.value for k in CredentialKind} == {"HES_CODE": 1, "CARD": 2}
    assert {m.name: m.value for m in ReadMethod} == {"QR": 1, "KEYPAD": 2, "CARD": 3}


def test_how_a_credential_was_read_decides_its_kind() -> None:
    assert ReadMethod.QR.kind is CredentialKind.HES_CODE
    assert ReadMethod.KEYPAD.kind is CredentialKind.HES_CODE
    assert ReadMethod.CARD.kind is CredentialKind.CARD
    assert Credential(ReadMethod.KEYPAD, "R7G6915415", "950").kind is CredentialKind.HES_CODE


def test_a_scanned_qr_and_a_typed_code_give_the_same_key() -> None:
    scanned = parse_frame(b"]Q112345678950|r7g6-9154-15\r\n")
    bare = parse_frame(b"R7G6 9154 15")
    typed = parse_keypad("r7g6-9154-15", "950")
    assert scanned.method is not typed.method
    assert key_of(LIST_KEY, scanned) == key_of(LIST_KEY, typed) == key_of(LIST_KEY, bare)
    assert key_of(LIST_KEY, typed) == credential_key(
        LIST_KEY, CredentialKind.HES_CODE, "R7G6915415"
    )


@given(list_key=list_keys, code=codes, digits=st.sampled_from(["000", "146", "950"]))
def test_qr_and_keypad_keys_agree_for_any_code(list_key: bytes, code: str, digits: str) -> None:
    scanned = parse_frame(f"12345678950|{code.lower()}".encode())
    typed = parse_keypad(f"{code[:4]}-{code[4:8]}-{code[8:]}", digits)
    assert key_of(list_key, scanned) == key_of(list_key, typed)


def test_a_card_and_a_hes_code_of_the_same_text_give_different_keys() -> None:
    for text in ["0123456789", "R7G6915415", "04A2B3C4"]:
        as_card = credential_key(LIST_KEY, CredentialKind.CARD, text)
        as_code = credential_key(LIST_KEY, CredentialKind.HES_CODE, text)
        assert as_card != as_code
    card = parse_frame(b"CARD:0102030405060708090a")
    assert key_of(LIST_KEY, card) == credential_key(
        LIST_KEY, CredentialKind.CARD, "0102030405060708090A"
    )
    assert key_of(LIST_KEY, card) != credential_key(
        LIST_KEY, CredentialKind.HES_CODE, "0102030405060708090A"
    )


@given(list_key=list_keys, first=codes, second=codes)
def test_different_codes_give_different_keys(list_key: bytes, first: str, second: str) -> None:
    # 8-byte keys collide with odds of 2^-64 a pair: never in a test run.
    same = credential_key(list_key, CredentialKind.HES_CODE, first) == credential_key(
        list_key, CredentialKind.HES_CODE, second
    )
    assert same is (first == second)


@given(code=codes, one=list_keys, other=list_keys)
def test_keys_depend_on_the_list_key(code: str, one: bytes, other: bytes) -> None:
    same = credential_key(one, CredentialKind.HES_CODE, code) == credential_key(
        other, CredentialKind.HES_CODE, code
    )
    assert same is (one == other)


@given(list_key=list_keys, code=codes)
def test_a_key_is_eight_bytes(list_key: bytes, code: str) -> None:
    assert len(credential_key(list_key, CredentialKind.HES_CODE, code)) == KEY_SIZE == 8


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_a_list_key_of_the_wrong_size_is_refused(size: int) -> None:
    with pytest.raises(InvalidListKey, match="32 bytes"):
        credential_key(bytes(size), CredentialKind.HES_CODE, "R7G6915415")


def test_key_to_int_is_big_endian() -> None:
    assert key_to_int(bytes(7) + b"\x01") == 1
    assert key_to_int(b"\x01" + bytes(7)) == 1 << 56
    assert key_to_int(b"\xff" * 8) == 2**64 - 1


@given(st.lists(st.binary(min_size=8, max_size=8), min_size=2, max_size=20))
def test_keys_sort_the_same_as_bytes_and_as_integers(keys: list[bytes]) -> None:
    assert sorted(keys) == sorted(keys, key=key_to_int)


def test_a_credential_is_a_frozen_value() -> None:
    credential = Credential(ReadMethod.QR, "R7G6915415")
    assert credential.tckn_last3 is None
    assert credential == Credential(ReadMethod.QR, "R7G6915415", None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        credential.value = "ABCD123456"  # type: ignore[misc]


def test_non_ascii_value_is_a_typed_error() -> None:
    with pytest.raises(InvalidCredentialValue):
        credential_key(bytes(32), CredentialKind.HES_CODE, "HIJK12345İ")
