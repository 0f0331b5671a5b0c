"""The marking key at rest: scrypt + AES-256-GCM (docs/design.md section 3).

The file is JSON: the KDF parameters, salt and nonce in clear (they are bound
as associated data, so editing them breaks decryption), then the ciphertext
and tag.  A plaintext key is the bare marking-key JSON and is only written on
explicit request.
"""

from __future__ import annotations

import os
from typing import Any

from Crypto.Cipher import AES
from Crypto.Protocol.KDF import scrypt
from Crypto.Random import get_random_bytes

from wmark.errors import DecodeError, InvalidInput, WrongPassphrase
from wmark.files import atomic_write, read_bounded
from wmark.protocol.hazmat.encoding import (
    b64u_decode,
    b64u_encode,
    canonical_json,
    expect_header,
    int_field,
    parse_json,
)
from wmark.protocol.keys import MAX_MK_BYTES, MK_TYPE, MarkingKey

SEALED_TYPE = "wmark/sealed-marking-key"
VERSION = 1
# OWASP's recommended scrypt cost for interactive use (N=2^17, r=8, p=1): ~0.3 s and 128 MiB.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1
# A hostile key file must not make us allocate more than 128*N*r*p = 512 MiB.
MAX_LOG2_N, MAX_R, MAX_P = 18, 8, 2
SALT_BYTES, NONCE_BYTES = 16, 12


def _derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return scrypt(passphrase.encode("utf-8"), salt, key_len=32, N=n, r=r, p=p)


def seal(mk: MarkingKey, passphrase: str) -> bytes:
    if not passphrase:
        raise InvalidInput("an empty passphrase would leave the marking key unprotected")
    salt, nonce = get_random_bytes(SALT_BYTES), get_random_bytes(NONCE_BYTES)
    header: dict[str, Any] = {
        "type": SEALED_TYPE, "version": VERSION, "kdf": "scrypt",
        "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "cipher": "AES-256-GCM",
        "salt": b64u_encode(salt), "nonce": b64u_encode(nonce),
    }
    cipher = AES.new(_derive(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P), AES.MODE_GCM, nonce=nonce)
    cipher.update(canonical_json(header))
    ciphertext, tag = cipher.encrypt_and_digest(mk.to_bytes())
    return canonical_json({**header, "ciphertext": b64u_encode(ciphertext), "tag": b64u_encode(tag)})


def unseal(data: bytes, passphrase: str | None, *, what: str) -> MarkingKey:
    obj = parse_json(data, what=what, max_bytes=MAX_MK_BYTES)
    if isinstance(obj, dict) and obj.get("type") == MK_TYPE:
        return MarkingKey.from_bytes(data, what=what)
    expect_header(obj, type_=SEALED_TYPE, version=VERSION, what=what)
    if obj.get("kdf") != "scrypt" or obj.get("cipher") != "AES-256-GCM":
        raise DecodeError(f"{what}: unsupported KDF or cipher")
    n = int_field(obj, "n", what=what, low=2, high=2**MAX_LOG2_N)
    if n & (n - 1):
        raise DecodeError(f"{what}: scrypt N must be a power of two")
    r = int_field(obj, "r", what=what, low=1, high=MAX_R)
    p = int_field(obj, "p", what=what, low=1, high=MAX_P)
    salt = b64u_decode(obj.get("salt"), what=f"{what}: salt", size=SALT_BYTES)
    nonce = b64u_decode(obj.get("nonce"), what=f"{what}: nonce", size=NONCE_BYTES)
    ciphertext = b64u_decode(obj.get("ciphertext"), what=f"{what}: ciphertext", max_size=MAX_MK_BYTES)
    tag = b64u_decode(obj.get("tag"), what=f"{what}: tag", size=16)
    if passphrase is None:
        raise WrongPassphrase(f"{what}: the marking key is encrypted; give its passphrase (prompt or WMARK_PASSPHRASE)")
    header = {k: v for k, v in obj.items() if k not in ("ciphertext", "tag")}
    cipher = AES.new(_derive(passphrase, salt, n, r, p), AES.MODE_GCM, nonce=nonce)
    cipher.update(canonical_json(header))
    try:
        plaintext = cipher.decrypt_and_verify(ciphertext, tag)
    except ValueError:
        raise WrongPassphrase(f"{what}: wrong passphrase, or the file was altered (authentication failed)") from None
    return MarkingKey.from_bytes(plaintext, what=what)


def is_sealed(path: str | os.PathLike[str]) -> bool:
    data = read_bounded(path, max_bytes=MAX_MK_BYTES, what="marking key")
    obj = parse_json(data, what=str(path), max_bytes=MAX_MK_BYTES)
    return isinstance(obj, dict) and obj.get("type") == SEALED_TYPE


def save_marking_key(path: str | os.PathLike[str], mk: MarkingKey, passphrase: str | None) -> None:
    """Write ``mk`` sealed under ``passphrase``, or in plaintext when it is None."""
    atomic_write(path, seal(mk, passphrase) if passphrase is not None else mk.to_bytes(), mode=0o600)


def load_marking_key(path: str | os.PathLike[str], passphrase: str | None) -> MarkingKey:
    return unseal(read_bounded(path, max_bytes=MAX_MK_BYTES, what="marking key"), passphrase, what=str(path))
