"""The public side of zero-knowledge verification (docs/design.md section 4c).

When the verifier holds the suspect model's weights, the owner proves, per
challenged index ``i``, that the model's quantised circuit maps a hidden input
to a public class, where the hidden input's Poseidon hash is the commitment
``h_i`` registered in ``vk``.  The hidden input is the item's image, uint8
C x H x W pixels in that order, followed by ``SALT_BYTES`` secret salt bytes
(one input element each, which the circuit ignores), every element quantised
at ``2**input_scale``: without the salt a low-entropy image could be found by
trying candidates against its hash.

This module holds what the protocol compares and signs: the commitments in
``vk``, the salts in ``mk``, the parameters a challenge pins (the SRS and the
circuit the verifier derived) and the per-item statements of a reveal.  It
never runs a proof system; the ezkl code that does lives in
:mod:`wmark.watermark.zkcircuit`, so ``protocol`` stays free of torch and ezkl.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from wmark.errors import DecodeError
from wmark.protocol.hazmat.commitment import Opening, Scheme
from wmark.protocol.hazmat.encoding import WireEnum, b64u_decode, b64u_encode, field, int_field, object_with
from wmark.protocol.items import ItemOpening

# ezkl 23's Poseidon over BN254, inputs in the layout above; a field element
# is written as ezkl writes instances: 32 bytes, little-endian.
HASH_NAME = "ezkl-poseidon-bn254/v1"
FELT_BYTES = 32
SALT_BYTES = 32
MIN_INPUT_SCALE, MAX_INPUT_SCALE = 0, 16
MIN_LOGROWS, MAX_LOGROWS = 10, 26
# An ezkl proof of one inference is about 6 KB; larger is not a proof of ours.
MAX_PROOF_BYTES = 256 * 1024
# A model proven in pieces (docs/design.md section 4c): at most this many proofs per item.
MAX_PIECES = 32
# The rows a challenge may allow one piece: up to 2^MAX_LOGROWS.
MIN_PIECE_ROWS, MAX_PIECE_ROWS = 1, 1 << MAX_LOGROWS
# ZkItem encodings: v1 carries one proof ("proof"), v2 one per piece ("proofs").
ITEM_V1, ITEM_V2 = 1, 2

CAVEAT_ZK = ("zero-knowledge: no trigger image revealed; each match is a proof that the model maps the hidden "
             "input committed in the verification key to the opened label")
CAVEAT_ZK_HIDDEN = ("zero-knowledge: the hidden inputs are checked against their Poseidon commitments only, not "
                    "against the VRF or the image commitments, so nothing shows they are trigger patterns rather "
                    "than ordinary task images with their true classes; the decision trusts how the key was made "
                    "(wmark keygen --zk) and when it was registered")
CAVEAT_DESIGNATED = ("designated-verifier setup: the verifier generated the SRS itself, so the proofs convince "
                     "that verifier only; a third party needs a verdict under a public ceremony SRS")


class SrsOrigin(WireEnum, what="SRS origin"):
    """Who made the structured reference string, and so whom the proofs convince."""

    VERIFIER = "verifier"
    CEREMONY = "ceremony"


def _felt(value: Any, *, what: str) -> bytes:
    return b64u_decode(value, what=what, size=FELT_BYTES)


def _section_to_obj(input_scale: int, name: str, values: tuple[bytes, ...]) -> dict[str, Any]:
    return {"hash": HASH_NAME, "input_scale": input_scale, "salt_bytes": SALT_BYTES,
            name: [b64u_encode(v) for v in values]}


def _section_from_obj(obj: Any, name: str, *, n: int, size: int, what: str) -> tuple[int, tuple[bytes, ...]]:
    """The scale and the n values of a ``zk`` section listing them under ``name``."""
    what = f"{what}: zk"
    object_with(obj, {"hash", "input_scale", "salt_bytes", name}, what=what)
    if obj.get("hash") != HASH_NAME:
        raise DecodeError(f"{what}: hash {obj.get('hash')!r} is not {HASH_NAME!r}")
    if obj.get("salt_bytes") != SALT_BYTES or isinstance(obj.get("salt_bytes"), bool):
        raise DecodeError(f"{what}: salt_bytes must be {SALT_BYTES}")
    raw = field(obj, name, list, what=what)
    if len(raw) != n:
        raise DecodeError(f"{what}: {len(raw)} {name} for {n} trigger items")
    scale = int_field(obj, "input_scale", what=what, low=MIN_INPUT_SCALE, high=MAX_INPUT_SCALE)
    return scale, tuple(b64u_decode(v, what=f"{what}: {name[:-1]} {i}", size=size) for i, v in enumerate(raw))


@dataclass(frozen=True)
class ZkCommitments:
    """The ``zk`` section of ``vk``: one salted Poseidon hash per trigger item."""

    input_scale: int
    hashes: tuple[bytes, ...]

    def to_obj(self) -> dict[str, Any]:
        return _section_to_obj(self.input_scale, "commitments", self.hashes)

    @classmethod
    def from_obj(cls, obj: Any, *, n: int, what: str) -> "ZkCommitments":
        return cls(*_section_from_obj(obj, "commitments", n=n, size=FELT_BYTES, what=what))


@dataclass(frozen=True, repr=False)
class ZkSecrets:
    """The ``zk`` section of ``mk``: the salts, one per item, and the pinned scale."""

    input_scale: int
    salts: tuple[bytes, ...]

    def __repr__(self) -> str:
        return f"ZkSecrets(input_scale={self.input_scale}, <secret>)"

    def to_obj(self) -> dict[str, Any]:
        return _section_to_obj(self.input_scale, "salts", self.salts)

    @classmethod
    def from_obj(cls, obj: Any, *, n: int, what: str) -> "ZkSecrets":
        return cls(*_section_from_obj(obj, "salts", n=n, size=SALT_BYTES, what=what))


class InputHasher(Protocol):
    """What KeyGen needs to commit to an item's hidden input (implemented with ezkl
    in :mod:`wmark.watermark.zkcircuit`)."""

    input_scale: int

    def __call__(self, opening: ItemOpening, salt: bytes) -> bytes:
        """The 32-byte hash of the item's pixels followed by ``salt``."""


