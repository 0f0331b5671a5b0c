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




@contextmanager
def served_model(model: Path, name: str, log: Path, *extra: str, startup_s: float = 90) -> Iterator[str]:
    """A real ``wmark serve-model`` of ``model`` on loopback, its output in ``log``;
    yields its base URL once the model answers ready, stops it afterwards."""
    import sys

    import httpx

    from tests.support.helpers import REPO, free_port

    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "wmark.watermark", "serve-model", "--model", str(model),
                                 "--name", name, "--port", str(port), "--device", "cpu", *extra],
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_s
        while True:
            try:
                if httpx.get(f"{url}/v2/models/{name}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"wmark serve-model did not start: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
