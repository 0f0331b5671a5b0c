"""Reading an HTTP answer from a peer that may be hostile (an inference
endpoint, a registry log): one deadline for the whole response and a cap on
its size, both enforced while it arrives (docs/design.md section 4).

httpx's timeouts bound each network operation, so a peer that trickles a
byte at a time never trips them; here the clock runs from the request to the
last byte.  It is checked between reads, each bounded by the client's own
timeout, so a response takes at most the deadline plus one read timeout.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import httpx

from wmark.errors import WmarkError


class Fetched(NamedTuple):
    status: int
    content_type: str
    body: bytes


def fetch(client: httpx.Client, method: str, url: str, *, deadline_s: float, max_bytes: int, source: str,
          error: type[WmarkError], **request: Any) -> Fetched:
    """The answer to one request, or ``error`` naming ``source`` when it is late,
    too large or the connection fails."""
    start = time.monotonic()
    chunks: list[bytes] = []
    total = 0
    try:
        with client.stream(method, url, **request) as response:
            # No chunk size: httpx would buffer up to it, and the deadline
            # must be looked at whenever anything arrives.
            for chunk in response.iter_bytes():
                total += len(chunk)
                if total > max_bytes:
                    raise error(f"{source}: sent an answer larger than {max_bytes} bytes")
                if time.monotonic() - start > deadline_s:
                    raise error(f"{source}: timed out (no complete answer within {deadline_s:g} s)")
                chunks.append(chunk)
            status, content_type = response.status_code, response.headers.get("content-type", "")
    except httpx.TimeoutException:
        raise error(f"{source}: timed out (no answer within {deadline_s:g} s)") from None
    except httpx.HTTPError as exc:
        raise error(f"cannot reach {source} ({type(exc).__name__}: {str(exc)[:200]})") from None
    if time.monotonic() - start > deadline_s:
        raise error(f"{source}: timed out (no complete answer within {deadline_s:g} s)")
    return Fetched(status, content_type, b"".join(chunks))
