"""The owner's server: answer live verification sessions over TCP (``wmark-prover serve``).

Each connection is one session: challenge frame in, reveal or refusal frame
out, verdict frame in, close.  The protocol itself is
:class:`~wmark.protocol.session.ProverSession` and :mod:`wmark.protocol.framing`; this
module only moves bytes, bounds the time each message may take, and keeps
one misbehaving verifier from affecting any other session or the server.
Work that blocks (signature checks, the ledger's synchronous commit) runs in
worker threads so a slow disk never stalls the other sessions.

A zero-knowledge challenge is followed by the SRS it pins, as raw frames
(:class:`~wmark.protocol.framing.BlobReceiver` checks its size and hash), and is
answered with ezkl proofs about a suspect model the owner holds a copy of
(``--model``); proofs are made one session at a time, as each takes gigabytes.
They reveal no item, so they spend no budget; the ledger records the session
and holds it to the owner's policy (allow-list, sessions per hour).
"""

from __future__ import annotations

import asyncio
import collections
import signal
import sys
import tempfile
import time
import traceback
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from wmark.errors import InvalidInput, RemoteProtocolError, WmarkError, is_library_failure
from wmark.protocol.framing import (
    MAX_FRAME_BYTES,
    READ_CHUNK,
    BlobReceiver,
    FrameDecoder,
    encode_frame,
    envelope_from_frame,
)
from wmark.protocol.session import ChallengeReceived, ProverSession, VerdictReceived, busy_refusal, now
from wmark.prover.ledger import Outcome
from wmark.prover.owner import Prover, describe
from wmark.prover.zk import answer_or_refuse
from wmark.text import untrusted
from wmark.watermark.zkcircuit import srs_size

DEFAULT_TIMEOUT = 30.0
MAX_SESSIONS = 64
# A verifier that has connected must send its challenge quickly, and finish
# the whole session within this (a zero-knowledge session, proving included,
# within --zk-session-timeout): a slowloris that opens
# connections and sends nothing, or a byte at a time, frees its slot in seconds.
HANDSHAKE_TIMEOUT = 10.0
DEFAULT_SESSION_TIMEOUT = 120.0
# A zero-knowledge session's whole deadline, proving included (in this process
# or on Ray): 10 proofs of a small circuit take minutes on two cores
# (docs/design.md section 4c).
DEFAULT_ZK_SESSION_TIMEOUT = 1800.0
MAX_PER_PEER = 8
RETRY_AFTER_S = 10
# A challenge is a few kilobytes, a verdict of 10,000 results about 2 MB: a
# frame announcing more is refused from its header, before any of it is read.
CHALLENGE_FRAME_BYTES = 64 * 1024
VERDICT_FRAME_BYTES = 4 * 1024 * 1024
# 2^20 rows: a 128 MiB SRS, for circuits far beyond what proves in a few GB.
DEFAULT_MAX_SRS_LOGROWS = 20
# How long sessions still running at shutdown may take to finish; their
# reveals are committed already, so cutting them short loses at most a verdict.
SHUTDOWN_GRACE_S = 5.0


def log(message: str) -> None:
    print(f"{now()} {message}", file=sys.stderr, flush=True)


class FrameStream:
    """One connection as a sequence of frames, each awaited with a deadline, all
    within one deadline for the whole session."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, max_frame: int,
                 timeout: float, session_timeout: float = DEFAULT_SESSION_TIMEOUT) -> None:
        self._reader, self._writer = reader, writer
        self._max_frame = max_frame
        self._decoder = FrameDecoder(max_frame)
        self._frames: collections.deque[bytes] = collections.deque()
        self._timeout = timeout
        self._started = time.monotonic()
        self._ends = self._started + session_timeout

    @property
    def deadline(self) -> float:
        """When the session must be over (``time.monotonic()``)."""
        return self._ends

    def extend(self, session_timeout: float) -> None:
        """Give the session ``session_timeout`` from its start instead (a zero-knowledge
        session, once its challenge is read: proving takes minutes, and counts)."""
        self._ends = self._started + session_timeout

    async def receive(self, what: str, *, limit: int | None = None, timeout: float | None = None) -> bytes:
        """The next frame, of at most ``limit`` bytes (refused from its header, before
        it is buffered), within ``timeout`` and what is left of the session's time."""
        self._decoder.max_frame = min(limit or self._max_frame, self._max_frame)
        wait = min(self._timeout, timeout or self._timeout, self._ends - time.monotonic())
        try:
            if wait <= 0:
                raise asyncio.TimeoutError
            # One deadline for the whole message, not per read: a verifier
            # trickling a byte at a time cannot hold the session open.
            return await asyncio.wait_for(self._next_frame(what), wait)
        except asyncio.TimeoutError:
            raise RemoteProtocolError(f"verifier sent no complete {what} within {max(wait, 0):g} s") from None
        except ConnectionError as exc:
            raise RemoteProtocolError(f"connection lost while waiting for the {what} ({exc})") from None

    async def _next_frame(self, what: str) -> bytes:
        while not self._frames:
            data = await self._reader.read(READ_CHUNK)
            self._frames.extend(self._decoder.receive(data, peer="verifier", what=what))
        return self._frames.popleft()

    async def send(self, frame: bytes, what: str) -> None:
        try:
            self._writer.write(frame)
            await asyncio.wait_for(self._writer.drain(), self._timeout)
        except asyncio.TimeoutError:
            raise RemoteProtocolError(f"verifier did not take the {what} within {self._timeout:g} s") from None
        except ConnectionError as exc:
            raise RemoteProtocolError(f"connection lost while sending the {what} ({exc})") from None


