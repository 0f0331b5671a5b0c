"""Posted vks checked, and their beacons evaluated, on other processes (docs/design.md section 4b).

Checking a posted vk (:func:`~wmark.protocol.keys.verify_vk_for_log`) and
evaluating its registry beacon (one ECVRF proof) are about half of an
append's CPU and need nothing of the log's state, while one Python process
runs on one core.  So ``LogServer(checkers=N)`` (``wmark log serve
--checkers N``) hands each posted body to N processes, and the server's own
process only frames HTTP and integrates batches.

Each checker is a process with one socket pair to the server: the server's
event loop writes each body as a length-prefixed frame and reads the
replies in order, with no thread of its own (concurrent.futures'
ProcessPoolExecutor cost about 1.2 ms of the server's CPU per append in its
queue threads, measured: more than it saved).  The untrusted body crosses
as bytes and is parsed there as JSON; what comes back is a frame of fixed
fields, never a pickle: the checked vk record (digest, owner key as DER,
item digests) and its beacon's beta and proof, or the status, code and
message of the error that refused it (as the HTTP answer carries them,
:mod:`.errors`).  Checkers start from a
fresh interpreter (spawn: never a fork of the threaded server), ignore the
terminal's SIGINT (the server stops them), exit when the server closes
their socket and are killed with it (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import os
import signal
import socket
import struct
import sys
from collections import deque
from multiprocessing.connection import Connection

from wmark.errors import InvalidInput, WmarkError
from wmark.protocol.beacon import BETA_BYTES, Beacon
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.identity import PublicKey
from wmark.protocol.hazmat.merkle import HASH_SIZE
from wmark.protocol.hazmat.vrf import PROOF_BYTES, VrfSecretKey
from wmark.protocol.keys import MAX_VK_BYTES, VkRecord, verify_vk_for_log
from wmark.registry.errors import LogBusy, from_wire, wire

MAX_CHECKERS = 16
START_TIMEOUT_S = 60.0
# A checker answers in milliseconds; one stuck this long makes its requests busy, not hung.
CHECK_TIMEOUT_S = 60.0
_READY = b"ready"
_LENGTH = struct.Struct("!i")  # multiprocessing.Connection's frame header
# A reply's first byte: checked, refused (a WmarkError), or a bug in the checker.
_CHECKED, _REFUSED, _BUG = b"c", b"r", b"b"
_OWNER_LENGTH = struct.Struct("!H")
_STATUS = struct.Struct("!H")
_PR_SET_PDEATHSIG = 1


def check_posted(body: bytes) -> VkRecord:
    """The vk a POST /entries body carries, with its owner's signature checked."""
    envelope = dsse.Envelope.from_json(body, what="posted verification key", max_bytes=MAX_VK_BYTES)
    return verify_vk_for_log(envelope, what="posted verification key")


