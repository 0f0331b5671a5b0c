"""Running the console scripts as separate processes, and the key directory they use."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# The console scripts (``wmark``, ``wmark-prover``, ...) installed beside this interpreter.
BIN = Path(sys.executable).parent


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run one of the console scripts (``wmark``, ``wmark-prover``, ...) as a separate process."""
    return subprocess.run([str(BIN / args[0]), *args[1:]], check=False, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=cwd, input=input)


@dataclass(frozen=True)
class KeyDir:
    """A key directory as ``wmark keygen`` lays it out."""

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
