"""The verification key ``vk`` and the marking key ``mk`` (Adi et al. 2018, Section 2.2).

``vk`` is public: the commitments ``c_t``, ``c_L``, the scheme parameters, the
VRF public key of a derived trigger set and the owner's public key, signed by
the owner as a DSSE envelope.  ``mk`` is secret: the openings of every
commitment (and the VRF secret key), stored encrypted by
:mod:`wmark.protocol.keyfile`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from wmark.errors import DecodeError, InvalidSignature
from wmark.files import read_bounded
from wmark.protocol.beacon import LabelSource
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat import encoding as enc
from wmark.protocol.hazmat.commitment import Commitment, Opening, Scheme, commitment_bytes
from wmark.protocol.hazmat.hashing import tagged_hash, tagged_hashes_of_pairs
from wmark.protocol.hazmat.identity import PublicKey
from wmark.protocol.hazmat.vrf import PROOF_BYTES, VrfPublicKey, VrfSecretKey
from wmark.protocol.items import ItemCommitments, ItemOpening, TriggerKind
from wmark.protocol.limits import MAX_CHANNELS, MAX_CLASSES, MAX_ITEMS, MAX_SIDE  # re-exported: named here before
from wmark.protocol.margin import MarginSource
from wmark.protocol.zk import ZkCommitments, ZkSecrets

VK_PAYLOAD_TYPE = "application/vnd.wmark.verification-key+json"
VK_TYPE = "wmark/verification-key"
MK_TYPE = "wmark/marking-key"
VERSION = 1
MAX_VK_BYTES = 8 * 1024 * 1024
MAX_MK_BYTES = 128 * 1024 * 1024
_ITEM_FIELDS = {"item", "label"}
DIGEST_TAG = "wmark/vk/v1"
ITEM_DIGEST_TAG = "wmark/vk/item/v1"


def _shape_to_json(shape: tuple[int, int, int]) -> list[int]:
    return list(shape)


def parse_shape(value: Any, *, what: str) -> tuple[int, int, int]:
    if (not isinstance(value, list) or len(value) != 3
            or not all(isinstance(d, int) and not isinstance(d, bool) for d in value)):
        raise DecodeError(f"{what}: input_shape must be [C, H, W]")
    c, h, w = value
    if not (1 <= c <= MAX_CHANNELS and 1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise DecodeError(f"{what}: input_shape {value} outside [1..{MAX_CHANNELS}]x[1..{MAX_SIDE}]x[1..{MAX_SIDE}]")
    return (c, h, w)


@dataclass(frozen=True)
class VerificationKey:
    """The public key ``vk = (c_t, c_L)`` plus parameters and the owner's identity."""

    scheme: Scheme
    kind: TriggerKind
    input_shape: tuple[int, int, int]
    num_classes: int
    commitments: tuple[ItemCommitments, ...]
    owner: PublicKey
    vrf_key: VrfPublicKey | None
    created: str
    # Present only for keys made with ``wmark keygen --zk`` (docs/design.md section 4c).
    zk: ZkCommitments | None = None
    # Present for, and only for, margin keys: the public split their queries come from.
    margin: MarginSource | None = None
    # REGISTRY: the labels are the committed ones shifted by the registry's beacon (docs/design.md section 2).
    labels: LabelSource = LabelSource.COMMITTED

    @property
    def n(self) -> int:
        return len(self.commitments)

    @property
    def registry_bound(self) -> bool:
        return self.labels is LabelSource.REGISTRY

    @cached_property
    def payload(self) -> bytes:
        """The canonical bytes the owner signs (computed once: keys are immutable)."""
        return _canonical_payload(self._fields(), [
            {"item": enc.b64u_encode(c.item.value), "label": enc.b64u_encode(c.label.value)}
            for c in self.commitments
        ])

    def _fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}

    @cached_property
    def digest(self) -> bytes:
        """What challenges, reveals, verdicts and the registry name this key by."""
        return tagged_hash(DIGEST_TAG, self.payload)

    def commitment_digests(self) -> list[bytes]:
        """One digest per item, so the registry can spot a transplanted commitment."""
        return list(self._commitment_digests)

    @cached_property
    def _commitment_digests(self) -> tuple[bytes, ...]:
        # Computed once: the registry reads them twice per append (lookup, entry).
        return tuple(tagged_hashes_of_pairs(ITEM_DIGEST_TAG, ((c.item.value, c.label.value)
                                                             for c in self.commitments)))

    @classmethod
    def from_payload(cls, payload: bytes, *, what: str = "verification key") -> "VerificationKey":
        return cls._from_json(enc.parse_json(payload, what=what, max_bytes=MAX_VK_BYTES), what=what)

    @classmethod
    def _from_json(cls, parsed: Any, *, what: str) -> VerificationKey:
        return cls._build(*_decode_fields(parsed, what=what))

    @classmethod
    def _build(cls, fields: dict[str, Any], items: list[bytes], labels: list[bytes]) -> VerificationKey:
        scheme = fields["scheme"]
        return cls(commitments=tuple(ItemCommitments(Commitment(scheme, item), Commitment(scheme, label))
                                     for item, label in zip(items, labels)), **fields)


