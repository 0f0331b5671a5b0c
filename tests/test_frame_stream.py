"""The prover server's per-session deadline: one for the whole session, our own proving
included (docs/design.md section 4), so a verifier that arrives late is cut off."""

from __future__ import annotations

import asyncio
import socket

import pytest

from wmark.errors import RemoteProtocolError
from wmark.protocol.framing import encode_frame
from wmark.prover.server import FrameStream


async def _receive_after(delay: float) -> bytes:
    """A session of 0.4 s whose frame arrives after ``delay`` s (as if proving took that long)."""
    ours, theirs = socket.socketpair()
    try:
        reader, writer = await asyncio.open_connection(sock=ours)
        stream = FrameStream(reader, writer, max_frame=1 << 16, timeout=5, session_timeout=0.4)
        await asyncio.sleep(delay)
        theirs.sendall(encode_frame(b"verdict"))
        try:
            return await stream.receive("verdict")
        finally:
            writer.close()
    finally:
        theirs.close()


def test_a_frame_within_the_session_deadline_is_received():
    assert asyncio.run(_receive_after(0.0)) == b"verdict"


def test_a_verifier_past_its_deadline_is_cut_off():
    with pytest.raises(RemoteProtocolError, match="no complete verdict within 0 s"):
        asyncio.run(_receive_after(0.6))
