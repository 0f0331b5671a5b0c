"""The prover server's per-session deadline bounds the verifier, not our own proving time."""

from __future__ import annotations

import asyncio
import socket

import pytest

from wmark.errors import RemoteProtocolError
from wmark.protocol.framing import encode_frame
from wmark.prover.server import FrameStream


async def _receive_late(excluded: float) -> bytes:
    """A session of 0.2 s whose frame arrives after 0.4 s, ``excluded`` s of it ours."""
    ours, theirs = socket.socketpair()
    try:
        reader, writer = await asyncio.open_connection(sock=ours)
        stream = FrameStream(reader, writer, max_frame=1 << 16, timeout=5, session_timeout=0.2)
        await asyncio.sleep(0.4)  # as if proving
        stream.exclude(excluded)
        theirs.sendall(encode_frame(b"verdict"))
        try:
            return await stream.receive("verdict")
        finally:
            writer.close()
    finally:
        theirs.close()


def test_time_spent_proving_is_left_out_of_the_session_deadline():
    assert asyncio.run(_receive_late(excluded=0.4)) == b"verdict"


def test_a_verifier_past_its_deadline_is_cut_off():
    with pytest.raises(RemoteProtocolError, match="no complete verdict within 0 s"):
        asyncio.run(_receive_late(excluded=0.0))
