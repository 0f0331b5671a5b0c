"""Terminal and log injection: text a peer chose (an owner's refusal reason, a
verifier's endpoint URL and model name) must reach the other side's screen,
ledger listing and log with its control characters escaped, so it can
neither clear the screen and paint a fake verdict nor forge a line."""

from __future__ import annotations

import pytest

from wmark.files import atomic_write
from wmark.harness.claims import run_main
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.messages import ModelRef
from wmark.protocol.session import ProverSession, VerifierSession
from wmark.prover.cli import main as prover_main
from wmark.verifier.cli import main as verifier_main

pytestmark = pytest.mark.adversarial

# Clear the screen, go home, print a green ACCEPTED; then a forged line.
PAINT = "\x1b[2J\x1b[H\x1b[32mACCEPTED: 20 of 20\x1b[0m\r"
FORGED_LINE = "\n2026-01-01T00:00:00Z session 7: ACCEPTED"
RAW = ("\x1b", "\r", "\u202e")


def assert_clean(output: str) -> None:
    for char in RAW:
        assert char not in output, f"raw {char!r} in output: {output!r}"
    assert "\n2026-01-01T00:00:00Z" not in output, output


def test_a_refusal_reason_cannot_paint_the_verifiers_screen(digits_world, tmp_path):
    challenge, refusal = tmp_path / "challenge.json", tmp_path / "refusal.json"
    code, out = run_main(verifier_main, "challenge", "--vk", digits_world.vk, "--model", digits_world.marked,
                         "--k", 20, "--out", challenge, "--identity", tmp_path / "v.pem")
    assert code == 0, out
    owner = ProverSession(digits_world.pair.marking_key, digits_world.pair.verification_key, digits_world.owner)
    owner.receive(dsse.Envelope.from_json(challenge.read_bytes()))
    atomic_write(refusal, owner.refuse(PAINT + "\u202e" + FORGED_LINE).to_json())
    code, out = run_main(verifier_main, "check", "--vk", digits_world.vk, "--challenge", challenge,
                         "--reveal", refusal, "--model", digits_world.marked, "--out", tmp_path / "verdict.json",
                         "--identity", tmp_path / "v.pem")
    assert code == 1 and "REFUSED by the owner: \\x1b[2J" in out, out
    assert_clean(out)


def test_an_endpoint_name_cannot_forge_lines_in_prove_or_the_ledger(digits_world, tmp_path):
    model = ModelRef(url="http://suspect.example/" + PAINT + FORGED_LINE, name="m\u202e" + FORGED_LINE)
    session = VerifierSession(digits_world.pair.verification_key, SigningKey.generate(), model, 5, lam=3)
    challenge, ledger = tmp_path / "challenge.json", tmp_path / "ledger.sqlite"
    atomic_write(challenge, session.challenge().to_json())
    code, out = run_main(prover_main, "prove", "--mk", digits_world.mk, "--vk", digits_world.vk,
                         "--challenge", challenge, "--out", tmp_path / "reveal.json", "--ledger", ledger)
    assert code == 0 and "http://suspect.example/\\x1b[2J" in out, out
    assert_clean(out)
    code, out = run_main(prover_main, "ledger", "--ledger", ledger)
    assert code == 0 and "http://suspect.example/\\x1b[2J" in out, out
    assert_clean(out)
