"""Identities: ECDSA P-256 keys of owners, verifiers and logs.

Signatures are deterministic (RFC 6979), SHA-256, DER-encoded with low ``s``
(made by OpenSSL; ``tests/test_dsse.py`` holds them to ``ecdsa``'s and to the RFC's vector);
verification accepts only that canonical form, so a signature cannot be
re-encoded into a second valid one.  Keys travel as PEM (PKCS#8 private,
SubjectPublicKeyInfo public); a key's id is the SHA-256 of its DER public key.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TypeVar

import ecdsa
from cryptography.exceptions import InvalidSignature as _OpenSSLBadSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from ecdsa.util import sigdecode_der, sigencode_der

from wmark.errors import DecodeError, InvalidInput, InvalidSignature
from wmark.files import atomic_write, read_bounded

CURVE = ecdsa.NIST256p
_ORDER = CURVE.order
_DETERMINISTIC = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
MAX_PEM_BYTES = 16 * 1024
_Key = TypeVar("_Key", ecdsa.VerifyingKey, ecdsa.SigningKey)


def _load_p256(load: Callable[..., _Key], data: bytes | str, *, what: str, expected: str) -> _Key:
    """``load(data)`` (an ecdsa ``from_pem``/``from_der``), refused unless it is a P-256 key."""
    try:
        key = load(data, hashfunc=hashlib.sha256)
    except Exception as exc:  # ecdsa raises assorted errors on garbage
        raise DecodeError(f"{what}: not a {expected}") from exc
    if key.curve != CURVE:
        raise DecodeError(f"{what}: key is on {key.curve.name}, expected NIST P-256")
    return key


@dataclass(frozen=True)
class PublicKey:
    """A P-256 public key; ``keyid`` names it in DSSE signatures."""

    _key: ecdsa.VerifyingKey

    @classmethod
    def from_pem(cls, pem: bytes | str, *, what: str = "public key") -> "PublicKey":
        return cls(_load_p256(ecdsa.VerifyingKey.from_pem, pem, what=what, expected="PEM-encoded P-256 public key"))

    @classmethod
    def from_der(cls, der: bytes, *, what: str = "public key") -> "PublicKey":
        return _public_key_from_der(bytes(der), what)

    def to_pem(self) -> str:
        return self._key.to_pem().decode("ascii")

    def to_der(self) -> bytes:
        return self._der

    # Cached: a verifier derives every opened item's VRF input from the
    # owner's key id, and ecdsa re-encodes the DER on every call.
    @cached_property
    def _der(self) -> bytes:
        return self._key.to_der()

    @cached_property
    def keyid(self) -> str:
        return hashlib.sha256(self._der).hexdigest()

    @property
    def fingerprint(self) -> str:
        return "SHA256:" + self.keyid

    def verify(self, signature: bytes, message: bytes) -> None:
        """Raise :class:`InvalidSignature` unless ``signature`` is the canonical one."""
        try:
            r, s = sigdecode_der(signature, _ORDER)
        except Exception as exc:
            raise InvalidSignature("signature is not a DER-encoded ECDSA signature") from exc
        if not (1 <= r < _ORDER and 1 <= s <= _ORDER // 2):
            raise InvalidSignature("signature is not in canonical low-s form")
        if sigencode_der(r, s, _ORDER) != signature:
            raise InvalidSignature("signature is not canonically DER-encoded")
        # OpenSSL (through `cryptography`) checks the equation ~50x faster than
        # pure-Python ecdsa; the canonical-form checks above stay ours.
        try:
            self._openssl.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except _OpenSSLBadSignature:
            raise InvalidSignature("signature does not verify") from None

    @cached_property
    def _openssl(self) -> ec.EllipticCurvePublicKey:
        key = serialization.load_der_public_key(self._der)
        assert isinstance(key, ec.EllipticCurvePublicKey)
        return key

    def __reduce__(self) -> tuple[type["PublicKey"], tuple[ecdsa.VerifyingKey]]:
        # Without the cached OpenSSL handle, which cannot be pickled (Ray ships keys to workers).
        return PublicKey, (self._key,)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and self.to_der() == other.to_der()

    def __hash__(self) -> int:
        return hash(self.to_der())


# Kept by functools (exceptions are not kept): a log reads its few owners' keys again
# in every posted vk, and ecdsa's parse cost more than OpenSSL's check of the
# signature (measured).  A key is immutable, so one may be shared.
MAX_KNOWN_KEYS = 1024


@functools.lru_cache(maxsize=MAX_KNOWN_KEYS)
def _public_key_from_der(der: bytes, what: str) -> PublicKey:
    return PublicKey(_load_p256(ecdsa.VerifyingKey.from_der, der, what=what, expected="DER-encoded P-256 public key"))


@dataclass(frozen=True, repr=False)
class SigningKey:
    """A P-256 private key.  ``repr`` never shows the secret."""

    _key: ecdsa.SigningKey

    @classmethod
    def generate(cls) -> "SigningKey":
        # ecdsa draws the secret scalar from os.urandom, the OS CSPRNG.
        return cls(ecdsa.SigningKey.generate(curve=CURVE, entropy=os.urandom, hashfunc=hashlib.sha256))

    @classmethod
    def from_pem(cls, pem: bytes | str, *, what: str = "private key") -> "SigningKey":
        return cls(_load_p256(ecdsa.SigningKey.from_pem, pem, what=what, expected="PEM-encoded P-256 private key"))

    def to_pem(self) -> bytes:
        return self._key.to_pem(format="pkcs8")

    # Cached: a PublicKey caches its DER, key id and OpenSSL handle, and the
    # log names its key in every receipt.
    @cached_property
    def public_key(self) -> PublicKey:
        return PublicKey(self._key.get_verifying_key())

    def sign(self, message: bytes) -> bytes:
        # OpenSSL's RFC 6979 signing (through `cryptography`) is ~8x faster than
        # ecdsa's pure-Python one, and the log signs a tree head per batch; the same
        # nonce gives the same (r, s), of which we keep the canonical low-s form.
        r, s = sigdecode_der(self._openssl.sign(message, _DETERMINISTIC), _ORDER)
        return sigencode_der(r, min(s, _ORDER - s), _ORDER)

    @cached_property
    def _openssl(self) -> ec.EllipticCurvePrivateKey:
        return ec.derive_private_key(self._key.privkey.secret_multiplier, ec.SECP256R1())

    def __reduce__(self) -> tuple[type["SigningKey"], tuple[ecdsa.SigningKey]]:
        # Without the cached OpenSSL handles, which cannot be pickled (Ray ships keys to workers).
        return SigningKey, (self._key,)

    def __repr__(self) -> str:
        return f"SigningKey(keyid={self.public_key.keyid[:16]}…)"


def load_signing_key(path: str | os.PathLike[str]) -> SigningKey:
    data = read_bounded(path, max_bytes=MAX_PEM_BYTES, what="private key")
    return SigningKey.from_pem(data, what=str(path))


def load_public_key(path: str | os.PathLike[str]) -> PublicKey:
    """Read a public key PEM, or derive it from a private key PEM."""
    data = read_bounded(path, max_bytes=MAX_PEM_BYTES, what="public key")
    if b"PRIVATE KEY" in data:
        return SigningKey.from_pem(data, what=str(path)).public_key
    return PublicKey.from_pem(data, what=str(path))


def save_signing_key(path: str | os.PathLike[str], key: SigningKey) -> None:
    p = Path(path)
    if p.exists():
        raise InvalidInput(f"{p}: refusing to overwrite an existing private key")
    atomic_write(p, key.to_pem(), mode=0o600)
    atomic_write(p.with_suffix(".pub"), key.public_key.to_pem().encode("ascii"))


def load_or_create_signing_key(path: str | os.PathLike[str]) -> tuple[SigningKey, bool]:
    """The key at ``path``; a new one (saved there, with ``.pub`` beside it) if absent."""
    p = Path(path)
    if p.exists():
        return load_signing_key(p), False
    key = SigningKey.generate()
    save_signing_key(p, key)
    return key, True
