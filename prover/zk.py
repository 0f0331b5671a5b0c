"""The owner's side of zero-knowledge verification (docs/design.md section 4c).

For each index a zero-knowledge challenge samples, one ezkl proof that the
suspect model's circuit maps the item's hidden input (its trigger image and
secret salt) to a public class; the answer carries the proofs and the label
openings, never an image or a seed.  Proofs are made one image at a time:
batching several into one circuit multiplies the memory a proof takes.
"""

from __future__ import annotations

import hmac
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from wmark.cluster import JobFailed
from wmark.errors import InvalidInput, LocalProtocolError
from wmark.protocol.hazmat import dsse
from wmark.protocol.items import TriggerKind
from wmark.protocol.keys import MarkingKey
from wmark.protocol.session import ChallengeReceived, ProverSession
from wmark.protocol.zk import ZkStatement
from wmark.watermark.modelio import model_file_digest
from wmark.watermark.triggers import item_image
from wmark.watermark.zkcircuit import Circuit, Keys, Srs, prove, read_srs
from wmark.watermark.zksplit import Pieces, model_pieces, prove_pieces, setup_pieces


def prove_challenge(session: ProverSession, event: ChallengeReceived, mk: MarkingKey,
                    model_dir: str | os.PathLike[str], srs_path: str | os.PathLike[str], *,
                    workdir: str | os.PathLike[str] | None = None, memory_limit: int | None = None,
                    progress: Callable[[int], object] | None = None,
                    ray_address: str | None = None, deadline: float | None = None,
                    on_cost: Callable[[Pieces], object] | None = None) -> dsse.Envelope:
    """Prove every challenged item about the model in ``model_dir`` and sign the answer.

    ``on_cost`` hears what the proofs will take (the circuit laid out, nothing
    proven yet); a circuit over ``memory_limit`` is refused before that.  The
    model is proven whole, or in the pieces the challenge's ``piece_rows``
    cuts it into (docs/design.md section 4c).
    With ``ray_address`` each item's proof is a Ray task (:mod:`wmark.cluster`)
    reserving the memory the cost model gives the circuit; the answer lists
    the items in the challenge's order either way.  ``deadline`` (a
    ``time.monotonic()`` instant): refused before any work once it has passed;
    in this process, :class:`PastDeadline` as soon as the proofs made so far
    show the rest would end past it; on Ray, :class:`wmark.cluster.Overdue` when
    it passes with proofs unfinished, which are cancelled."""
    challenge, vk = event.challenge, session.vk
    _Deadline(deadline, len(event.indices)).check()  # passed already: no setup either
    if challenge.zk is None or vk.zk is None or mk.zk is None:
        raise LocalProtocolError("not a zero-knowledge challenge, or a key without zero-knowledge commitments")
    if model_file_digest(model_dir) != challenge.model.sha256:
        raise InvalidInput(f"{model_dir}: not the model the challenge names ({challenge.model.describe()})")
    srs = read_srs(srs_path)
    if srs.sha256 != challenge.zk.srs_sha256:
        raise InvalidInput(f"{srs.path}: not the SRS the challenge names (sha256 "
                           f"{challenge.zk.srs_sha256.hex()[:16]}…, this file {srs.sha256.hex()[:16]}…)")
    statements: dict[int, ZkStatement] = {}
    with model_pieces(model_dir, input_shape=vk.input_shape, num_classes=vk.num_classes,
                      input_scale=vk.zk.input_scale, piece_rows=challenge.zk.piece_rows, workdir=workdir,
                      memory_limit=memory_limit) as (_, pieces):
        if ray_address is not None and pieces.split:  # before any setup, like the deadline
            raise InvalidInput("a model proven in pieces is proven in this process, not on a Ray cluster")
        if pieces.split and mk.kind is not TriggerKind.DERIVED:
            # The links commit to the tensors between pieces without blinding (that is how two proofs
            # are compared), and the verifier holds the model: it could confirm a guessed image by
            # recomputing a first piece's output commitment, which the salted input hash prevents.
            # A derived item's image comes from a VRF output no one can guess (docs/design.md section 4c).
            raise InvalidInput(f"this model would be proven in {len(pieces.circuits)} pieces, whose links would let "
                               f"the verifier confirm a guessed image of this {mk.kind.value} key: only derived "
                               "keys are proven in pieces")
        if on_cost:
            on_cost(pieces)
        with setup_pieces(pieces, srs) as keys:
            if keys.circuit_sha256 != challenge.zk.circuit_sha256:
                raise InvalidInput("the circuit built here from the model differs from the verifier's: both sides "
                                   "need the same ezkl (23.0.5) and torch versions")
            inputs = {index: (item_image(mk.openings[index], mk.kind, mk.input_shape), mk.zk.salts[index])
                      for index in event.indices}
            if ray_address is None:
                clock = _Deadline(deadline, len(event.indices))  # the pace counts from the first proof
                for index in event.indices:
                    clock.check()
                    statements[index] = prove_pieces(pieces, keys, srs, *inputs[index])
                    clock.done()
                    if progress:
                        progress(1)
            else:
                statements = _prove_on_ray(pieces.circuits[0], keys.keys[0], srs, inputs, ray_address, progress,
                                           deadline)
    for index in event.indices:
        # A proof the verifier would find about another input is a sign of a broken key, not a non-match.
        if not hmac.compare_digest(statements[index].input_hash, vk.zk.hashes[index]):
            raise LocalProtocolError(f"item {index}: the proven input is not the one committed in the "
                                     f"verification key: the marking key does not match it")
    return session.zk_reveal(statements)