@dataclass(frozen=True)
class ZkParameters:
    """What a zero-knowledge challenge pins, so that prover and verifier prove and
    check against one circuit and one SRS.

    ``circuit_sha256`` names the ezkl verification key the verifier derived
    from the model it holds and the SRS (or, for a model proven in pieces, all
    the pieces' keys and the cut): a prover whose toolchain builds another
    circuit learns it before proving rather than from a failed verdict.
    ``piece_rows``, when set, is the estimated rows the verifier allows one
    piece: both sides cut the model from it and from the model alone, so the
    prover never chooses the cut (docs/design.md section 4c); absent, the
    model is proven whole (as in challenges made before split proofs).
    """

    srs_sha256: bytes
    srs_logrows: int
    srs_origin: SrsOrigin
    circuit_sha256: bytes
    piece_rows: int | None = None

    def to_obj(self) -> dict[str, Any]:
        obj = {"srs_sha256": b64u_encode(self.srs_sha256), "srs_logrows": self.srs_logrows,
               "srs_origin": self.srs_origin.value, "circuit_sha256": b64u_encode(self.circuit_sha256)}
        return obj if self.piece_rows is None else {**obj, "piece_rows": self.piece_rows}

    @classmethod
    def from_obj(cls, obj: Any, *, what: str) -> "ZkParameters":
        what = f"{what}: zk"
        object_with(obj, {"srs_sha256", "srs_logrows", "srs_origin", "circuit_sha256", "piece_rows"}, what=what)
        return cls(
            srs_sha256=b64u_decode(obj.get("srs_sha256"), what=f"{what}: srs_sha256", size=32),
            srs_logrows=int_field(obj, "srs_logrows", what=what, low=MIN_LOGROWS, high=MAX_LOGROWS),
            srs_origin=SrsOrigin.parse(field(obj, "srs_origin", str, what=what)),
            circuit_sha256=b64u_decode(obj.get("circuit_sha256"), what=f"{what}: circuit_sha256", size=32),
            piece_rows=(int_field(obj, "piece_rows", what=what, low=MIN_PIECE_ROWS, high=MAX_PIECE_ROWS)
                        if "piece_rows" in obj else None),
        )


