"""Hostile zero-knowledge sessions, with the real ezkl (docs/design.md section 4c).

* An SRS of zeros (its header says 2^15 rows, every point is zero) makes ezkl's
  setup panic: pyo3's ``PanicException`` is a ``BaseException``, which
  ``except Exception`` misses.  ``zkprove`` exits 2 with one line, and
  ``serve`` answers the verifier with a signed refusal saying so.
* A session whose proofs would run past its whole deadline is cut off at a
  proof (on Ray: its unfinished tasks cancelled), and refused with a signed
  reason, rather than proving on unbounded.
"""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path

import pytest

from tests.support.live import Keys, Peer, prover_server
from tests.support.zkworld import SHAPE, zk_world
from wmark.files import atomic_write
from wmark.harness.programs import run_cli
from wmark.protocol.framing import blob_frames, encode_frame
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.messages import ModelRef
from wmark.protocol.session import ProverSession, Refused, ZkVerifierSession
from wmark.protocol.zk import SrsOrigin, ZkParameters

ezkl = pytest.importorskip("ezkl")

from wmark.prover.zk import answer_or_refuse  # after the importorskip: needs ezkl
from wmark.watermark import zkcircuit, zksplit
from wmark.watermark.modelio import model_file_digest

pytestmark = pytest.mark.adversarial


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Keys, Path, int, SigningKey]:
    """A --zk key pair of 12 items on disk, an untrained zk_cnn model (what is proved
    does not matter here, only that ezkl runs), and the rows its circuit needs."""
    world = zk_world(tmp_path_factory.mktemp("zk-hostile"), n=12, std=0.4)
    with zksplit.model_pieces(world.model, input_shape=SHAPE, num_classes=10, piece_rows=None,
                              input_scale=world.pair.verification_key.zk.input_scale, workdir=world.root) as (_, pieces):
        logrows = pieces.circuits[0].logrows
    return world, world.model, logrows, world.owner_key


def _zero_srs(path: Path, logrows: int) -> bytes:
    data = logrows.to_bytes(4, "little") + bytes(zkcircuit.srs_size(logrows) - 4)
    path.write_bytes(data)
    assert zkcircuit.read_srs(path).logrows == logrows  # well formed: only its points are wrong
    return data


def _session(keys: Keys, model: Path, srs: bytes, logrows: int, k: int, circuit: bytes = bytes(32),
             ) -> ZkVerifierSession:
    parameters = ZkParameters(srs_sha256=hashlib.sha256(srs).digest(), srs_logrows=logrows,
                              srs_origin=SrsOrigin.VERIFIER, circuit_sha256=circuit)
    return ZkVerifierSession(keys.pair.verification_key, SigningKey.generate(),
                             ModelRef(sha256=model_file_digest(model)), k, zk=parameters, lam=3)


def _provable_session(keys: Keys, model: Path, srs_path: Path, k: int) -> ZkVerifierSession:
    """A session of ``k`` items the owner can prove: a real SRS (written to ``srs_path``) and the circuit's digest."""
    with zksplit.model_pieces(model, input_shape=SHAPE, num_classes=10, piece_rows=None,
                              input_scale=keys.pair.verification_key.zk.input_scale,
                              workdir=srs_path.parent) as (_, pieces):
        circuit = pieces.circuits[0]
        srs_file = zkcircuit.generate_srs(srs_path, circuit.logrows)
        with zkcircuit.setup(circuit, srs_file, keep_proving_key=False) as verifier_keys:
            circuit_sha256 = verifier_keys.circuit_sha256
    return _session(keys, model, srs_path.read_bytes(), srs_file.logrows, k, circuit=circuit_sha256)


def test_zkprove_with_an_srs_of_zeros_exits_2_in_one_line(world, tmp_path):
    keys, model, logrows, _ = world
    challenge = tmp_path / "challenge.json"
    srs = _zero_srs(challenge.with_suffix(".srs"), logrows)  # where zkprove looks for it
    atomic_write(challenge, _session(keys, model, srs, logrows, 1).challenge().to_json())
    result = run_cli("wmark-prover", "zkprove", "--mk", str(keys.mk), "--vk", str(keys.vk), "--model", str(model),
                     "--challenge", str(challenge), "--out", str(tmp_path / "reveal.json"),
                     "--workdir", str(tmp_path), "--ledger", str(tmp_path / "l.sqlite"), timeout=600)
    assert result.returncode == 2, result.stdout + result.stderr
    # Beside the progress bar, one line: the error.
    [line] = [text for text in result.stderr.splitlines() if text.strip() and "proving:" not in text]
    assert line.startswith("wmark-prover: error: ") and "PanicException" in line, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "reveal.json").exists()


