"""The registry's objects: log entries, signed tree heads, proofs and receipts (docs/design.md section 4b).

A log entry records that a verification key (by digest), bound to its
owner's key fingerprint and to one digest per committed item, was registered
at a time read from the log's clock, at an index.  The log signs tree heads
(size, root, time) as DSSE envelopes; an entry's leaf in the RFC 9162 tree
(:mod:`wmark.protocol.hazmat.merkle`) is the RFC 8785 canonical JSON of the entry.

A :class:`Receipt` needs no signature of its own: the signed root commits to
the entry through the inclusion proof, so :func:`verify_receipt` checks it
offline with nothing but the log's public key.  What it establishes is the
order and time of registration, not that the registrant made the images.
"""

from __future__ import annotations

import hmac
import json
import os
import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

from wmark.errors import DecodeError, InvalidInput, InvalidProof, InvalidSignature
from wmark.protocol.beacon import BETA_BYTES, Beacon
from wmark.protocol.checkpoint import Checkpoint, Policy, TlogProof
from wmark.protocol.hazmat import dsse, merkle
from wmark.protocol.hazmat import encoding as enc
from wmark.protocol.hazmat.identity import PublicKey, SigningKey
from wmark.protocol.hazmat.note import Note
from wmark.protocol.keys import MAX_ITEMS, VerificationKey, VkRecord

VERSION = 1
ENTRY_TYPE = "wmark/log-entry"
TREE_HEAD_TYPE = "wmark/tree-head"
TREE_HEAD_PAYLOAD_TYPE = "application/vnd.wmark.tree-head+json"
INCLUSION_PROOF_TYPE = "wmark/inclusion-proof"
CONSISTENCY_PROOF_TYPE = "wmark/consistency-proof"
RECEIPT_TYPE = "wmark/registration-receipt"
REGISTRATION_TYPE = "wmark/registration"

# RFC 8785 represents numbers as IEEE doubles: integers stay exact up to 2^53 - 1.
MAX_JSON_INT = 2**53 - 1
# 9999-12-31T23:59:59.999Z: any later log time could not even be printed.
MAX_TIME_MS = 253_402_300_799_999
# An entry of MAX_ITEMS commitment digests is ~450 KB of JSON; a receipt adds
# a tree head and at most 64 proof hashes.
MAX_RECEIPT_BYTES = 2 * 1024 * 1024
MAX_ENVELOPE_BYTES = 16 * 1024

_KEYID = re.compile(r"[0-9a-f]{64}")
_FINGERPRINT = re.compile(r"SHA256:[0-9a-f]{64}")


def default_receipt_path(vk_path: str | os.PathLike[str], log_keyid: str | None = None) -> Path:
    """Where a vk's receipt is kept: beside it, ``vk.json`` -> ``vk.receipt.json``; the
    receipt of every further log beside that, named by the log's key id
    (``vk.receipt.<16 hex digits>.json``), so no log's receipt replaces another's."""
    if log_keyid is None:
        return Path(vk_path).with_suffix(".receipt.json")
    return Path(vk_path).with_suffix(f".receipt.{log_keyid[:16]}.json")


def receipt_path_for(vk_path: str | os.PathLike[str], log_keyid: str) -> Path:
    """The receipt of the log ``log_keyid`` beside the vk: its own file if it has one, else the first."""
    own = default_receipt_path(vk_path, log_keyid)
    return own if own.exists() else default_receipt_path(vk_path)


