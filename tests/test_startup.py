"""Commands that run no model start without torch (docs/design.md section 6).

Each command runs for real in a fresh interpreter, which reports afterwards
which machine-learning packages its run imported: the subcommand registry
imports only the module of the command that runs, and those modules import
model code only where a model is used.  Start-up time is measured (and
reported) elsewhere, never asserted here.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from wmark.console import Command
from wmark.harness.claims import save_pair
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.keygen import keygen_derived
from wmark.protocol.messages import ModelRef
from wmark.protocol.session import RevealAccepted, VerifierSession
from wmark.protocol.transcript import Transcript
from wmark.prover import cli as prover_cli
from wmark.verifier import cli as verifier_cli
from wmark.watermark import cli as wmark_cli

# Runs a program's main() on the given arguments, then says which of these it imported.
PROBE = """
import importlib, sys
main = importlib.import_module(sys.argv[1]).main
try:
    code = main(sys.argv[2:])
except SystemExit as exc:
    code = exc.code
heavy = [m for m in ("torch", "torchvision", "sklearn", "scipy") if m in sys.modules]
print("IMPORTED " + " ".join(heavy), file=sys.stderr, flush=True)
sys.exit(code)
"""
PROGRAMS = {"wmark": "wmark.watermark.cli", "wmark-prover": "wmark.prover.cli", "wmark-verifier": "wmark.verifier.cli"}


@dataclass(frozen=True)
class Run:
    code: int
    output: str
    imported: tuple[str, ...]


def _imported(output: str) -> tuple[str, ...]:
    lines = [line for line in output.splitlines() if line.startswith("IMPORTED")]
    assert lines, f"the probe did not report:\n{output}"
    return tuple(lines[-1].split()[1:])


def probe(program: str, *args: object, cwd: Path) -> Run:
    done = subprocess.run([sys.executable, "-c", PROBE, PROGRAMS[program], *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    return Run(done.returncode, output, _imported(output))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """An owner's keys, a challenge about a model named by digest only, and the
    owner's answer and a transcript made by the real sessions in this process."""
    root = tmp_path_factory.mktemp("startup")
    owner = SigningKey.generate()
    pair = keygen_derived(owner=owner, n=20, num_classes=10, input_shape=(1, 8, 8))
    keys = save_pair(root / "keys", owner, pair)
    # lambda 16: 5 matches of 5 at p0 = 1/10 (p-value 1e-5) can pass it, so the prover answers.
    session = VerifierSession(pair.verification_key, SigningKey.generate(), ModelRef(sha256=bytes(32)), 5, lam=16)
    (root / "challenge.json").write_bytes(session.challenge().to_json())
    answered = subprocess.run([sys.executable, "-c", PROBE, PROGRAMS["wmark-prover"], "prove", "--mk", keys.mk,
                               "--vk", keys.vk, "--challenge", "challenge.json", "--out", "reveal.json",
                               "--ledger", "owner.ledger"], cwd=root, capture_output=True, text=True, timeout=120)
    assert answered.returncode == 0, answered.stderr
    (root / "prove.out").write_text(answered.stdout + answered.stderr)
    event = session.receive(dsse.Envelope.from_json((root / "reveal.json").read_bytes()))
    assert isinstance(event, RevealAccepted)
    verdict = session.decide({item.index: item.label for item in event.items})
    assert session.challenge_envelope is not None and session.reveal_envelope is not None
    (root / "verdict.json").write_bytes(Transcript(pair.signed_vk, session.challenge_envelope,
                                                   session.reveal_envelope, verdict, None).to_json())
    (root / "copy.json").write_bytes((root / "verdict.json").read_bytes())
    # dispute counts only receipts from a log the user names (docs/design.md section 4b).
    (root / "log-key.pem").write_text(SigningKey.generate().public_key.to_pem())
    return root


def test_prove_answers_a_challenge_without_torch(world):
    assert "torch" not in _imported((world / "prove.out").read_text())


@pytest.mark.parametrize("program, args, code", [
    ("wmark-prover", ["--help"], 0),
    ("wmark-prover", ["ledger", "--ledger", "owner.ledger"], 0),
    ("wmark-verifier", ["--help"], 0),
    ("wmark-verifier", ["plan", "--vk", "keys/vk.json"], 0),
    ("wmark-verifier", ["audit", "keys/vk.json"], 0),
    ("wmark-verifier", ["audit", "verdict.json"], 0),
    # Both copies are audited in full, then refused as one claim given twice.
    ("wmark-verifier", ["dispute", "verdict.json", "copy.json", "--log-key", "log-key.pem"], 2),
    ("wmark", ["--help"], 0),
], ids=lambda v: " ".join(v) if isinstance(v, list) else str(v))
def test_commands_that_run_no_model_import_no_torch(world, program, args, code):
    run = probe(program, *args, cwd=world)
    assert run.code == code, run.output
    assert "torch" not in run.imported, run.output


def test_the_log_and_a_registration_need_no_torch(world):
    registered = probe("wmark", "register", "--vk", "keys/vk.json", "--log", "log", cwd=world)
    assert registered.code == 0, registered.output
    run = probe("wmark", "log", "check", "--log", "log", cwd=world)
    assert run.code == 0 and "torch" not in run.imported, run.output
    run = probe("wmark-verifier", "registration", "--vk", "keys/vk.json", "--log-key", "log/log-key.pub", cwd=world)
    assert run.code == 0 and "torch" not in run.imported, run.output


def test_the_log_server_needs_no_torch(world):
    server = subprocess.Popen([sys.executable, "-c", PROBE, PROGRAMS["wmark"], "log", "serve", "--log", "served",
                               "--port", "0"], cwd=world, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert server.stdout is not None
        for line in server.stdout:
            if "serving at" in line:
                break
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=60)[0]
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0, output
    assert "torch" not in _imported(output), output


@pytest.mark.parametrize("prog, main, commands", [("wmark-prover", prover_cli.main, prover_cli.COMMANDS),
                                                  ("wmark-verifier", verifier_cli.main, verifier_cli.COMMANDS),
                                                  ("wmark", wmark_cli.main, wmark_cli.COMMANDS)],
                         ids=["prover", "verifier", "wmark"])
def test_every_listed_command_is_registered_by_its_module(prog, main, commands: tuple[Command, ...], capsys):
    for command in commands:
        with pytest.raises(SystemExit) as exited:
            main([command.name, "--help"])
        assert exited.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: {prog} {command.name} ")
