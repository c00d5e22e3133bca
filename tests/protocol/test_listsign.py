"""Ed25519 list signing: keys, PEM files, signatures, envelopes."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.listsign import (
    SIGNATURE_SIZE,
    EnvelopeTooLarge,
    InvalidKeyId,
    KeyFormatError,
    ListSigner,
    ListVerifier,
    SignatureInvalid,
    UnknownKeyId,
    check_key_id,
    seal,
    unseal,
)
from protocol.messages import MAX_BODY_BYTES, PROTOCOL_VERSION, Signed

SIGNER = ListSigner.generate("depot-2024.1")


def test_signature_verifies_under_its_key_and_id() -> None:
    sig = SIGNER.sign(b"risk list")
    assert len(sig) == SIGNATURE_SIZE
    SIGNER.verifier().verify(b"risk list", sig, "depot-2024.1")


def test_changed_data_is_refused() -> None:
    sig = SIGNER.sign(b"risk list")
    with pytest.raises(SignatureInvalid):
        SIGNER.verifier().verify(b"risk lisT", sig, "depot-2024.1")


def test_changed_signature_is_refused() -> None:
    sig = bytearray(SIGNER.sign(b"risk list"))
    sig[10] ^= 0x01
    with pytest.raises(SignatureInvalid):
        SIGNER.verifier().verify(b"risk list", bytes(sig), "depot-2024.1")


@pytest.mark.parametrize("length", [0, 63, 65])
def test_signature_of_wrong_length_is_refused(length: int) -> None:
    with pytest.raises(SignatureInvalid, match="64 bytes"):
        SIGNER.verifier().verify(b"risk list", b"\x00" * length, "depot-2024.1")


def test_other_key_id_is_unknown() -> None:
    sig = SIGNER.sign(b"risk list")
    with pytest.raises(UnknownKeyId):
        SIGNER.verifier().verify(b"risk list", sig, "depot-2025.1")
    assert issubclass(UnknownKeyId, SignatureInvalid)


def test_other_key_under_the_same_id_is_refused() -> None:
    impostor = ListSigner.generate("depot-2024.1")
    with pytest.raises(SignatureInvalid):
        SIGNER.verifier().verify(b"risk list", impostor.sign(b"risk list"), "depot-2024.1")


def test_private_pem_round_trip_signs_the_same() -> None:
    again = ListSigner.from_pem(SIGNER.private_pem(), "depot-2024.1")
    assert again.public_pem() == SIGNER.public_pem()
    SIGNER.verifier().verify(b"x", again.sign(b"x"), "depot-2024.1")


def test_public_pem_verifies_the_signers_signature() -> None:
    pem = SIGNER.public_pem()
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    verifier = ListVerifier.from_pem(pem, "depot-2024.1")
    verifier.verify(b"x", SIGNER.sign(b"x"), "depot-2024.1")
    assert verifier.public_pem() == pem


def test_private_pem_is_unencrypted_pkcs8() -> None:
    assert SIGNER.private_pem().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_key_files_round_trip_and_private_key_is_owner_only(tmp_path: Path) -> None:
    SIGNER.save(tmp_path / "list.key")
    SIGNER.verifier().save(tmp_path / "list.pub")
    assert stat.S_IMODE((tmp_path / "list.key").stat().st_mode) == 0o600
    signer = ListSigner.load(tmp_path / "list.key", "depot-2024.1")
    verifier = ListVerifier.load(tmp_path / "list.pub", "depot-2024.1")
    verifier.verify(b"x", signer.sign(b"x"), "depot-2024.1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.key", "list.pub"]


def test_saving_replaces_an_existing_key_file(tmp_path: Path) -> None:
    (tmp_path / "list.key").write_bytes(b"old")
    SIGNER.save(tmp_path / "list.key")
    assert (tmp_path / "list.key").read_bytes() == SIGNER.private_pem()


def _ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.mark.parametrize(
    "pem",
    [
        b"",
        b"not a key",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        SIGNER.public_pem(),
        _ec_key().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        serialization.load_pem_private_key(SIGNER.private_pem(), None).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        ),
    ],
    ids=["empty", "text", "bad-base64", "public-key", "ec-key", "encrypted"],
)
def test_signer_refuses_what_is_not_an_ed25519_private_key(pem: bytes) -> None:
    with pytest.raises(KeyFormatError):
        ListSigner.from_pem(pem, "k1")


@pytest.mark.parametrize(
    "pem",
    [
        b"",
        SIGNER.private_pem(),
        _ec_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
    ],
    ids=["empty", "private-key", "ec-key"],
)
def test_verifier_refuses_what_is_not_an_ed25519_public_key(pem: bytes) -> None:
    with pytest.raises(KeyFormatError):
        ListVerifier.from_pem(pem, "k1")


@pytest.mark.parametrize("key_id", ["", "-k", ".k", "k 1", "k/1", "anahtar-ı", "k\x00", "k" * 65])
def test_bad_key_ids_are_refused(key_id: str) -> None:
    with pytest.raises(InvalidKeyId):
        ListSigner.generate(key_id)
    with pytest.raises(InvalidKeyId):
        ListVerifier.from_pem(SIGNER.public_pem(), key_id)


@pytest.mark.parametrize("key_id", ["k", "K1", "depot-2024.01_a", "k" * 64])
def test_good_key_ids_are_kept(key_id: str) -> None:
    assert check_key_id(key_id) == key_id
    assert ListSigner.generate(key_id).verifier().key_id == key_id


def test_seal_makes_a_v1_envelope_that_unseals_to_the_body() -> None:
    envelope = seal(SIGNER, b"\x81\xa1v\x01")
    assert envelope.v == PROTOCOL_VERSION
    assert envelope.key_id == "depot-2024.1"
    assert envelope.body == b"\x81\xa1v\x01"
    assert len(envelope.sig) == SIGNATURE_SIZE
    assert unseal(SIGNER.verifier(), envelope) == b"\x81\xa1v\x01"


def test_empty_body_seals() -> None:
    assert unseal(SIGNER.verifier(), seal(SIGNER, b"")) == b""


def test_unseal_refuses_a_changed_body() -> None:
    envelope = seal(SIGNER, b"policy v1")
    with pytest.raises(SignatureInvalid):
        unseal(SIGNER.verifier(), dataclasses.replace(envelope, body=b"policy v2"))


def test_unseal_refuses_another_key_id() -> None:
    other = ListSigner.from_pem(SIGNER.private_pem(), "depot-2025.1")
    with pytest.raises(UnknownKeyId):
        unseal(SIGNER.verifier(), seal(other, b"policy"))


def test_unseal_refuses_an_envelope_relabelled_with_another_key_id() -> None:
    # Same key material under two ids: the signature binds the id it was made under.
    envelope = seal(SIGNER, b"policy")
    twin = ListVerifier.from_pem(SIGNER.public_pem(), "depot-2025.1")
    with pytest.raises(SignatureInvalid):
        unseal(twin, dataclasses.replace(envelope, key_id="depot-2025.1"))


def test_unseal_refuses_another_signer() -> None:
    impostor = ListSigner.generate("depot-2024.1")
    with pytest.raises(SignatureInvalid):
        unseal(SIGNER.verifier(), seal(impostor, b"policy"))


def test_unseal_refuses_another_protocol_version() -> None:
    envelope = seal(SIGNER, b"policy")
    with pytest.raises(SignatureInvalid, match="version"):
        unseal(SIGNER.verifier(), dataclasses.replace(envelope, v=2))


def test_a_bare_signature_over_the_body_is_not_an_envelope_signature() -> None:
    body = b"delta page"
    forged = Signed(v=PROTOCOL_VERSION, key_id=SIGNER.key_id, body=body, sig=SIGNER.sign(body))
    with pytest.raises(SignatureInvalid):
        unseal(SIGNER.verifier(), forged)


def test_seal_refuses_a_body_too_large_for_an_envelope() -> None:
    seal(SIGNER, b"\x00" * MAX_BODY_BYTES)
    with pytest.raises(EnvelopeTooLarge):
        seal(SIGNER, b"\x00" * (MAX_BODY_BYTES + 1))


@settings(max_examples=40, deadline=None)
@given(body=st.binary(max_size=512), flip=st.integers(min_value=0))
def test_any_flipped_body_bit_is_refused(body: bytes, flip: int) -> None:
    envelope = seal(SIGNER, body)
    assert unseal(SIGNER.verifier(), envelope) == body
    if body:
        changed = bytearray(body)
        bit = flip % (len(body) * 8)
        changed[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(SignatureInvalid):
            unseal(SIGNER.verifier(), dataclasses.replace(envelope, body=bytes(changed)))