def format_time(time_ms: int) -> str:
    """A log time (milliseconds since the Unix epoch) as ISO 8601 UTC."""
    moment = datetime.fromtimestamp(time_ms // 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{time_ms % 1000:03d}Z"


def _header(obj: Any, type_: str, fields: set[str], *, what: str) -> dict[str, Any]:
    obj = enc.expect_header(obj, type_=type_, version=VERSION, what=what)
    enc.only_fields(obj, {"type", "version", *fields}, what=what)
    return obj


def _count(obj: dict[str, Any], name: str, *, what: str, low: int = 0) -> int:
    return enc.int_field(obj, name, what=what, low=low, high=MAX_JSON_INT)


def _time(obj: dict[str, Any], *, what: str) -> int:
    return enc.int_field(obj, "time_ms", what=what, low=0, high=MAX_TIME_MS)


def _keyid(obj: dict[str, Any], name: str, *, what: str) -> str:
    value = enc.field(obj, name, str, what=what)
    if not _KEYID.fullmatch(value):
        raise DecodeError(f"{what}: {name!r} is not a key id (64 lowercase hex digits)")
    return value


def _hashes(obj: dict[str, Any], name: str, *, what: str, max_count: int) -> tuple[bytes, ...]:
    values = enc.field(obj, name, list, what=what)
    if len(values) > max_count:
        raise DecodeError(f"{what}: {name!r} has {len(values)} hashes, at most {max_count} allowed")
    return tuple(enc.b64u_decode_many(values, what=lambda i: f"{what}: {name}[{i}]", size=merkle.HASH_SIZE))


@dataclass(frozen=True)
class LogEntry:
    """One registration: what the log's Merkle tree commits to at ``index``."""

    index: int
    time_ms: int
    vk_digest: bytes
    owner: str
    commitments: tuple[bytes, ...]

    @classmethod
    def for_key(cls, vk: VerificationKey | VkRecord, *, index: int, time_ms: int) -> "LogEntry":
        return cls(index, time_ms, vk.digest, vk.owner.fingerprint, tuple(vk.commitment_digests()))

    def to_obj(self) -> dict[str, Any]:
        return {
            "type": ENTRY_TYPE,
            "version": VERSION,
            "index": self.index,
            "time_ms": self.time_ms,
            "vk_digest": enc.b64u_encode(self.vk_digest),
            "owner": self.owner,
            "commitments": list(self._encoded_commitments),
        }

    # Encoded once: the log writes an entry into its leaf and again into its receipt.
    @cached_property
    def _encoded_commitments(self) -> tuple[str, ...]:
        return tuple(enc.b64u_encode_many(self.commitments))

    @classmethod
    def from_obj(cls, obj: Any, *, what: str = "log entry") -> "LogEntry":
        obj = _header(obj, ENTRY_TYPE, {"index", "time_ms", "vk_digest", "owner", "commitments"}, what=what)
        owner = enc.field(obj, "owner", str, what=what)
        if not _FINGERPRINT.fullmatch(owner):
            raise DecodeError(f"{what}: owner is not a key fingerprint (SHA256: and 64 lowercase hex digits)")
        commitments = _hashes(obj, "commitments", what=what, max_count=MAX_ITEMS)
        if not commitments:
            raise DecodeError(f"{what}: an entry commits to at least one item")
        return cls(
            index=_count(obj, "index", what=what),
            time_ms=_time(obj, what=what),
            vk_digest=enc.b64u_decode(obj.get("vk_digest"), what=f"{what}: vk_digest", size=32),
            owner=owner,
            commitments=commitments,
        )

    def encode(self) -> bytes:
        """The leaf input: one canonical byte string per entry."""
        return self._canonical

    # Once: the log encodes an entry for its leaf, then again in its receipt.
    @cached_property
    def _canonical(self) -> bytes:
        return enc.canonical_json(self.to_obj())

    @classmethod
    def decode(cls, data: bytes, *, what: str = "log entry") -> "LogEntry":
        return cls.from_obj(enc.parse_json(data, what=what, max_bytes=MAX_RECEIPT_BYTES), what=what)

    def leaf_hash(self) -> bytes:
        return merkle.leaf_hash(self.encode())

    def check_matches(self, vk: VerificationKey, *, what: str) -> None:
        """Raise :class:`InvalidProof` unless this entry registers ``vk``."""
        if not hmac.compare_digest(self.vk_digest, vk.digest):
            raise InvalidProof(f"{what}: registers verification key {self.vk_digest.hex()[:16]}…, "
                               f"not this one ({vk.digest.hex()[:16]}…)")
        if self.owner != vk.owner.fingerprint:
            raise InvalidProof(f"{what}: registers owner {self.owner[:23]}…, but the key's owner is "
                               f"{vk.owner.fingerprint[:23]}…")
        if list(self.commitments) != vk.commitment_digests():
            raise InvalidProof(f"{what}: the registered commitments are not this key's")


@dataclass(frozen=True)
class TreeHead:
    """The log's state: ``size`` leaves with Merkle ``root``, as of ``time_ms``."""

    size: int
    root: bytes
    time_ms: int

    def to_obj(self) -> dict[str, Any]:
        return {"type": TREE_HEAD_TYPE, "version": VERSION, "size": self.size,
                "root": enc.b64u_encode(self.root), "time_ms": self.time_ms}

    @classmethod
    def from_obj(cls, obj: Any, *, what: str = "tree head") -> "TreeHead":
        obj = _header(obj, TREE_HEAD_TYPE, {"size", "root", "time_ms"}, what=what)
        return cls(
            size=_count(obj, "size", what=what),
            root=enc.b64u_decode(obj.get("root"), what=f"{what}: root", size=merkle.HASH_SIZE),
            time_ms=_time(obj, what=what),
        )

    def sign(self, key: SigningKey) -> dsse.Envelope:
        return dsse.sign(TREE_HEAD_PAYLOAD_TYPE, enc.canonical_json(self.to_obj()), key)


def verify_tree_head(envelope: dsse.Envelope, log_key: PublicKey, *, what: str = "tree head") -> TreeHead:
    """The tree head inside ``envelope`` if the log's key signed it."""
    payload = dsse.verify(envelope, log_key, payload_type=TREE_HEAD_PAYLOAD_TYPE, what=what)
    return TreeHead.from_obj(enc.parse_json(payload, what=what, max_bytes=MAX_ENVELOPE_BYTES), what=what)


def envelope_to_obj(envelope: dsse.Envelope) -> dict[str, Any]:
    """A DSSE envelope as a JSON object, for embedding in a larger document."""
    return envelope.to_obj()


def envelope_from_obj(obj: Any, *, what: str) -> dsse.Envelope:
    if not isinstance(obj, dict):
        raise DecodeError(f"{what}: expected a DSSE envelope object")
    return dsse.Envelope.from_json(enc.canonical_json(obj), what=what, max_bytes=MAX_ENVELOPE_BYTES)


@dataclass(frozen=True)
class InclusionProof:
    """RFC 9162 audit path of leaf ``index`` in the tree of ``tree_size`` leaves."""

    index: int
    tree_size: int
    hashes: tuple[bytes, ...]

    def to_obj(self) -> dict[str, Any]:
        return {"type": INCLUSION_PROOF_TYPE, "version": VERSION, "index": self.index,
                "tree_size": self.tree_size, "hashes": enc.b64u_encode_many(self.hashes)}

    @classmethod
    def from_obj(cls, obj: Any, *, what: str = "inclusion proof") -> "InclusionProof":
        obj = _header(obj, INCLUSION_PROOF_TYPE, {"index", "tree_size", "hashes"}, what=what)
        return cls(_count(obj, "index", what=what), _count(obj, "tree_size", what=what, low=1),
                   _hashes(obj, "hashes", what=what, max_count=merkle.MAX_PROOF_HASHES))

    def verify(self, entry: LogEntry, head: TreeHead) -> None:
        """Raise :class:`InvalidProof` unless ``entry`` is in the tree ``head`` describes."""
        if self.tree_size != head.size:
            raise InvalidProof(f"inclusion proof is for a tree of size {self.tree_size}, "
                               f"but the tree head has size {head.size}")
        if self.index != entry.index:
            raise InvalidProof(f"inclusion proof is for leaf {self.index}, but the entry has index {entry.index}")
        merkle.verify_inclusion(entry.leaf_hash(), self.index, self.tree_size, self.hashes, head.root)


@dataclass(frozen=True)
class ConsistencyProof:
    """RFC 9162 proof that the tree of ``first`` leaves is a prefix of the tree of ``second``."""

    first: int
    second: int
    hashes: tuple[bytes, ...]

    def to_obj(self) -> dict[str, Any]:
        return {"type": CONSISTENCY_PROOF_TYPE, "version": VERSION, "first": self.first,
                "second": self.second, "hashes": enc.b64u_encode_many(self.hashes)}

    @classmethod
    def from_obj(cls, obj: Any, *, what: str = "consistency proof") -> "ConsistencyProof":
        obj = _header(obj, CONSISTENCY_PROOF_TYPE, {"first", "second", "hashes"}, what=what)
        return cls(_count(obj, "first", what=what, low=1), _count(obj, "second", what=what, low=1),
                   _hashes(obj, "hashes", what=what, max_count=merkle.MAX_PROOF_HASHES))

    def verify(self, old: TreeHead, new: TreeHead) -> None:
        """Raise :class:`InvalidProof` unless the log grew from ``old`` to ``new`` by appending only."""
        if (self.first, self.second) != (old.size, new.size):
            raise InvalidProof(f"consistency proof is from size {self.first} to {self.second}, "
                               f"but the tree heads have sizes {old.size} and {new.size}")
        merkle.verify_consistency(old.size, new.size, old.root, new.root, self.hashes)


@dataclass(frozen=True)
class RegistrationInfo:
    """What a checked receipt establishes; verdicts embed it and disputes compare it."""

    log_keyid: str
    index: int
    time_ms: int
    tree_size: int
    vk_digest: bytes
    # The checked beacon output (docs/design.md section 4b); None for a receipt from a log without a beacon.
    beta: bytes | None = None

    def to_obj(self) -> dict[str, Any]:
        return {"type": REGISTRATION_TYPE, "version": VERSION, "log_keyid": self.log_keyid,
                "index": self.index, "time_ms": self.time_ms, "tree_size": self.tree_size,
                "vk_digest": enc.b64u_encode(self.vk_digest),
                # Absent rather than null without a beacon, so older verdicts keep their encoding.
                **({"beta": enc.b64u_encode(self.beta)} if self.beta is not None else {})}

    @classmethod
    def from_obj(cls, obj: Any, *, what: str = "registration") -> "RegistrationInfo":
        obj = _header(obj, REGISTRATION_TYPE, {"log_keyid", "index", "time_ms", "tree_size", "vk_digest", "beta"},
                      what=what)
        return cls(
            log_keyid=_keyid(obj, "log_keyid", what=what),
            index=_count(obj, "index", what=what),
            time_ms=_time(obj, what=what),
            tree_size=_count(obj, "tree_size", what=what, low=1),
            vk_digest=enc.b64u_decode(obj.get("vk_digest"), what=f"{what}: vk_digest", size=32),
            beta=enc.b64u_decode(obj["beta"], what=f"{what}: beta", size=BETA_BYTES) if "beta" in obj else None,
        )

    def describe(self) -> str:
        return (f"entry {self.index} of log SHA256:{self.log_keyid[:16]}… at {format_time(self.time_ms)} "
                f"(tree size {self.tree_size})")


@dataclass(frozen=True)
class Receipt:
    """Proof of registration that travels with the vk: entry, signed tree head, audit path,
    and (from logs with checkpoints) the cosigned C2SP checkpoint of the same tree."""

    log_keyid: str
    entry: LogEntry
    tree_head: dsse.Envelope
    inclusion_proof: InclusionProof
    checkpoint: bytes | None = None
    # The log's beacon output for this entry's vk (docs/design.md section 4b); None from a log without one.
    beacon: Beacon | None = None

    def to_obj(self) -> dict[str, Any]:
        return self._obj(wire=False)

    def _obj(self, *, wire: bool) -> dict[str, Any]:
        # For the wire, what the log encoded already (the entry, into its leaf) and what a
        # batch's receipts share (tree head, beacon key) go in as their JSON (enc.wire_json).
        obj: dict[str, Any] = {
            "type": RECEIPT_TYPE, "version": VERSION, "log_keyid": self.log_keyid,
            "entry": enc.Encoded(self.entry.encode().decode("ascii")) if wire else self.entry.to_obj(),
            "tree_head": enc.Encoded(self.tree_head.compact_json) if wire else envelope_to_obj(self.tree_head),
            "inclusion_proof": self.inclusion_proof.to_obj()}
        # Both are absent rather than null when the log has none, so older receipts keep their encoding.
        if self.checkpoint is not None:
            obj["checkpoint"] = self.checkpoint.decode("utf-8")
        if self.beacon is not None:
            beacon = self.beacon.to_obj()
            if wire:
                beacon["key"] = enc.Encoded(self.beacon.key_statement.compact_json)
            obj["beacon"] = beacon
        return obj

    def note(self) -> Note | None:
        return None if self.checkpoint is None else Note.decode(self.checkpoint, what="receipt's checkpoint")

    def with_checkpoint(self, note: Note) -> "Receipt":
        return replace(self, checkpoint=note.encode())

    def tlog_proof(self) -> TlogProof:
        """The same registration as a c2sp.org/tlog-proof file (our entry as its extra data)."""
        note = self.note()
        if note is None:
            raise InvalidInput("this receipt comes from a log without checkpoints: no tlog-proof can be made")
        return TlogProof(self.entry.encode(), self.entry.index, self.inclusion_proof.hashes, note)

    def to_json(self, *, indent: int | None = 2) -> bytes:
        """Indented for files; ``indent=None`` for the wire: compact, and written by
        json's C encoder (used only without indentation) several times faster."""
        if indent is None:
            return (enc.wire_json(self._obj(wire=True)) + "\n").encode("ascii")
        return (json.dumps(self.to_obj(), indent=indent, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, *, what: str = "receipt") -> "Receipt":
        obj = _header(enc.parse_json(data, what=what, max_bytes=MAX_RECEIPT_BYTES), RECEIPT_TYPE,
                      {"log_keyid", "entry", "tree_head", "inclusion_proof", "checkpoint", "beacon"}, what=what)
        checkpoint = None
        if "checkpoint" in obj:
            checkpoint = enc.field(obj, "checkpoint", str, what=what).encode("utf-8")
            Note.decode(checkpoint, what=f"{what}: checkpoint")
        return cls(
            log_keyid=_keyid(obj, "log_keyid", what=what),
            entry=LogEntry.from_obj(obj.get("entry"), what=f"{what}: entry"),
            tree_head=envelope_from_obj(obj.get("tree_head"), what=f"{what}: tree head"),
            inclusion_proof=InclusionProof.from_obj(obj.get("inclusion_proof"), what=f"{what}: inclusion proof"),
            checkpoint=checkpoint,
            beacon=Beacon.from_obj(obj["beacon"], what=f"{what}: beacon") if "beacon" in obj else None,
        )


def verify_receipt(receipt: Receipt, vk: VerificationKey, log_public_key: PublicKey,
                   policy: Policy | None = None) -> RegistrationInfo:
    """Check offline that ``receipt`` proves ``vk`` was registered in the log of ``log_public_key``.

    Raises :class:`InvalidSignature` for a tree head the log did not sign (or a
    receipt from another log) and :class:`InvalidProof` for an entry that is
    not this vk's or not in the signed tree, or a beacon whose ``beta`` its
    VRF proof does not prove for this vk.  A receipt's checkpoint must
    describe the same tree as its head; with a ``policy``, then
    :func:`check_witnessed` (a caller that has verified the receipt already
    calls that alone).
    """
    if receipt.log_keyid != log_public_key.keyid:
        raise InvalidSignature(f"receipt was issued by log SHA256:{receipt.log_keyid[:16]}…, "
                               f"not by the given log key {log_public_key.fingerprint[:23]}…")
    head = verify_tree_head(receipt.tree_head, log_public_key, what="receipt's tree head")
    entry = receipt.entry
    entry.check_matches(vk, what="receipt")
    receipt.inclusion_proof.verify(entry, head)
    note = receipt.note()
    if note is not None:
        checkpoint = Checkpoint.parse(note.text, what="receipt's checkpoint")
        if (checkpoint.size, checkpoint.root) != (head.size, head.root):
            raise InvalidProof(f"receipt: its checkpoint (size {checkpoint.size}) is not of the tree its head "
                               f"describes (size {head.size})")
    if entry.time_ms > head.time_ms:
        raise InvalidProof(f"receipt: entry time {format_time(entry.time_ms)} is after its tree head's "
                           f"{format_time(head.time_ms)}")
    beta = receipt.beacon.verify(vk.digest, log_public_key) if receipt.beacon is not None else None
    if policy is not None:
        check_witnessed(receipt, policy)
    return RegistrationInfo(log_public_key.keyid, entry.index, entry.time_ms, head.size, entry.vk_digest, beta)


def check_witnessed(receipt: Receipt, policy: Policy) -> None:
    """Refuse a receipt :func:`verify_receipt` has accepted unless it meets ``policy``:
    it must carry a checkpoint (bound there to the signed tree head), and the
    checkpoint the log's note signature and the witness quorum.  Raises
    :class:`InvalidSignature` or :class:`InvalidProof`."""
    note = receipt.note()
    if note is None:
        raise InvalidSignature("receipt: carries no checkpoint, so no witness vouches for it")
    policy.verify(note, what="receipt's checkpoint")


def earlier_registration(a: RegistrationInfo, b: RegistrationInfo) -> RegistrationInfo:
    """The registration that came first; between two claims on one model it wins.

    In one log the index orders registrations (and times must agree with it);
    across logs only the logs' clocks can, so equal times there are refused
    rather than broken arbitrarily.
    """
    if a.log_keyid == b.log_keyid:
        if a.index == b.index:
            # Two receipts for one entry may come from different tree sizes;
            # only the entry itself must agree.
            if (a.time_ms, a.vk_digest) != (b.time_ms, b.vk_digest):
                raise InvalidProof(f"log SHA256:{a.log_keyid[:16]}… signed two different entries at index "
                                   f"{a.index}: the log equivocated")
            return a
        first, second = (a, b) if a.index < b.index else (b, a)
        if first.time_ms > second.time_ms:
            raise InvalidProof(f"log SHA256:{a.log_keyid[:16]}… gave entry {first.index} a later time than "
                               f"entry {second.index}: its clock is not monotonic")
        return first
    if a.time_ms == b.time_ms:
        raise InvalidInput("two registrations in different logs at the same millisecond cannot be ordered")
    return a if a.time_ms < b.time_ms else b


# A witness's clock and the log's may differ by this much before an entry
# dated after a witness's cosignature of it counts as a lie.
MAX_CLOCK_SKEW_S = 300


def default_proof_path(vk_path: str | os.PathLike[str], log_keyid: str | None = None) -> Path:
    """Where a vk's tlog-proof is kept: beside it, ``vk.json`` -> ``vk.tlog-proof``; a
    further log's named by its key id, ``vk.<16 hex digits>.tlog-proof`` (as receipts are)."""
    if log_keyid is None:
        return Path(vk_path).with_suffix(".tlog-proof")
    return Path(vk_path).with_suffix(f".{log_keyid[:16]}.tlog-proof")


@dataclass(frozen=True)
class ProofInfo:
    """What a checked tlog-proof establishes."""

    entry: LogEntry
    checkpoint: Checkpoint
    cosigned_at: dict[str, int]

    def describe(self) -> str:
        witnesses = ", ".join(f"{name} at {format_time(t * 1000)}" for name, t in sorted(self.cosigned_at.items()))
        return (f"entry {self.entry.index} of {self.checkpoint.origin} at {format_time(self.entry.time_ms)} "
                f"(checkpoint size {self.checkpoint.size}; cosigned by {witnesses or 'no witness'})")


def verify_tlog_proof(proof: TlogProof, vk: VerificationKey, policy: Policy) -> ProofInfo:
    """Check offline that the tlog-proof proves ``vk``'s registration under ``policy``.

    :class:`InvalidSignature`: the checkpoint lacks the log's signature or the
    witness quorum; :class:`InvalidProof`: the entry is not this vk's, not in
    the checkpointed tree, or dated after a witness already cosigned it.
    """
    try:
        entry = LogEntry.decode(proof.extra, what="tlog-proof extra data")
    except DecodeError as exc:
        raise InvalidProof(f"tlog-proof: the extra data is not a log entry ({exc})") from None
    entry.check_matches(vk, what="tlog-proof")
    if entry.index != proof.index:
        raise InvalidProof(f"tlog-proof: index {proof.index}, but the entry claims index {entry.index}")
    checkpoint, times = proof.verify(policy)
    for name, seconds in times.items():
        if entry.time_ms > (seconds + MAX_CLOCK_SKEW_S) * 1000:
            raise InvalidProof(f"tlog-proof: the entry is dated {format_time(entry.time_ms)}, after witness "
                               f"{name} cosigned the checkpoint holding it ({format_time(seconds * 1000)})")
    return ProofInfo(entry, checkpoint, times)