@dataclass(frozen=True)
class ZkOptions:
    """What zero-knowledge challenges are answered with: the owner's copies of
    suspect models, by the SHA-256 of their files, and the limits of proving."""

    models: dict[bytes, Path] = field(default_factory=dict)
    max_srs_logrows: int = DEFAULT_MAX_SRS_LOGROWS
    workdir: str | None = None
    memory_limit: int | None = None
    session_timeout: float = DEFAULT_ZK_SESSION_TIMEOUT
    # Each proof a Ray task on this cluster (wmark.cluster); None: in this process.
    ray: str | None = None


class Server:
    def __init__(self, prover: Prover, *, max_frame: int, timeout: float, zk: ZkOptions | None = None,
                 max_sessions: int = MAX_SESSIONS, max_per_peer: int = MAX_PER_PEER) -> None:
        self._prover, self._max_frame, self._timeout = prover, max_frame, timeout
        self._zk = zk or ZkOptions()
        self._max_sessions, self._max_per_peer = max_sessions, max_per_peer
        self._tasks: set[asyncio.Task] = set()
        self._per_peer: collections.Counter[str] = collections.Counter()
        self._active = 0
        # Signed once: deterministic signatures, and a flood of turned-away
        # connections must not cost a signature each.
        self._busy = encode_frame(busy_refusal(prover.owner, RETRY_AFTER_S).to_json(), max_frame=max_frame)
        # One proof job at a time: each takes gigabytes. (Since Python 3.10 a
        # lock binds to the loop that first waits on it, not to its creator's.)
        self._proving = asyncio.Lock()
        self.sessions = 0

    def _judge(self, session: ProverSession, body: bytes, *, record: bool) -> VerdictReceived:
        event = session.receive(envelope_from_frame(body, sender="verifier"))
        assert isinstance(event, VerdictReceived)
        if record:
            mismatch = self._prover.ledger.record_verdict(event, self._prover.vk)
            if mismatch:
                log(f"verdict recorded as a MISMATCH: {untrusted(mismatch)}")
        return event

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) else "?"
        line = [f"session {peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "session"]
        self._per_peer[host] += 1
        try:
            # Admitted sessions count, not connections being turned away: those
            # must not fill the server by themselves.
            if self._active >= self._max_sessions or self._per_peer[host] > self._max_per_peer:
                line.append(f"turned away (busy: {self._active} sessions running, "
                            f"{self._per_peer[host] - 1} from this peer); told to retry after {RETRY_AFTER_S} s")
                writer.write(self._busy)
                with suppress(Exception):
                    await asyncio.wait_for(writer.drain(), 1.0)
                    # Take (and drop) the challenge already on its way, so closing
                    # does not reset the connection before the answer is read.
                    await asyncio.wait_for(reader.read(CHALLENGE_FRAME_BYTES), 1.0)
                return
            self.sessions += 1
            self._active += 1
            try:
                await self._session(FrameStream(reader, writer, max_frame=self._max_frame, timeout=self._timeout),
                                    line)
            finally:
                self._active -= 1
        except WmarkError as exc:
            line.append(f"ended: {untrusted(exc)}")
        except asyncio.CancelledError:
            line.append("cut short by shutdown")
            raise
        except BaseException as exc:
            if is_library_failure(exc):  # ezkl panicking on a verifier's SRS of zeros, say: its session alone ends
                line.append(f"ended: a library failed on the verifier's input ({type(exc).__name__}: "
                            f"{untrusted(exc, limit=300)})")
            elif isinstance(exc, Exception):  # a bug: report it, and keep serving everyone else
                line.append(f"internal error {untrusted(repr(exc))} (a bug in wmark)\n{traceback.format_exc()}")
            else:
                raise
        finally:
            log("; ".join(line))
            self._tasks.discard(task)
            self._per_peer[host] -= 1
            if not self._per_peer[host]:
                del self._per_peer[host]
            writer.close()
            with suppress(Exception):
                await writer.wait_closed()

    async def _session(self, stream: FrameStream, line: list[str]) -> None:
        session = self._prover.session()
        body = await stream.receive("challenge", limit=CHALLENGE_FRAME_BYTES, timeout=HANDSHAKE_TIMEOUT)
        # Parsing and signature checks run on a thread: the event loop only moves bytes.
        challenge = await asyncio.to_thread(envelope_from_frame, body, sender="verifier")
        event = await asyncio.to_thread(session.receive, challenge)
        assert isinstance(event, ChallengeReceived)
        line.append(f"verifier {event.challenge.verifier.fingerprint} on "
                    f"{untrusted(event.challenge.model.describe())}")
        zk = event.challenge.zk is not None
        if zk:
            stream.extend(self._zk.session_timeout)
            answered = await self._prove(stream, session, event, line)
        else:
            response = await asyncio.to_thread(self._prover.ledger.answer, session, event, challenge,
                                               budget=self._prover.budget, policy=self._prover.policy)
            line.append(describe(response, self._prover.budget))
            answered = response.outcome is Outcome.REVEALED
            await stream.send(encode_frame(response.data, max_frame=self._max_frame),
                              "reveal" if answered else "refusal")
        if not answered:
            return
        verdict = (await asyncio.to_thread(self._judge, session,
                                           await stream.receive("verdict", limit=VERDICT_FRAME_BYTES),
                                           record=not zk)).verdict
        line.append(f"verdict {'ACCEPTED' if verdict.accepted else 'REJECTED'} "
                    f"({verdict.matches} of {verdict.k} match)")

    async def _prove(self, stream: FrameStream, session: ProverSession, event: ChallengeReceived,
                     line: list[str]) -> bool:
        """Take the challenge's SRS, then send proofs or a signed refusal; True for proofs."""
        parameters = event.challenge.zk
        assert parameters is not None
        # Recorded (and rate-limited) before the SRS is read or anything proved.
        refused = await asyncio.to_thread(self._prover.ledger.admit_zk, event, policy=self._prover.policy)
        reason: str | None  # None once the proofs are made
        if refused is not None:
            answer, reason = session.refuse(refused), refused
        elif parameters.srs_logrows > self._zk.max_srs_logrows:
            too_large = (f"the challenge's SRS has 2^{parameters.srs_logrows} rows; this prover takes at "
                         f"most 2^{self._zk.max_srs_logrows} (--max-srs-logrows)")
            answer, reason = session.refuse(too_large), too_large
        else:
            with tempfile.TemporaryDirectory(prefix="wmark-serve-", dir=self._zk.workdir) as tmp:
                srs = Path(tmp) / "challenge.srs"
                with srs.open("wb") as sink:
                    receiver = BlobReceiver(sink, size=srs_size(parameters.srs_logrows),
                                            sha256=parameters.srs_sha256, what="the challenge's SRS")
                    while not receiver.receive(await stream.receive("SRS")):
                        pass
                margin = min(HANDSHAKE_TIMEOUT, self._zk.session_timeout / 10)
                async with self._proving:
                    # Waiting for the proving lock and proving count against the session's deadline, less a
                    # margin to send the proofs and take the verdict, in this process and on Ray alike
                    # (docs/design.md section 4c).
                    answer, reason = await asyncio.to_thread(
                        answer_or_refuse, session, event, self._prover.mk, self._zk.models, srs,
                        workdir=tmp, memory_limit=self._zk.memory_limit, deadline=stream.deadline - margin,
                        ray_address=self._zk.ray)
        line.append(f"refused: {untrusted(reason)}" if reason else
                    f"proved {len(event.indices)} of {event.challenge.n} items in zero knowledge (none revealed)")
        await stream.send(encode_frame(answer.to_json(), max_frame=self._max_frame),
                          "refusal" if reason else "proofs")
        return reason is None

    async def drain(self) -> None:
        """Let running sessions finish for a grace period, then cut them short."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=SHUTDOWN_GRACE_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


async def serve(prover: Prover, host: str, port: int, *, max_frame: int = MAX_FRAME_BYTES,
                timeout: float = DEFAULT_TIMEOUT, zk: ZkOptions | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then let running sessions finish (for a grace period)."""
    server = Server(prover, max_frame=max_frame, timeout=timeout, zk=zk)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        listener = await asyncio.start_server(server.handle, host, port)
    except OSError as exc:
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = listener.sockets[0].getsockname()
    summary = prover.ledger.summary()
    print(f"serving vk {prover.vk.digest.hex()[:16]}… ({summary.revealed} of {summary.n} trigger items revealed "
          f"so far, budget {float(prover.budget):.0%}, ledger {prover.ledger.path})", flush=True)
    print(f"listening on {bound[0]}:{bound[1]}", flush=True)
    await stop.wait()
    listener.close()
    await server.drain()
    await listener.wait_closed()
    log(f"shut down after {server.sessions} sessions")
