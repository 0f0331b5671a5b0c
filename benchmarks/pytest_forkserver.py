"""A fork server for benchmarks/mutation.py: one pytest run per mutant, without paying for the imports each time.

Each mutant's test run used to start a fresh interpreter and import pytest,
hypothesis, scipy and the crypto libraries again (about 1.2 CPU seconds, more
than the focused tests themselves take).  The server imports those once, never
imports ``wmark`` or ``tests``, and forks a child per request: the child
imports the (mutated) library from disk and runs ``pytest.main`` with the
request's arguments, so every mutant is tested against a fresh import of the
code under test exactly as ``python -m pytest`` would.  Only third-party
modules, which no mutant touches, are shared.  Written here (not a library)
because the fork-per-request loop is twenty lines and pytest-xdist's workers
are long-lived (they would keep the first mutant's import).

    python benchmarks/pytest_forkserver.py serve SOCKET                # the server (mutation.py starts it)
    python -S benchmarks/pytest_forkserver.py run SOCKET TIMEOUT ARG...  # one run: prints pytest's output, exits with its code

The server kills a child that runs past its request's TIMEOUT seconds (exit
124), so one server takes a target's baseline run (under a generous limit) and
then its mutants (under a limit set from the baseline), and reports each
child's CPU seconds (from wait4) after its output, for the benchmark.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import sys
import time

# Third-party modules the focused tests import; none of them imports wmark.
PRELOAD = ("pytest", "hypothesis", "hypothesis.strategies", "_hypothesis_pytestplugin", "pytest_timeout",
           "scipy.stats", "Crypto.Math.Numbers", "Crypto.PublicKey", "Crypto.Random", "Crypto.Util.asn1", "ecdsa",
           "gmpy2", "rfc8785", "sqlite3", "cryptography.hazmat.primitives.serialization",
           "cryptography.hazmat.primitives.hashes")
TRAILER = b"\n@@forkserver exit "  # followed by "<code> <cpu seconds>\n"
REQUEST_LIMIT = 1 << 16  # bytes of one request (the pytest arguments)
MAX_TIMEOUT_S = 3600.0  # the most one request may ask its run be given


def _child(conn: socket.socket, request: dict) -> None:
    os.setsid()  # its own process group, so a timeout kills whatever it started too
    os.chdir(request["cwd"])
    sys.path.insert(0, request["cwd"])  # as `python -m pytest` does, for `-p tests.hypothesis_profiles`
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"  # as cosmic-ray sets it for its test command
    sys.dont_write_bytecode = True
    os.dup2(conn.fileno(), 1)
    os.dup2(conn.fileno(), 2)
    import pytest

    code = 3
    try:
        # The preloaded plugins cannot be assertion-rewritten any more; pytest says so once per run.
        code = int(pytest.main(["-W", "ignore::pytest.PytestAssertRewriteWarning", *request["args"]]))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _timeout(request: object) -> float | None:
    """The request's time limit in seconds, if it is a number in (0, MAX_TIMEOUT_S]."""
    value = request.get("timeout") if isinstance(request, dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= MAX_TIMEOUT_S:
        return float(value)
    return None


def serve(path: str) -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    leaked = sorted(n for n in sys.modules if n.split(".")[0] in ("wmark", "tests"))
    if leaked:  # a child would then test the server's copy, not the mutant on disk
        raise SystemExit(f"the fork server imported {leaked[:3]}: it must not import the code under test")
    sys.stdout.flush()
    sys.stderr.flush()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    while True:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while not data.endswith(b"\n") and len(data) < REQUEST_LIMIT:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            try:
                request = json.loads(data)
            except ValueError:
                continue
            timeout = _timeout(request)
            if timeout is None:
                continue  # the client sees no trailer, and reports no result
            pid = os.fork()
            if pid == 0:
                listener.close()
                _child(conn, request)
            deadline = time.monotonic() + timeout
            while True:
                done, status, usage = os.wait4(pid, os.WNOHANG)
                if done:
                    code = os.waitstatus_to_exitcode(status)
                    break
                if time.monotonic() > deadline:
                    os.killpg(pid, signal.SIGKILL)
                    _, status, usage = os.wait4(pid, 0)
                    code = 124
                    break
                time.sleep(0.02)
            cpu = usage.ru_utime + usage.ru_stime
            try:
                conn.sendall(TRAILER + f"{code} {cpu:.3f}\n".encode())
            except OSError:
                pass  # the client was killed (cosmic-ray's own timeout)


def run(path: str, timeout: float, args: list[str]) -> int:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    conn.sendall(json.dumps({"cwd": os.getcwd(), "args": args, "timeout": timeout}).encode() + b"\n")
    received = bytearray()
    while chunk := conn.recv(65536):
        received += chunk
    output, found, trailer = bytes(received).rpartition(TRAILER)
    sys.stdout.buffer.write(output if found else bytes(received))
    if not found:
        return 3  # the server went away: never report a survivor for a run that did not happen
    code = int(trailer.split()[0])
    if code == 124:
        print("\nforkserver: timeout")  # benchmarks/mutation.py counts these apart from failures
    return code


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2])
    elif sys.argv[1] == "run":
        sys.exit(run(sys.argv[2], float(sys.argv[3]), sys.argv[4:]))
    else:
        raise SystemExit("usage: pytest_forkserver.py serve SOCKET | run SOCKET TIMEOUT ARG...")
