"""C2SP signed notes with Ed25519 keys, and tlog-cosignature/v1 (docs/design.md section 4b).

A note is UTF-8 text ending in a newline, a blank line, then one line per
signature, ``— NAME base64(key id || signature)`` (c2sp.org/signed-note).
Keys travel as verifier keys ``NAME+KEYID+base64(type || public key)``
(golang.org/x/mod/sumdb/note): type 0x01 signs the note text with Ed25519;
type 0x04 is a witness's timestamped cosignature over
``cosignature/v1\\ntime T\\n`` + the note text (c2sp.org/tlog-cosignature).

Ed25519 comes from the ``cryptography`` package (OpenSSL), never from code
of ours; the note framing is hand-written here because no maintained Python
library implements it (an interop test checks it against one that does).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature as _BadSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from wmark.errors import DecodeError, InvalidSignature
from wmark.files import atomic_write, read_bounded

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
COSIGNATURE_HEADER = b"cosignature/v1\n"
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
# signed-note asks verifiers to accept at least 16 signatures; a log note
# carries one plus one per witness, so 64 bounds parsing with room to spare.
MAX_SIGNATURES = 64
MAX_NOTE_BYTES = 64 * 1024
MAX_NAME_CHARS = 256
_NAME = re.compile(r"[^\s+\u2014]{1,256}")
_KEY_ID = re.compile(r"[0-9a-f]{8}")
_SIGNED_LEN = {ED25519: 64, COSIGNATURE_V1: 8 + 64}


def b64decode_strict(text: str, *, what: str) -> bytes:
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise DecodeError(f"{what}: not standard base64") from None
    if base64.b64encode(data).decode("ascii") != text:
        raise DecodeError(f"{what}: not canonical base64")
    return data


def check_name(name: str, *, what: str = "key name") -> str:
    if not _NAME.fullmatch(name):
        raise DecodeError(f"{what}: {name[:60]!r} is not a key name (1 to {MAX_NAME_CHARS} characters, "
                          f"no spaces, no '+')")
    return name


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """SHA-256(name || 0x0A || type || public key)[:4], as signed-note recommends."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class Verifier:
    """A verifier key: who (name, key id), how (type) and with what (Ed25519 public key)."""

    name: str
    sig_type: int
    public_key: bytes

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.sig_type not in _SIGNED_LEN:
            raise DecodeError(f"verifier key {self.name}: signature type {self.sig_type:#04x} is not "
                              f"Ed25519 (0x01) or cosignature/v1 (0x04)")
        if len(self.public_key) != 32:
            raise DecodeError(f"verifier key {self.name}: an Ed25519 public key is 32 bytes")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.sig_type, self.public_key)

    def encode(self) -> str:
        """``NAME+KEYID+base64(type || key)``: the vkey format of sumdb/note."""
        material = base64.b64encode(bytes([self.sig_type]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{material}"

    @classmethod
    def decode(cls, text: str, *, what: str = "verifier key") -> "Verifier":
        parts = text.strip().split("+", 2)
        if len(parts) != 3 or not _KEY_ID.fullmatch(parts[1]):
            raise DecodeError(f"{what}: not of the form NAME+KEYID+BASE64 (KEYID 8 lowercase hex digits)")
        name, hex_id, material = parts
        raw = b64decode_strict(material, what=what)
        if not raw:
            raise DecodeError(f"{what}: no key material")
        verifier = cls(check_name(name, what=what), raw[0], raw[1:])
        if not hmac.compare_digest(verifier.key_id, bytes.fromhex(hex_id)):
            raise DecodeError(f"{what}: key id {hex_id} does not match the key")
        return verifier

    def _ed25519(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.public_key)

    def verify(self, text: bytes, signature: bytes) -> int | None:
        """Whether ``signature`` (without the key id) signs ``text``; a cosignature's time.

        Returns None for an Ed25519 note signature and the POSIX timestamp for a
        cosignature; raises :class:`InvalidSignature` when it does not verify.
        """
        if len(signature) != _SIGNED_LEN[self.sig_type]:
            raise InvalidSignature(f"signature by {self.name} has {len(signature)} bytes, "
                                   f"expected {_SIGNED_LEN[self.sig_type]}")
        timestamp, message = None, text
        if self.sig_type == COSIGNATURE_V1:
            (timestamp,) = struct.unpack(">Q", signature[:8])
            if timestamp >= 2**63:
                raise InvalidSignature(f"cosignature by {self.name}: timestamp beyond 2^63 - 1")
            message = cosigned_message(text, timestamp)
            signature = signature[8:]
        try:
            self._ed25519().verify(signature, message)
        except _BadSignature:
            raise InvalidSignature(f"the signature by {self.name} ({self.key_id.hex()}) does not verify") from None
        return timestamp


def cosigned_message(text: bytes, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: header, time line, then the checkpoint text."""
    return COSIGNATURE_HEADER + b"time %d\n" % timestamp + text


class Signer:
    """An Ed25519 key that signs notes (type 0x01) or cosigns checkpoints (type 0x04) as ``name``."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey, sig_type: int = ED25519) -> None:
        self.verifier = Verifier(check_name(name), sig_type, _raw(private_key.public_key()))
        self._key = private_key

    @property
    def name(self) -> str:
        return self.verifier.name

    @classmethod
    def generate(cls, name: str, sig_type: int = ED25519) -> "Signer":
        return cls(name, Ed25519PrivateKey.generate(), sig_type)

    @classmethod
    def from_skey(cls, text: str, *, what: str = "signer key") -> "Signer":
        """Read ``PRIVATE+KEY+NAME+KEYID+base64(type || seed)``, the skey format of sumdb/note."""
        parts = text.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"] or not _KEY_ID.fullmatch(parts[3]):
            raise DecodeError(f"{what}: not of the form PRIVATE+KEY+NAME+KEYID+BASE64")
        raw = b64decode_strict(parts[4], what=what)
        if len(raw) != 33 or raw[0] not in _SIGNED_LEN:
            raise DecodeError(f"{what}: expected a type byte (0x01 or 0x04) and a 32-byte Ed25519 seed")
        signer = cls(parts[2], Ed25519PrivateKey.from_private_bytes(raw[1:]), raw[0])
        if not hmac.compare_digest(signer.verifier.key_id, bytes.fromhex(parts[3])):
            raise DecodeError(f"{what}: key id {parts[3]} does not match the key")
        return signer

    def to_skey(self) -> str:
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        seed = self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        material = base64.b64encode(bytes([self.verifier.sig_type]) + seed).decode("ascii")
        return f"PRIVATE+KEY+{self.name}+{self.verifier.key_id.hex()}+{material}"

    def sign(self, text: bytes, *, timestamp: int | None = None) -> "NoteSignature":
        """A signature line's content; a cosigner must give the POSIX ``timestamp``."""
        if self.verifier.sig_type == COSIGNATURE_V1:
            if timestamp is None or not 0 <= timestamp < 2**63:
                raise ValueError("a cosignature needs a POSIX timestamp below 2^63")
            blob = struct.pack(">Q", timestamp) + self._key.sign(cosigned_message(text, timestamp))
        else:
            blob = self._key.sign(text)
        return NoteSignature(self.name, self.verifier.key_id, blob)


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        return f"{SIGNATURE_PREFIX}{self.name} {base64.b64encode(self.key_id + self.signature).decode('ascii')}\n"

    @classmethod
    def parse_line(cls, line: str, *, what: str) -> "NoteSignature":
        if not line.startswith(SIGNATURE_PREFIX):
            raise DecodeError(f"{what}: a signature line starts with an em dash and a space")
        name, _, blob = line[len(SIGNATURE_PREFIX):].partition(" ")
        raw = b64decode_strict(blob, what=f"{what}: signature by {name[:60]!r}")
        if len(raw) < 5:
            raise DecodeError(f"{what}: signature by {name[:60]!r} is too short")
        return cls(check_name(name, what=what), raw[:4], raw[4:])


@dataclass(frozen=True)
class Note:
    """A note's text (with its final newline) and its signatures, in order."""

    text: bytes
    signatures: tuple[NoteSignature, ...]

    def encode(self) -> bytes:
        return self.text + b"\n" + "".join(s.line() for s in self.signatures).encode("utf-8")

    def with_signatures(self, extra: tuple[NoteSignature, ...]) -> "Note":
        """This note with ``extra`` appended, leaving out any line it already has."""
        kept = self.signatures + tuple(s for s in extra if s not in self.signatures)
        return Note(self.text, kept)

    @classmethod
    def decode(cls, data: bytes, *, what: str = "signed note") -> "Note":
        if len(data) > MAX_NOTE_BYTES:
            raise DecodeError(f"{what}: longer than {MAX_NOTE_BYTES} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError(f"{what}: not UTF-8") from None
        if _CONTROL.search(text):
            raise DecodeError(f"{what}: contains control characters")
        # The signatures follow the *last* blank line.
        split = text.rfind("\n\n")
        if split < 0 or not text.endswith("\n"):
            raise DecodeError(f"{what}: no blank line between the text and the signatures")
        body, lines = text[:split + 1], text[split + 2:].split("\n")[:-1]
        if not lines:
            raise DecodeError(f"{what}: no signature lines")
        if len(lines) > MAX_SIGNATURES:
            raise DecodeError(f"{what}: more than {MAX_SIGNATURES} signatures")
        return cls(body.encode("utf-8"), tuple(NoteSignature.parse_line(line, what=what) for line in lines))

    def verified_by(self, verifier: Verifier) -> int | None:
        """Check the signature by ``verifier``: None for a note key, the time for a cosigner.

        Lines from other keys are ignored, as signed-note requires; a line
        from this key that does not verify, a missing one, or two lines from
        it raise :class:`InvalidSignature`.
        """
        mine = [s for s in self.signatures if s.name == verifier.name and hmac.compare_digest(s.key_id,
                                                                                           verifier.key_id)]
        if not mine:
            raise InvalidSignature(f"not signed by {verifier.name} (key id {verifier.key_id.hex()})")
        if len(mine) > 1:
            raise InvalidSignature(f"signed {len(mine)} times by {verifier.name}: ambiguous")
        return verifier.verify(self.text, mine[0].signature)


MAX_KEY_FILE_BYTES = 1024
# What a note may not contain: every C0 control character but the newline.
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f]")


def load_or_create_signer(path: Path, vkey: Path, name: str, sig_type: int) -> Signer:
    """The note key kept at ``path`` (an skey, mode 0600), created if absent;
    its verifier key is (re)written to ``vkey`` when that is missing."""
    if path.exists():
        signer = Signer.from_skey(read_bounded(path, max_bytes=MAX_KEY_FILE_BYTES, what="note key")
                                  .decode("ascii", "replace"), what=str(path))
    else:
        signer = Signer.generate(name, sig_type)
        atomic_write(path, signer.to_skey().encode("ascii") + b"\n", mode=0o600)
    if not vkey.exists():
        atomic_write(vkey, signer.verifier.encode().encode("ascii") + b"\n")
    return signer


def load_verifier(text_or_path: str, *, what: str = "verifier key") -> Verifier:
    """A verifier key given inline (NAME+KEYID+BASE64) or as a file holding one."""
    if "+" in text_or_path and not Path(text_or_path).exists():
        return Verifier.decode(text_or_path, what=what)
    data = read_bounded(text_or_path, max_bytes=MAX_KEY_FILE_BYTES, what=what)
    return Verifier.decode(data.decode("ascii", "replace"), what=f"{text_or_path}")
