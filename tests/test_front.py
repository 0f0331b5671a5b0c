"""The HTTP/1.1 front the log and the witness share (registry/front.py), over raw sockets."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest

from wmark.registry import front
from wmark.registry.front import Front, Request, Response


class Echo(Front):
    """Answers a request with its method, target and body; ``/slow`` after a pause, ``/boom`` with a bug."""

    max_body_bytes = 100

    def __init__(self) -> None:
        super().__init__()
        self.slow_started = threading.Event()

    async def respond(self, request: Request) -> Response:
        if request.target == "/boom":
            raise RuntimeError("a bug")
        if request.target == "/slow":
            self.slow_started.set()
            await asyncio.sleep(0.5)
        return Response(200, f"{request.method} {request.target} {request.body.decode()}".encode(), "text/plain")


@pytest.fixture
def echo():
    server = Echo()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join()
    server.server_close()


def _connect(server: Front) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.server_port), timeout=10)


def _exchange(server: Front, data: bytes) -> bytes:
    """Send ``data``, read until the server closes."""
    with _connect(server) as sock:
        sock.sendall(data)
        return sock.makefile("rb").read()


def _error_code(answer: bytes) -> str:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"]


def test_keep_alive_answers_pipelined_requests_in_order(echo):
    with _connect(echo) as sock:
        sock.sendall(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nonePOST /b HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 3\r\n\r\ntwoGET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = sock.makefile("rb").read()
    bodies = [part.split(b"\r\n\r\n", 1)[1][:10] for part in answer.split(b"HTTP/1.1 200 OK\r\n")[1:]]
    assert bodies == [b"POST /a on", b"POST /b tw", b"GET /c "]


@pytest.mark.parametrize("request_bytes, status, code", [
    (b"NOT HTTP\r\n\r\n", 400, "bad-request"),
    # A head still incomplete past the bound (h11 bounds what it buffers, not a head that arrived whole).
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * (front.MAX_HEAD_BYTES + 1), 431, "bad-request"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 411,
     "length-required"),
    (b"POST / HTTP/1.1\r\nHost: x\r\n\r\n", 411, "length-required"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n", 413, "too-large"),
])
def test_unreadable_requests_are_refused_in_json_and_the_connection_closed(echo, request_bytes, status, code):
    # Each answer is read to the end: the server closed the connection after it.
    answer = _exchange(echo, request_bytes)
    assert answer.startswith(b"HTTP/1.1 %d " % status)
    assert b"connection: close" in answer.lower()
    assert _error_code(answer) == code


def test_a_body_slower_than_the_timeout_is_refused(echo, monkeypatch):
    monkeypatch.setattr(front, "IDLE_TIMEOUT_S", 0.3)
    started = time.monotonic()
    answer = _exchange(echo, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab")
    assert time.monotonic() - started < 5
    assert answer.startswith(b"HTTP/1.1 400 ") and b"ended after 2 of 5 bytes" in answer


def test_an_idle_connection_is_closed_after_the_timeout(echo, monkeypatch):
    monkeypatch.setattr(front, "IDLE_TIMEOUT_S", 0.3)
    with _connect(echo) as sock:
        assert sock.recv(1) == b""


def test_a_bug_answers_500_and_the_server_goes_on(echo, capsys):
    answer = _exchange(echo, b"GET /boom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 500 ") and _error_code(answer) == "internal"
    assert "RuntimeError: a bug" in capsys.readouterr().err
    assert _exchange(echo, b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 200 ")


def test_stopping_closes_idle_connections_and_finishes_requests_in_progress():
    server = Echo()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    idle, busy = _connect(server), _connect(server)
    try:
        idle.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(4096).startswith(b"HTTP/1.1 200 ")  # kept alive, now idle
        busy.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        assert server.slow_started.wait(10)
        server.shutdown()
        assert idle.recv(1) == b""  # closed at once: a stopped server answers nothing more
        answer = busy.makefile("rb").read()  # answered, then closed
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"GET /slow ")
        with pytest.raises(OSError):
            _connect(server).close()
    finally:
        idle.close()
        busy.close()
        thread.join()
        server.server_close()


def test_shutdown_before_serving_returns_and_the_port_is_released():
    server = Echo()
    server.shutdown()
    server.serve_forever()  # returns at once
    server.server_close()
    with pytest.raises(OSError):
        _connect(server).close()


def test_a_client_that_expects_100_continue_is_told_to_send_its_body(echo):
    with _connect(echo) as sock:
        sock.sendall(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n"
                     b"Connection: close\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 ")
        sock.sendall(b"body")
        answer = sock.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"POST /e body")
