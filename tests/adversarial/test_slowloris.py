"""The prover's server under a slowloris and a frame flood: connections that
send nothing, or announce 32 MiB frames, must not lock out an honest
verifier (docs/design.md section 4).  Each connection has a handshake
deadline, each peer a connection limit, each message a size limit of its
kind, and a turned-away verifier gets the owner's signed "busy, retry after
N s" rather than a closed connection."""

from __future__ import annotations

import select
import socket
import threading
import time

import pytest

from tests.support.live import prover_server
from wmark.harness.programs import run_cli

pytestmark = pytest.mark.adversarial


def _connect(port: int, source: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))  # all of 127.0.0.0/8 is loopback: another "peer" on this machine
    sock.connect(("127.0.0.1", port))
    return sock


def _honest_run(world, tmp_path, port: int, timeout: float = 120):
    return run_cli("wmark-verifier", "run", "--connect", f"127.0.0.1:{port}", "--vk", str(world.vk),
                   "--model", str(world.marked), "--k", "20", "--out", str(tmp_path / "verdict.json"),
                   "--identity", str(tmp_path / "v.pem"), timeout=timeout)


class Slowloris(threading.Thread):
    """Keeps ``count`` connections from ``source`` open, sending nothing; reconnects
    each one the server closes, as the red team's did."""

    def __init__(self, port: int, source: str, count: int) -> None:
        super().__init__(daemon=True)
        self.port, self.source, self.count = port, source, count
        self.stop = threading.Event()

    def run(self) -> None:
        socks: list[socket.socket] = []
        while not self.stop.is_set():
            while len(socks) < self.count:
                try:
                    socks.append(_connect(self.port, self.source))
                except OSError:
                    break
            ready, _, _ = select.select(socks, [], [], 0.2)
            for sock in ready:  # closed by the server (or a busy answer): open another
                sock.close()
                socks.remove(sock)
        for sock in socks:
            sock.close()


def test_an_honest_verifier_is_served_through_a_slowloris_and_a_frame_flood(digits_world, tmp_path):
    with prover_server(digits_world, tmp_path) as server:
        attack = Slowloris(server.port, "127.0.0.2", 100)
        attack.start()
        flood = [_connect(server.port, "127.0.0.3") for _ in range(8)]
        for sock in flood:  # each announces a 32 MiB frame and sends a few bytes of it
            sock.sendall((32 * 1024 * 1024).to_bytes(4, "big") + b"[{}" * 100)
        time.sleep(2)
        start = time.monotonic()
        result = _honest_run(digits_world, tmp_path, server.port)
        took = time.monotonic() - start
        attack.stop.set()
        attack.join(10)
        for sock in flood:
            sock.close()
        assert result.returncode == 0, result.stdout + result.stderr
        assert took < 60, took
        log = server.log()
        assert "turned away" in log and "over the limit" in log, log[-3000:]


def _wait_until_full(port: int) -> None:
    """Return once the server turns this peer away: a probe gets the busy answer,
    sent unasked, rather than being admitted (then it is closed and tried again)."""
    while True:
        probe = _connect(port, "127.0.0.1")
        probe.settimeout(2)
        try:
            if probe.recv(1):
                return
        except socket.timeout:
            pass  # admitted: not every idle connection was counted yet
        finally:
            probe.close()


def _relay_to_a_full_server(port: int) -> tuple[int, list[socket.socket]]:
    """A port for the verifier.  When it connects (however long its start took),
    this peer's whole share of the server's connections (8) is taken by idle ones,
    the server is seen to be full, and only then are the verifier's bytes relayed
    to it from the same address: the idle ones are seconds from their handshake
    deadline, which would otherwise free a slot under a slow start."""
    listener = socket.create_server(("127.0.0.1", 0))
    idle: list[socket.socket] = []

    def relay() -> None:
        client, _ = listener.accept()
        listener.close()
        idle.extend(_connect(port, "127.0.0.1") for _ in range(8))
        _wait_until_full(port)
        upstream = _connect(port, "127.0.0.1")
        with client, upstream:
            while True:
                ready, _, _ = select.select([client, upstream], [], [], 60)
                if not ready:
                    return
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is client else client).sendall(data)

    threading.Thread(target=relay, daemon=True).start()
    return listener.getsockname()[1], idle


def test_a_turned_away_verifier_is_told_busy_in_a_signed_answer(digits_world, tmp_path):
    with prover_server(digits_world, tmp_path) as server:
        relay_port, idle = _relay_to_a_full_server(server.port)
        result = _honest_run(digits_world, tmp_path, relay_port)
        for sock in idle:
            sock.close()
        assert len(idle) == 8 and "turned away" in server.log()
        assert result.returncode == 2, result.stdout + result.stderr
        assert "turned the session away, in a message its owner signed: busy" in result.stderr, result.stderr
        assert "retry after 10 s" in result.stderr and "Traceback" not in result.stderr
