"""Verdicts that rest on the registry: registration time in the verdict, and
`dispute` naming the earlier of two accepted claims (DESIGN.md section 4b)."""

from __future__ import annotations

import json
import shutil

import pytest

from protocol.files import atomic_write
from protocol.identity import SigningKey, save_signing_key
from protocol.keyfile import load_marking_key, save_marking_key
from protocol.keygen import keygen_imported
from protocol.keys import load_verification_key
from protocol.transcript import audit, load_transcript
from verifier.cli import main as verifier_main
from verifier.verify import item_images
from watermark.cli import main as wmark_main
from prover.cli import main as prover_main


def verify(vk, mk, owner_key, model, tmp, name, *, k=20, budget="0.5", extra=()):
    challenge, reveal, verdict = (tmp / f"{name}-{part}.json" for part in ("challenge", "reveal", "verdict"))
    ident = ["--identity", str(tmp / "verifier.pem")]
    p0 = [a for a in extra if a.startswith("--p0")] and ["--p0", extra[extra.index("--p0") + 1]]
    assert verifier_main(["challenge", "--vk", str(vk), "--model", str(model), "--k", str(k), "--out",
                          str(challenge), *ident, *p0]) == 0
    assert prover_main(["prove", "--mk", str(mk), "--vk", str(vk), "--challenge", str(challenge), "--out",
                        str(reveal), "--owner-key", str(owner_key), "--budget", budget,
                        "--ledger", str(tmp / f"{name}.ledger")]) == 0
    code = verifier_main(["check", "--vk", str(vk), "--challenge", str(challenge), "--reveal", str(reveal),
                          "--model", str(model), "--out", str(verdict), *ident, *extra])
    return code, verdict


@pytest.fixture(scope="module")
def registered(digits_world, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("registered")
    keys = tmp / "keys"
    shutil.copytree(digits_world.keys, keys)
    log = tmp / "log"
    assert wmark_main(["register", "--vk", str(keys / "vk.json"), "--log", str(log)]) == 0
    return tmp, keys, log


def test_verdict_carries_the_registration_and_audits(registered, digits_world, capsys):
    tmp, keys, log = registered
    code, verdict_path = verify(keys / "vk.json", keys / "mk.wmk", keys / "owner.pem", digits_world.marked, tmp,
                                "owner", extra=["--log-key", str(log / "log-key.pub")])
    assert code == 0
    out = capsys.readouterr().out
    assert "registered entry 0" in out and "no registry receipt" not in out
    report = audit(load_transcript(verdict_path))
    assert report.verdict.registration is not None and report.verdict.registration.index == 0
    assert verifier_main(["audit", str(verdict_path), "--log-key", str(log / "log-key.pub")]) == 0
    other_log = SigningKey.generate()
    save_signing_key(tmp / "other-log.pem", other_log)
    assert verifier_main(["audit", str(verdict_path), "--log-key", str(tmp / "other-log.pub")]) == 2
    assert "not from the log key" in capsys.readouterr().err


def test_a_forged_registration_in_a_verdict_is_caught(registered, digits_world):
    tmp, keys, log = registered
    _, verdict_path = verify(keys / "vk.json", keys / "mk.wmk", keys / "owner.pem", digits_world.marked, tmp,
                             "forged", extra=["--log-key", str(log / "log-key.pub")])
    doc = json.loads(verdict_path.read_text())
    doc["registration"] = None  # drop the receipt the verdict relied on
    verdict_path.write_text(json.dumps(doc))
    assert verifier_main(["audit", str(verdict_path)]) == 2


def test_a_receipt_for_another_key_is_refused(registered, digits_world, tmp_path, capsys):
    _, keys, log = registered
    code = verifier_main(["check", "--vk", str(digits_world.vk), "--challenge", "x", "--reveal", "y", "--model",
                          str(digits_world.marked), "--out", str(tmp_path / "v.json"), "--log-key",
                          str(log / "log-key.pub"), "--receipt", str(keys / "vk.receipt.json"),
                          "--identity", str(tmp_path / "v.pem")])
    assert code == 2
    assert "receipt" in capsys.readouterr().err


def replay_attacker(digits_world, tmp, public_reveal_transcript):
    """Mallory saw a public verification: she commits to the revealed images and labels under her own key."""
    report = audit(load_transcript(public_reveal_transcript))
    images = item_images(report.items, report.vk)
    mallory = SigningKey.generate()
    keys = tmp / "mallory"
    save_signing_key(keys / "owner.pem", mallory)
    pair = keygen_imported(owner=mallory, images=[im.tobytes() for im in images],
                           labels=[item.label for item in report.items], num_classes=10, input_shape=(1, 8, 8))
    save_marking_key(keys / "mk.wmk", pair.marking_key, None)
    atomic_write(keys / "vk.json", pair.signed_vk.to_json())
    return keys


def test_dispute_names_the_owner_against_a_later_replay(registered, digits_world, capsys):
    tmp, keys, log = registered
    log_key = ["--log-key", str(log / "log-key.pub")]
    # The owner once verified publicly (k = n), revealing every trigger item.
    code, public = verify(keys / "vk.json", keys / "mk.wmk", keys / "owner.pem", digits_world.marked, tmp,
                          "public", k=100, budget="1", extra=log_key)
    assert code == 0
    mallory = replay_attacker(digits_world, tmp, public)
    assert wmark_main(["register", "--vk", str(mallory / "vk.json"), "--log", str(log)]) == 0
    # The protocol alone accepts Mallory: the stolen model does answer those images.
    code, mallory_verdict = verify(mallory / "vk.json", mallory / "mk.wmk", mallory / "owner.pem",
                                   digits_world.marked, tmp, "mallory", extra=["--p0", "1/10", *log_key])
    assert code == 0
    mallory_report = audit(load_transcript(mallory_verdict))
    assert mallory_report.verdict.accepted and any("imported" in c for c in mallory_report.verdict.caveats)
    _, owner_verdict = verify(keys / "vk.json", keys / "mk.wmk", keys / "owner.pem", digits_world.marked, tmp,
                              "owner-again", extra=log_key)
    capsys.readouterr()
    assert verifier_main(["dispute", str(mallory_verdict), str(owner_verdict), *log_key]) == 0
    out = capsys.readouterr().out
    owner_fp = load_verification_key(keys / "vk.json")[0].owner.fingerprint
    assert f"EARLIER CLAIM: {owner_verdict}: owner {owner_fp}" in out


def test_dispute_without_receipts_is_undecided(digits_world, tmp_path, capsys):
    _, a = verify(digits_world.vk, digits_world.mk, digits_world.keys / "owner.pem", digits_world.marked,
                  tmp_path, "a")
    _, b = verify(digits_world.vk, digits_world.mk, digits_world.keys / "owner.pem", digits_world.marked,
                  tmp_path, "b")
    assert verifier_main(["dispute", str(a), str(b)]) == 1
    assert "neither claim has a valid registry receipt" in capsys.readouterr().err


def test_dispute_refuses_transcripts_about_different_models(digits_world, tmp_path):
    _, a = verify(digits_world.vk, digits_world.mk, digits_world.keys / "owner.pem", digits_world.marked,
                  tmp_path, "a")
    _, b = verify(digits_world.vk, digits_world.mk, digits_world.keys / "owner.pem", digits_world.plain,
                  tmp_path, "b")
    assert verifier_main(["dispute", str(a), str(b)]) == 2
