"""Verdicts that rest on the registry: registration time in the verdict, and
`dispute` naming the earlier of two accepted claims (docs/design.md section 4b).
Replayed and transplanted keys, the claims `dispute` is for, are attacked in
tests/adversarial/."""

from __future__ import annotations

import json

import pytest

from wmark.harness.claims import Keys, claim, registered_copy
from wmark.protocol.hazmat.identity import SigningKey, save_signing_key
from wmark.protocol.transcript import audit, load_transcript
from wmark.verifier.cli import main as verifier_main


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
