"""Transcripts and their offline audit (docs/design.md section 4, step 5).

A transcript is the ordered chain vk -> challenge -> reveal -> verdict, each a
signed envelope; the verdict names the digests of the others.  :func:`audit`
re-checks every signature, every opening, the subset derivation and the
decision, so a third party needs nothing but the file to know the verifier
did its job (and, with the model, can re-query it).  For a zero-knowledge
transcript it checks everything but the proofs themselves, taking the
verifier's word for which failed; re-checking those needs the model and the
SRS (:func:`wmark.verifier.zk.reverify`).  A margin key's openings are checked
against the auditor's copy of its query split, as a verifier's are.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from wmark.errors import DecodeError, InvalidOpening
from wmark.files import read_bounded
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.encoding import (
    MAX_DOCUMENT_BYTES,
    b64u_decode,
    b64u_encode,
    canonical_json,
    expect_header,
    only_fields,
    parse_json,
)
from wmark.protocol.hazmat.identity import PublicKey
from wmark.protocol.items import OpenedItem
from wmark.protocol.keys import VerificationKey, verify_vk_envelope
from wmark.protocol.margin import QuerySplit
from wmark.protocol.messages import Answer, Challenge, ItemResult, Reveal, Verdict, ZkReveal, decode
from wmark.protocol.session import (
    beacon_beta,
    build_verdict,
    check_challenge,
    check_reveal,
    check_zk_reveal,
    null_match_probability,
    zk_label,
    zk_results,
)
from wmark.protocol.transparency import Receipt, RegistrationInfo, verify_receipt
from wmark.protocol.zk import ZkItem, ZkVerdictInfo

TRANSCRIPT_TYPE = "wmark/transcript"
VERSION = 1


@dataclass(frozen=True)
class Registration:
    """The registry receipt a verdict relied on, and the log key that checks it."""

    receipt: Receipt
    log_key: PublicKey

    def verify(self, vk: VerificationKey) -> RegistrationInfo:
        return verify_receipt(self.receipt, vk, self.log_key)

    def to_obj(self) -> dict[str, Any]:
        return {"receipt": self.receipt.to_obj(), "log_public_key": b64u_encode(self.log_key.to_der())}

    @classmethod
    def from_obj(cls, obj: Any, *, what: str) -> "Registration":
        if not isinstance(obj, dict):
            raise DecodeError(f"{what}: registration must be an object")
        only_fields(obj, {"receipt", "log_public_key"}, what=what)
        return cls(Receipt.from_json(canonical_json(obj.get("receipt")), what=f"{what}: receipt"),
                   PublicKey.from_der(b64u_decode(obj.get("log_public_key"), what=f"{what}: log key", max_size=256),
                                      what=f"{what}: log key"))


@dataclass(frozen=True)
class Transcript:
    vk: dsse.Envelope
    challenge: dsse.Envelope
    reveal: dsse.Envelope
    verdict: dsse.Envelope
    registration: Registration | None = None

    def to_json(self) -> bytes:
        doc = {"type": TRANSCRIPT_TYPE, "version": VERSION, "verification_key": self.vk.to_obj(),
               "challenge": self.challenge.to_obj(), "reveal": self.reveal.to_obj(),
               "verdict": self.verdict.to_obj(),
               "registration": self.registration.to_obj() if self.registration else None}
        return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, *, what: str = "transcript") -> "Transcript":
        return cls.from_obj(parse_json(data, what=what, max_bytes=MAX_DOCUMENT_BYTES), what=what)

    @classmethod
    def from_obj(cls, obj: Any, *, what: str = "transcript") -> "Transcript":
        obj = expect_header(obj, type_=TRANSCRIPT_TYPE, version=VERSION, what=what)
        only_fields(obj, {"type", "version", "verification_key", "challenge", "reveal", "verdict", "registration"},
                    what=what)
        registration = obj.get("registration")
        vk, challenge, reveal, verdict = (dsse.Envelope.from_obj(obj.get(name), what=f"{what}: {name}")
                                          for name in ("verification_key", "challenge", "reveal", "verdict"))
        return cls(vk, challenge, reveal, verdict,
                   registration=(Registration.from_obj(registration, what=f"{what}: registration")
                                 if registration is not None else None))


def load_transcript(path: str | os.PathLike[str]) -> Transcript:
    return Transcript.from_json(read_bounded(path, max_bytes=MAX_DOCUMENT_BYTES, what="transcript"),
                                what=str(path))


@dataclass(frozen=True)
class AuditReport:
    vk: VerificationKey
    challenge: Challenge
    verdict: Verdict
    items: tuple[OpenedItem, ...]
    zk_items: tuple[ZkItem, ...] = ()


def audit_checks(zk: bool) -> tuple[str, ...]:
    """What :func:`audit` checks, in its order, in words a report can list
    (a transcript that audits has passed every one of them)."""
    opened = (("the reveal opens the label of every selected item (never the image), and each label opening "
                "matches its commitment") if zk else
              ("every opened image and label matches its commitment, and each derived item its VRF proof "
               "under the key's VRF key"))
    return (
        "the verification key is well-formed and signed by its owner",
        "the challenge is signed by the verifier key it names and is about this verification key",
        ("the reveal is signed by the owner, answers this challenge and key, and answers exactly the items "
         "the challenge's digest selects"),
        opened,
        "the verdict is signed by the verifier who issued the challenge and is about the challenged model",
        "the verdict's items and labels are the reveal's, and its p0 is the one the trigger kind implies",
        ("the registry receipt (if any) is signed by its log, includes this verification key, and is the "
         "registration the verdict records"),
        ("the matches count only proofs about the hidden inputs the key committed to; " if zk else "")
        + "the threshold, p-value, decision, digests and caveats follow from the recorded answers",
    )


def audit(transcript: Transcript, *, margin: QuerySplit | None = None) -> AuditReport:
    """Re-check a whole transcript offline; raise naming the first failure.

    ``margin``: for a margin key, the auditor's copy of its query split.
    """
    return audit_with_key(transcript, verify_vk_envelope(transcript.vk, what="verification key"), margin=margin)


def audit_with_key(transcript: Transcript, vk: VerificationKey, *, margin: QuerySplit | None = None) -> AuditReport:
    """:func:`audit`, for a caller that has checked ``vk = verify_vk_envelope(transcript.vk)``
    already (to find its query split): a 10,000-item key is not decoded twice."""
    challenge, challenge_digest = check_challenge(transcript.challenge)
    if challenge.vk_digest != vk.digest or challenge.n != vk.n:
        raise InvalidOpening("challenge: it names another verification key")
    # Cheap checks first (signatures, structure, the bounds on k and p0 that
    # decoding enforces), so a crafted transcript is refused before any
    # opening is checked or any binomial tail computed (docs/design.md section 4).
    dsse.verify(transcript.verdict, challenge.verifier, payload_type=Verdict.PAYLOAD_TYPE, what="verdict")
    verdict = decode(transcript.verdict, (Verdict,))
    assert isinstance(verdict, Verdict)
    if verdict.model != challenge.model:
        raise InvalidOpening("verdict: it is about another model than the challenge")
    if verdict.challenge_digest != challenge_digest or verdict.k != challenge.k:
        raise InvalidOpening("verdict: it judges another challenge")
    # The receipt before the reveal: a registry-bound key's labels are re-derived from its beacon.
    registration = transcript.registration.verify(vk) if transcript.registration else None
    if vk.registry_bound and (registration is None or registration.beta is None):
        raise InvalidOpening("transcript: a registry-bound key's labels come from its registration receipt, "
                             "and the transcript has none with a beacon")
    beta = beacon_beta(vk, registration)
    if challenge.zk is None:
        _, items = check_reveal(transcript.reveal, vk, challenge, challenge_digest, margin=margin,
                                registration=registration)
        zk_items: tuple[ZkItem, ...] = ()
        answer: type[Answer] = Reveal
    else:
        _, zk_items = check_zk_reveal(transcript.reveal, vk, challenge, challenge_digest)
        items, answer = (), ZkReveal
    labelled = [(i.index, i.label) for i in items] or [(i.index, zk_label(i, vk, beta)) for i in zk_items]
    if [(r.index, r.label) for r in verdict.results] != labelled:
        raise InvalidOpening("verdict: its items or labels are not those of the reveal")
    if (vk.kind.seeded or vk.registry_bound) and verdict.p0 != null_match_probability(vk, None):
        raise InvalidOpening(f"verdict: p0={verdict.p0} but a {vk.kind.value} set over {vk.num_classes} classes "
                             f"has p0={null_match_probability(vk, None)}")
    if challenge.lam is not None and (verdict.lam, verdict.p0) != (challenge.lam, challenge.p0):
        raise InvalidOpening(f"verdict: decided with lambda={verdict.lam}, p0={verdict.p0}, but the challenge "
                             f"fixed lambda={challenge.lam}, p0={challenge.p0} before anything was revealed")
    if registration != verdict.registration:
        raise InvalidOpening("verdict: its registration is not what the transcript's receipt proves")
    results, zk = _expected_results(vk, challenge, verdict, zk_items, beta)
    rebuilt = build_verdict(vk, challenge_digest, answer.digest_of(transcript.reveal), challenge.model,
                            results, verdict.p0, verdict.lam, verdict.registration, verdict.decided, zk=zk)
    if rebuilt != verdict:
        raise InvalidOpening("verdict: its decision, digests or caveats do not follow from the transcript")
    return AuditReport(vk, challenge, verdict, items, zk_items)


def _expected_results(vk: VerificationKey, challenge: Challenge, verdict: Verdict, zk_items: tuple[ZkItem, ...],
                      beta: bytes | None) -> tuple[tuple[ItemResult, ...], ZkVerdictInfo | None]:
    """The results a verdict must record: the model's answers as recorded, or
    for proofs, the proven classes of the proofs the verifier did not fail."""
    if challenge.zk is None:
        return verdict.results, None
    if verdict.zk is None:
        raise InvalidOpening("verdict: a zero-knowledge challenge needs a zero-knowledge verdict")
    results, failures = zk_results(vk, zk_items, {f.index: f.reason for f in verdict.zk.failures}, beta)
    return results, ZkVerdictInfo(challenge.zk, failures)
