"""``--json FILE`` and ``--json -``: each command's report, valid against its
schema in wmark/schemas/, with digests in hex as the terminal prints them
(docs/design.md section 6); and registrations kept per log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli_world import LEDGER, build_cli_world, call, run_steps
from tests.support.schemas import SCHEMAS, assert_valid_report, schema_for
from wmark.protocol.keys import load_verification_key
from wmark.protocol.transparency import default_proof_path, default_receipt_path
from wmark.watermark.modelio import CONFIG_NAME


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return build_cli_world(tmp_path_factory.mktemp("json-reports"))


def report_of(capsys, program: str, argv: list, expect: int = 0) -> tuple[dict, str]:
    """Run with ``--json -``: the report (stdout holds nothing else) and the text (stderr)."""
    code, out, err = call(capsys, program, [*argv, "--json", "-"])
    assert code == expect, (argv, code, err)
    return json.loads(out), err


def test_every_schema_is_a_valid_schema_named_by_its_type():
    import jsonschema

    for path in SCHEMAS.glob("*.json"):
        schema = json.loads(path.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        if path.stem != "defs":
            assert schema["properties"]["type"]["const"] == f"wmark/{path.stem}"
            assert schema_for(f"wmark/{path.stem}") == schema


def test_plan(capsys, world):
    report, text = report_of(capsys, "wmark-verifier", ["plan", "--vk", world / "keys/vk.json", "--k", "20"])
    assert_valid_report(report, "wmark/plan-report")
    assert report["rows"] == [{"k": 20, "tau": 16, "lowest_passing_accuracy": report["rows"][0]
                               ["lowest_passing_accuracy"], "reveals": 20 / 30}]
    assert "    20     16" in text


def test_check_writes_the_verdict_report_beside_the_transcript(capsys, world, tmp_path):
    keys = world / "keys"
    argv = ["check", "--vk", keys / "vk.json", "--challenge", world / "challenge.json", "--reveal",
            world / "reveal.json", "--model", world / "model", "--identity", world / "verifier.pem",
            "--out", tmp_path / "v.json", "--json", tmp_path / "v-report.json"]
    code, out, _ = call(capsys, "wmark-verifier", argv)
    assert code == 1  # the untrained model is rejected; the report says so
    report = json.loads((tmp_path / "v-report.json").read_text())
    assert_valid_report(report, "wmark/verdict-report")
    verdict = report["verdict"]
    assert verdict["accepted"] is False and verdict["k"] == 15 and report["transcript"] == str(tmp_path / "v.json")
    assert f"{verdict['matches']} of 15 revealed" in out and verdict["p0"] == "1/10"
    assert verdict["model"]["sha256"][:16] in out  # the terminal shows the same hex


def test_audit_of_a_transcript_and_of_a_vk(capsys, world):
    report, text = report_of(capsys, "wmark-verifier", ["audit", world / "verdict.json"])
    assert_valid_report(report, "wmark/audit-report")
    assert report["object"] == "transcript" and report["verdict"]["k"] == 15
    vk, _ = load_verification_key(world / "keys/vk.json")
    assert report["vk"]["digest"] == vk.digest.hex() and vk.digest.hex() in text
    report, _ = report_of(capsys, "wmark-verifier", ["audit", world / "keys/vk.json"])
    assert_valid_report(report, "wmark/audit-report")
    assert report["object"] == "verification-key" and report["verdict"] is None


def test_registration_receipt_and_tlog_proof(capsys, world):
    vk = world / "keys/vk.json"
    report, _ = report_of(capsys, "wmark-verifier", ["registration", "--vk", vk, "--log-key",
                                                     world / "registry/log-key.pub"])
    assert_valid_report(report, "wmark/registration-report")
    assert report["valid"] and report["evidence"] == "receipt" and report["index"] == 0
    report, _ = report_of(capsys, "wmark-verifier", ["registration", "--vk", vk, "--log-vkey",
                                                     world / "registry/log.vkey"])
    assert_valid_report(report, "wmark/registration-report")
    assert report["valid"] and report["evidence"] == "tlog-proof"


def test_dispute_of_two_rejected_claims_is_undecided(capsys, world, tmp_path):
    run_steps(world, [
        ("wmark-verifier", ["challenge", "--vk", "keys/vk.json", "--model", "model", "--k", "15",
                            "--out", str(tmp_path / "c2.json"), "--identity", "verifier.pem"]),
        ("wmark-prover", ["prove", "--mk", "keys/mk.wmk", "--vk", "keys/vk.json", "--challenge",
                          str(tmp_path / "c2.json"), "--out", str(tmp_path / "r2.json"), "--budget", "1"]),
        ("wmark-verifier", ["check", "--vk", "keys/vk.json", "--challenge", str(tmp_path / "c2.json"), "--reveal",
                            str(tmp_path / "r2.json"), "--model", "model", "--out", str(tmp_path / "v2.json"),
                            "--identity", "verifier.pem"]),
    ])
    capsys.readouterr()
    report, _ = report_of(capsys, "wmark-verifier", ["dispute", world / "verdict.json", tmp_path / "v2.json",
                                                        "--log-key", world / "registry" / "log-key.pub"],
                          expect=1)
    assert_valid_report(report, "wmark/dispute-report")
    assert report["earlier"] is None and [c["accepted"] for c in report["claims"]] == [False, False]


def test_eval_and_model_json_agree_on_hex(capsys, world):
    report, _ = report_of(capsys, "wmark", ["eval", "--model", world / "model", "--mk", world / "keys/mk.wmk"])
    assert_valid_report(report, "wmark/evaluation")
    assert report["key_vk_digest"] == load_verification_key(world / "keys/vk.json")[0].digest.hex()
    assert json.loads((world / "model" / CONFIG_NAME).read_text())["version"] == 2


def test_ledger(capsys, world):
    report, text = report_of(capsys, "wmark-prover", ["ledger", "--ledger", world / LEDGER])
    assert_valid_report(report, "wmark/ledger-report")
    count = len(report["challenges"])
    assert count >= 1 and f"after {count} challenge{'' if count == 1 else 's'};" in text  # "1 challenges" no more


def test_a_second_log_never_replaces_the_first_logs_registration(capsys, world, tmp_path):
    keys = tmp_path / "keys"
    run_steps(tmp_path, [("wmark", ["keygen", "--out", "keys", "--insecure-plaintext", "--n", "10"]),
                         ("wmark", ["register", "--vk", "keys/vk.json", "--log", "log-a"])])
    receipt, proof = default_receipt_path(keys / "vk.json"), default_proof_path(keys / "vk.json")
    first_log = json.loads(receipt.read_bytes())["log_keyid"]
    run_steps(tmp_path, [("wmark", ["register", "--vk", "keys/vk.json", "--log", "log-b"]),
                         ("wmark", ["register", "--vk", "keys/vk.json", "--log", "log-a"])])  # renews its own
    assert json.loads(receipt.read_bytes())["log_keyid"] == first_log
    second_log = json.loads(next(keys.glob("vk.receipt.*.json")).read_bytes())["log_keyid"]
    assert second_log != first_log
    for log, path in (("log-a", proof), ("log-b", default_proof_path(keys / "vk.json", second_log))):
        code, out, err = call(capsys, "wmark-verifier", ["registration", "--vk", keys / "vk.json", "--proof", path,
                                                         "--log-vkey", tmp_path / log / "log.vkey"])
        assert code == 0 and "valid tlog-proof" in out, (log, out, err)
    for log in ("log-a", "log-b"):  # each log's receipt is found by its key, without --receipt
        code, out, err = call(capsys, "wmark-verifier", ["registration", "--vk", keys / "vk.json",
                                                         "--log-key", tmp_path / log / "log-key.pub"])
        assert code == 0 and "valid receipt" in out, err


def test_prove(capsys, world, tmp_path):
    keys = world / "keys"
    report, text = report_of(capsys, "wmark-prover", ["prove", "--mk", keys / "mk.wmk", "--vk", keys / "vk.json",
                                                      "--challenge", world / "challenge.json",
                                                      "--out", tmp_path / "again.json", "--ledger", world / LEDGER])
    assert_valid_report(report, "wmark/prove-report")
    assert report["outcome"] == "revealed" and report["repeated"] and report["new_indices"] == []
    assert report["k"] == 15 and "a repeated challenge" in text



def test_register_reports_the_entry_and_the_checkpoint_and_log_check_the_same_root(capsys, world, tmp_path):
    import shutil
    import sqlite3

    from wmark.protocol.checkpoint import Checkpoint, TlogProof
    from wmark.registry.store import DB_NAME

    argv = ["register", "--vk", world / "keys/vk.json", "--log", tmp_path / "log", "--receipt", tmp_path / "r.json",
            "--proof", tmp_path / "p.tlog-proof"]
    report, text = report_of(capsys, "wmark", argv)
    assert_valid_report(report, "wmark/register-report")
    assert report["index"] == 0 and report["tree_size"] == report["checkpoint"]["size"] == 1
    assert report["vk_digest"] == load_verification_key(world / "keys/vk.json")[0].digest.hex()
    assert report["log_key_pinned"] and report["receipt"] == str(tmp_path / "r.json")
    assert report["log_key"] in text and report["checkpoint"]["cosignatures"] == 0
    # The checkpoint is the one in the tlog-proof written, its root in hex.
    written = Checkpoint.parse(TlogProof.decode((tmp_path / "p.tlog-proof").read_bytes()).checkpoint.text)
    assert report["checkpoint"] == {"origin": written.origin, "size": written.size, "root": written.root.hex(),
                                    "cosignatures": 0}

    check, text = report_of(capsys, "wmark", ["log", "check", "--log", tmp_path / "log"])
    assert_valid_report(check, "wmark/log-check-report")
    assert check["intact"] and check["corruption"] is None and check["head"]["size"] == 1
    assert check["head"]["root"] == report["checkpoint"]["root"] and check["head"]["root"] in text
    assert check["head"]["log_key"] == report["log_key"]

    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "log", broken)
    conn = sqlite3.connect(broken / DB_NAME)
    with conn:
        conn.execute("INSERT INTO commitments (prefix, idx) VALUES (1, 0)")  # edited behind the log's back
    conn.close()
    check, text = report_of(capsys, "wmark", ["log", "check", "--log", broken], expect=1)
    assert_valid_report(check, "wmark/log-check-report")
    assert not check["intact"] and check["head"] is None and "commitment index" in check["corruption"]
    assert "CORRUPTED" in text


def test_challenge_reports_what_it_binds_and_the_items_it_samples(capsys, world, tmp_path):
    from wmark.protocol.hazmat import dsse
    from wmark.protocol.messages import Challenge, decode
    from wmark.protocol.session import subset_of

    argv = ["challenge", "--vk", world / "keys/vk.json", "--model", world / "model", "--k", "12",
            "--lambda", "20", "--identity", world / "verifier.pem", "--out", tmp_path / "c.json"]
    report, text = report_of(capsys, "wmark-verifier", argv)
    assert_valid_report(report, "wmark/challenge-report")
    envelope = dsse.Envelope.from_json((tmp_path / "c.json").read_bytes())
    challenge, digest = decode(envelope, (Challenge,)), Challenge.digest_of(envelope)
    assert report["digest"] == digest.hex() and report["challenge"] == str(tmp_path / "c.json")
    assert (report["k"], report["n"], report["lambda"], report["p0"]) == (12, 30, 20, "1/10")
    assert report["items"] == list(subset_of(challenge, digest)) and len(set(report["items"])) == 12
    assert report["verifier"] == challenge.verifier.fingerprint and report["model"] == challenge.model.report_obj()
    assert report["zk"] is None and not report["public"] and "open 12 of 30" in text