class PastDeadline(InvalidInput):
    """The proofs would end past the session's deadline (docs/design.md section 4c)."""


class _Deadline:
    """Whether ``total`` proofs still fit before ``deadline``, judged from the pace of
    those made so far; none made yet: whether the deadline has passed.  A proof or
    a setup under way is not interrupted (ezkl's calls cannot be), so a session
    overruns by at most one of them."""

    def __init__(self, deadline: float | None, total: int) -> None:
        self._deadline, self._total, self._made, self._started = deadline, total, 0, time.monotonic()

    def done(self) -> None:
        self._made += 1

    def check(self) -> None:
        if self._deadline is None:
            return
        now = time.monotonic()
        if self._made == 0:
            if now >= self._deadline:
                raise PastDeadline(f"this session's deadline passed before any of its {self._total} proofs was "
                                   f"made; ask for fewer items, or at a quieter time")
            return
        pace = (now - self._started) / self._made
        ends = now + pace * (self._total - self._made)
        if ends > self._deadline:
            raise PastDeadline(f"{self._total} proofs at {pace:.1f} s each would end {ends - self._deadline:.0f} s "
                               f"past this session's deadline ({self._made} made, stopped there); ask for fewer "
                               f"items")


def _prove_on_ray(circuit: Circuit, keys: Keys, srs: Srs, inputs: Mapping[int, tuple[np.ndarray, bytes]],
                  ray_address: str, progress: Callable[[int], object] | None,
                  deadline: float | None) -> dict[int, ZkStatement]:
    """One Ray task per item.  A worker may be on another machine, so each task
    gets the circuit, proving key and SRS as bytes (through Ray's object store,
    put there once) and proves in a directory of its own.  The tasks run side
    by side, so the pace of one process says nothing: at ``deadline`` those
    unfinished are cancelled.

    The statements (input hash, class) are the sequential run's; the proof
    bytes are not, and cannot be made so: ezkl 23 draws each proof's blinding
    from the OS (``OsRng`` in ``create_proof_circuit``, src/pfsys/mod.rs),
    its Python ``prove`` takes no seed, and its only alternative, the
    compile-time feature ``det-prove``, seeds every proof with 32 zero bytes,
    the same blinding for every statement (docs/design.md section 4c)."""
    from wmark.cluster import Job, run_jobs, share

    shipped = share(_Shipment(circuit.input_shape, circuit.input_scale, circuit.num_rows, circuit.logrows,
                              circuit.compiled.read_bytes(), circuit.settings.read_bytes(),
                              keys.proving_key.read_bytes(), keys.circuit_sha256, srs.path.read_bytes(),
                              srs.logrows, srs.sha256), ray_address)
    jobs = [Job(f"item {index}", _prove_shipped, (shipped, pixels, salt), num_cpus=1,
                memory=circuit.memory_needed) for index, (pixels, salt) in inputs.items()]
    results = run_jobs(jobs, ray_address=ray_address, what="proof", progress=None, on_done=progress,
                       deadline=deadline)
    return dict(zip(inputs, results))


