"""Small helpers for tests that run the real programs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run_cli(*args: str, env: dict | None = None, timeout: float = 300, cwd: Path | None = None,
            input: str | None = None) -> subprocess.CompletedProcess:
    """Run one of the console scripts (``wmark``, ``wmark-prover``, ...) as a separate process."""
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=cwd, input=input)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class KeyDir:
    """A key directory as ``wmark keygen`` lays it out (as ``digits_world.keys`` is)."""

    root: Path

    @property
    def vk(self) -> Path:
        return self.root / "vk.json"

    @property
    def mk(self) -> Path:
        return self.root / "mk.wmk"

    @property
    def owner(self) -> Path:
        return self.root / "owner.pem"
