"""The verifier's side of zero-knowledge verification (docs/design.md section 4c).

The verifier trusts nothing of the prover's but the proofs: it builds the
circuit and ezkl's verification key itself, from the suspect model it holds
and an SRS it generated (designated verifier) or took from a public ceremony,
checks each proof against them, and hands the session one verdict per item:
the proof verified, or why not.  A proof that fails is a non-match, reported
in the verdict; it never aborts the check.
"""

from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

from wmark.errors import InvalidInput, InvalidOpening, InvalidProof
from wmark.protocol.hazmat import dsse
from wmark.protocol.keys import VerificationKey
from wmark.protocol.messages import ModelRef
from wmark.protocol.session import ZkRevealAccepted, ZkVerifierSession, zk_results
from wmark.protocol.transcript import AuditReport
from wmark.protocol.zk import SrsOrigin, ZkItem, ZkParameters
from wmark.watermark.zkcircuit import Srs, generate_srs, read_srs
from wmark.watermark.zksplit import AUTO, BrokenLink, PieceKeys, Pieces, model_pieces, setup_pieces, verify_pieces


@dataclass(frozen=True)
class ZkVerifier:
    """The verifier's own circuits (one per piece), SRS and verification keys for one suspect model."""

    model_ref: ModelRef
    pieces: Pieces
    srs: Srs
    origin: SrsOrigin
    keys: PieceKeys

    @property
    def parameters(self) -> ZkParameters:
        """What a challenge pins: this SRS, these circuits and the cut."""
        return ZkParameters(self.srs.sha256, self.srs.logrows, self.origin, self.keys.circuit_sha256,
                            self.pieces.piece_rows)

    def check(self, items: Sequence[ZkItem]) -> dict[int, str | None]:
        """Per item, None if its proof verifies here, else why not."""
        errors: dict[int, str | None] = {}
        for item in items:
            try:
                verify_pieces(self.pieces, self.keys, self.srs, item.statement)
                errors[item.index] = None
            except BrokenLink as exc:  # each proof verifies: the pieces are about different tensors
                errors[item.index] = str(exc)
            except InvalidProof as exc:
                errors[item.index] = (f"{exc}: not a proof about the model held here under this SRS (a proof "
                                      f"for another model or SRS, or an altered one)")
        return errors

    def expect(self, parameters: ZkParameters) -> None:
        """Refuse to check proofs against another setup than the challenge pinned."""
        if self.srs.sha256 != parameters.srs_sha256:
            raise InvalidInput(f"{self.srs.path}: not the SRS the challenge names (sha256 "
                               f"{parameters.srs_sha256.hex()[:16]}…, this file {self.srs.sha256.hex()[:16]}…)")
        if self.pieces.piece_rows != parameters.piece_rows:
            raise InvalidInput(f"the challenge cuts the model for {parameters.piece_rows} rows a piece, this "
                               f"verifier for {self.pieces.piece_rows}")
        if self.keys.circuit_sha256 != parameters.circuit_sha256:
            raise InvalidInput("the circuit built now from the model differs from the one the challenge names: "
                               "the model files or the toolchain (ezkl, torch) changed since the challenge")


@contextmanager
def open_verifier(model_dir: str | os.PathLike[str], vk: VerificationKey, *,
                  srs: str | os.PathLike[str] | None = None, srs_out: str | os.PathLike[str] | None = None,
                  origin: SrsOrigin | None = None, workdir: str | os.PathLike[str] | None = None,
                  memory_limit: int | None = None, piece_rows: int | None | str = AUTO) -> Iterator[ZkVerifier]:
    """Build the verifier's circuit for the model in ``model_dir``: whole, or
    in pieces of ``piece_rows`` estimated rows (``AUTO``: in pieces only when
    one proof of the whole would not fit ``memory_limit``; a challenge made
    already pins it).

    With ``srs`` the SRS is that file, from a public ceremony unless ``origin``
    says otherwise; without, a fresh one just large enough is generated into
    ``srs_out`` (a designated-verifier setup).  The proving key setup creates
    is deleted at once; the rest when the context exits.
    """
    if srs is None and origin not in (None, SrsOrigin.VERIFIER):
        raise InvalidInput("an SRS generated here is the verifier's own, not a ceremony's")
    if vk.zk is None:
        raise InvalidInput("the verification key has no zero-knowledge commitments (made without wmark keygen --zk)")
    with ExitStack() as stack:
        ref, pieces = stack.enter_context(model_pieces(
            model_dir, input_shape=vk.input_shape, num_classes=vk.num_classes, input_scale=vk.zk.input_scale,
            piece_rows=piece_rows, workdir=workdir, memory_limit=memory_limit))
        if srs is not None:
            srs_file, source = read_srs(srs), origin or SrsOrigin.CEREMONY
        elif srs_out is not None:
            srs_file, source = generate_srs(srs_out, pieces.logrows), SrsOrigin.VERIFIER
        else:
            raise InvalidInput("give an SRS file, or where to write a fresh one")
        keys = stack.enter_context(setup_pieces(pieces, srs_file, keep_proving_key=False))
        yield ZkVerifier(ref, pieces, srs_file, source, keys)


def decide_with_proofs(session: ZkVerifierSession, event: ZkRevealAccepted, verifier: ZkVerifier) -> dsse.Envelope:
    """Check every proof against the verifier's own setup and sign the verdict."""
    verifier.expect(session.zk)
    if verifier.model_ref != session.model:
        raise InvalidInput(f"the challenge names {session.model.describe()}, but the circuit is of "
                           f"{verifier.model_ref.describe()}")
    return session.decide_zk(verifier.check(event.items))


def reverify(report: AuditReport, model_dir: str | os.PathLike[str], srs: str | os.PathLike[str], *,
             workdir: str | os.PathLike[str] | None = None, memory_limit: int | None = None) -> int:
    """Re-check an audited zero-knowledge transcript's proofs with the model and
    the SRS; raise unless exactly the items its verdict failed fail.  Returns
    how many proofs verify."""
    parameters = report.challenge.zk
    if parameters is None or report.verdict.zk is None:
        raise InvalidInput("not a zero-knowledge transcript: re-query the model instead")
    with open_verifier(model_dir, report.vk, srs=srs, origin=parameters.srs_origin, workdir=workdir,
                       memory_limit=memory_limit, piece_rows=parameters.piece_rows) as verifier:
        if verifier.model_ref != report.challenge.model:
            raise InvalidInput(f"the transcript is about {report.challenge.model.describe()}, not "
                               f"{verifier.model_ref.describe()}")
        verifier.expect(parameters)
        _, failures = zk_results(report.vk, report.zk_items, verifier.check(report.zk_items))
    found, recorded = sorted(f.index for f in failures), sorted(f.index for f in report.verdict.zk.failures)
    if found != recorded:
        raise InvalidOpening(f"re-checked, the proofs of items {found[:8]} fail; the verdict failed {recorded[:8]}")
    return len(report.zk_items) - len(found)
