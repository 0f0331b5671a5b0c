"""The registry as a randomness beacon, and the trigger labels it binds (docs/design.md section 4b).

A log holds an ECVRF-P256-SHA256-TAI key beside its signing key.  When it
appends a verification key it evaluates the VRF on the key's digest and
returns the output ``beta`` with its proof in the receipt, together with a
statement, signed with the log's signing key, naming its VRF public key.  So
anyone holding the log's public key checks ``beta`` offline; the log cannot
bias it (a VRF output is unique for its input, and the input is the vk
digest alone, leaving the log no field to vary), and the owner cannot predict
it before registering (it is a pseudorandom function of the log's secret).

A *registry-bound* key (``labels: registry`` in its vk) trains and is checked
with the labels the receipt determines rather than the committed ones: item
``i``'s effective label is its committed label shifted by a uniform amount
drawn from ``beta`` and ``i`` (:func:`bound_label`).  The owner committed
every input and label before ``beta`` existed, so whatever they chose, each
effective label is uniform and independent of the inputs: the chance that a
model not trained on them gives item ``i`` its label is exactly ``1/L``
(margin items: at most ``1/(L-1)``, over the classes other than the true one).
The committed label stays the per-item secret mixed in, so an unopened item's
label stays hidden.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from wmark.errors import DecodeError, InvalidProof, InvalidSignature
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.encoding import (
    WireEnum,
    b64u_decode,
    b64u_encode,
    canonical_json,
    expect_header,
    field,
    only_fields,
    parse_json,
)
from wmark.protocol.hazmat.identity import PublicKey, SigningKey
from wmark.protocol.hazmat.sampling import DigestStream
from wmark.protocol.hazmat.vrf import PROOF_BYTES, VrfPublicKey, VrfSecretKey

VERSION = 1
BEACON_TYPE = "wmark/beacon"
BEACON_KEY_TYPE = "wmark/beacon-key"
BEACON_KEY_PAYLOAD_TYPE = "application/vnd.wmark.beacon-key+json"
ALPHA_TAG = b"wmark/beacon/alpha/v1"
SHIFT_TAG = "wmark/beacon/label-shift/v1"
BETA_BYTES = 32
MAX_STATEMENT_BYTES = 4096


class InvalidBeacon(InvalidProof):
    """A receipt's beacon that does not prove its ``beta``: an edited receipt, never a mere
    non-registration, so commands report it as invalid input (exit 2)."""


class LabelSource(WireEnum, what="label source"):
    """Where a key's trigger labels come from: its commitments alone (the paper), or
    its commitments shifted by the registry's beacon."""

    COMMITTED = "committed"
    REGISTRY = "registry"


def beacon_alpha(vk_digest: bytes) -> bytes:
    """The VRF input for a key: its digest and nothing the log chooses (no index, no time)."""
    return ALPHA_TAG + vk_digest


def sign_beacon_key(vrf_key: VrfPublicKey, log_key: SigningKey) -> dsse.Envelope:
    """The log's statement that ``vrf_key`` is its beacon key."""
    payload = canonical_json({"type": BEACON_KEY_TYPE, "version": VERSION,
                              "vrf_public_key": b64u_encode(vrf_key.to_bytes())})
    return dsse.sign(BEACON_KEY_PAYLOAD_TYPE, payload, log_key)


def verify_beacon_key(statement: dsse.Envelope, log_key: PublicKey | None, *, what: str) -> VrfPublicKey:
    """The beacon key a statement names, if the log's signing key signed it.

    ``log_key=None`` reads the statement unchecked: only for an owner reading
    the receipt its own ``wmark register`` checked against the log's key.
    """
    if log_key is None:
        if statement.payload_type != BEACON_KEY_PAYLOAD_TYPE:
            raise DecodeError(f"{what}: not a beacon key statement")
        payload = statement.payload
    else:
        try:
            payload = dsse.verify(statement, log_key, payload_type=BEACON_KEY_PAYLOAD_TYPE, what=what)
        except InvalidSignature as exc:
            raise InvalidBeacon(f"{exc}: the beacon key was not published by this log") from None
    obj = expect_header(parse_json(payload, what=what, max_bytes=MAX_STATEMENT_BYTES), type_=BEACON_KEY_TYPE,
                        version=VERSION, what=what)
    only_fields(obj, {"type", "version", "vrf_public_key"}, what=what)
    return VrfPublicKey.from_bytes(b64u_decode(obj.get("vrf_public_key"), what=f"{what}: VRF key"))


