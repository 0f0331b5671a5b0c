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
They reveal no item, so the ledger records nothing for them.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import sys
import tempfile
import traceback
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from wmark.errors import InvalidInput, RemoteProtocolError, WmarkError
from wmark.protocol.framing import (
    MAX_FRAME_BYTES,
    READ_CHUNK,
    BlobReceiver,
    FrameDecoder,
    encode_frame,
    envelope_from_frame,
)
from wmark.protocol.session import ChallengeReceived, ProverSession, VerdictReceived, now
from wmark.prover.ledger import Outcome
from wmark.prover.owner import Prover, describe
from wmark.prover.zk import answer_or_refuse
from wmark.watermark.zkcircuit import srs_size

DEFAULT_TIMEOUT = 30.0
MAX_SESSIONS = 64
# 2^20 rows: a 128 MiB SRS, for circuits far beyond what proves in a few GB.
DEFAULT_MAX_SRS_LOGROWS = 20
# How long sessions still running at shutdown may take to finish; their
# reveals are committed already, so cutting them short loses at most a verdict.
SHUTDOWN_GRACE_S = 5.0

def log(message: str) -> None:
    print(f"{now()} {message}", file=sys.stderr, flush=True)


class FrameStream:
    """One connection as a sequence of frames, each awaited with a deadline."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, max_frame: int,
                 timeout: float) -> None:
        self._reader, self._writer = reader, writer
        self._decoder = FrameDecoder(max_frame)
        self._frames: collections.deque[bytes] = collections.deque()
        self._timeout = timeout

    async def receive(self, what: str) -> bytes:
        try:
            # One deadline for the whole message, not per read: a verifier
            # trickling a byte at a time cannot hold the session open.
            return await asyncio.wait_for(self._next_frame(what), self._timeout)
        except asyncio.TimeoutError:
            raise RemoteProtocolError(f"verifier sent no complete {what} within {self._timeout:g} s") from None
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


class Server:
    def __init__(self, prover: Prover, *, max_frame: int, timeout: float, zk: ZkOptions | None = None) -> None:
        self._prover, self._max_frame, self._timeout = prover, max_frame, timeout
        self._zk = zk or ZkOptions()
        self._tasks: set[asyncio.Task] = set()
        # One proof job at a time: each takes gigabytes. (Since Python 3.10 a
        # lock binds to the loop that first waits on it, not to its creator's.)
        self._proving = asyncio.Lock()
        self.sessions = 0

    def _judge(self, session: ProverSession, body: bytes, *, record: bool) -> VerdictReceived:
        event = session.receive(envelope_from_frame(body, sender="verifier"))
        assert isinstance(event, VerdictReceived)
        if record:
            self._prover.ledger.record_verdict(event)
        return event

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        line = [f"session {peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "session"]
        try:
            if len(self._tasks) > MAX_SESSIONS:
                line.append(f"turned away: {MAX_SESSIONS} sessions are running already")
                return
            self.sessions += 1
            await self._session(FrameStream(reader, writer, max_frame=self._max_frame, timeout=self._timeout), line)
        except WmarkError as exc:
            line.append(f"ended: {exc}")
        except asyncio.CancelledError:
            line.append("cut short by shutdown")
            raise
        except Exception as exc:  # a bug: report it, and keep serving everyone else
            line.append(f"internal error {exc!r} (a bug in wmark)\n{traceback.format_exc()}")
        finally:
            log("; ".join(line))
            self._tasks.discard(task)
            writer.close()
            with suppress(Exception):
                await writer.wait_closed()

    async def _session(self, stream: FrameStream, line: list[str]) -> None:
        session = self._prover.session()
        challenge = envelope_from_frame(await stream.receive("challenge"), sender="verifier")
        event = await asyncio.to_thread(session.receive, challenge)
        assert isinstance(event, ChallengeReceived)
        line.append(f"verifier {event.challenge.verifier.fingerprint} on {event.challenge.model.describe()}")
        zk = event.challenge.zk is not None
        if zk:
            answered = await self._prove(stream, session, event, line)
        else:
            response = await asyncio.to_thread(self._prover.ledger.answer, session, event, challenge,
                                               budget=self._prover.budget)
            line.append(describe(response, self._prover.budget))
            answered = response.outcome is Outcome.REVEALED
            await stream.send(encode_frame(response.data, max_frame=self._max_frame),
                              "reveal" if answered else "refusal")
        if not answered:
            return
        verdict = (await asyncio.to_thread(self._judge, session, await stream.receive("verdict"),
                                           record=not zk)).verdict
        line.append(f"verdict {'ACCEPTED' if verdict.accepted else 'REJECTED'} "
                    f"({verdict.matches} of {verdict.k} match)")

    async def _prove(self, stream: FrameStream, session: ProverSession, event: ChallengeReceived,
                     line: list[str]) -> bool:
        """Take the challenge's SRS, then send proofs or a signed refusal; True for proofs."""
        parameters = event.challenge.zk
        assert parameters is not None
        reason: str | None  # None once the proofs are made
        if parameters.srs_logrows > self._zk.max_srs_logrows:
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
                async with self._proving:
                    answer, reason = await asyncio.to_thread(
                        answer_or_refuse, session, event, self._prover.mk, self._zk.models, srs,
                        workdir=tmp, memory_limit=self._zk.memory_limit)
        line.append(f"refused: {reason}" if reason else
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
