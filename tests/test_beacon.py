"""The registry as beacon and the labels it binds (docs/design.md sections 2 and 4b).

Label derivation: uniform (chi-square over many beta), deterministic, per item;
receipts: beta and its proof checked offline, an edit to either named and
refused (exit 2) by ``registration``, ``check`` and ``audit``; a log handing
out another entry's beta caught; the order keygen -> register -> embed
enforced; challenges that can never be accepted refused by both sides.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import chisquare

from wmark.errors import InvalidProof
from wmark.harness.claims import Keys, claim, register, run_main, save_pair
from wmark.protocol.beacon import InvalidBeacon, LabelSource, bound_label, label_shift
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.keygen import keygen_derived
from wmark.protocol.keys import load_verification_key
from wmark.protocol.messages import Challenge, ModelRef
from wmark.protocol.session import ProverSession, now
from wmark.protocol.transcript import Registration, Transcript, audit, load_transcript
from wmark.protocol.transparency import Receipt, verify_receipt
from wmark.prover.cli import main as prover_main
from wmark.registry import LogStore
from wmark.verifier.cli import main as verifier_main
from wmark.watermark.cli import main as wmark_main

L = 10


def betas(count: int, tag: bytes = b"") -> list[bytes]:
    return [hashlib.sha256(tag + i.to_bytes(4, "big")).digest() for i in range(count)]


# --- label derivation ----------------------------------------------------------------------------------------

def test_bound_labels_are_uniform_over_many_beta():
    # Committed labels all 3 (the worst an owner can do): the shift alone must make them uniform.
    counts = [0] * L
    for beta in betas(5000):
        counts[bound_label(beta, 7, 3, L)] += 1
    assert chisquare(counts).pvalue > 1e-3, counts


def test_margin_labels_are_uniform_over_the_other_classes_and_never_the_true_one():
    counts = [0] * L
    for beta in betas(4500):
        counts[bound_label(beta, 2, 5, L, true_class=4)] += 1
    assert counts[4] == 0
    assert chisquare([c for i, c in enumerate(counts) if i != 4]).pvalue > 1e-3, counts


@given(st.binary(min_size=32, max_size=32), st.integers(0, 9999), st.integers(0, L - 1))
def test_bound_labels_are_deterministic_and_a_bijection_of_the_committed_label(beta, index, committed):
    label = bound_label(beta, index, committed, L)
    assert label == bound_label(beta, index, committed, L)
    assert sorted(bound_label(beta, index, c, L) for c in range(L)) == list(range(L))
    assert 0 <= label < L


def test_items_get_independent_shifts():
    # 64 items under one beta: all equal shifts would happen with probability 10^-63.
    for beta in betas(20, b"items"):
        assert len({label_shift(beta, i, L) for i in range(64)}) > 1
    # Neighbouring items agree about 1/L of the time, as independent draws do.
    same = sum(label_shift(b, 0, L) == label_shift(b, 1, L) for b in betas(3000, b"pair"))
    assert 200 <= same <= 400


# --- receipts --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def owner() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def bound(owner):
    return keygen_derived(owner=owner, n=30, num_classes=L, input_shape=(1, 8, 8),
                          label_source=LabelSource.REGISTRY)


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    return tmp_path_factory.mktemp("beacon-log")


def flip(data: bytes, byte: int) -> bytes:
    return data[:byte] + bytes([data[byte] ^ 1]) + data[byte + 1:]


def test_a_receipt_carries_a_beta_anyone_checks_with_the_log_key(bound, log):
    with LogStore.open(log) as store:
        receipt = store.register(bound.verification_key)
        again = store.register(bound.verification_key)
        key = store.public_key
    info = verify_receipt(receipt, bound.verification_key, key)
    assert info.beta == receipt.beacon.beta and len(info.beta) == 32
    assert again.beacon.beta == receipt.beacon.beta  # unique: re-registering cannot re-draw it
    assert Receipt.from_json(receipt.to_json()) == receipt


@pytest.mark.parametrize("part", ["beta", "proof"])
def test_one_bit_of_beta_or_its_proof_changed_is_refused(bound, log, part):
    with LogStore.open(log) as store:
        receipt = store.register(bound.verification_key)
        key = store.public_key
    beacon = receipt.beacon
    edited = (beacon.__class__(beacon.key_statement, flip(beacon.beta, 5), beacon.proof) if part == "beta" else
              beacon.__class__(beacon.key_statement, beacon.beta, flip(beacon.proof, 40)))
    with pytest.raises(InvalidBeacon, match="beta was edited" if part == "beta" else "VRF proof does not verify"):
        verify_receipt(replace(receipt, beacon=edited), bound.verification_key, key)


def test_a_log_that_returns_another_entrys_beta_is_caught(bound, owner, log):
    other = keygen_derived(owner=owner, n=3, num_classes=L, input_shape=(1, 8, 8))
    with LogStore.open(log) as store:
        receipt = store.register(bound.verification_key)
        stolen = store.register(other.verification_key).beacon
        key = store.public_key
    swapped = replace(receipt, beacon=stolen)
    with pytest.raises(InvalidProof, match="another entry"):
        verify_receipt(swapped, bound.verification_key, key)


def test_a_beacon_key_the_log_did_not_sign_is_refused(bound, log, tmp_path):
    with LogStore.open(log) as store:
        receipt = store.register(bound.verification_key)
        key = store.public_key
    with LogStore.open(tmp_path / "rogue") as rogue:
        forged = rogue.register(bound.verification_key).beacon
    swapped = replace(receipt, beacon=forged)
    with pytest.raises(InvalidBeacon, match="not published by this log"):
        verify_receipt(swapped, bound.verification_key, key)


# --- the command lines -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def registered(bound, owner, digits_world, tmp_path_factory):
    """A registry-bound key on disk, registered, and one claim of it (on the plain model) through the files."""
    root = tmp_path_factory.mktemp("bound-cli")
    keys = save_pair(root / "keys", owner, bound)
    code, out = register(keys, root / "log")
    assert code == 0, out
    result = claim(keys, digits_world.plain, root, "claim", k=30, budget="1", log=root / "log")
    assert result.code in (0, 1), result.output
    return keys, root


def edit_receipt(path: Path, part: str, out: Path) -> Path:
    obj = json.loads(path.read_text())
    value = obj["beacon"][part]
    obj["beacon"][part] = ("B" if value[0] != "B" else "C") + value[1:]
    out.write_text(json.dumps(obj))
    return out


@pytest.mark.parametrize("part", ["beta", "proof"])
def test_registration_check_and_audit_exit_2_on_an_edited_beacon(registered, digits_world, tmp_path, part):
    keys, root = registered
    receipt = keys.root / "vk.receipt.json"
    log_key = root / "log" / "log-key.pub"
    edited = edit_receipt(receipt, part, tmp_path / "edited.json")
    code, out = run_main(verifier_main, "registration", "--vk", keys.vk, "--receipt", edited, "--log-key", log_key)
    assert code == 2 and "beacon" in out, out
    code, out = run_main(verifier_main, "check", "--vk", keys.vk, "--challenge", root / "claim-challenge.json",
                         "--reveal", root / "claim-reveal.json", "--model", digits_world.plain, "--out",
                         tmp_path / "v.json", "--identity", root / "verifier.pem", "--log-key", log_key,
                         "--receipt", edited)
    assert code == 2 and "beacon" in out and not (tmp_path / "v.json").exists(), out
    transcript = json.loads((root / "claim-verdict.json").read_text())
    transcript["registration"]["receipt"]["beacon"] = json.loads(edited.read_text())["beacon"]
    (tmp_path / "t.json").write_text(json.dumps(transcript))
    code, out = run_main(verifier_main, "audit", tmp_path / "t.json")
    assert code == 2 and "beacon" in out, out


def test_the_audit_re_derives_every_label_from_the_receipt(registered, tmp_path):
    keys, root = registered
    transcript = load_transcript(root / "claim-verdict.json")
    report = audit(transcript)
    beta = transcript.registration.receipt.beacon.beta
    reveal = json.loads(transcript.reveal.payload)
    committed = {o["index"]: o["label"] for o in reveal["openings"]}
    assert [(r.index, r.label) for r in report.verdict.results] == [
        (i, bound_label(beta, i, committed[i], L)) for i in sorted(committed)]
    # Another beta (a receipt of the same key from a log that drew otherwise) changes the labels: refused.
    with LogStore.open(tmp_path / "other-log") as other:
        vk, _ = load_verification_key(keys.vk)
        receipt, key = other.register(vk), other.public_key
    elsewhere = Transcript(transcript.vk, transcript.challenge, transcript.reveal, transcript.verdict,
                           Registration(receipt, key))
    with pytest.raises(Exception, match="registration|labels"):
        audit(elsewhere)


def test_embed_refuses_a_registry_bound_key_before_it_is_registered(bound, owner, tmp_path):
    keys = save_pair(tmp_path / "keys", owner, bound)
    code, out = run_main(wmark_main, "embed", "--mk", keys.mk, "--out", tmp_path / "m", "--epochs", "1", "--quiet")
    assert code == 2 and "register first" in out, out
    assert not (tmp_path / "m").exists()


def test_a_challenge_that_can_never_be_accepted_is_not_written(digits_world, tmp_path):
    # k = 10 on a 10-class derived key at lambda 40: even 10 of 10 have p-value 1e-10 > 2^-40.
    out = tmp_path / "c.json"
    code, text = run_main(verifier_main, "challenge", "--vk", digits_world.vk, "--model", digits_world.plain,
                          "--k", 10, "--lambda", 40, "--out", out, "--identity", tmp_path / "v.pem")
    assert code == 2 and "can never be accepted" in text and "k=13" in text and not out.exists(), text
    for bad in ("0", "257", "x"):
        # Refused while the command line is read (argparse exits 2), before any file is touched.
        with pytest.raises(SystemExit) as exited:
            run_main(verifier_main, "challenge", "--vk", digits_world.vk, "--model", digits_world.plain,
                     "--k", 20, "--lambda", bad, "--out", out, "--identity", tmp_path / "v.pem")
        assert exited.value.code == 2 and not out.exists()


def test_the_prover_refuses_such_a_challenge_with_a_signed_refusal(digits_world, tmp_path):
    verifier = SigningKey.generate()
    challenge = Challenge(vk_digest=digits_world.pair.verification_key.digest, model=ModelRef(sha256=bytes(32)),
                          n=100, k=10, nonce=bytes(32), verifier=verifier.public_key, issued=now(),
                          lam=40, p0=Fraction(1, 10))
    envelope = challenge.sign(verifier)
    session = ProverSession(digits_world.pair.marking_key, digits_world.pair.verification_key, digits_world.owner)
    event = session.receive(envelope)
    assert "can never be accepted" in event.problem
    with pytest.raises(Exception, match="must be refused"):
        session.reveal()
    path = tmp_path / "challenge.json"
    path.write_bytes(envelope.to_json())
    keys = Keys(digits_world.keys)
    code, out = run_main(prover_main, "prove", "--mk", keys.mk, "--vk", keys.vk, "--challenge", path,
                         "--out", tmp_path / "answer.json", "--owner-key", keys.owner, "--budget", "1",
                         "--ledger", tmp_path / "l.sqlite")
    answer = json.loads((tmp_path / "answer.json").read_text())
    assert code == 1 and "REFUSED" in out and "can never be accepted" in out, out
    assert answer["payloadType"] == "application/vnd.wmark.refusal+json"
    # A challenge whose p0 is not the key's is refused the same way.
    lenient = Challenge(**{**challenge.__dict__, "k": 20, "p0": Fraction(1, 100)}).sign(verifier)
    event = ProverSession(digits_world.pair.marking_key, digits_world.pair.verification_key,
                          digits_world.owner).receive(lenient)
    assert "is not this key's" in event.problem
