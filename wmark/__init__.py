"""wmark: prove that a suspect neural network is yours.

Backdoor watermarks (Adi et al., USENIX Security 2018; the margin variant of
Kim et al., ICML 2023) bound to signed, registered commitments, checked by
verification protocols that leave auditable transcripts (docs/design.md).

The names below are the library's public surface; everything else is free to
change.  They load lazily, so ``import wmark`` costs no torch import: only
the machine-learning names (:func:`embed`, :func:`load_model`) bring it in.

Key generation
    :func:`keygen_derived`, :func:`keygen_imported`, :func:`keygen_margin`
    make a :class:`KeyPair` (the sealed :class:`MarkingKey` and the signed
    :class:`VerificationKey`); :func:`save_marking_key` /
    :func:`load_marking_key` seal and open ``mk.wmk``;
    :func:`load_verification_key` reads ``vk.json``; :class:`SigningKey` is an
    owner's or verifier's identity.
Embedding
    :func:`embed` trains the trigger set into a model; :func:`load_model`
    reads a model directory.
Verification
    :class:`ProverSession`, :class:`VerifierSession` and
    :class:`ZkVerifierSession` (zero-knowledge) are the sans-IO protocol
    state machines; :func:`audit` re-checks a :class:`Transcript`
    offline (:func:`load_transcript`).
Errors
    :class:`WmarkError` and its subclasses; :class:`InvalidInput` is the
    user's mistake, :class:`LocalProtocolError` / :class:`RemoteProtocolError`
    name the side at fault.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "KeyPair": "wmark.protocol.keygen",
    "keygen_derived": "wmark.protocol.keygen",
    "keygen_imported": "wmark.protocol.keygen",
    "keygen_margin": "wmark.protocol.keygen",
    "MarkingKey": "wmark.protocol.keys",
    "VerificationKey": "wmark.protocol.keys",
    "load_verification_key": "wmark.protocol.keys",
    "save_marking_key": "wmark.protocol.keyfile",
    "load_marking_key": "wmark.protocol.keyfile",
    "SigningKey": "wmark.protocol.hazmat.identity",
    "ProverSession": "wmark.protocol.session",
    "VerifierSession": "wmark.protocol.session",
    "ZkVerifierSession": "wmark.protocol.session",
    "Transcript": "wmark.protocol.transcript",
    "load_transcript": "wmark.protocol.transcript",
    "audit": "wmark.protocol.transcript",
    "embed": "wmark.watermark.embed",
    "load_model": "wmark.watermark.modelio",
    "WmarkError": "wmark.errors",
    "InvalidInput": "wmark.errors",
    "DecodeError": "wmark.errors",
    "InvalidSignature": "wmark.errors",
    "InvalidOpening": "wmark.errors",
    "InvalidProof": "wmark.errors",
    "WrongPassphrase": "wmark.errors",
    "LocalProtocolError": "wmark.errors",
    "RemoteProtocolError": "wmark.errors",
    "ModelOracleError": "wmark.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'wmark' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from wmark.errors import (
        DecodeError,
        InvalidInput,
        InvalidOpening,
        InvalidProof,
        InvalidSignature,
        LocalProtocolError,
        ModelOracleError,
        RemoteProtocolError,
        WmarkError,
        WrongPassphrase,
    )
    from wmark.protocol.hazmat.identity import SigningKey
    from wmark.protocol.keyfile import load_marking_key, save_marking_key
    from wmark.protocol.keygen import KeyPair, keygen_derived, keygen_imported, keygen_margin
    from wmark.protocol.keys import MarkingKey, VerificationKey, load_verification_key
    from wmark.protocol.session import ProverSession, VerifierSession, ZkVerifierSession
    from wmark.protocol.transcript import Transcript, audit, load_transcript
    from wmark.watermark.embed import embed
    from wmark.watermark.modelio import load_model
