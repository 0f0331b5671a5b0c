"""Zero-knowledge verification with real ezkl proofs (docs/design.md section 4c).

The default run proves one trigger item end to end, live between
``wmark-prover serve`` and ``wmark-verifier run --zk`` (about a minute on two
cores), and checks the cheap refusals; the rest is marked slow: the same in
one process, the command lines with k = 10 on the marked and the NO-WM model,
and a cheating prover's swapped proofs.  test_zk_protocol.py covers the protocol without ezkl.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.support.helpers import DigitsWorld, build_digits_world
from tests.support.live import prover_server
from tests.support.schemas import assert_valid_report
from wmark.errors import DecodeError
from wmark.harness.programs import BIN, run_cli
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.hazmat.vrf import proof_to_hash
from wmark.protocol.items import TriggerKind
from wmark.protocol.keygen import KeyPair
from wmark.protocol.messages import Verdict, ZkReveal, decode
from wmark.protocol.session import ProverSession, ZkVerifierSession
from wmark.protocol.transcript import Transcript, audit, load_transcript
from wmark.protocol.zk import CAVEAT_ZK, ZkStatement
from wmark.prover.ledger import Ledger

ezkl = pytest.importorskip("ezkl")

from wmark.prover.zk import prove_challenge  # noqa: E402  (needs ezkl)
from wmark.verifier.zk import decide_with_proofs, open_verifier  # noqa: E402
from wmark.watermark import zkcircuit, zksplit  # noqa: E402
from wmark.watermark.evaluate import predict  # noqa: E402
from wmark.watermark.modelio import Classifier, ModelConfig, Preprocessing, load_model, new_model  # noqa: E402
from wmark.watermark.triggers import item_image, trigger_set_from_marking_key  # noqa: E402

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def zk_world(tmp_path_factory) -> DigitsWorld:
    """A --zk key pair of 100 derived items, and zk_cnn digits models trained with
    (marked) and without (plain, the NO-WM row) its triggers."""
    from wmark.watermark.embed import default_recipe

    # zk_cnn's 3.7k weights learn all 100 triggers with more of them per batch and
    # a few more epochs than small_cnn's recipe gives (95-98 of 100 with it).
    world = build_digits_world(tmp_path_factory.mktemp("zk-world"), arch="zk_cnn",
                               recipe=replace(default_recipe("digits"), epochs=40, lr_step=30, triggers_per_batch=16),
                               zk=zkcircuit.InputCommitter(TriggerKind.DERIVED, SHAPE))
    triggers = trigger_set_from_marking_key(world.pair.marking_key)
    assert (predict(load_model(world.marked), triggers.images).argmax(axis=1) == triggers.labels).all()
    return world


def forms(secret: bytes) -> list[bytes]:
    """Every way a secret could sit in a JSON message."""
    return [secret, secret.hex().encode(), base64.b64encode(secret).rstrip(b"="),
            base64.urlsafe_b64encode(secret).rstrip(b"=")]


def assert_nothing_secret_in(envelopes, pair: KeyPair) -> None:
    """No image, seed, VRF proof, salt or image randomness of any item, in any form."""
    mk = pair.marking_key
    secrets_ = []
    for o, salt in zip(mk.openings, mk.zk.salts):
        image = item_image(o, mk.kind, mk.input_shape).tobytes()
        secrets_ += [image, proof_to_hash(o.vrf_proof), o.vrf_proof, salt, o.item_randomness.randomness]
    for envelope in envelopes:
        texts = [envelope.to_json(), envelope.payload]
        for secret in secrets_:
            for form in forms(secret):
                assert not any(form in text for text in texts), "a trigger secret appears in a message"


def test_one_proof_live_between_serve_and_run_reveals_nothing(zk_world, tmp_path):
    """The default run's end-to-end proof: two processes over TCP, the verifier's
    own SRS sent after the challenge, each side building the circuit itself."""
    serve_work, run_work = tmp_path / "serve-work", tmp_path / "run-work"
    serve_work.mkdir(), run_work.mkdir()
    out = tmp_path / "verdict.json"
    with prover_server(zk_world, tmp_path, "--model", str(zk_world.marked), "--workdir", str(serve_work)) as server:
        r = run_cli("wmark-verifier", "run", "--connect", f"127.0.0.1:{server.port}", "--vk", str(zk_world.vk),
                    "--model", str(zk_world.marked), "--k", "1", "--zk", "--lambda", "3", "--workdir", str(run_work),
                    "--identity", str(tmp_path / "verifier.pem"), "--out", str(out), timeout=900)
        assert r.returncode == 0, r.stdout + r.stderr
        log = server.wait_for_log("verdict ACCEPTED (1 of 1 match)")
    assert "proved 1 of 100 items in zero knowledge (none revealed)" in log
    transcript = load_transcript(out)
    audit(transcript)
    verdict = decode(transcript.verdict, (Verdict,))
    assert verdict.accepted and verdict.zk.failures == () and CAVEAT_ZK in verdict.caveats
    (result,) = verdict.results
    mk = zk_world.pair.marking_key
    image = torch.from_numpy(item_image(mk.openings[result.index], mk.kind, SHAPE)[None])
    assert result.predicted == int(load_model(zk_world.marked)(image).argmax()) == result.label
    assert_nothing_secret_in([transcript.challenge, transcript.reveal, transcript.verdict], zk_world.pair)
    assert out.with_suffix(".srs").is_file(), "the verifier's SRS is kept for a later audit --srs"
    assert list(serve_work.iterdir()) == list(run_work.iterdir()) == [], "circuits or keys are left behind"
    assert Ledger.open_existing(server.ledger).entries() == (), "proofs reveal nothing, so the ledger records nothing"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_one_proof_end_to_end_proves_the_label_and_reveals_nothing(zk_world, tmp_path):
    vk, mk = zk_world.pair.verification_key, zk_world.pair.marking_key
    verifier = SigningKey.generate()
    with open_verifier(zk_world.marked, vk, srs_out=tmp_path / "challenge.srs", workdir=tmp_path) as zv:
        session = ZkVerifierSession(vk, verifier, zv.model_ref, 1, zk=zv.parameters, lam=3)
        challenge = session.challenge()
        prover = ProverSession(mk, vk, zk_world.owner)
        event = prover.receive(challenge)
        answer = prove_challenge(prover, event, mk, zk_world.marked, zv.srs.path, workdir=tmp_path)
        verdict_env = decide_with_proofs(session, session.receive(answer), zv)
    verdict = decode(verdict_env, (Verdict,))
    (index,) = event.indices
    model_class = load_model(zk_world.marked)(torch.from_numpy(item_image(mk.openings[index], mk.kind, SHAPE)[None]))
    assert verdict.results[0].predicted == int(model_class.argmax()) == mk.openings[index].label
    assert verdict.accepted and verdict.zk.failures == () and CAVEAT_ZK in verdict.caveats
    reveal = decode(answer, (ZkReveal,))
    assert reveal.items[0].statement.input_hash == vk.zk.hashes[index]
    assert_nothing_secret_in([challenge, answer, verdict_env], zk_world.pair)
    audit(Transcript(zk_world.pair.signed_vk, challenge, answer, verdict_env))
    assert list(tmp_path.iterdir()) == [tmp_path / "challenge.srs"], "temporary circuits and keys are left behind"


def test_the_commitment_is_the_poseidon_hash_of_pixels_then_salt():
    pixels, salt = np.arange(64, dtype=np.uint8).reshape(SHAPE), bytes(range(32))
    felts = [ezkl.float_to_felt(float(v), 8, ezkl.PyInputType.F32) for v in list(range(64)) + list(range(32))]
    assert zkcircuit.input_hash(pixels, salt, 8) == bytes.fromhex(ezkl.poseidon_hash(felts)[0])
    assert zkcircuit.input_hash(pixels, bytes(32), 8) != zkcircuit.input_hash(pixels, salt, 8)


def _classifier(net: nn.Module) -> Classifier:
    return Classifier(ModelConfig("zk_cnn", 10, SHAPE, Preprocessing((0.3,), (0.3,))), net).eval()


class _Det(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        square = x.reshape(-1, 8, 8)
        return torch.det(square).reshape(-1, 1) * torch.ones(1, 10)


def test_an_operator_ezkl_lacks_is_named(tmp_path):
    with pytest.raises(zkcircuit.UnsupportedModel, match="cannot compile the suspect model.*Det"):
        zkcircuit.build_circuit(_classifier(_Det()), tmp_path, input_scale=8)


def test_a_model_too_large_is_refused_with_its_rows_and_memory(tmp_path):
    torch.manual_seed(0)
    big = new_model(ModelConfig("small_cnn", 10, SHAPE, Preprocessing((0.3,), (0.3,))))
    with pytest.raises(zkcircuit.CircuitTooLarge, match=r"at least [\d,]+ rows \(2\^20\).*about [\d.]+ GB of memory "
                                                         r"and 16\.0 GB is available"):
        zkcircuit.build_circuit(big, tmp_path, input_scale=8, memory_limit=16 * 10**9)
    assert not list(tmp_path.iterdir()), "refused before exporting anything"


def test_a_truncated_or_foreign_srs_is_refused(tmp_path):
    good = tmp_path / "good.srs"
    good.write_bytes((15).to_bytes(4, "little") + bytes(zkcircuit.srs_size(15) - 4))
    assert zkcircuit.read_srs(good).logrows == 15
    (tmp_path / "short.srs").write_bytes(good.read_bytes()[:-1])
    with pytest.raises(DecodeError, match="truncated"):
        zkcircuit.read_srs(tmp_path / "short.srs")
    (tmp_path / "other.srs").write_bytes(b"\xff" * 64)
    with pytest.raises(DecodeError, match="not a KZG SRS"):
        zkcircuit.read_srs(tmp_path / "other.srs")


# -- slow: the command lines, k = 10, and a cheating prover -----------------------------------------------------------

def zk_through_files(world: DigitsWorld, model: Path, tmp: Path, k: int = 10, *extra: str, lam: int = 30):
    """zkchallenge (binding ``lam``: the default 40 refuses k = 10 of p0 = 1/10), zkprove and zkcheck,
    each also writing its --json report as tmp/COMMAND.report.json."""
    challenge, reveal, verdict = tmp / "challenge.json", tmp / "zkreveal.json", tmp / "verdict.json"
    ident = str(tmp / "verifier.pem")
    r = run_cli("wmark-verifier", "zkchallenge", "--vk", str(world.vk), "--model", str(model), "--k", str(k),
                "--out", str(challenge), "--identity", ident, "--workdir", str(tmp), "--lambda", str(lam),
                *extra, "--json", str(tmp / "zkchallenge.report.json"))
    assert r.returncode == 0, r.stderr
    r = run_cli("wmark-prover", "zkprove", "--mk", str(world.mk), "--vk", str(world.vk), "--model", str(model),
                "--challenge", str(challenge), "--out", str(reveal), "--workdir", str(tmp),
                "--json", str(tmp / "zkprove.report.json"), timeout=1200)
    assert r.returncode == 0, r.stderr
    r = run_cli("wmark-verifier", "zkcheck", "--vk", str(world.vk), "--challenge", str(challenge), "--reveal",
                str(reveal), "--model", str(model), "--out", str(verdict), "--identity", ident,
                "--workdir", str(tmp), "--json", str(tmp / "zkcheck.report.json"))
    return r, verdict


@pytest.mark.slow
@pytest.mark.timeout(1800)  # one proof and three circuit builds: minutes on a loaded machine
def test_zk_commands_write_json_reports_valid_against_their_schemas(zk_world, tmp_path):
    r, verdict_path = zk_through_files(zk_world, zk_world.marked, tmp_path, 1, lam=3)
    assert r.returncode == 0, r.stdout + r.stderr
    challenge = json.loads((tmp_path / "zkchallenge.report.json").read_text())
    proved = json.loads((tmp_path / "zkprove.report.json").read_text())
    checked = json.loads((tmp_path / "zkcheck.report.json").read_text())
    assert_valid_report(challenge, "wmark/challenge-report")
    assert_valid_report(proved, "wmark/zkprove-report")
    assert_valid_report(checked, "wmark/verdict-report")
    srs = zkcircuit.read_srs(tmp_path / "challenge.srs")
    assert challenge["zk"]["srs"] == str(tmp_path / "challenge.srs") and challenge["zk"]["srs_sha256"] == srs.sha256.hex()
    assert challenge["k"] == proved["k"] == checked["verdict"]["k"] == 1 and challenge["lambda"] == 3
    assert proved["challenge_digest"] == challenge["digest"] and proved["items"] == challenge["items"]
    assert proved["outcome"] == "proved" and proved["proofs"] == 1 and proved["reason"] is None
    assert [res["index"] for res in checked["verdict"]["results"]] == challenge["items"]
    assert checked["verdict"]["accepted"] and checked["verdict"]["zk"] and checked["transcript"] == str(verdict_path)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # minutes of proving, more on a loaded machine
@pytest.mark.parametrize("which, expected", [("marked", 0), ("plain", 1)])
def test_command_lines_accept_the_marked_model_and_reject_no_wm(zk_world, tmp_path, which, expected):
    r, verdict_path = zk_through_files(zk_world, getattr(zk_world, which), tmp_path)
    assert r.returncode == expected, r.stdout + r.stderr
    assert ("ACCEPTED: 10 of 10 hidden" if expected == 0 else "REJECTED") in r.stdout
    transcript = load_transcript(verdict_path)
    report = audit(transcript)
    assert report.verdict.zk.failures == ()
    assert_nothing_secret_in([transcript.challenge, transcript.reveal, transcript.verdict], zk_world.pair)
    r = run_cli("wmark-verifier", "audit", str(verdict_path), "--model", str(getattr(zk_world, which)), "--srs",
                str(tmp_path / "challenge.srs"))
    assert r.returncode == 0 and "10 of 10 verify, as recorded" in r.stdout, r.stdout + r.stderr


@pytest.mark.slow
@pytest.mark.timeout(1800)  # minutes of proving, more on a loaded machine
def test_swapped_proofs_are_non_matches_named_in_the_verdict(zk_world, tmp_path):
    """A cheating owner swaps in a proof of another index, of another model, with
    another salt, under another SRS, and a truncated one: each item is a
    reported non-match, and the rest still count."""
    vk, mk, owner = zk_world.pair.verification_key, zk_world.pair.marking_key, zk_world.owner
    with open_verifier(zk_world.marked, vk, srs_out=tmp_path / "c.srs", workdir=tmp_path) as zv:
        session = ZkVerifierSession(vk, SigningKey.generate(), zv.model_ref, 6, zk=zv.parameters, lam=3)
        prover = ProverSession(mk, vk, owner)
        event = prover.receive(session.challenge())
        honest = decode(prove_challenge(prover, event, mk, zk_world.marked, zv.srs.path, workdir=tmp_path),
                        (ZkReveal,))
        a, b, c, d, e, f = event.indices
        image = {i: item_image(mk.openings[i], mk.kind, SHAPE) for i in event.indices}
        other_model = _prove(zk_world.plain, vk, zv.srs, image[b], mk.zk.salts[b], tmp_path)
        other_salt = _prove(zk_world.marked, vk, zv.srs, image[c], secrets.token_bytes(32), tmp_path)
        other_srs = _prove(zk_world.marked, vk, zkcircuit.generate_srs(tmp_path / "other.srs", 15), image[d],
                           mk.zk.salts[d], tmp_path)
        statements = {item.index: item.statement for item in honest.items}
        swapped = {**statements, a: statements[f], b: other_model, c: other_salt, d: other_srs,
                   e: replace(statements[e], proof=statements[e].proof[:-100])}
        cheat = ZkReveal(honest.challenge_digest, honest.vk_digest, honest.scheme,
                         tuple(replace(item, statement=swapped[item.index]) for item in honest.items)).sign(owner)
        verdict = decode(decide_with_proofs(session, session.receive(cheat), zv), (Verdict,))
    failed = {failure.index: failure.reason for failure in verdict.zk.failures}
    assert set(failed) == {a, b, c, d, e}
    assert "another hidden input" in failed[a] and "another hidden input" in failed[c]
    assert all("does not verify" in failed[i] for i in (b, d, e))
    assert verdict.matches == 1 and [r.index for r in verdict.results if r.match] == [f]


def _prove(model_dir: Path, vk, srs, pixels: np.ndarray, salt: bytes, tmp: Path) -> ZkStatement:
    with zksplit.model_pieces(model_dir, input_shape=SHAPE, num_classes=10, input_scale=vk.zk.input_scale,
                              piece_rows=None, workdir=tmp) as (_, pieces):
        circuit = pieces.circuits[0]
        with zkcircuit.setup(circuit, srs) as keys:
            return zkcircuit.prove(circuit, keys, srs, pixels, salt)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # minutes of proving, more on a loaded machine
def test_bad_files_end_zkcheck_with_a_precise_error(zk_world, tmp_path):
    r, _ = zk_through_files(zk_world, zk_world.marked, tmp_path, 1, lam=3)
    assert r.returncode in (0, 1), r.stderr
    reveal = tmp_path / "zkreveal.json"
    base = ["wmark-verifier", "zkcheck", "--vk", str(zk_world.vk), "--challenge", str(tmp_path / "challenge.json"),
            "--model", str(zk_world.marked), "--identity", str(tmp_path / "verifier.pem"), "--out",
            str(tmp_path / "v2.json")]
    truncated = tmp_path / "truncated.json"
    truncated.write_bytes(reveal.read_bytes()[: len(reveal.read_bytes()) // 2])
    r = run_cli(*base, "--reveal", str(truncated))
    assert r.returncode == 2 and "not valid JSON" in r.stderr and "Traceback" not in r.stderr, r.stderr
    short_srs = tmp_path / "short.srs"
    short_srs.write_bytes((tmp_path / "challenge.srs").read_bytes()[:-64])
    r = run_cli(*base, "--reveal", str(reveal), "--srs", str(short_srs))
    assert r.returncode == 2 and "truncated" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = run_cli(*base[:-2], "--out", str(tmp_path / "v3.json"), "--reveal", str(reveal), "--model",
                str(zk_world.plain))
    assert r.returncode == 2 and "not the model the challenge names" in r.stderr, r.stderr
    assert not (tmp_path / "v2.json").exists() and not (tmp_path / "v3.json").exists()


@pytest.mark.slow
@pytest.mark.timeout(1800)  # two proofs in one process, a Ray start and two proofs on it: minutes on a loaded machine
def test_proofs_as_ray_tasks_reveal_what_one_process_reveals(zk_world, ray_address, tmp_path):
    vk, mk = zk_world.pair.verification_key, zk_world.pair.marking_key
    with open_verifier(zk_world.marked, vk, srs_out=tmp_path / "challenge.srs", workdir=tmp_path) as zv:
        session = ZkVerifierSession(vk, SigningKey.generate(), zv.model_ref, 2, zk=zv.parameters, lam=3)
        challenge = session.challenge()
        answers = {}
        for how in (None, ray_address):
            prover = ProverSession(mk, vk, zk_world.owner)
            event = prover.receive(challenge)
            done: list[int] = []
            answers[how] = prove_challenge(prover, event, mk, zk_world.marked, zv.srs.path, workdir=tmp_path,
                                           progress=done.append, ray_address=how)
            assert done == [1, 1]
        verdict = decode(decide_with_proofs(session, session.receive(answers[ray_address]), zv), (Verdict,))
    assert without_proofs(answers[ray_address]) == without_proofs(answers[None])
    assert [r.index for r in verdict.results] == list(event.indices)
    assert verdict.accepted and verdict.zk.failures == ()


def without_proofs(answer: dsse.Envelope) -> ZkReveal:
    """The reveal but for its proof bytes, which differ between any two runs:
    ezkl 23 blinds each proof with fresh OS randomness and takes no seed
    (docs/design.md section 4c), so only the statements can be compared."""
    reveal = decode(answer, (ZkReveal,))
    return replace(reveal, items=tuple(replace(item, statement=replace(item.statement, proof=b""))
                                       for item in reveal.items))


def _descendants(root: int) -> set[int]:
    """The processes below ``root`` (Linux /proc): a local Ray's raylet and its workers."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _kill_a_proving_worker(root: int, killed: list[int], stop: threading.Event) -> threading.Thread:
    """SIGKILL the first Ray worker below ``root`` seen running a task (Ray titles
    it ``ray::_remote``, wmark.cluster's task function), once."""
    def killer() -> None:
        while not stop.wait(0.2):
            for pid in _descendants(root):
                try:
                    title = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if title.startswith(b"ray::_remote"):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
