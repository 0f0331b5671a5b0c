"""Transcripts re-checked offline: the audit with a margin key's query split
(docs/design.md section 4).  Nothing here queries a model, so it imports no
machine-learning code until a margin key's split is needed.
"""

from __future__ import annotations

from wmark.protocol.keys import VerificationKey, verify_vk_envelope
from wmark.protocol.margin import QuerySplit
from wmark.protocol.transcript import AuditReport, Transcript, audit_with_key


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
    return audit_with_key(transcript, vk, margin=query_split_for(vk, data_root))