def test_serve_answers_an_srs_of_zeros_with_a_signed_refusal(world, tmp_path):
    keys, model, logrows, _ = world
    srs = _zero_srs(tmp_path / "zero.srs", logrows)
    session = _session(keys, model, srs, logrows, 1)
    with prover_server(keys, tmp_path, "--model", str(model), "--workdir", str(tmp_path)) as server:
        peer = Peer(server.port)
        peer.sock.settimeout(600)
        peer.send(encode_frame(session.challenge().to_json()))
        for frame in blob_frames(io.BytesIO(srs)):
            peer.send(frame)
        refused = session.receive(dsse.Envelope.from_json(peer.receive()))
        peer.close()
        assert isinstance(refused, Refused), refused
        assert "ezkl setup failed with SRS" in refused.reason and "PanicException" in refused.reason
        assert "\n" not in refused.reason
        log = server.wait_for_log("refused: cannot prove: ezkl setup failed")
        assert "Traceback" not in log and server.process.poll() is None, log


def test_proving_is_refused_once_the_sessions_deadline_has_passed(world):
    """The check before the first proof: a session already past its deadline (it
    waited for the proving lock, say) proves nothing and is told why."""
    keys, model, logrows, owner = world
    session = _session(keys, model, b"unused", logrows, 3)
    prover = ProverSession(keys.pair.marking_key, keys.pair.verification_key, owner)
    event = prover.receive(session.challenge())
    started = time.monotonic()
    answer, reason = answer_or_refuse(prover, event, keys.pair.marking_key, {model_file_digest(model): model},
                                      keys.root / "no-such.srs", deadline=time.monotonic() - 1)
    assert reason is not None and "deadline passed before any of its 3 proofs" in reason, reason
    assert time.monotonic() - started < 5  # refused before the model is even digested
    assert isinstance(session.receive(answer), Refused)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_zk_session_that_would_prove_past_its_deadline_is_cut_off_and_told_why(world, tmp_path):
    """Ten proofs take well over ten seconds on any two cores: with a 10-second
    session the server stops at the first proof that shows the rest cannot fit."""
    keys, model, _, _ = world
    srs_path = tmp_path / "good.srs"
    session = _provable_session(keys, model, srs_path, 10)
    srs = srs_path.read_bytes()
    with prover_server(keys, tmp_path, "--model", str(model), "--workdir", str(tmp_path),
                       "--zk-session-timeout", "10") as server:
        peer = Peer(server.port)
        peer.sock.settimeout(600)
        started = time.monotonic()
        peer.send(encode_frame(session.challenge().to_json()))
        for frame in blob_frames(io.BytesIO(srs)):
            peer.send(frame)
        refused = session.receive(dsse.Envelope.from_json(peer.receive()))
        took = time.monotonic() - started
        peer.close()
    assert isinstance(refused, Refused), refused
    assert "past this session's deadline" in refused.reason or "deadline passed" in refused.reason, refused.reason
    assert took < 600, took


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_on_ray_proofs_unfinished_at_the_sessions_deadline_are_cancelled_and_refused(world, ray_address, tmp_path):
    """Proving on Ray counts against the session's deadline too: a second after
    the call, the proofs not made are cancelled and the verifier is told why."""
    keys, model, _, owner = world
    session = _provable_session(keys, model, tmp_path / "good.srs", 10)
    prover = ProverSession(keys.pair.marking_key, keys.pair.verification_key, owner)
    event = prover.receive(session.challenge())
    answer, reason = answer_or_refuse(prover, event, keys.pair.marking_key, {model_file_digest(model): model},
                                      tmp_path / "good.srs", workdir=tmp_path, deadline=time.monotonic() + 1,
                                      ray_address=ray_address)
    assert reason is not None and "deadline passed with" in reason and "proofs unfinished" in reason, reason
    assert isinstance(session.receive(answer), Refused)
