"""A c2sp.org/tlog-witness: ``POST /add-checkpoint`` (docs/design.md section 4b).

The witness trusts a list of log verifier keys (one per origin), keeps the
latest checkpoint it cosigned for each log in ``DIR/state/`` and cosigns
(cosignature/v1, key ``DIR/witness.key``, verifier key ``DIR/witness.vkey``)
only a checkpoint consistent with it.  Checking the old size against the
state and writing the new state happen under one lock held across threads
and processes (``flock``), so two requests cannot roll the state back; the
state file is replaced atomically and synced before the cosignature leaves.

Status codes are the spec's: 400 malformed or old size beyond the
checkpoint, 403 no trusted signature, 404 unknown origin, 409 old size not
the witness's (body: its size, ``text/x.tlog.size``) or same size with
another root, 422 consistency proof that does not verify.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Callable

from wmark.errors import DecodeError, InvalidInput, InvalidProof, InvalidSignature
from wmark.files import atomic_write, exclusive_lock, read_bounded
from wmark.protocol.checkpoint import Checkpoint, decimal_u64
from wmark.protocol.hazmat import merkle
from wmark.protocol.hazmat.note import (
    COSIGNATURE_V1,
    ED25519,
    MAX_NOTE_BYTES,
    Note,
    Verifier,
    b64decode_strict,
    check_name,
    load_or_create_signer,
)
from wmark.registry.cosigning import SIZE_TYPE
from wmark.registry.front import Front, Request, Response

KEY_NAME = "witness.key"
VKEY_NAME = "witness.vkey"
MAX_REQUEST_BYTES = MAX_NOTE_BYTES + 64 * 64
TEXT = "text/plain; charset=utf-8"


def _refuse(status: int, message: str) -> Response:
    return Response(status, message.encode("utf-8") + b"\n", TEXT)


class Witness:
    """The witness's keys, trusted logs and state in ``directory``; safe to share between threads."""

    def __init__(self, directory: str | Path, logs: list[Verifier], *, name: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        default = f"wmark.local/witness/{hashlib.sha256(str(self.directory.resolve()).encode()).hexdigest()[:16]}"
        self._key = load_or_create_signer(self.directory / KEY_NAME, self.directory / VKEY_NAME,
                                          check_name(name or default, what="witness name"), COSIGNATURE_V1)
        if name is not None and name != self._key.name:
            raise InvalidInput(f"{self.directory}: this witness is named {self._key.name!r}, not {name!r}")
        self._logs: dict[str, Verifier] = {}
        for log in logs:
            if log.sig_type != ED25519:
                raise InvalidInput(f"log key {log.name}: not an Ed25519 note key (type 0x01)")
            self._logs[log.name] = log
        self._clock = clock
        self._lock = threading.Lock()

    @property
    def verifier(self) -> Verifier:
        return self._key.verifier

    def _state_path(self, origin: str) -> Path:
        return self.directory / "state" / hashlib.sha256(origin.encode("utf-8")).hexdigest()

    def state(self, origin: str) -> tuple[int, bytes]:
        """(size, root) of the latest checkpoint cosigned for ``origin``; (0, empty root) before any."""
        path = self._state_path(origin)
        if not path.exists():
            return 0, merkle.EMPTY_ROOT
        # The state is the last cosigned checkpoint's own text (origin, size, root).
        state = Checkpoint.parse(read_bounded(path, max_bytes=4096, what="witness state"), what=str(path))
        if state.origin != origin:
            raise InvalidInput(f"{path}: not this witness's state for {origin!r}")
        return state.size, state.root

    def add_checkpoint(self, body: bytes) -> Response:
        """One ``POST /add-checkpoint``, answered as the spec says."""
        try:
            old, proof, note = _parse_request(body)
            checkpoint = Checkpoint.parse(note.text)
        except (DecodeError, UnicodeDecodeError, ValueError) as exc:
            return _refuse(400, f"malformed request: {exc}")
        log = self._logs.get(checkpoint.origin)
        if log is None:
            return _refuse(404, f"unknown log origin {checkpoint.origin[:200]!r}")
        try:
            note.verified_by(log)
        except InvalidSignature as exc:
            return _refuse(403, f"no trusted log signature: {exc}")
        if old > checkpoint.size:
            return _refuse(400, f"old size {old} is beyond the checkpoint's size {checkpoint.size}")
        with self._lock, exclusive_lock(self.directory / "lock"):
            size, root = self.state(checkpoint.origin)
            if old != size:
                return Response(409, f"{size}\n".encode("ascii"), SIZE_TYPE)
            if old == checkpoint.size:
                if proof or checkpoint.root != root:
                    return _refuse(409, f"a checkpoint of size {size} with another root: the log forked")
            elif old == 0:
                if proof:
                    return _refuse(422, "a consistency proof from size 0 must be empty")
            else:
                try:
                    merkle.verify_consistency(old, checkpoint.size, root, checkpoint.root, proof)
                except InvalidProof as exc:
                    return _refuse(422, f"consistency proof from size {old} does not verify: {exc}")
            atomic_write(self._state_path(checkpoint.origin), checkpoint.text())
            timestamp = int(self._clock())
        return Response(200, self._key.sign(note.text, timestamp=timestamp).line().encode("utf-8"), TEXT)


def _parse_request(body: bytes) -> tuple[int, tuple[bytes, ...], Note]:
    head, sep, rest = body.partition(b"\n\n")
    if not sep:
        raise DecodeError("no blank line before the checkpoint")
    lines = head.decode("ascii").split("\n")
    if not lines[0].startswith("old "):
        raise DecodeError("the first line is not 'old SIZE'")
    old = decimal_u64(lines[0][4:], what="old size")
    if len(lines) - 1 > 63:
        raise DecodeError("more than 63 consistency proof lines")
    proof = tuple(b64decode_strict(line, what="consistency proof line") for line in lines[1:])
    if any(len(h) != merkle.HASH_SIZE for h in proof):
        raise DecodeError("a consistency proof line is not a SHA-256 hash")
    return old, proof, Note.decode(rest, what="checkpoint")


class WitnessServer(Front):
    """The witness over HTTP; a stopped witness answers nothing more, not even on
    kept-alive connections (:class:`~wmark.registry.front.Front` closes them)."""

    server_name = "wmark-witness/1"
    max_body_bytes = MAX_REQUEST_BYTES

    def __init__(self, witness: Witness, port: int = 0, *, verbose: bool = False) -> None:
        self.witness = witness
        super().__init__(port, verbose=verbose)

    async def respond(self, request: Request) -> Response:
        if request.method != "POST":
            return Response(405, b"the witness takes POST /add-checkpoint only\n", TEXT)
        if request.target != "/add-checkpoint":
            return Response(404, b"no such endpoint\n", TEXT)
        # The state file is synced before the cosignature leaves: off the loop.
        return await self.blocking(self.witness.add_checkpoint, request.body)