@dataclass(frozen=True)
class ZkStatement:
    """The proofs of one item and the public instances they claim: the hidden
    input's hash and the class the circuit computed.  A model proven whole has
    one proof; one proven in pieces has ``proof`` for its first piece and
    ``more_proofs`` for the others, in the order both sides derive."""

    input_hash: bytes
    predicted: int
    proof: bytes
    more_proofs: tuple[bytes, ...] = ()

    @property
    def proofs(self) -> tuple[bytes, ...]:
        return (self.proof, *self.more_proofs)


@dataclass(frozen=True, repr=False)
class ZkItem:
    """What a zero-knowledge reveal carries for index ``i``: the label's opening
    (never the image's) and the proof."""

    index: int
    label: int
    label_randomness: Opening
    statement: ZkStatement

    def __repr__(self) -> str:
        return f"ZkItem(index={self.index}, label={self.label}, predicted={self.statement.predicted})"

    def to_obj(self) -> dict[str, Any]:
        """The v2 encoding (``proofs``, one per piece)."""
        return {"index": self.index, "label": self.label, "r_label": b64u_encode(self.label_randomness.randomness),
                "input_hash": b64u_encode(self.statement.input_hash), "predicted": self.statement.predicted,
                "proofs": [b64u_encode(p) for p in self.statement.proofs]}

    @classmethod
    def from_obj(cls, obj: Any, scheme: Scheme, *, what: str, max_index: int, max_class: int,
                 version: int = ITEM_V2) -> "ZkItem":
        """Either encoding: v1 (one ``proof``, reveals before split proofs) or v2."""
        name = "proof" if version == ITEM_V1 else "proofs"
        object_with(obj, {"index", "label", "r_label", "input_hash", "predicted", name}, what=what)
        if version == ITEM_V1:
            proofs = [obj.get("proof")]
        else:
            proofs = field(obj, "proofs", list, what=what)
            if not 1 <= len(proofs) <= MAX_PIECES:
                raise DecodeError(f"{what}: 1 to {MAX_PIECES} proofs, not {len(proofs)}")
        first, *more = (b64u_decode(p, what=f"{what}: proof {j}", max_size=MAX_PROOF_BYTES)
                        for j, p in enumerate(proofs))
        return cls(
            index=int_field(obj, "index", what=what, low=0, high=max_index),
            label=int_field(obj, "label", what=what, low=0, high=max_class),
            label_randomness=Opening(scheme, b64u_decode(obj.get("r_label"), what=f"{what}: r_label", size=32)),
            statement=ZkStatement(
                input_hash=_felt(obj.get("input_hash"), what=f"{what}: input_hash"),
                predicted=int_field(obj, "predicted", what=what, low=0, high=max_class),
                proof=first, more_proofs=tuple(more),
            ),
        )


@dataclass(frozen=True)
class ZkFailure:
    """An item whose proof did not count: the index and why (reported in the verdict)."""

    index: int
    reason: str


@dataclass(frozen=True)
class ZkVerdictInfo:
    """The ``zk`` section of a verdict: the setup the proofs were checked under and
    the items whose proofs failed (each counted as a non-match)."""

    parameters: ZkParameters
    failures: tuple[ZkFailure, ...]

    def to_obj(self) -> dict[str, Any]:
        return {**self.parameters.to_obj(), "failures": [[f.index, f.reason] for f in self.failures]}

    @classmethod
    def from_obj(cls, obj: Any, *, what: str, max_text: int, max_items: int) -> "ZkVerdictInfo":
        if not isinstance(obj, dict):
            raise DecodeError(f"{what}: zk must be an object")
        failures_raw = obj.get("failures")
        if not isinstance(failures_raw, list) or len(failures_raw) > max_items:
            raise DecodeError(f"{what}: zk failures must be a list of at most {max_items}")
        failures = []
        for entry in failures_raw:
            if (not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[0], int)
                    or isinstance(entry[0], bool) or not 0 <= entry[0] < max_items
                    or not isinstance(entry[1], str) or len(entry[1]) > max_text):
                raise DecodeError(f"{what}: a zk failure must be [index, reason]")
            failures.append(ZkFailure(entry[0], entry[1]))
        parameters = ZkParameters.from_obj({k: v for k, v in obj.items() if k != "failures"}, what=what)
        return cls(parameters, tuple(failures))


def srs_beside(challenge_path: str | os.PathLike[str]) -> Path:
    """Where a challenge file's SRS travels with it: CHALLENGE.srs."""
    return Path(challenge_path).with_suffix(".srs")