@pytest.mark.timeout(2400)  # eight proofs, a Ray start and a retried proof: many minutes on a loaded machine
def test_zkprove_on_local_ray_with_a_worker_killed_reveals_what_one_process_reveals(zk_world, tmp_path):
    """zkprove --ray local on 4 items, one Ray worker SIGKILLed mid-proof: the proof
    is retried, and the reveal is the sequential one's but for the proof bytes;
    each of its proofs verifies (zkcheck: 4 of 4)."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[cluster]')")
    challenge, ident = tmp_path / "challenge.json", str(tmp_path / "verifier.pem")
    r = run_cli("wmark-verifier", "zkchallenge", "--vk", str(zk_world.vk), "--model", str(zk_world.marked), "--k",
                "4", "--lambda", "3", "--out", str(challenge), "--identity", ident, "--workdir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    base = ["zkprove", "--mk", str(zk_world.mk), "--vk", str(zk_world.vk), "--model", str(zk_world.marked),
            "--challenge", str(challenge), "--workdir", str(tmp_path)]
    r = run_cli("wmark-prover", *base, "--out", str(tmp_path / "sequential.json"), timeout=1200)
    assert r.returncode == 0, r.stderr
    on_ray = tmp_path / "ray.json"
    process = subprocess.Popen([str(BIN / "wmark-prover"), *base, "--out", str(on_ray), "--ray", "local"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    killed: list[int] = []
    stop = threading.Event()
    killer = _kill_a_proving_worker(process.pid, killed, stop)
    try:
        out, err = process.communicate(timeout=1200)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("zkprove --ray hung after a worker was killed")
    finally:
        stop.set()
        killer.join(10)
    assert len(killed) == 1, "no proving worker was seen to kill"
    assert process.returncode == 0, out + err
    reveals = {path.name: dsse.Envelope.from_json(path.read_bytes()) for path in (tmp_path / "sequential.json", on_ray)}
    assert without_proofs(reveals["ray.json"]) == without_proofs(reveals["sequential.json"])
    r = run_cli("wmark-verifier", "zkcheck", "--vk", str(zk_world.vk), "--challenge", str(challenge), "--reveal",
                str(on_ray), "--model", str(zk_world.marked), "--out", str(tmp_path / "verdict.json"), "--identity",
                ident, "--lambda", "3", "--workdir", str(tmp_path))
    assert r.returncode == 0 and "ACCEPTED: 4 of 4 hidden" in r.stdout, r.stdout + r.stderr


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_serve_on_ray_proves_a_live_session(zk_world, ray_address, tmp_path):
    """wmark-prover serve --ray ADDRESS: a live zero-knowledge session's proofs are Ray tasks."""
    work = tmp_path / "serve-work"
    work.mkdir()
    with prover_server(zk_world, tmp_path, "--model", str(zk_world.marked), "--workdir", str(work), "--ray",
                       ray_address) as server:
        r = run_cli("wmark-verifier", "run", "--connect", f"127.0.0.1:{server.port}", "--vk", str(zk_world.vk),
                    "--model", str(zk_world.marked), "--k", "2", "--zk", "--lambda", "3", "--workdir",
                    str(tmp_path), "--identity", str(tmp_path / "verifier.pem"), "--out",
                    str(tmp_path / "verdict.json"), timeout=1200)
        assert r.returncode == 0, r.stdout + r.stderr
        log = server.wait_for_log("verdict ACCEPTED (2 of 2 match)")
    assert "proved 2 of 100 items in zero knowledge (none revealed)" in log
    assert list(work.iterdir()) == [], "circuits or keys are left behind"

