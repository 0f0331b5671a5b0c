"""Verification through files: challenge -> prove -> check -> audit, with the
real command lines as separate processes, and a hostile prover or transcript."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wmark.errors import WmarkError
from wmark.harness.programs import run_cli
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.keys import load_verification_key
from wmark.protocol.messages import Reveal
from wmark.protocol.transcript import Transcript, audit, load_transcript


def verify_through_files(world, model: Path, tmp: Path, k: int = 20):
    challenge, reveal, verdict = tmp / "challenge.json", tmp / "reveal.json", tmp / "verdict.json"
    ident = str(tmp / "verifier.pem")
    r = run_cli("wmark-verifier", "challenge", "--vk", str(world.vk), "--model", str(model), "--k", str(k),
                "--out", str(challenge), "--identity", ident)
    assert r.returncode == 0, r.stderr
    r = run_cli("wmark-prover", "prove", "--mk", str(world.mk), "--vk", str(world.vk), "--challenge",
                str(challenge), "--out", str(reveal), "--ledger", str(tmp / "ledger.sqlite"),
                "--owner-key", str(world.keys / "owner.pem"))
    assert r.returncode == 0, r.stderr
    r = run_cli("wmark-verifier", "check", "--vk", str(world.vk), "--challenge", str(challenge), "--reveal",
                str(reveal), "--model", str(model), "--out", str(verdict), "--identity", ident)
    return r, verdict


@pytest.fixture(scope="module")
def accepted_run(digits_world, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("files-marked")
    result, verdict = verify_through_files(digits_world, digits_world.marked, tmp)
    return tmp, result, verdict


def test_marked_model_is_accepted_and_the_transcript_audits(accepted_run, digits_world):
    tmp, result, verdict_path = accepted_run
    assert result.returncode == 0, result.stderr
    assert "ACCEPTED" in result.stdout
    report = audit(load_transcript(verdict_path))
    assert report.verdict.accepted and report.verdict.k == 20 and report.verdict.tau == 16
    r = run_cli("wmark-verifier", "audit", str(verdict_path), "--model", str(digits_world.marked))
    assert r.returncode == 0, r.stderr
    assert "valid transcript" in r.stdout and "20 of 20 answers as recorded" in r.stdout


def test_unmarked_model_is_rejected_with_its_p_value(digits_world, tmp_path):
    result, verdict_path = verify_through_files(digits_world, digits_world.plain, tmp_path)
    assert result.returncode == 1, result.stderr
    verdict = audit(load_transcript(verdict_path)).verdict
    assert not verdict.accepted and verdict.matches < verdict.tau
    assert float(verdict.p_value) > 2.0**-40
    assert f"p-value   {verdict.p_value}" in result.stdout


def _reveal_obj(path: Path) -> dict:
    return json.loads(base64.b64decode(json.loads(path.read_text())["payload"]))


def _write_reveal(path: Path, payload: dict, key: SigningKey) -> None:
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    path.write_bytes(dsse.sign(Reveal.PAYLOAD_TYPE, body, key).to_json())


def _check(world, tmp: Path, reveal: Path):
    return run_cli("wmark-verifier", "check", "--vk", str(world.vk), "--challenge", str(tmp / "challenge.json"),
                   "--reveal", str(reveal), "--model", str(world.marked), "--out", str(tmp / "bad-verdict.json"),
                   "--identity", str(tmp / "verifier.pem"))


@pytest.mark.parametrize("field, message", [
    ("vrf_proof", "VRF proof does not verify"),
    ("r_item", "opening does not match"),
    ("r_label", "opening does not match"),
])
def test_a_changed_opening_byte_is_named_by_check_and_audit(accepted_run, digits_world, field, message):
    """A malicious owner signs a reveal whose opening was changed: check and audit both exit 2."""
    tmp, _, verdict_path = accepted_run
    payload = _reveal_obj(tmp / "reveal.json")
    opening = payload["openings"][3]
    raw = bytearray(base64.urlsafe_b64decode(opening[field] + "=" * (-len(opening[field]) % 4)))
    raw[len(raw) // 2] ^= 0x01
    opening[field] = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    bad = tmp / f"reveal-{field}.json"
    _write_reveal(bad, payload, digits_world.owner)
    r = _check(digits_world, tmp, bad)
    assert r.returncode == 2 and message in r.stderr and f"item {opening['index']}" in r.stderr
    assert "Traceback" not in r.stderr

    transcript = json.loads(verdict_path.read_text())
    transcript["reveal"] = json.loads(bad.read_text())
    bad_transcript = tmp / f"transcript-{field}.json"
    bad_transcript.write_text(json.dumps(transcript))
    r = run_cli("wmark-verifier", "audit", str(bad_transcript))
    assert r.returncode == 2 and message in r.stderr


def test_an_unsigned_change_is_a_signature_failure(accepted_run, digits_world):
    tmp, _, _ = accepted_run
    env = json.loads((tmp / "reveal.json").read_text())
    payload = _reveal_obj(tmp / "reveal.json")
    payload["openings"][0]["label"] = (payload["openings"][0]["label"] + 1) % 10
    env["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    bad = tmp / "reveal-unsigned.json"
    bad.write_text(json.dumps(env))
    r = _check(digits_world, tmp, bad)
    assert r.returncode == 2 and "signature does not verify" in r.stderr


def test_a_reveal_for_another_challenge_is_refused(accepted_run, digits_world, tmp_path):
    tmp, _, _ = accepted_run
    other = tmp_path / "other"
    other.mkdir()
    verify_through_files(digits_world, digits_world.marked, other)
    r = _check(digits_world, tmp, other / "reveal.json")
    assert r.returncode == 2 and "answers another challenge" in r.stderr


def test_extra_and_missing_indices_are_refused(accepted_run, digits_world):
    tmp, _, _ = accepted_run
    payload = _reveal_obj(tmp / "reveal.json")
    payload["openings"] = payload["openings"][:-1]
    bad = tmp / "reveal-short.json"
    _write_reveal(bad, payload, digits_world.owner)
    r = _check(digits_world, tmp, bad)
    assert r.returncode == 2 and "not the challenged subset" in r.stderr


def test_check_refuses_a_model_other_than_the_challenged_one(accepted_run, digits_world):
    tmp, _, _ = accepted_run
    r = run_cli("wmark-verifier", "check", "--vk", str(digits_world.vk), "--challenge", str(tmp / "challenge.json"),
                "--reveal", str(tmp / "reveal.json"), "--model", str(digits_world.plain), "--out",
                str(tmp / "x.json"), "--identity", str(tmp / "verifier.pem"))
    assert r.returncode == 2 and "the challenge names" in r.stderr


ENVELOPES = ("verification_key", "challenge", "reveal", "verdict")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(ENVELOPES), part=st.sampled_from(["payload", "payloadType", "sig", "keyid"]),
       position=st.integers(min_value=0), bit=st.integers(0, 7))
def test_any_mutation_of_an_envelope_is_rejected_by_audit(accepted_run, which, part, position, bit):
    _, _, verdict_path = accepted_run
    doc = json.loads(verdict_path.read_text())
    env = doc[which]
    if part in ("payload", "sig"):
        holder = env if part == "payload" else env["signatures"][0]
        raw = bytearray(base64.b64decode(holder[part]))
        raw[position % len(raw)] ^= 1 << bit
        holder[part] = base64.b64encode(bytes(raw)).decode()
    elif part == "payloadType":
        text = env["payloadType"]
        i = position % len(text)
        env["payloadType"] = text[:i] + chr(ord(text[i]) ^ (1 << (bit % 5))) + text[i + 1:]
    else:
        keyid = env["signatures"][0]["keyid"]
        i = position % len(keyid)
        env["signatures"][0]["keyid"] = keyid[:i] + ("0" if keyid[i] != "0" else "1") + keyid[i + 1:]
    with pytest.raises(WmarkError):
        audit(Transcript.from_json(json.dumps(doc).encode()))


def test_audit_of_a_verification_key(digits_world):
    vk, _ = load_verification_key(digits_world.vk)
    r = run_cli("wmark-verifier", "audit", str(digits_world.vk))
    assert r.returncode == 0 and vk.owner.fingerprint in r.stdout


def test_plan_prints_threshold_and_needed_accuracy(digits_world):
    r = run_cli("wmark-verifier", "plan", "--vk", str(digits_world.vk), "--k", "20")
    assert r.returncode == 0
    assert "    20     16" in r.stdout and "0.931" in r.stdout
