"""Client of the log's HTTP front (:mod:`.http`), used by ``wmark register --log-url``.

It moves bytes and decodes them strictly; it trusts nothing it receives.
Whoever asks for a receipt checks it with
:func:`wmark.protocol.transparency.verify_receipt` and the log's public key.
Errors the log reports come back as the same exception classes the log
raised (:mod:`.errors`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

from wmark.errors import InvalidInput
from wmark.net import fetch
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.encoding import b64u_encode, parse_json
from wmark.protocol.hazmat.identity import MAX_PEM_BYTES, PublicKey
from wmark.protocol.hazmat.note import Note, Verifier
from wmark.protocol.transparency import (
    MAX_ENVELOPE_BYTES,
    MAX_RECEIPT_BYTES,
    ConsistencyProof,
    InclusionProof,
    LogEntry,
    Receipt,
)
from wmark.registry.errors import LogUnavailable, decode_error
from wmark.registry.http import decode_lookup

# An append may wait up to store.BUSY_TIMEOUT_S for other processes' appends.
DEFAULT_TIMEOUT_S = 60.0
# The largest answer is a receipt (or an entry, which a receipt contains).
MAX_ANSWER_BYTES = MAX_RECEIPT_BYTES


class LogClient:
    """A connection (kept alive between calls) to the log served at ``url``."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise InvalidInput(f"log URL {url!r} is not of the form http://HOST:PORT")
        self.url = url.rstrip("/")
        self._timeout = timeout
        # trust_env=False: a proxy configured for the outside world must not
        # sit between a party and its loopback log.
        self._http = httpx.Client(base_url=self.url, timeout=timeout, trust_env=False, follow_redirects=False)

    def __enter__(self) -> "LogClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def register(self, signed_vk: dsse.Envelope) -> Receipt:
        """Append the owner-signed vk; the receipt still needs :func:`verify_receipt`."""
        data = self._call("POST", "/entries", content=signed_vk.to_json())
        return Receipt.from_json(data, what=f"receipt from {self.url}")

    def tree_head(self, size: int | None = None) -> dsse.Envelope:
        data = self._call("GET", "/tree-head", params=_sizes(size=size))
        return dsse.Envelope.from_json(data, what=f"tree head from {self.url}", max_bytes=MAX_ENVELOPE_BYTES)

    def entry(self, index: int) -> LogEntry:
        return LogEntry.decode(self._call("GET", f"/entries/{int(index)}"), what=f"entry {index} from {self.url}")

    def inclusion_proof(self, index: int, size: int | None = None) -> InclusionProof:
        what = f"inclusion proof from {self.url}"
        data = self._call("GET", "/proof/inclusion", params=_sizes(index=index, size=size))
        return InclusionProof.from_obj(parse_json(data, what=what, max_bytes=MAX_ENVELOPE_BYTES), what=what)

    def consistency_proof(self, first: int, second: int | None = None) -> ConsistencyProof:
        what = f"consistency proof from {self.url}"
        data = self._call("GET", "/proof/consistency", params=_sizes(first=first, second=second))
        return ConsistencyProof.from_obj(parse_json(data, what=what, max_bytes=MAX_ENVELOPE_BYTES), what=what)

    def entries_with_commitment(self, digest: bytes) -> list[int]:
        """Indices of the entries whose vk commits to the item with ``digest``, oldest first."""
        data = self._call("GET", "/entries", params={"commitment": b64u_encode(digest)})
        return decode_lookup(data, what=f"commitment lookup from {self.url}")

    def log_key(self) -> PublicKey:
        """The key the log *says* it signs with: pin it, or compare its fingerprint out of band."""
        data = self._call("GET", "/log-key")
        if len(data) > MAX_PEM_BYTES:
            raise LogUnavailable(f"{self.url}: the log's public key is longer than {MAX_PEM_BYTES} bytes")
        return PublicKey.from_pem(data, what=f"log key from {self.url}")

    def vkey(self) -> Verifier:
        """The checkpoint verifier key the log *says* it has: pin it, or compare it out of band."""
        return Verifier.decode(self._call("GET", "/log.vkey").decode("ascii", "replace"),
                               what=f"verifier key from {self.url}")

    def checkpoint(self) -> Note:
        return Note.decode(self._call("GET", "/checkpoint"), what=f"checkpoint from {self.url}")

    def tile(self, path: str) -> bytes:
        """A tlog-tiles resource (``tile/...``), unchecked: :class:`TileReader` checks it."""
        return self._call("GET", "/" + path)

    def _call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
              content: bytes | None = None) -> bytes:
        headers = {"Content-Type": "application/json"} if content is not None else None
        status, _, body = fetch(self._http, method, path, params=params, content=content, headers=headers,
                             deadline_s=self._timeout, max_bytes=MAX_ANSWER_BYTES, source=f"the log at {self.url}",
                             error=LogUnavailable)
        if status != 200:
            raise decode_error(status, body, source=f"log at {self.url}")
        return body


def _sizes(**values: int | None) -> dict[str, int]:
    """Query parameters, leaving out those not given."""
    return {name: int(value) for name, value in values.items() if value is not None}
