"""Verdicts that rest on the registry: registration time in the verdict, and
`dispute` naming the earlier of two accepted claims (docs/design.md section 4b).
Replayed and transplanted keys, the claims `dispute` is for, are attacked in
tests/adversarial/."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.support.helpers import free_port
from tests.support.witnessed import witnessed_log
from wmark.harness.claims import Keys, claim, registered_copy, run_main
from wmark.protocol.hazmat.identity import SigningKey, save_signing_key
from wmark.protocol.transcript import audit, load_transcript
from wmark.verifier.cli import main as verifier_main
from wmark.watermark.cli import main as wmark_main


@pytest.fixture(scope="module")
def registered(digits_world, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("registered")
    return (tmp, *registered_copy(digits_world.keys, tmp))


def test_verdict_carries_the_registration_and_audits(registered, digits_world, capsys):
    tmp, keys, log = registered
    owner = claim(keys, digits_world.marked, tmp, "owner", log=log)
    assert owner.code == 0, owner.output
    assert "registered entry 0" in owner.output and "no registry receipt" not in owner.output
    verdict_path = owner.transcript
    report = audit(load_transcript(verdict_path))
    assert report.verdict.registration is not None and report.verdict.registration.index == 0
    assert verifier_main(["audit", str(verdict_path), "--log-key", str(log / "log-key.pub")]) == 0
    other_log = SigningKey.generate()
    save_signing_key(tmp / "other-log.pem", other_log)
    assert verifier_main(["audit", str(verdict_path), "--log-key", str(tmp / "other-log.pub")]) == 2
    assert "not from the log key" in capsys.readouterr().err


def test_a_forged_registration_in_a_verdict_is_caught(registered, digits_world):
    tmp, keys, log = registered
    verdict_path = claim(keys, digits_world.marked, tmp, "forged", log=log).transcript
    doc = json.loads(verdict_path.read_text())
    doc["registration"] = None  # drop the receipt the verdict relied on
    verdict_path.write_text(json.dumps(doc))
    assert verifier_main(["audit", str(verdict_path)]) == 2


def test_a_receipt_for_another_key_is_refused(registered, digits_world, tmp_path, capsys):
    _, keys, log = registered
    code = verifier_main(["check", "--vk", str(digits_world.vk), "--challenge", "x", "--reveal", "y", "--model",
                          str(digits_world.marked), "--out", str(tmp_path / "v.json"), "--log-key",
                          str(log / "log-key.pub"), "--receipt", str(keys.root / "vk.receipt.json"),
                          "--identity", str(tmp_path / "v.pem")])
    assert code == 2
    assert "receipt" in capsys.readouterr().err


def test_dispute_without_receipts_is_undecided(registered, digits_world, tmp_path, capsys):
    _, _, log = registered
    a, b = (claim(Keys(digits_world.keys), digits_world.marked, tmp_path, name).transcript for name in "ab")
    assert verifier_main(["dispute", str(a), str(b), "--log-key", str(log / "log-key.pub")]) == 1
    assert "neither claim has a registry receipt from a log you trust" in capsys.readouterr().err


def test_dispute_refuses_transcripts_about_different_models(registered, digits_world, tmp_path, capsys):
    _, _, log = registered
    a, b = (claim(Keys(digits_world.keys), model, tmp_path, name).transcript
            for name, model in (("a", digits_world.marked), ("b", digits_world.plain)))
    assert verifier_main(["dispute", str(a), str(b), "--log-key", str(log / "log-key.pub")]) == 2
    assert "different models" in capsys.readouterr().err


@pytest.fixture(scope="module")
def half_witnessed(digits_world, tmp_path_factory):
    """The owner's keys registered (by `wmark register --log-url`) in a log with two
    witnesses, one of them stopped first: the receipt carries one cosignature of two."""
    tmp = tmp_path_factory.mktemp("witnessed")
    keys = Keys(tmp / "owner-keys")
    shutil.copytree(digits_world.keys, keys.root)
    with witnessed_log(tmp) as world:
        world.witness_servers[1].stop()
        assert wmark_main(["register", "--vk", str(keys.vk), "--log-url", world.log.server.url]) == 0
    policy = ["--log-vkey", str(tmp / "log" / "log.vkey"),
              "--witness", str(tmp / "w1" / "witness.vkey"), "--witness", str(tmp / "w2" / "witness.vkey")]
    return keys, tmp / "log", policy


def test_check_and_dispute_refuse_a_receipt_below_the_witness_quorum(half_witnessed, digits_world, tmp_path):
    """Quorum 2 of two witnesses, one stopped: check refuses (exit 1, the reason, no
    transcript) before querying the model; quorum 1 accepts.  A dispute at quorum 2
    counts neither claim's receipt; at quorum 1 it names the earlier."""
    keys, log, policy = half_witnessed
    refused = claim(keys, digits_world.marked, tmp_path, "q2", log=log, policy=(*policy, "--quorum", "2"))
    assert refused.code == 1 and not refused.transcript.exists()
    assert "REFUSED: the registry receipt does not meet the witness policy (quorum 2 of 2)" in refused.output
    assert "cosigned by 1 of the 2 trusted witnesses, the policy requires 2" in refused.output
    first, second = (claim(keys, digits_world.marked, tmp_path, name, log=log, policy=(*policy, "--quorum", "1"))
                     for name in ("a", "b"))
    assert first.code == 0 and second.code == 0, first.output
    base = ["dispute", str(first.transcript), str(second.transcript), "--log-key", str(log / "log-key.pub"),
            *policy]
    code, out = run_main(verifier_main, *base, "--quorum", "2")
    assert code == 1 and "cosigned by 1 of the 2 trusted witnesses, the policy requires 2" in out
    assert "undecided: neither claim has a registry receipt from a log you trust" in out
    code, out = run_main(verifier_main, *base, "--quorum", "1")
    assert code == 0 and "EARLIER CLAIM" in out


def test_run_refuses_a_receipt_below_the_witness_quorum_before_connecting(half_witnessed, digits_world, tmp_path):
    keys, log, policy = half_witnessed
    base = ["run", "--connect", f"127.0.0.1:{free_port()}", "--vk", str(keys.vk), "--k", "20", "--model",
            str(digits_world.marked), "--out", str(tmp_path / "v.json"), "--identity", str(tmp_path / "v.pem"),
            "--log-key", str(log / "log-key.pub"), *policy]
    code, out = run_main(verifier_main, *base, "--quorum", "2")
    assert code == 1 and "the policy requires 2" in out and not (tmp_path / "v.json").exists()
    # Quorum 1 lets it on to the prover, which is not there.
    code, out = run_main(verifier_main, *base, "--quorum", "1")
    assert code == 2 and "witness" not in out and "127.0.0.1" in out


def test_witness_options_need_a_log_vkey_and_a_receipt(half_witnessed, digits_world, tmp_path, capsys):
    keys, log, policy = half_witnessed
    base = ["check", "--vk", str(keys.vk), "--challenge", "x", "--reveal", "y", "--model", str(digits_world.marked),
            "--out", str(tmp_path / "v.json"), "--identity", str(tmp_path / "v.pem")]
    assert verifier_main([*base, "--log-key", str(log / "log-key.pub"), "--quorum", "1"]) == 2
    assert "--witness and --quorum need --log-vkey" in capsys.readouterr().err
    assert verifier_main([*base, *policy]) == 2
    assert "give --log-key too" in capsys.readouterr().err