# Every field of a VerificationKey but its commitments, in the order the payload names them.
_FIELDS = ("scheme", "kind", "input_shape", "num_classes", "owner", "vrf_key", "created", "zk", "margin", "labels")


def _canonical_payload(fields: dict[str, Any], commitments: list[dict[str, str]]) -> bytes:
    """The signed bytes of a vk with ``fields`` and these encoded commitments, each
    ``{"item": ..., "label": ...}`` of canonical base64url strings (b64u_encode's, or
    strings b64u_decode_many accepted).

    "zk", "margin" and "labels" are left out when absent (or committed), so keys made before they
    existed keep their digests; a tool that predates one refuses a key that has it (only_fields).
    """
    zk, margin, vrf_key = fields["zk"], fields["margin"], fields["vrf_key"]
    rest = enc.canonical_json({
        **({"zk": zk.to_obj()} if zk is not None else {}),
        **({"margin": margin.to_obj()} if margin is not None else {}),
        **_labels_field(fields["labels"]),
        "type": VK_TYPE,
        "version": VERSION,
        "scheme": fields["scheme"].value,
        "trigger_kind": fields["kind"].value,
        "input_shape": _shape_to_json(fields["input_shape"]),
        "num_classes": fields["num_classes"],
        "commitments": [],
        "owner_public_key": enc.b64u_encode(fields["owner"].to_der()),
        "vrf_public_key": enc.b64u_encode(vrf_key.to_bytes()) if vrf_key else None,
        "created": fields["created"],
    })
    # "commitments" sorts before every other field name, so its list opens the object.
    # The hundreds of item dicts are written here rather than walked and encoded by
    # canonical_json (most of this function's cost, measured): each is a pair of
    # base64url strings, which need no escaping, under keys in sorted order.
    if not rest.startswith(_NO_COMMITMENTS):
        raise AssertionError("canonical vk encoding: 'commitments' is not the first field")
    items = ",".join([f'{{"item":"{c["item"]}","label":"{c["label"]}"}}' for c in commitments])
    return b'{"commitments":[' + items.encode("ascii") + b"]," + rest[len(_NO_COMMITMENTS):]


_NO_COMMITMENTS = b'{"commitments":[],'


