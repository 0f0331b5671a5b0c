"""Length-prefixed frames for the live transport (docs/design.md section 4, "Transports").

A frame is a 4-byte big-endian body length followed by the body, a DSSE
envelope's JSON.  Like the sessions, this module never touches a socket: the
TCP server and client feed it whatever bytes arrived and get whole bodies
back, so every framing rule is testable (and fuzzable) without a network.

The length is checked against the limit the moment its 4 bytes are in, so a
peer that announces a huge frame is refused before a single body byte is held
in memory.

A file that must travel with a message (the SRS a zero-knowledge challenge
pins) follows it as raw frames: :func:`blob_frames` cuts it, and
:class:`BlobReceiver` takes exactly the size and SHA-256 the signed message
announced, so the bytes need no signature of their own.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import BinaryIO, Iterator, NoReturn

from wmark.errors import DecodeError, LocalProtocolError, RemoteProtocolError
from wmark.protocol.hazmat import dsse
from wmark.protocol.messages import MAX_MESSAGE_BYTES

HEADER_BYTES = 4
MAX_FRAME_BYTES = MAX_MESSAGE_BYTES
# Blob frames are small enough for any frame limit a peer may set (serve
# refuses limits below it): the 4-byte headers cost 0.006% of the bytes.
BLOB_CHUNK_BYTES = 64 * 1024
# How much a peer reads from its socket at a time (the prover's server and the verifier's client).
READ_CHUNK = 64 * 1024
# The header cannot express more, whatever limit a caller asks for.
_LENGTH_LIMIT = 2 ** (8 * HEADER_BYTES) - 1


def _check_limit(max_frame: int) -> None:
    if not 1 <= max_frame <= _LENGTH_LIMIT:
        raise LocalProtocolError(f"maximum frame size {max_frame} must be between 1 and {_LENGTH_LIMIT} bytes")


def encode_frame(body: bytes, *, max_frame: int = MAX_FRAME_BYTES) -> bytes:
    """``body`` behind its length; refuses to send what the peer must refuse to read."""
    _check_limit(max_frame)
    if not body:
        raise LocalProtocolError("cannot send an empty frame")
    if len(body) > max_frame:
        raise LocalProtocolError(f"message of {len(body)} bytes exceeds the frame limit of {max_frame}")
    return len(body).to_bytes(HEADER_BYTES, "big") + body


class FrameDecoder:
    """Reassembles frames from a byte stream split anywhere.

    After an error the stream cannot be resynchronised (the next length is
    somewhere in bytes we will not read), so the decoder stays broken and the
    caller ends the session.
    """

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        _check_limit(max_frame)
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._expected: int | None = None
        self._error: RemoteProtocolError | None = None

    @property
    def pending(self) -> int:
        """Bytes held towards a frame not yet complete."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Take the next bytes of the stream; return the bodies they complete, in order."""
        if self._error is not None:
            raise self._error
        self._buffer += data
        frames: list[bytes] = []
        while True:
            if self._expected is None:
                if len(self._buffer) < HEADER_BYTES:
                    return frames
                length = int.from_bytes(self._buffer[:HEADER_BYTES], "big")
                if length == 0:
                    self._fail("peer sent an empty frame")
                if length > self.max_frame:
                    self._fail(f"peer announced a frame of {length} bytes, over the limit of {self.max_frame} "
                               f"(a peer not speaking the wmark protocol looks like this too)")
                del self._buffer[:HEADER_BYTES]
                self._expected = length
            if len(self._buffer) < self._expected:
                return frames
            frames.append(bytes(self._buffer[:self._expected]))
            del self._buffer[:self._expected]
            self._expected = None

    def eof(self) -> None:
        """The peer closed the stream: fine between frames, an error inside one."""
        if self._error is not None:
            raise self._error
        if self._expected is not None:
            self._fail(f"peer closed the connection {len(self._buffer)} bytes into a frame of {self._expected}")
        if self._buffer:
            self._fail(f"peer closed the connection inside a frame header ({len(self._buffer)} of "
                       f"{HEADER_BYTES} bytes)")

    def receive(self, data: bytes, *, peer: str, what: str) -> list[bytes]:
        """What a transport calls with each read: frames completed by ``data``, where
        empty ``data`` means the peer closed the stream while ``what`` was awaited."""
        try:
            if data:
                return self.feed(data)
            self.eof()
        except RemoteProtocolError as exc:
            raise RemoteProtocolError(f"{peer} broke the framing: {exc}") from None
        raise RemoteProtocolError(f"{peer} closed the connection instead of sending its {what}")

    def _fail(self, message: str) -> NoReturn:
        self._buffer.clear()
        self._error = RemoteProtocolError(message)
        raise self._error


def envelope_from_frame(body: bytes, *, sender: str) -> dsse.Envelope:
    """The DSSE envelope a frame carries; ``sender`` names the side at fault otherwise."""
    try:
        return dsse.Envelope.from_json(body, what="frame", max_bytes=len(body))
    except DecodeError as exc:
        raise RemoteProtocolError(f"{sender} sent a frame that is not a DSSE envelope: {exc}") from None


def blob_frames(source: BinaryIO, *, chunk: int = BLOB_CHUNK_BYTES) -> Iterator[bytes]:
    """The frames that carry the rest of ``source``, ``chunk`` bytes at most each."""
    for block in iter(lambda: source.read(chunk), b""):
        yield encode_frame(block, max_frame=chunk)


class BlobReceiver:
    """Writes the frames of a blob of announced size and SHA-256 to ``sink``.

    Refuses a frame that would overrun the size at once, so a peer cannot
    make us store more than it announced; the hash is checked on the last.
    """

    def __init__(self, sink: BinaryIO, *, size: int, sha256: bytes, what: str) -> None:
        if size <= 0:
            raise LocalProtocolError(f"{what}: a blob has at least one byte")
        self._sink, self._size, self._sha256, self._what = sink, size, sha256, what
        self._hash = hashlib.sha256()
        self.received = 0

    @property
    def complete(self) -> bool:
        return self.received == self._size

    def receive(self, body: bytes) -> bool:
        """Take one frame's body; True once the whole blob is in and matches its hash."""
        if self.complete:
            raise LocalProtocolError(f"{self._what}: already complete")
        if self.received + len(body) > self._size:
            raise RemoteProtocolError(f"{self._what}: {self.received + len(body)} bytes sent, more than the "
                                      f"{self._size} announced")
        self._hash.update(body)
        self._sink.write(body)
        self.received += len(body)
        if self.complete and not hmac.compare_digest(self._hash.digest(), self._sha256):
            raise RemoteProtocolError(f"{self._what}: its SHA-256 is not the one the challenge names")
        return self.complete
