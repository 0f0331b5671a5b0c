"""DSSE envelopes: the signed-object format of in-toto and Sigstore.

Spec: https://github.com/secure-systems-lab/dsse (envelope.md, protocol.md).
The signature covers the pre-authentication encoding
``"DSSEv1" SP len(type) SP type SP len(body) SP body``, never a
re-serialisation, so any DSSE-aware tool can check a wmark object.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from functools import cached_property

from wmark.errors import DecodeError, InvalidSignature
from wmark.protocol.hazmat.encoding import MAX_DOCUMENT_BYTES, parse_json
from wmark.protocol.hazmat.identity import PublicKey, SigningKey

MAX_SIGNATURES = 4
MAX_SIG_BYTES = 128


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def to_obj(self) -> dict:
        return {
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "payloadType": self.payload_type,
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")} for s in self.signatures
            ],
        }

    def to_json(self) -> bytes:
        return (json.dumps(self.to_obj(), indent=2, sort_keys=True) + "\n").encode("utf-8")

    # Once per envelope: the log's receipts of one batch share their tree head and beacon key.
    @cached_property
    def compact_json(self) -> str:
        """:meth:`to_obj` as compact JSON, keys sorted (for :func:`~wmark.protocol.hazmat.encoding.wire_json`)."""
        return json.dumps(self.to_obj(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: bytes, *, what: str = "envelope", max_bytes: int = MAX_DOCUMENT_BYTES) -> "Envelope":
        return cls.from_obj(parse_json(data, what=what, max_bytes=max_bytes), what=what)

    @classmethod
    def from_obj(cls, obj: object, *, what: str = "envelope") -> "Envelope":
        if not isinstance(obj, dict) or set(obj) - {"payload", "payloadType", "signatures"}:
            raise DecodeError(f"{what}: not a DSSE envelope (expected payload, payloadType, signatures)")
        payload_type = obj.get("payloadType")
        if not isinstance(payload_type, str) or not payload_type:
            raise DecodeError(f"{what}: DSSE payloadType missing")
        payload = _b64_std(obj.get("payload"), what=f"{what}: payload")
        sigs = obj.get("signatures")
        if not isinstance(sigs, list) or not 1 <= len(sigs) <= MAX_SIGNATURES:
            raise DecodeError(f"{what}: DSSE signatures must be a list of 1 to {MAX_SIGNATURES}")
        parsed = []
        for entry in sigs:
            if not isinstance(entry, dict) or set(entry) - {"keyid", "sig"}:
                raise DecodeError(f"{what}: malformed DSSE signature entry")
            keyid = entry.get("keyid", "")
            if not isinstance(keyid, str) or len(keyid) > 128:
                raise DecodeError(f"{what}: malformed DSSE keyid")
            sig = _b64_std(entry.get("sig"), what=f"{what}: signature")
            if len(sig) > MAX_SIG_BYTES:
                raise DecodeError(f"{what}: signature longer than {MAX_SIG_BYTES} bytes")
            parsed.append(Signature(keyid, sig))
        return cls(payload_type, payload, tuple(parsed))


def _b64_std(text: object, *, what: str) -> bytes:
    if not isinstance(text, str):
        raise DecodeError(f"{what}: expected a base64 string")
    # DSSE allows standard or URL-safe base64; accept both, strictly.
    normalised = text.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(normalised + "=" * (-len(normalised) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError(f"{what}: invalid base64") from None


def sign(payload_type: str, payload: bytes, key: SigningKey) -> Envelope:
    sig = key.sign(pae(payload_type, payload))
    return Envelope(payload_type, payload, (Signature(key.public_key.keyid, sig),))


def verify(envelope: Envelope, public_key: PublicKey, *, payload_type: str, what: str = "envelope") -> bytes:
    """Return the payload if ``public_key`` signed it with the expected type."""
    if envelope.payload_type != payload_type:
        raise DecodeError(f"{what}: payloadType is {envelope.payload_type!r}, expected {payload_type!r}")
    message = pae(envelope.payload_type, envelope.payload)
    for sig in envelope.signatures:
        if sig.keyid == public_key.keyid:
            try:
                public_key.verify(sig.sig, message)
            except InvalidSignature as exc:
                raise InvalidSignature(f"{what}: {exc} (key {public_key.fingerprint[:23]}…)") from None
            return envelope.payload
    raise InvalidSignature(f"{what}: no signature by key {public_key.fingerprint[:23]}…")