@dataclass(frozen=True)
class Beacon:
    """What a receipt carries: the log's signed beacon key, ``beta`` and its VRF proof."""

    key_statement: dsse.Envelope
    beta: bytes
    proof: bytes

    @classmethod
    def evaluate(cls, vrf_sk: VrfSecretKey, key_statement: dsse.Envelope, vk_digest: bytes) -> Beacon:
        # beta straight from the proof (RFC 9381 section 5.2): re-verifying our own
        # proof cost four point multiplications, more than proving, on every append;
        # every verifier checks the proof anyway (Beacon.verify).
        beta, proof = vrf_sk.evaluate(beacon_alpha(vk_digest))
        return cls(key_statement, beta, proof)

    def to_obj(self) -> dict[str, Any]:
        return {"type": BEACON_TYPE, "version": VERSION, "key": self.key_statement.to_obj(),
                "beta": b64u_encode(self.beta), "proof": b64u_encode(self.proof)}

    @classmethod
    def from_obj(cls, obj: Any, *, what: str = "beacon") -> Beacon:
        obj = expect_header(obj, type_=BEACON_TYPE, version=VERSION, what=what)
        only_fields(obj, {"type", "version", "key", "beta", "proof"}, what=what)
        statement = field(obj, "key", dict, what=what)
        return cls(
            key_statement=dsse.Envelope.from_json(canonical_json(statement), what=f"{what}: key",
                                                  max_bytes=MAX_STATEMENT_BYTES),
            beta=b64u_decode(obj.get("beta"), what=f"{what}: beta", size=BETA_BYTES),
            proof=b64u_decode(obj.get("proof"), what=f"{what}: proof", size=PROOF_BYTES),
        )

    def verify(self, vk_digest: bytes, log_key: PublicKey | None, *, what: str = "receipt's beacon") -> bytes:
        """``beta`` if the log's beacon key proves it for ``vk_digest``; raise naming the problem."""
        vrf_key = verify_beacon_key(self.key_statement, log_key, what=f"{what} key")
        try:
            proven = vrf_key.verify(beacon_alpha(vk_digest), self.proof)
        except (InvalidProof, DecodeError) as exc:
            raise InvalidBeacon(f"{what}: {exc} (a proof edited, or made for another entry's key)") from None
        if not hmac.compare_digest(proven, self.beta):
            raise InvalidBeacon(f"{what}: beta is not the VRF output its proof proves (beta was edited)")
        return self.beta


def label_shift(beta: bytes, index: int, modulus: int) -> int:
    """Item ``index``'s shift, uniform in [0, modulus) by rejection sampling
    (:class:`~wmark.protocol.hazmat.sampling.DigestStream`), independent per item."""
    if len(beta) != BETA_BYTES:
        raise ValueError(f"beta must be {BETA_BYTES} bytes")
    return DigestStream(SHIFT_TAG, beta + index.to_bytes(4, "big")).randbelow(modulus)


def bound_label(beta: bytes, index: int, committed: int, num_classes: int, *, true_class: int | None = None) -> int:
    """Item ``index``'s effective label under ``beta``.

    ``(committed + shift) mod L``: a bijection of the committed label for each
    shift, so a uniform shift makes the result uniform whatever was committed.
    A margin item (``true_class`` given) shifts its offset from the true class
    modulo ``L - 1``, so the label stays among the classes other than the true one.
    """
    if true_class is None:
        return (committed + label_shift(beta, index, num_classes)) % num_classes
    if committed == true_class:
        raise ValueError(f"item {index}: a margin label is never the true class")
    offset = (committed - true_class - 1) % num_classes
    shifted = (offset + label_shift(beta, index, num_classes - 1)) % (num_classes - 1)
    return (true_class + 1 + shifted) % num_classes
