"""Transcripts re-checked offline: the audit with a margin key's query split,
and whether a receipt comes from a log the reader trusts (docs/design.md
sections 4 and 4b).  Nothing here queries a model, so it imports no
machine-learning code until a margin key's split is needed.
"""

from __future__ import annotations

from wmark.errors import InvalidSignature
from wmark.protocol.hazmat.identity import PublicKey
from wmark.protocol.keys import VerificationKey, verify_vk_envelope
from wmark.protocol.margin import QuerySplit
from wmark.protocol.transcript import AuditReport, Transcript, audit


def query_split_for(vk: VerificationKey, data_root: str | None) -> QuerySplit | None:
    """A margin key's query split, from the verifier's own copy of the data set
    (refused unless it is the data the key was made on); None for other keys."""
    if vk.margin is None:
        return None
    from wmark.watermark.margin import load_split_for_key

    return load_split_for_key(vk.margin, vk.input_shape, data_root)


def audit_transcript(transcript: Transcript, data_root: str | None = None) -> AuditReport:
    """:func:`~wmark.protocol.transcript.audit`, with a margin key's query split from ``data_root``."""
    vk = verify_vk_envelope(transcript.vk, what="verification key")
    return audit(transcript, margin=query_split_for(vk, data_root))


def check_log_key(transcript: Transcript, log_key: PublicKey, *, name: str) -> None:
    """Refuse a transcript whose registry receipt comes from a log other than
    ``log_key`` (named ``name``): a receipt proves a time only to someone who
    trusts the log that signed it (docs/design.md section 4b)."""
    used = transcript.registration.log_key if transcript.registration is not None else None
    if used is not None and used != log_key:
        raise InvalidSignature(f"the transcript's receipt comes from log {used.fingerprint}, not from the log "
                               f"key in {name}")