def _decode_fields(parsed: Any, *, what: str,
                   owner: PublicKey | None = None) -> tuple[dict[str, Any], list[bytes], list[bytes]]:
    """Every check of a vk's decoding: its fields but the commitments, and the committed
    items' and labels' values (each of its scheme's length), without building objects
    for the commitments (the log's hot path, :func:`verify_vk_for_log`, needs none).

    ``owner``: the key :func:`_owner_key` already decoded from this same object.
    """
    obj = enc.expect_header(parsed, type_=VK_TYPE, version=VERSION, what=what)
    enc.only_fields(obj, {"type", "version", "scheme", "trigger_kind", "input_shape", "num_classes",
                          "commitments", "owner_public_key", "vrf_public_key", "created", "zk", "margin",
                          "labels"}, what=what)
    scheme = Scheme.parse(enc.field(obj, "scheme", str, what=what))
    kind = TriggerKind.parse(enc.field(obj, "trigger_kind", str, what=what))
    entries = enc.field(obj, "commitments", list, what=what)
    if not 1 <= len(entries) <= MAX_ITEMS:
        raise DecodeError(f"{what}: needs 1 to {MAX_ITEMS} commitments, has {len(entries)}")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or entry.keys() != _ITEM_FIELDS:
            raise DecodeError(f"{what}: commitment {i} must have exactly 'item' and 'label'")
    # Items and labels decoded in one pass each: hundreds of strings per vk (the registry's hot path).
    items, labels = (enc.b64u_decode_many([entry[name] for entry in entries],
                                          what=lambda i: f"{what}: commitment {i}", size=commitment_bytes(scheme))
                     for name in ("item", "label"))
    vrf_raw = obj.get("vrf_public_key")
    if kind.seeded != (vrf_raw is not None):
        raise DecodeError(f"{what}: a VRF public key is required for, and only for, derived and margin "
                          f"trigger sets")
    fields = {
        "scheme": scheme,
        "kind": kind,
        "input_shape": parse_shape(enc.field(obj, "input_shape", list, what=what), what=what),
        "num_classes": enc.int_field(obj, "num_classes", what=what, low=2, high=MAX_CLASSES),
        "owner": _owner_key(obj, what=what) if owner is None else owner,
        "vrf_key": (VrfPublicKey.from_bytes(enc.b64u_decode(vrf_raw, what=f"{what}: VRF key"))
                    if vrf_raw is not None else None),
        "created": _created(obj, what=what),
        "zk": ZkCommitments.from_obj(obj["zk"], n=len(entries), what=what) if "zk" in obj else None,
        "margin": _margin(obj, kind, n=len(entries), what=what),
        "labels": _labels(obj, what=what),
    }
    return fields, items, labels


def _labels_field(labels: LabelSource) -> dict[str, str]:
    return {"labels": labels.value} if labels is LabelSource.REGISTRY else {}


def _labels(obj: dict[str, Any], *, what: str) -> LabelSource:
    if "labels" not in obj:
        return LabelSource.COMMITTED
    labels = LabelSource.parse(enc.field(obj, "labels", str, what=what))
    if labels is not LabelSource.REGISTRY:
        # One encoding per key: committed labels are the absence of the field.
        raise DecodeError(f"{what}: 'labels' is present only for registry-bound keys")
    return labels


def _margin(obj: dict[str, Any], kind: TriggerKind, *, n: int, what: str) -> MarginSource | None:
    if (kind is TriggerKind.MARGIN) != ("margin" in obj):
        raise DecodeError(f"{what}: a 'margin' section is required for, and only for, margin trigger sets")
    if "margin" not in obj:
        return None
    if enc.int_field(obj, "num_classes", what=what, low=2, high=MAX_CLASSES) < 3:
        raise DecodeError(f"{what}: a margin trigger set needs at least 3 classes")
    return MarginSource.from_obj(obj["margin"], n=n, what=what)


_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{8,15}(Z|[+-][0-9]{2}:[0-9]{2})")


def _created(obj: dict[str, Any], *, what: str) -> str:
    # An ISO 8601 time and nothing else: the field is printed to terminals,
    # and a hostile signer must not smuggle control characters through it.
    created = enc.field(obj, "created", str, what=what)
    if not _TIMESTAMP.fullmatch(created):
        raise DecodeError(f"{what}: field 'created' is not an ISO 8601 time")
    return created


