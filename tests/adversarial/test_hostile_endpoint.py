"""Hostile network peers: an inference endpoint (or a log) that answers with
numbers out of range, deep nesting, or a trickle of bytes must make the
verifier's command fail with exit 2 and one line, in bounded time; never a
traceback, never exit 1 (which means "rejected"), never a hang."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from wmark.harness.claims import run_main
from wmark.harness.programs import run_cli
from wmark.prover.cli import main as prover_main
from wmark.verifier.cli import main as verifier_main

pytestmark = pytest.mark.adversarial

# Far beyond the --timeout of 2 s the command is given; a command that only
# bounds each read (httpx's timeouts) waits all of it.
TRICKLE_S = 90

ANSWERS = {
    "huge-float-shape": b'{"outputs":[{"name":"o","shape":[1e400],"datatype":"FP32","data":[]}]}',
    "huge-int-shape": b'{"outputs":[{"name":"o","shape":[1' + b"0" * 400 + b'],"datatype":"FP32","data":[]}]}',
    "huge-int-data": b'{"outputs":[{"name":"o","shape":[80],"datatype":"INT64","data":[1' + b"0" * 400 + b"]}]}",
    # Answered with HTTP 500, as the body of an error: the log client parses those too.
    "deep": b'{"error":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


class Hostile(BaseHTTPRequestHandler):
    mode = "deep"

    def do_GET(self) -> None:  # noqa: N802 (http.server's names)
        self.do_POST()

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.mode == "trickle":
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            for _ in range(TRICKLE_S * 10):  # a byte every 0.1 s: each read is quick, the answer never ends
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.1)
            return
        body = ANSWERS[self.mode]
        self.send_response(500 if self.mode == "deep" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def endpoint(request) -> Iterator[str]:
    handler = type("Handler", (Hostile,), {"mode": request.param})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads, server.block_on_close = True, False
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _challenge_and_reveal(digits_world, tmp_path, url: str) -> tuple:
    challenge, reveal = tmp_path / "challenge.json", tmp_path / "reveal.json"
    ident = ("--identity", tmp_path / "v.pem")
    code, out = run_main(verifier_main, "challenge", "--vk", digits_world.vk, "--endpoint", url, "--model-name",
                         "m", "--k", 20, "--out", challenge, *ident)
    assert code == 0, out
    code, out = run_main(prover_main, "prove", "--mk", digits_world.mk, "--vk", digits_world.vk, "--challenge",
                         challenge, "--out", reveal, "--ledger", tmp_path / "ledger.sqlite")
    assert code == 0, out
    return challenge, reveal, ident


@pytest.mark.parametrize("endpoint", [*ANSWERS, "trickle"], indirect=True)
def test_a_hostile_endpoint_is_exit_2_in_one_line_within_the_timeout(digits_world, tmp_path, endpoint, request):
    challenge, reveal, ident = _challenge_and_reveal(digits_world, tmp_path, endpoint)
    start = time.monotonic()
    result = run_cli("wmark-verifier", "check", "--vk", str(digits_world.vk), "--challenge", str(challenge),
                     "--reveal", str(reveal), "--endpoint", endpoint, "--model-name", "m", "--timeout", "2",
                     "--out", str(tmp_path / "verdict.json"), "--identity", str(ident[1]), timeout=120)
    took = time.monotonic() - start
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "verdict.json").exists()
    if request.node.callspec.params["endpoint"] == "trickle":
        assert "timed out" in result.stderr and took < TRICKLE_S / 2, (took, result.stderr)


@pytest.mark.parametrize("endpoint", ["deep", "huge-int-data", "trickle"], indirect=True)
def test_a_hostile_log_is_exit_2_in_one_line(digits_world, tmp_path, endpoint):
    start = time.monotonic()
    result = run_cli("wmark", "register", "--vk", str(digits_world.vk), "--log-url", endpoint,
                     "--receipt", str(tmp_path / "receipt.json"), "--timeout", "2", timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert time.monotonic() - start < TRICKLE_S / 2