def _serve(conn: Connection, secret: bytes, statement: bytes) -> None:
    """A checker: each body in, (True, (vk, beacon)) or (False, error) out, until the server closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    key = VrfSecretKey.from_bytes(secret)
    named = dsse.Envelope.from_json(statement, what="beacon key statement", max_bytes=MAX_VK_BYTES)
    conn.send_bytes(_READY)
    while True:
        try:
            body = conn.recv_bytes(MAX_VK_BYTES)
        except (EOFError, OSError):
            return
        try:
            vk = check_posted(body)
            reply = _encode_checked(vk, Beacon.evaluate(key, named, vk.digest))
        except WmarkError as exc:
            reply = _encode_refused(exc)
        except Exception as exc:  # a bug: the server answers 500 and prints it
            reply = _BUG + f"log checker: {exc!r}".encode()
        conn.send_bytes(reply)


def _encode_checked(vk: VkRecord, beacon: Beacon) -> bytes:
    owner = vk.owner.to_der()
    return b"".join([_CHECKED, vk.digest, _OWNER_LENGTH.pack(len(owner)), owner, beacon.beta, beacon.proof,
                     *vk.commitment_digests()])


def _encode_refused(exc: WmarkError) -> bytes:
    status, code = wire(exc)
    return b"".join([_REFUSED, _STATUS.pack(status), code.encode("ascii"), b"\n", str(exc).encode()])


def _decode_reply(data: bytes, statement: dsse.Envelope) -> tuple[VkRecord, Beacon]:
    """What :func:`_serve` sent: the checked vk and its beacon, or the error raised again."""
    kind, rest = data[:1], data[1:]
    if kind == _REFUSED:
        (status,) = _STATUS.unpack_from(rest)
        code, _, message = rest[_STATUS.size:].partition(b"\n")
        raise from_wire(status, code.decode("ascii"), message.decode("utf-8", "replace"))
    if kind == _BUG:
        raise RuntimeError(rest.decode("utf-8", "replace"))
    if kind != _CHECKED:
        raise ValueError(f"a checker's reply of kind {kind!r}")
    digest, at = rest[:HASH_SIZE], HASH_SIZE
    (owner_length,) = _OWNER_LENGTH.unpack_from(rest, at)
    at += _OWNER_LENGTH.size
    owner = PublicKey.from_der(rest[at:at + owner_length])
    at += owner_length
    beta, proof = rest[at:at + BETA_BYTES], rest[at + BETA_BYTES:at + BETA_BYTES + PROOF_BYTES]
    items = rest[at + BETA_BYTES + PROOF_BYTES:]
    if len(digest) != HASH_SIZE or len(proof) != PROOF_BYTES or len(items) % HASH_SIZE:
        raise ValueError("a checker's reply is truncated")
    commitments = tuple(items[i:i + HASH_SIZE] for i in range(0, len(items), HASH_SIZE))
    return VkRecord(digest, owner, commitments), Beacon(statement, beta, proof)


class _Checker:
    """One checker process and, once the server's loop runs, the streams to it."""

    def __init__(self, process: multiprocessing.process.BaseProcess, conn: Connection,
                 statement: dsse.Envelope) -> None:
        self.process, self.conn, self.statement = process, conn, statement
        # The requests sent and not yet answered, in order: replies come back in it.
        self.waiting: deque[asyncio.Future[tuple[VkRecord, Beacon]]] = deque()
        self._sock = socket.socket(fileno=os.dup(conn.fileno()))
        # Opened on the server's loop by the first request; the others wait for the same opening.
        self._opened: asyncio.Future[asyncio.StreamWriter] | None = None
        self.dead = False

    async def check(self, body: bytes) -> tuple[VkRecord, Beacon]:
        if self.dead:
            raise self._died()
        if self._opened is None:
            self._opened = asyncio.ensure_future(self._open())
        writer = await asyncio.shield(self._opened)
        future: asyncio.Future[tuple[VkRecord, Beacon]] = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        writer.write(_LENGTH.pack(len(body)) + body)
        try:
            return await asyncio.wait_for(future, CHECK_TIMEOUT_S)
        except TimeoutError:  # its reply, if it ever comes, is skipped (done)
            raise LogBusy(f"a log checker process (pid {self.process.pid}) did not answer within "
                          f"{CHECK_TIMEOUT_S:.0f} s") from None

    async def _open(self) -> asyncio.StreamWriter:
        reader, writer = await asyncio.open_unix_connection(sock=self._sock, limit=2 ** 20)
        self._replies = asyncio.create_task(self._read(reader))
        return writer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
                data = await reader.readexactly(length)
                future = self.waiting.popleft()
                if future.done():  # its request was cancelled (the server stopping)
                    continue
                try:
                    future.set_result(_decode_reply(data, self.statement))
                except (WmarkError, RuntimeError) as exc:
                    future.set_exception(exc)
                except (ValueError, struct.error):
                    self.waiting.appendleft(future)  # failed below with the rest
                    raise
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, struct.error):
            # Gone, or a reply our own checker cannot have sent: no more requests go to it.
            self.dead = True
            while self.waiting:
                future = self.waiting.popleft()
                if not future.done():
                    future.set_exception(self._died())

    def _died(self) -> LogBusy:
        return LogBusy(f"a log checker process (pid {self.process.pid}) died; restart the log")

    def close(self) -> None:
        # After the server's loop ended, its transport is gone with it: close the socket itself.
        self._sock.close()
        self.conn.close()  # the checker sees the end of its input and exits
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class CheckerPool:
    """``processes`` checkers holding the log's beacon key (``secret``, the VRF key's bytes,
    and ``statement``, the log's signed statement naming its public half)."""

    def __init__(self, processes: int, secret: bytes, statement: dsse.Envelope) -> None:
        if not 1 <= processes <= MAX_CHECKERS:
            raise InvalidInput(f"--checkers must be between 0 and {MAX_CHECKERS}, got {processes}")
        context = multiprocessing.get_context("spawn")
        self._checkers: list[_Checker] = []
        try:
            for _ in range(processes):
                ours, theirs = context.Pipe(duplex=True)
                process = context.Process(target=_serve, args=(theirs, secret, statement.to_json()),
                                          name="wmark-log-checker", daemon=True)
                process.start()
                theirs.close()
                self._checkers.append(_Checker(process, ours, statement))
            # Started and importing now (about 0.4 s of CPU each), not on the first registrations.
            for checker in self._checkers:
                if not checker.conn.poll(START_TIMEOUT_S) or checker.conn.recv_bytes(len(_READY)) != _READY:
                    raise InvalidInput(f"a log checker process did not start within {START_TIMEOUT_S:.0f} s")
        except BaseException:
            self.close()
            raise

    async def check(self, body: bytes) -> tuple[VkRecord, Beacon]:
        """The checked vk and its beacon, from the least busy checker; raises what
        :func:`check_posted` would."""
        live = [c for c in self._checkers if not c.dead] or self._checkers  # none left: say which died
        return await min(live, key=lambda c: len(c.waiting)).check(body)

    def close(self) -> None:
        for checker in self._checkers:
            checker.close()
