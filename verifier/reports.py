"""The verifier's results as JSON reports (``--json``), one schema each in
``wmark/schemas/`` (docs/design.md section 6).

Every report is an object with ``type`` and ``version``; digests are lower-case
hex (what the terminal prints and ``sha256sum`` shows); probabilities are
exact fractions as strings, the way the signed verdict carries them.  Signed
protocol messages keep their own encodings: a report describes them, it is
never signed and never read back by wmark.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from wmark.protocol.keys import VerificationKey
from wmark.protocol.messages import Verdict
from wmark.protocol.session import AnyVerifierSession
from wmark.protocol.transparency import ProofInfo, RegistrationInfo, format_time

VERSION = 1
PLAN_TYPE = "wmark/plan-report"
VERDICT_TYPE = "wmark/verdict-report"
AUDIT_TYPE = "wmark/audit-report"
REGISTRATION_TYPE = "wmark/registration-report"
DISPUTE_TYPE = "wmark/dispute-report"
CHALLENGE_TYPE = "wmark/challenge-report"


def fraction_text(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


def registration_obj(info: RegistrationInfo | None) -> dict[str, Any] | None:
    if info is None:
        return None
    return {"log_keyid": info.log_keyid, "index": info.index, "time": format_time(info.time_ms),
            "time_ms": info.time_ms, "tree_size": info.tree_size, "vk_digest": info.vk_digest.hex()}


def vk_obj(vk: VerificationKey) -> dict[str, Any]:
    return {"digest": vk.digest.hex(), "owner": vk.owner.fingerprint, "n": vk.n, "kind": vk.kind.value,
            "num_classes": vk.num_classes, "input_shape": list(vk.input_shape), "scheme": vk.scheme.value,
            "zk": vk.zk is not None, "created": vk.created}


def verdict_obj(verdict: Verdict) -> dict[str, Any]:
    return {
        "accepted": verdict.accepted, "matches": verdict.matches, "k": verdict.k, "tau": verdict.tau,
        "p0": fraction_text(verdict.p0), "lambda": verdict.lam, "p_value": verdict.p_value,
        "neg_log2_p": verdict.neg_log2_p, "zk": verdict.zk is not None, "model": verdict.model.report_obj(),
        "vk_digest": verdict.vk_digest.hex(), "chain_digest": verdict.chain_digest.hex(),
        "decided": verdict.decided, "registration": registration_obj(verdict.registration),
        "caveats": list(verdict.caveats),
        "results": [{"index": r.index, "label": r.label, "predicted": r.predicted} for r in verdict.results],
    }


def verdict_report(verdict: Verdict, transcript: str) -> dict[str, Any]:
    """``check``, ``run``, ``zkcheck``: the decision and where its signed transcript is."""
    return {"type": VERDICT_TYPE, "version": VERSION, "transcript": transcript, "verdict": verdict_obj(verdict)}


def challenge_report(session: AnyVerifierSession, path: str, *, srs: str | None = None) -> dict[str, Any]:
    """``challenge``, ``zkchallenge``: what the challenge ``session`` signed (written to ``path``)
    binds (its digest, k, lambda, p0) and the items it samples, which follow from its digest;
    ``srs``: the SRS file a zero-knowledge challenge names."""
    challenge = session.issued_challenge
    assert challenge.lam is not None and challenge.p0 is not None  # a session's challenge binds both
    zk = challenge.zk
    return {"type": CHALLENGE_TYPE, "version": VERSION, "challenge": path, "digest": session.challenge_digest.hex(),
            "vk_digest": challenge.vk_digest.hex(), "n": challenge.n, "k": challenge.k, "lambda": challenge.lam,
            "p0": fraction_text(challenge.p0), "public": challenge.k == challenge.n,
            "verifier": challenge.verifier.fingerprint, "issued": challenge.issued,
            "model": challenge.model.report_obj(), "items": list(session.subset),
            "zk": None if zk is None else {"srs": srs, "srs_sha256": zk.srs_sha256.hex(),
                                           "srs_logrows": zk.srs_logrows, "srs_origin": zk.srs_origin.value,
                                           "circuit_sha256": zk.circuit_sha256.hex()}}


def plan_report(vk: VerificationKey, p0: Fraction, lam: int,
                rows: list[tuple[int, int | None, float | None]]) -> dict[str, Any]:
    """``plan``: per k, the threshold tau and the lowest trigger accuracy passing w.p. 0.99 (None: never)."""
    return {"type": PLAN_TYPE, "version": VERSION, "vk_digest": vk.digest.hex(), "n": vk.n,
            "p0": fraction_text(p0), "lambda": lam,
            "rows": [{"k": k, "tau": tau, "lowest_passing_accuracy": low, "reveals": k / vk.n}
                     for k, tau, low in rows]}


def audit_report(file: str, vk: VerificationKey, verdict: Verdict | None, *, log_trust: str | None = None,
                 recheck: str | None = None) -> dict[str, Any]:
    """``audit``: a valid verification key (``verdict`` None) or a valid transcript."""
    return {"type": AUDIT_TYPE, "version": VERSION, "file": file, "valid": True,
            "object": "verification-key" if verdict is None else "transcript", "vk": vk_obj(vk),
            "verdict": None if verdict is None else verdict_obj(verdict), "log_trust": log_trust,
            "recheck": recheck}


def registration_report(evidence: str, file: str, vk: VerificationKey, log: str,
                        info: RegistrationInfo | ProofInfo | None, reason: str | None) -> dict[str, Any]:
    """``registration``: whether the ``evidence`` ("tlog-proof" or "receipt") in ``file``
    proves the vk's registration in ``log`` (its key, as the user named it), or why not."""
    index, time_ms = ((None, None) if info is None else (info.entry.index, info.entry.time_ms)
                      if isinstance(info, ProofInfo) else (info.index, info.time_ms))
    return {"type": REGISTRATION_TYPE, "version": VERSION, "evidence": evidence, "file": file,
            "vk_digest": vk.digest.hex(), "log": log, "valid": info is not None, "index": index,
            "time": None if time_ms is None else format_time(time_ms), "time_ms": time_ms,
            "description": None if info is None else info.describe(), "reason": reason}


def dispute_report(claims: list[tuple[str, VerificationKey, Verdict]], earlier: str | None,
                   reason: str) -> dict[str, Any]:
    """``dispute``: both claims, and the one registered first (None: undecided, ``reason`` says why)."""
    return {"type": DISPUTE_TYPE, "version": VERSION, "earlier": earlier, "reason": reason,
            "claims": [{"transcript": path, "owner": vk.owner.fingerprint, "vk_digest": vk.digest.hex(),
                        "accepted": verdict.accepted, "p_value": verdict.p_value,
                        "registration": registration_obj(verdict.registration)}
                       for path, vk, verdict in claims]}
