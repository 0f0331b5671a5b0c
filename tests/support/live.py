"""A real ``wmark-prover serve`` on loopback, and a raw peer to talk to it."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from wmark.harness.programs import BIN, KeyDir
from wmark.protocol.framing import FrameDecoder
from wmark.protocol.keygen import KeyPair

MAX_FRAME = 64 * 1024


@dataclass(frozen=True)
class Keys(KeyDir):
    """A small key pair on disk, and in memory (what ``digits_world`` offers too)."""

    pair: KeyPair


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    ledger: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for_log(self, text: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            assert self.process.poll() is None, f"server exited: {self.log()}"
            assert time.monotonic() < deadline, f"{text!r} never logged:\n{self.log()}"
            time.sleep(0.05)
        return self.log()


@contextmanager
def prover_server(world, tmp_path: Path, *extra: str) -> Iterator[Server]:
    ledger, out, err = tmp_path / "ledger.sqlite", tmp_path / "serve.out", tmp_path / "serve.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [str(BIN / "wmark-prover"), "serve", "--mk", str(world.mk), "--vk", str(world.vk), "--port", "0",
             "--ledger", str(ledger), "--max-frame", str(MAX_FRAME), *extra], stdout=stdout, stderr=stderr)
    try:
        deadline = time.monotonic() + 60
        while "listening on" not in out.read_text():
            assert process.poll() is None, f"serve exited: {err.read_text()}"
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.05)
        port = int(out.read_text().split("listening on ")[1].split()[0].rsplit(":", 1)[1])
        yield Server(process, port, ledger, err)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


class Peer:
    """A raw connection: what a verifier, honest or not, puts on the wire."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.decoder = FrameDecoder()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def receive(self) -> bytes | None:
        """The next frame, or None once the server has closed the connection."""
        while True:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:  # closed while our bytes were unread: a reset, not a FIN
                return None
            if not data:
                return None
            frames = self.decoder.feed(data)
            if frames:
                return frames[0]

    def close(self) -> None:
        self.sock.close()