def owner_key_of(payload: bytes, *, what: str) -> PublicKey:
    """The owner key named in a vk payload, read before anything else is trusted."""
    return _owner_key(enc.parse_json(payload, what=what, max_bytes=MAX_VK_BYTES), what=what)


def _owner_key(obj: Any, *, what: str) -> PublicKey:
    if not isinstance(obj, dict):
        raise DecodeError(f"{what}: payload is not a JSON object")
    return PublicKey.from_der(enc.b64u_decode(obj.get("owner_public_key"), what=f"{what}: owner key", max_size=256),
                              what=f"{what}: owner key")


def verify_vk_envelope(envelope: dsse.Envelope, *, what: str) -> VerificationKey:
    """Check the owner's signature over the raw payload, then decode it."""
    obj, owner = _signed_vk_object(envelope, what=what)
    fields, items, labels = _decode_fields(obj, what=what, owner=owner)
    vk = VerificationKey._build(fields, items, labels)
    # The digest that names the key is taken over the canonical encoding, so
    # the signed bytes must be exactly that encoding.
    if vk.payload != envelope.payload:
        raise DecodeError(f"{what}: the signed payload is not canonical JSON (RFC 8785)")
    return vk


def _signed_vk_object(envelope: dsse.Envelope, *, what: str, parsed: Any = None) -> tuple[Any, PublicKey]:
    """The parsed payload and its owner key, once the owner key it names has verified the signature over its raw bytes.

    The signature is checked first so that any edit to a signed vk is reported
    as what it is, a broken signature, rather than as whatever decoding error
    the edit happens to cause.
    """
    # Parsed once: the owner key is read from the same (as yet untrusted) object
    # that is decoded once the signature over the raw bytes holds.
    obj = enc.parse_json(envelope.payload, what=what, max_bytes=MAX_VK_BYTES) if parsed is None else parsed
    owner = _owner_key(obj, what=what)
    try:
        dsse.verify(envelope, owner, payload_type=VK_PAYLOAD_TYPE, what=what)
    except InvalidSignature as exc:
        raise InvalidSignature(f"{exc}: the verification key was altered after the owner signed it") from None
    return obj, owner


@dataclass(frozen=True)
class VkRecord:
    """What the registry records of a signed vk: the digest naming it, its owner and one
    digest per item (docs/design.md section 4b).  Same names as on :class:`VerificationKey`."""

    digest: bytes
    owner: PublicKey
    _commitment_digests: tuple[bytes, ...]

    def commitment_digests(self) -> list[bytes]:
        return list(self._commitment_digests)

    @classmethod
    def of(cls, vk: VerificationKey) -> "VkRecord":
        return cls(vk.digest, vk.owner, vk._commitment_digests)


def verify_vk_for_log(envelope: dsse.Envelope, *, what: str) -> VkRecord:
    """:func:`verify_vk_envelope`, for the log: the same checks, refusing exactly the same
    envelopes (tests/test_keys.py holds the two equal), without building the vk.

    Every field is decoded and checked as for a :class:`VerificationKey`, and the
    payload must be the canonical encoding of what was decoded; only the objects
    for each item's two commitments are never made (most of the decoding's cost,
    measured), the canonical encoding reuses the commitments' base64url
    strings, which strict decoding has shown to be canonical, and the payload
    is parsed without parse_json's hooks, since the canonical comparison
    refuses all they would (:func:`~wmark.protocol.hazmat.encoding.parse_json_to_recanonicalise`).
    """
    obj = enc.parse_json_to_recanonicalise(envelope.payload, what=what, max_bytes=MAX_VK_BYTES)
    if isinstance(obj, dict) and ("zk" in obj or "margin" in obj):
        # Their decoders count on parse_json's bounds; such keys are rare on the log's hot path.
        return VkRecord.of(verify_vk_envelope(envelope, what=what))
    obj, owner = _signed_vk_object(envelope, what=what, parsed=obj)
    fields, items, labels = _decode_fields(obj, what=what, owner=owner)
    # Each a dict of exactly "item" and "label" (checked), whose strings b64u_decode_many
    # accepted only in canonical form: re-encoding the values would give them back.
    if _canonical_payload(fields, obj["commitments"]) != envelope.payload:
        raise DecodeError(f"{what}: the signed payload is not canonical JSON (RFC 8785)")
    return VkRecord(tagged_hash(DIGEST_TAG, envelope.payload), fields["owner"],
                    tuple(tagged_hashes_of_pairs(ITEM_DIGEST_TAG, zip(items, labels))))