@dataclass(frozen=True)
class _Shipment:
    """What a worker needs to prove about one circuit: its files and the SRS, as bytes."""

    input_shape: tuple[int, int, int]
    input_scale: int
    num_rows: int
    logrows: int
    compiled: bytes
    settings: bytes
    proving_key: bytes
    circuit_sha256: bytes
    srs: bytes
    srs_logrows: int
    srs_sha256: bytes


def _prove_shipped(shipment: _Shipment, pixels: np.ndarray, salt: bytes) -> ZkStatement:
    """On a Ray worker: write the shipment to a temporary directory and prove one input."""
    with tempfile.TemporaryDirectory(prefix="wmark-zk-worker-") as tmp:
        directory = Path(tmp)
        circuit = Circuit(directory, shipment.input_shape, shipment.input_scale, shipment.num_rows, shipment.logrows)
        circuit.compiled.write_bytes(shipment.compiled)
        circuit.settings.write_bytes(shipment.settings)
        (directory / "pk.key").write_bytes(shipment.proving_key)
        (directory / "srs").write_bytes(shipment.srs)
        keys = Keys(directory / "vk.key", directory / "pk.key", shipment.circuit_sha256)
        srs = Srs(directory / "srs", shipment.srs_logrows, shipment.srs_sha256)
        return prove(circuit, keys, srs, pixels, salt)


def answer_or_refuse(session: ProverSession, event: ChallengeReceived, mk: MarkingKey,
                     models: Mapping[bytes, Path], srs_path: str | os.PathLike[str], *,
                     workdir: str | os.PathLike[str] | None = None, memory_limit: int | None = None,
                     deadline: float | None = None,
                     ray_address: str | None = None) -> tuple[dsse.Envelope, str | None]:
    """The proofs for a zero-knowledge challenge about one of ``models`` (by the
    SHA-256 of their files), or a signed refusal and its reason when this
    prover cannot make them: a model it holds no copy of, one ezkl cannot
    compile or this machine cannot prove, another SRS or toolchain, a session
    whose deadline the proofs would pass, an SRS that makes ezkl panic, a proof
    that failed on every try on the Ray cluster (``ray_address``)."""
    if event.problem is not None:
        return session.refuse(event.problem), event.problem
    digest = event.challenge.model.sha256  # None: the challenge names an endpoint, not model files
    model_dir = models.get(digest) if digest is not None else None
    if model_dir is None:
        reason = (f"this prover holds no copy of the suspect model ({event.challenge.model.describe()}); its "
                  f"owner must start wmark-prover serve with --model naming it")
        return session.refuse(reason), reason
    try:
        return prove_challenge(session, event, mk, model_dir, srs_path, workdir=workdir,
                               memory_limit=memory_limit, deadline=deadline, ray_address=ray_address), None
    except (InvalidInput, JobFailed) as exc:  # ezkl's panics come as InvalidInput too (zkcircuit.setup, prove)
        reason = f"cannot prove: {exc}"
        return session.refuse(reason), reason
