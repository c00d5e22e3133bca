"""Ed25519 signing of what the depot publishes: snapshot files, delta pages, the policy.

One key pair, named by a key id, signs everything a validator trusts from the
depot. The depot holds the private key (:class:`ListSigner`); every validator
holds the public key and its id (:class:`ListVerifier`). A signature made under
one key id never verifies under another, so a key can be rotated by giving
the new key a new id.

Envelopes (:class:`protocol.messages.Signed`) are signed over a domain-separated
message (see :func:`envelope_message`), never over the bare body, so a
signature over a snapshot header cannot be replayed as an envelope or the
other way round.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.messages import MAX_BODY_BYTES, PROTOCOL_VERSION, Signed
from runtime.files import write_atomically

#: An Ed25519 signature is always this long.
SIGNATURE_SIZE: Final = 64
#: The longest key id; the snapshot header has room for exactly this many bytes.
MAX_KEY_ID_LENGTH: Final = 64
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: Prefix of every signed envelope message: keeps envelope and snapshot signatures apart.
ENVELOPE_CONTEXT: Final = b"hesgate signed envelope\x00"


class SignatureInvalid(ValueError):
    """The signature does not verify, or was made under another key id."""


class UnknownKeyId(SignatureInvalid):
    """The data names a key id this verifier does not hold."""


class InvalidKeyId(ValueError):
    """A key id must be 1 to 64 characters of ``A-Z a-z 0-9 . _ -``, starting alphanumeric."""


class KeyFormatError(ValueError):
    """The PEM text is not an (unencrypted) Ed25519 key of the expected kind."""


class EnvelopeTooLarge(ValueError):
    """The body does not fit in a :class:`protocol.messages.Signed` envelope."""


def check_key_id(key_id: str) -> str:
    """Return ``key_id`` if it is a valid key id, else raise :class:`InvalidKeyId`."""
    if not isinstance(key_id, str) or _KEY_ID.fullmatch(key_id) is None:
        raise InvalidKeyId(f"invalid key id {key_id!r}")
    return key_id


class ListSigner:
    """The depot's private list-signing key and the id it is known by."""

    __slots__ = ("_private", "key_id")

    key_id: str

    def __init__(self, private_key: Ed25519PrivateKey, key_id: str) -> None:
        self._private = private_key
        self.key_id = check_key_id(key_id)

    @classmethod
    def generate(cls, key_id: str) -> ListSigner:
        """A fresh random key pair named ``key_id``."""
        return cls(Ed25519PrivateKey.generate(), key_id)

    @classmethod
    def from_pem(cls, pem: bytes, key_id: str) -> ListSigner:
        """Load an unencrypted PKCS#8 PEM private key (as :meth:`private_pem` writes)."""
        check_key_id(key_id)
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as err:
            raise KeyFormatError(f"not an unencrypted PEM private key: {err}") from err
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFormatError(f"expected an Ed25519 private key, got {type(key).__name__}")
        return cls(key, key_id)

    @classmethod
    def load(cls, path: Path, key_id: str) -> ListSigner:
        """Read a private key file written by :meth:`save`."""
        return cls.from_pem(path.read_bytes(), key_id)

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM: keep it where only the depot reads it."""
        return self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_pem(self) -> bytes:
        """The public key as SubjectPublicKeyInfo PEM, for :meth:`ListVerifier.from_pem`."""
        return self._private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def save(self, path: Path) -> None:
        """Write the private key to ``path`` atomically, readable by its owner only."""
        write_atomically(path, self.private_pem(), mode=0o600)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self._private.sign(data)

    def verifier(self) -> ListVerifier:
        """The matching verifier, under the same key id."""
        return ListVerifier(self._private.public_key(), self.key_id)

    def __repr__(self) -> str:
        return f"ListSigner(key_id={self.key_id!r})"


class ListVerifier:
    """A public list-signing key and its id: what a validator trusts."""

    __slots__ = ("_public", "key_id")

    key_id: str

    def __init__(self, public_key: Ed25519PublicKey, key_id: str) -> None:
        self._public = public_key
        self.key_id = check_key_id(key_id)

    @classmethod
    def from_pem(cls, pem: bytes, key_id: str) -> ListVerifier:
        """Load a SubjectPublicKeyInfo PEM public key (as :meth:`ListSigner.public_pem` writes)."""
        check_key_id(key_id)
        try:
            key = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError, UnsupportedAlgorithm) as err:
            raise KeyFormatError(f"not a PEM public key: {err}") from err
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFormatError(f"expected an Ed25519 public key, got {type(key).__name__}")
        return cls(key, key_id)

    @classmethod
    def load(cls, path: Path, key_id: str) -> ListVerifier:
        """Read a public key file written by :meth:`save`."""
        return cls.from_pem(path.read_bytes(), key_id)

    def public_pem(self) -> bytes:
        """The public key as SubjectPublicKeyInfo PEM."""
        return self._public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def save(self, path: Path) -> None:
        """Write the public key to ``path`` atomically."""
        write_atomically(path, self.public_pem(), mode=0o644)

    def verify(self, data: bytes, signature: bytes, key_id: str) -> None:
        """Check that ``signature`` over ``data`` was made by this key under ``key_id``.

        Raises :class:`UnknownKeyId` if ``key_id`` is not this verifier's and
        :class:`SignatureInvalid` if the signature does not verify.
        """
        if key_id != self.key_id:
            raise UnknownKeyId(
                f"signed under key id {key_id!r}, this verifier holds {self.key_id!r}"
            )
        if len(signature) != SIGNATURE_SIZE:
            raise SignatureInvalid(
                f"an Ed25519 signature is {SIGNATURE_SIZE} bytes, got {len(signature)}"
            )
        try:
            self._public.verify(signature, data)
        except InvalidSignature as err:
            raise SignatureInvalid(f"signature does not verify under key id {key_id!r}") from err

    def __repr__(self) -> str:
        return f"ListVerifier(key_id={self.key_id!r})"


def envelope_message(version: int, key_id: str, body: bytes) -> bytes:
    """What an envelope's signature covers.

    ``ENVELOPE_CONTEXT``, the envelope version (one byte), the key id's length
    (one byte) and ASCII bytes, then the body.
    """
    kid = check_key_id(key_id).encode("ascii")
    if not 0 <= version <= 0xFF:
        raise ValueError(f"envelope version {version} does not fit in a byte")
    return b"".join((ENVELOPE_CONTEXT, bytes((version, len(kid))), kid, body))


def seal(signer: ListSigner, body: bytes) -> Signed:
    """Sign an encoded delta page or policy into a :class:`Signed` envelope."""
    if len(body) > MAX_BODY_BYTES:
        raise EnvelopeTooLarge(f"body is {len(body)} bytes, an envelope holds {MAX_BODY_BYTES}")
    sig = signer.sign(envelope_message(PROTOCOL_VERSION, signer.key_id, body))
    return Signed(v=PROTOCOL_VERSION, key_id=signer.key_id, body=body, sig=sig)


def unseal(verifier: ListVerifier, envelope: Signed) -> bytes:
    """The body of ``envelope`` once its version, key id and signature check out.

    Raises :class:`UnknownKeyId` or :class:`SignatureInvalid`; the body must
    not be used then.
    """
    if envelope.v != PROTOCOL_VERSION:
        raise SignatureInvalid(f"envelope version {envelope.v}, expected {PROTOCOL_VERSION}")
    if envelope.key_id != verifier.key_id:
        raise UnknownKeyId(
            f"signed under key id {envelope.key_id!r}, this verifier holds {verifier.key_id!r}"
        )
    message = envelope_message(envelope.v, envelope.key_id, envelope.body)
    verifier.verify(message, envelope.sig, envelope.key_id)
    return envelope.body
