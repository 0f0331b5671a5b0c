"""Several log server processes on one port (docs/design.md section 4b).

One Python process verifies owner signatures and decodes vks on one core
(the GIL), so ``wmark log serve --workers N`` forks N processes that each
listen on the same loopback port (``SO_REUSEPORT``: the kernel spreads the
connections over them), each with its own handle on the log and its own
:class:`~wmark.registry.integrator.Integrator`.  Their batches commit one
after the other under SQLite's write lock (and the integrators' lock file),
each catching up with the others' entries first, exactly as separate
processes appending to one log always have; a receipt still returns only
after its batch committed.  With witnesses, each worker asks them to cosign
its own batches, holding the log's cosigning lock from its commit until they
answer, so the witnesses see the checkpoints in the order of the tree.

The parent reserves the port, starts the workers, waits until each listens,
and then only waits for a signal: SIGTERM/SIGINT is passed on (each worker
finishes its queued batches and exits), and a worker that dies stops the
rest.  Each worker is killed with its parent (``PR_SET_PDEATHSIG``), so a
SIGKILL of the log takes all of it down at once, as with one process.
Linux only.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from wmark.errors import InvalidInput
from wmark.registry.cosigning import WitnessSpec, witness_clients
from wmark.registry.front import LOOPBACK
from wmark.registry.http import LogServer, serve_until_signalled
from wmark.registry.store import LogStore

MAX_WORKERS = 64
# How long the parent waits for every worker to open the log and listen.
START_TIMEOUT_S = 60.0
_PR_SET_PDEATHSIG = 1


class WorkerPool:
    """``workers`` log server processes on ``port`` (0: a free one) of loopback."""

    def __init__(self, directory: str | Path, workers: int, port: int = 0, *, verbose: bool = False,
                 witnesses: tuple[WitnessSpec, ...] = (), checkers: int = 0) -> None:
        if not 1 <= workers <= MAX_WORKERS:
            raise InvalidInput(f"--workers must be between 1 and {MAX_WORKERS}, got {workers}")
        if not hasattr(socket, "SO_REUSEPORT") or not sys.platform.startswith("linux"):
            raise InvalidInput("several log workers need Linux (SO_REUSEPORT, PR_SET_PDEATHSIG)")
        if not 0 <= port <= 65535:
            raise InvalidInput(f"port {port} is not between 0 and 65535")
        self.directory, self.workers, self.verbose = Path(directory), workers, verbose
        self.witnesses, self.checkers = witnesses, checkers
        # Bound but never listening: it holds the port for the workers, and the
        # kernel hands connections only to the listening sockets of the group.
        self._reserved = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            self._reserved.bind((LOOPBACK, port))
        except OSError as exc:
            self._reserved.close()
            raise InvalidInput(f"cannot listen on {LOOPBACK}:{port}: {exc.strerror or exc}") from None
        self.port: int = self._reserved.getsockname()[1]
        self._pids: list[int] = []

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def serve_until_signalled(self, on_ready: Callable[[], None] = lambda: None) -> signal.Signals:
        """Start the workers, call ``on_ready`` once all listen, serve until SIGTERM or
        SIGINT, stop them; return the signal.

        Call it with no thread running and no log handle open in this process
        (the workers are forked).
        """
        stop_on = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, stop_on)
        try:
            ready_r, ready_w = os.pipe()
            try:
                for _ in range(self.workers):
                    pid = os.fork()
                    if pid == 0:  # the worker: never returns
                        os.close(ready_r)
                        self._worker(ready_w)
                    self._pids.append(pid)
                os.close(ready_w)
                self._wait_ready(ready_r)
            finally:
                os.close(ready_r)
            on_ready()
            received = signal.Signals(signal.sigwait(stop_on))
            return signal.SIGTERM if received is signal.SIGCHLD else received
        finally:
            self._stop()
            self._reserved.close()
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def _worker(self, ready_w: int) -> None:
        status = 1
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0 or os.getppid() == 1:
                raise OSError(ctypes.get_errno(), "PR_SET_PDEATHSIG failed, or the parent is gone")
            self._reserved.close()
            with LogStore.open(self.directory, create=False, check=False) as store:
                server = LogServer(store, self.port, verbose=self.verbose, reuse_port=True,
                                   witnesses=witness_clients(self.witnesses), checkers=self.checkers)
                os.write(ready_w, b"1")
                os.close(ready_w)
                serve_until_signalled(server)
            status = 0
        except BaseException as exc:  # reported by the parent as a worker that did not start or died
            print(f"wmark log worker {os.getpid()}: {exc}", file=sys.stderr, flush=True)
        finally:
            os._exit(status)

    def _wait_ready(self, ready_r: int) -> None:
        count = 0
        while count < self.workers:
            readable, _, _ = select.select([ready_r], [], [], START_TIMEOUT_S)
            chunk = os.read(ready_r, self.workers) if readable else b""
            if not chunk:
                raise InvalidInput(f"{self.directory}: only {count} of {self.workers} log workers started")
            count += len(chunk)

    def _stop(self) -> None:
        for pid in self._pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in self._pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self._pids.clear()
