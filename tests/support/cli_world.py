"""A small world for command-line tests, built in-process in seconds: a 30-item
plaintext key, an untrained digits model (rejected: exit 1), one challenge (k = 15 of 30),
reveal and transcript, and a local log the key is registered in."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from wmark.prover.cli import main as prover_main
from wmark.verifier.cli import main as verifier_main
from wmark.watermark.cli import main as wmark_main

PROGRAMS: dict[str, Callable[[list[str]], int]] = {
    "wmark": wmark_main, "wmark-prover": prover_main, "wmark-verifier": verifier_main}


def call(capsys, program: str, argv: list[str | Path]) -> tuple[int, str, str]:
    """Run ``program``'s main() on ``argv``: its exit code, stdout and stderr."""
    try:
        code = PROGRAMS[program]([str(a) for a in argv])
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def run_steps(root: Path, steps: list[tuple[str, list[str]]]) -> None:
    """Run each (program, argv) in ``root``; each must end 0 or 1 (a valid run)."""
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for program, argv in steps:
            try:
                code = PROGRAMS[program](argv)
            except SystemExit as exc:
                code = int(exc.code or 0)
            assert code in (0, 1), (program, argv, code)
    finally:
        os.chdir(cwd)


def build_cli_world(root: Path) -> Path:
    """keys/ (plaintext), model/ (untrained), challenge.json, reveal.json, verdict.json, registry/,
    a-directory/ and existing.json, under ``root``."""
    from wmark.watermark.datasets import load_task
    from wmark.watermark.embed import start_model
    from wmark.watermark.modelio import save_model

    save_model(root / "model", start_model(load_task("digits")))
    run_steps(root, [
        ("wmark", ["keygen", "--out", "keys", "--insecure-plaintext", "--n", "30"]),
        ("wmark", ["register", "--vk", "keys/vk.json", "--log", "registry"]),
        ("wmark-verifier", ["challenge", "--vk", "keys/vk.json", "--model", "model", "--k", "15",
                            "--out", "challenge.json", "--identity", "verifier.pem"]),
        ("wmark-prover", ["prove", "--mk", "keys/mk.wmk", "--vk", "keys/vk.json", "--challenge",
                          "challenge.json", "--out", "reveal.json", "--budget", "1"]),
        ("wmark-verifier", ["check", "--vk", "keys/vk.json", "--challenge", "challenge.json", "--reveal",
                            "reveal.json", "--model", "model", "--out", "verdict.json",
                            "--identity", "verifier.pem"]),
    ])
    (root / "a-directory").mkdir()
    (root / "existing.json").write_text("{}\n")
    return root
