"""Length-prefixed frames (wmark.protocol.framing), attacked with hypothesis.

The decoder is what a hostile peer talks to first, so it must decode any
split of a valid stream identically, refuse an oversized length before
holding a byte of its body, notice a stream cut inside a frame, and fail on
garbage with RemoteProtocolError only.
"""

from __future__ import annotations

import hashlib
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wmark.errors import LocalProtocolError, RemoteProtocolError
from wmark.protocol.framing import (
    HEADER_BYTES,
    MAX_FRAME_BYTES,
    BlobReceiver,
    FrameDecoder,
    blob_frames,
    encode_frame,
    envelope_from_frame,
)
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.identity import SigningKey

SETTINGS = settings(deadline=None, max_examples=200)
bodies = st.lists(st.binary(min_size=1, max_size=300), max_size=8)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


@SETTINGS
@given(bodies, st.lists(st.integers(min_value=0), max_size=20))
def test_any_split_decodes_to_the_same_frames(frames, cuts):
    stream = b"".join(encode_frame(f) for f in frames)
    decoder = FrameDecoder()
    out = [body for chunk in split(stream, cuts) for body in decoder.feed(chunk)]
    decoder.eof()
    assert out == frames
    assert decoder.pending == 0


@SETTINGS
@given(bodies.filter(bool), st.data())
def test_a_stream_cut_inside_a_frame_is_detected_at_eof(frames, data):
    stream = b"".join(encode_frame(f) for f in frames)
    boundaries = {0}
    for f in frames:
        boundaries.add(max(boundaries) + HEADER_BYTES + len(f))
    cut = data.draw(st.integers(min_value=0, max_value=len(stream) - 1).filter(lambda c: c not in boundaries))
    decoder = FrameDecoder()
    decoder.feed(stream[:cut])
    with pytest.raises(RemoteProtocolError, match="closed the connection"):
        decoder.eof()


@SETTINGS
@given(st.integers(min_value=1, max_value=2**16), st.integers(min_value=1, max_value=2**32 - 1))
def test_an_oversized_length_is_refused_before_its_body_is_buffered(limit, length):
    decoder = FrameDecoder(limit)
    header = length.to_bytes(HEADER_BYTES, "big")
    if length <= limit:
        assert decoder.feed(header) == []
        return
    with pytest.raises(RemoteProtocolError, match=f"frame of {length} bytes, over the limit of {limit}"):
        decoder.feed(header + b"x" * 100)
    assert decoder.pending == 0
    with pytest.raises(RemoteProtocolError):  # the stream cannot be resynchronised: stays refused
        decoder.feed(encode_frame(b"ok"))


def test_oversized_length_refused_byte_by_byte():
    decoder = FrameDecoder(1024)
    header = (1025).to_bytes(HEADER_BYTES, "big")
    for byte in header[:-1]:
        assert decoder.feed(bytes([byte])) == []
    with pytest.raises(RemoteProtocolError, match="over the limit"):
        decoder.feed(header[-1:])


def test_empty_frames_are_refused_both_ways():
    with pytest.raises(LocalProtocolError):
        encode_frame(b"")
    with pytest.raises(RemoteProtocolError, match="empty frame"):
        FrameDecoder().feed(b"\x00\x00\x00\x00")


def test_the_sender_refuses_what_the_receiver_would():
    with pytest.raises(LocalProtocolError, match="exceeds the frame limit"):
        encode_frame(b"x" * 11, max_frame=10)
    assert FrameDecoder(10).feed(encode_frame(b"x" * 10, max_frame=10)) == [b"x" * 10]
    for bad in (0, 2**32):
        with pytest.raises(LocalProtocolError):
            FrameDecoder(bad)
    assert MAX_FRAME_BYTES == 32 * 1024 * 1024


@SETTINGS
@given(st.lists(st.binary(max_size=64), max_size=10))
def test_garbage_fails_only_with_remote_protocol_errors(chunks):
    decoder = FrameDecoder(4096)
    try:
        for chunk in chunks:
            for body in decoder.feed(chunk):
                envelope_from_frame(body, sender="peer")
        decoder.eof()
    except RemoteProtocolError:
        pass


def test_frame_bodies_are_dsse_envelopes():
    envelope = dsse.sign("application/x-test", b"payload", SigningKey.generate())
    [body] = FrameDecoder().feed(encode_frame(envelope.to_json()))
    assert envelope_from_frame(body, sender="prover") == envelope
    with pytest.raises(RemoteProtocolError, match="prover sent a frame that is not a DSSE envelope"):
        envelope_from_frame(b"GET / HTTP/1.1\r\n", sender="prover")


# --- a blob after a message (the SRS behind a zero-knowledge challenge) -----


def blob_stream(blob: bytes, chunk: int) -> list[bytes]:
    """The frame bodies blob_frames sends, as the peer's decoder gets them."""
    decoder = FrameDecoder()
    return [body for frame in blob_frames(io.BytesIO(blob), chunk=chunk) for body in decoder.feed(frame)]


@SETTINGS
@given(st.binary(min_size=1, max_size=2000), st.integers(min_value=1, max_value=700))
def test_a_blob_arrives_whole_in_frames_of_any_size(blob, chunk):
    sink = io.BytesIO()
    receiver = BlobReceiver(sink, size=len(blob), sha256=hashlib.sha256(blob).digest(), what="blob")
    bodies = blob_stream(blob, chunk)
    assert all(len(b) <= chunk for b in bodies)
    assert [receiver.receive(b) for b in bodies] == [False] * (len(bodies) - 1) + [True]
    assert sink.getvalue() == blob and receiver.complete


@SETTINGS
@given(st.binary(min_size=2, max_size=500), st.data())
def test_a_blob_with_another_hash_or_size_is_refused(blob, data):
    flip = data.draw(st.integers(min_value=0, max_value=len(blob) - 1))
    tampered = blob[:flip] + bytes([blob[flip] ^ 1]) + blob[flip + 1:]
    receiver = BlobReceiver(io.BytesIO(), size=len(blob), sha256=hashlib.sha256(blob).digest(), what="the SRS")
    with pytest.raises(RemoteProtocolError, match="the SRS: its SHA-256 is not the one"):
        for body in blob_stream(tampered, 64):
            receiver.receive(body)
    # Announced shorter than sent: refused before the excess is written.
    sink = io.BytesIO()
    short = BlobReceiver(sink, size=len(blob) - 1, sha256=hashlib.sha256(blob[:-1]).digest(), what="blob")
    with pytest.raises(RemoteProtocolError, match=f"more than the {len(blob) - 1} announced"):
        short.receive(blob)
    assert sink.getvalue() == b""


def test_a_complete_blob_takes_nothing_more():
    receiver = BlobReceiver(io.BytesIO(), size=1, sha256=hashlib.sha256(b"x").digest(), what="blob")
    assert receiver.receive(b"x")
    with pytest.raises(LocalProtocolError, match="already complete"):
        receiver.receive(b"y")