def load_verification_key(path: str | os.PathLike[str]) -> tuple[VerificationKey, dsse.Envelope]:
    what = str(path)
    envelope = dsse.Envelope.from_json(read_bounded(path, max_bytes=MAX_VK_BYTES, what="verification key"),
                                       what=what, max_bytes=MAX_VK_BYTES)
    return verify_vk_envelope(envelope, what=what), envelope


def encode_opening(o: ItemOpening) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "index": o.index,
        "label": o.label,
        "r_item": enc.b64u_encode(o.item_randomness.randomness),
        "r_label": enc.b64u_encode(o.label_randomness.randomness),
    }
    if o.vrf_proof is not None:
        obj["vrf_proof"] = enc.b64u_encode(o.vrf_proof)
    if o.image is not None:
        obj["image"] = enc.b64u_encode(o.image)
    return obj


def decode_opening(obj: Any, scheme: Scheme, *, what: str, max_index: int) -> ItemOpening:
    if not isinstance(obj, dict):
        raise DecodeError(f"{what}: opening must be a JSON object")
    enc.only_fields(obj, {"index", "label", "r_item", "r_label", "vrf_proof", "image"}, what=what)
    return ItemOpening(
        index=enc.int_field(obj, "index", what=what, low=0, high=max_index),
        label=enc.int_field(obj, "label", what=what, low=0, high=MAX_CLASSES),
        item_randomness=Opening(scheme, enc.b64u_decode(obj.get("r_item"), what=f"{what}: r_item", size=32)),
        label_randomness=Opening(scheme, enc.b64u_decode(obj.get("r_label"), what=f"{what}: r_label", size=32)),
        vrf_proof=(enc.b64u_decode(obj["vrf_proof"], what=f"{what}: vrf_proof", size=PROOF_BYTES)
                   if "vrf_proof" in obj else None),
        image=(enc.b64u_decode(obj["image"], what=f"{what}: image", max_size=64 + MAX_CHANNELS * MAX_SIDE * MAX_SIDE)
               if "image" in obj else None),
    )


