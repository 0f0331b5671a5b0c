"""A log served on loopback with two witnesses, each on a thread of its own, so a
test can stop either witness (or the log) and see what verifiers then accept."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from wmark.protocol.hazmat.note import Verifier
from wmark.registry import LogServer, LogStore
from wmark.registry.cosigning import WitnessClient
from wmark.registry.witness import Witness, WitnessServer


class Running:
    """A server on a thread, stopped at the end of the test."""

    def __init__(self, server) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join()
        self.server.server_close()


@dataclass(frozen=True)
class WitnessedLog:
    store: LogStore
    log: Running
    witnesses: list[Witness]
    witness_servers: list[Running]


@contextmanager
def witnessed_log(root: Path) -> Iterator[WitnessedLog]:
    """``root``/log served with witnesses ``root``/w1 and ``root``/w2 (names witness.test/w1, /w2)."""
    running: list[Running] = []
    store = LogStore.open(root / "log")
    try:
        log_key = Verifier.decode(store.vkey)
        witnesses = [Witness(root / f"w{i}", [log_key], name=f"witness.test/w{i}") for i in (1, 2)]
        witness_servers = [Running(WitnessServer(w)) for w in witnesses]
        running += witness_servers
        clients = tuple(WitnessClient(w.verifier, r.server.url) for w, r in zip(witnesses, witness_servers))
        log = Running(LogServer(store, witnesses=clients))
        running.append(log)
        yield WitnessedLog(store, log, witnesses, witness_servers)
    finally:
        for r in reversed(running):
            if r.thread.is_alive():
                r.stop()
        store.close()
