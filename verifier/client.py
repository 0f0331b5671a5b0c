"""The verifier's live client: one TCP connection to ``wmark-prover serve``.

Frames are :mod:`wmark.protocol.framing`'s; every message is awaited with one
deadline, and every failure names the prover as its side (docs/design.md
section 4).
"""

from __future__ import annotations

import collections
import socket
import time
from collections.abc import Callable
from pathlib import Path

from wmark.errors import InvalidInput, ProverBusy, RemoteProtocolError
from wmark.protocol.framing import (
    MAX_FRAME_BYTES,
    READ_CHUNK,
    FrameDecoder,
    blob_frames,
    encode_frame,
    envelope_from_frame,
)
from wmark.protocol.hazmat import dsse
from wmark.protocol.keys import VerificationKey
from wmark.protocol.session import busy_reason
from wmark.text import untrusted

# How long the owner may take for zero-knowledge proofs: building the circuit
# and keys, then each proof (about 20 s on 2 cores for a digits zk_cnn), with
# room for a slower or busier machine.
ZK_SETUP_WAIT_S = 300.0
ZK_WAIT_PER_PROOF_S = 120.0


def proof_wait(k: int) -> float:
    """How long to wait for the owner's ``k`` zero-knowledge proofs by default."""
    return ZK_SETUP_WAIT_S + ZK_WAIT_PER_PROOF_S * k


class ProverConnection:
    """A blocking TCP connection to the prover, one frame at a time, each with a deadline."""

    def __init__(self, address: tuple[str, int], *, timeout: float, max_frame: int = MAX_FRAME_BYTES) -> None:
        self.name = f"{address[0]}:{address[1]}"
        self._timeout = timeout
        self._decoder = FrameDecoder(max_frame)
        self._frames: collections.deque[bytes] = collections.deque()
        try:
            self._sock = socket.create_connection(address, timeout=timeout)
        except OSError as exc:
            raise InvalidInput(f"cannot connect to the prover at {self.name} ({exc.strerror or exc}); is "
                               f"`wmark-prover serve` running there?") from None

    def __enter__(self) -> "ProverConnection":
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()

    def send(self, frame: bytes, what: str) -> None:
        self._sock.settimeout(self._timeout)
        try:
            self._sock.sendall(frame)
        except OSError as exc:
            raise RemoteProtocolError(f"the prover at {self.name} did not take the {what} "
                                      f"({exc.strerror or 'timed out'})") from None

    def receive(self, what: str, *, timeout: float | None = None, if_closed: str | None = None) -> bytes:
        """The next frame, within ``timeout`` (default: the connection's); ``if_closed``:
        what a prover that closes the connection instead of answering most likely means."""
        # One deadline for the whole message: a prover trickling bytes cannot stall us.
        limit = self._timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while not self._frames:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RemoteProtocolError(f"the prover at {self.name} sent no complete {what} within "
                                          f"{limit:g} s")
            self._sock.settimeout(remaining)
            try:
                data = self._sock.recv(READ_CHUNK)
            except socket.timeout:
                continue
            except OSError as exc:
                raise RemoteProtocolError(f"connection to the prover at {self.name} lost while waiting for "
                                          f"its {what} ({exc.strerror or exc})") from None
            try:
                self._frames.extend(self._decoder.receive(data, peer=f"the prover at {self.name}", what=what))
            except RemoteProtocolError as exc:
                if data or if_closed is None:
                    raise
                raise RemoteProtocolError(f"{exc}: {if_closed}") from None
        return self._frames.popleft()

    def send_srs_then_receive(self, srs: Path, wait: float) -> bytes:
        """Send the SRS, then take the answer; a prover that refuses the challenge
        stops reading the SRS, and its refusal is the answer that explains why."""
        try:
            with srs.open("rb") as source:
                for frame in blob_frames(source):
                    self.send(frame, "SRS")
        except RemoteProtocolError as exc:
            try:
                return self.receive("refusal")
            except RemoteProtocolError:
                raise exc from None
        return self.receive("proofs", timeout=wait)


def send_challenge(prover: ProverConnection, challenge: dsse.Envelope, vk: VerificationKey,
                   answer: Callable[[], bytes]) -> dsse.Envelope:
    """Send the challenge and take the answer ``answer()`` reads; a prover that turned
    us away unheard has sent its signed "busy, retry after N s" instead, reported
    as such (exit 2) rather than as a closed connection."""
    failure: RemoteProtocolError | None = None
    try:
        prover.send(encode_frame(challenge.to_json()), "challenge")
    except RemoteProtocolError as exc:
        failure = exc
    try:
        envelope = envelope_from_frame(answer() if failure is None else prover.receive("answer"),
                                       sender=f"the prover at {prover.name}")
    except RemoteProtocolError:
        if failure is not None:
            raise failure from None
        raise
    busy = busy_reason(envelope, vk)
    if busy is not None:
        raise ProverBusy(f"the prover at {prover.name} turned the session away, in a message its owner signed: "
                         f"{untrusted(busy)}")
    if failure is not None:
        raise failure
    return envelope