@dataclass(frozen=True, repr=False)
class MarkingKey:
    """The secret ``mk = (T, T_L, r_t, r_L)``; for derived sets also the VRF key."""

    vk_digest: bytes
    scheme: Scheme
    kind: TriggerKind
    input_shape: tuple[int, int, int]
    num_classes: int
    openings: tuple[ItemOpening, ...]
    vrf_secret_key: VrfSecretKey | None
    zk: ZkSecrets | None = None
    margin: MarginSource | None = None
    labels: LabelSource = LabelSource.COMMITTED

    @property
    def n(self) -> int:
        return len(self.openings)

    @property
    def registry_bound(self) -> bool:
        return self.labels is LabelSource.REGISTRY

    def __repr__(self) -> str:
        return f"MarkingKey(n={self.n}, kind={self.kind.value}, <secret>)"

    def to_bytes(self) -> bytes:
        return enc.canonical_json({
            **({"zk": self.zk.to_obj()} if self.zk is not None else {}),
            **({"margin": self.margin.to_obj()} if self.margin is not None else {}),
            **_labels_field(self.labels),
            "type": MK_TYPE,
            "version": VERSION,
            "vk_digest": enc.b64u_encode(self.vk_digest),
            "scheme": self.scheme.value,
            "trigger_kind": self.kind.value,
            "input_shape": _shape_to_json(self.input_shape),
            "num_classes": self.num_classes,
            "vrf_secret_key": enc.b64u_encode(self.vrf_secret_key.to_bytes()) if self.vrf_secret_key else None,
            "openings": [encode_opening(o) for o in self.openings],
        })

    @classmethod
    def from_bytes(cls, data: bytes, *, what: str = "marking key") -> "MarkingKey":
        obj = enc.expect_header(enc.parse_json(data, what=what, max_bytes=MAX_MK_BYTES), type_=MK_TYPE,
                                version=VERSION, what=what)
        enc.only_fields(obj, {"type", "version", "vk_digest", "scheme", "trigger_kind", "input_shape",
                              "num_classes", "vrf_secret_key", "openings", "zk", "margin", "labels"}, what=what)
        scheme = Scheme.parse(enc.field(obj, "scheme", str, what=what))
        raw_openings = enc.field(obj, "openings", list, what=what)
        if not 1 <= len(raw_openings) <= MAX_ITEMS:
            raise DecodeError(f"{what}: needs 1 to {MAX_ITEMS} openings")
        openings = tuple(decode_opening(o, scheme, what=f"{what}: opening {i}", max_index=len(raw_openings) - 1)
                         for i, o in enumerate(raw_openings))
        if [o.index for o in openings] != list(range(len(openings))):
            raise DecodeError(f"{what}: openings are not indexed 0..n-1 in order")
        sk_raw = obj.get("vrf_secret_key")
        kind = TriggerKind.parse(enc.field(obj, "trigger_kind", str, what=what))
        seeded = kind.seeded
        if seeded != (sk_raw is not None) or any(
                (o.vrf_proof is not None) != seeded or (o.image is not None) == seeded for o in openings):
            raise DecodeError(f"{what}: a {kind.value} key needs "
                              f"{'a VRF key and a VRF proof per item' if seeded else 'an image per item'}")
        return cls(
            vk_digest=enc.b64u_decode(obj.get("vk_digest"), what=f"{what}: vk_digest", size=32),
            scheme=scheme,
            kind=kind,
            input_shape=parse_shape(enc.field(obj, "input_shape", list, what=what), what=what),
            num_classes=enc.int_field(obj, "num_classes", what=what, low=2, high=MAX_CLASSES),
            openings=openings,
            vrf_secret_key=VrfSecretKey.from_bytes(enc.b64u_decode(sk_raw, what=f"{what}: VRF key", size=32))
            if sk_raw is not None else None,
            zk=ZkSecrets.from_obj(obj["zk"], n=len(openings), what=what) if "zk" in obj else None,
            margin=_margin(obj, kind, n=len(openings), what=what),
            labels=_labels(obj, what=what),
        )


def key_set_mismatch(mk: MarkingKey, vk: VerificationKey, owner: PublicKey, *,
                     mk_name: str = "the marking key", vk_name: str = "the verification key") -> str | None:
    """Why ``mk``, ``vk`` and the signing key whose public half is ``owner`` are
    not one owner's key set, or None when they are.

    The one check of that consistency, for the owner's prover session and the
    commands that load the three files (docs/design.md section 3); each caller
    raises the error of its own layer with the reason.  ``mk_name`` and
    ``vk_name`` name the two keys in the reason (a command gives their files).
    """
    if owner != vk.owner:
        return f"the owner key {owner.fingerprint} is not the one that signed {vk_name} ({vk.owner.fingerprint})"
    if mk.vk_digest != vk.digest:
        return f"{mk_name} is the marking key of another verification key than {vk_name}"
    if (mk.vrf_secret_key.public_key if mk.vrf_secret_key else None) != vk.vrf_key:
        return f"the VRF key of {mk_name} is not the one named in {vk_name}"
    return None
