"""The log's side of c2sp.org/tlog-witness: ask a witness to cosign a checkpoint
(docs/design.md section 4b).

:class:`WitnessClient` remembers the size the witness last cosigned, sends
``old SIZE``, the consistency proof from there, and the checkpoint; a 409
answer tells it the witness's size, and it retries once from there.  Only
a cosignature that verifies under the configured witness key is kept.
"""

from __future__ import annotations

import base64
import sys
import threading
from typing import Callable

import httpx

from wmark.errors import DecodeError, InvalidSignature
from wmark.net import fetch
from wmark.protocol.checkpoint import Checkpoint
from wmark.protocol.hazmat.note import COSIGNATURE_V1, MAX_NOTE_BYTES, Note, NoteSignature, Verifier

SIZE_TYPE = "text/x.tlog.size"
DEFAULT_TIMEOUT_S = 10.0
MAX_ANSWER_BYTES = MAX_NOTE_BYTES


class WitnessClient:
    """One configured witness: its verifier key (type 0x04) and its submission URL."""

    def __init__(self, verifier: Verifier, url: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        if verifier.sig_type != COSIGNATURE_V1:
            raise DecodeError(f"witness key {verifier.name}: not a cosignature/v1 key (type 0x04)")
        self.verifier, self.url = verifier, url.rstrip("/")
        self._size, self._timeout = 0, timeout
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=timeout, trust_env=False, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def cosign(self, note: Note, consistency: Callable[[int, int], tuple[bytes, ...]]) -> NoteSignature | None:
        """The witness's verified cosignature on ``note``, or None (said on stderr) if it gave none."""
        checkpoint = Checkpoint.parse(note.text)
        with self._lock:  # the witness's size moves one request at a time
            try:
                for _ in range(2):
                    old = self._size if self._size <= checkpoint.size else 0
                    proof = consistency(old, checkpoint.size) if 0 < old < checkpoint.size else ()
                    body = (f"old {old}\n" + "".join(base64.b64encode(h).decode("ascii") + "\n" for h in proof)
                            + "\n").encode("ascii") + note.encode()
                    status, content_type, data = self._post(body)
                    if status == 409 and content_type == SIZE_TYPE:
                        self._size = int(data.decode("ascii").strip()[:20] or "0")
                        continue
                    if status != 200:
                        raise InvalidSignature(f"answered HTTP {status}: "
                                               f"{data.decode('utf-8', 'replace').strip()[:200]}")
                    signature = self._check(note, data)
                    self._size = checkpoint.size
                    return signature
                raise InvalidSignature("its size kept changing")
            except (httpx.HTTPError, InvalidSignature, DecodeError, ValueError) as exc:
                print(f"wmark log: witness {self.verifier.name} at {self.url} did not cosign size "
                      f"{checkpoint.size}: {exc}", file=sys.stderr, flush=True)
                return None

    def _post(self, body: bytes) -> tuple[int, str, bytes]:
        """POST add-checkpoint; the answer is read up to MAX_ANSWER_BYTES and within the timeout, whole."""
        return fetch(self._http, "POST", f"{self.url}/add-checkpoint", content=body, deadline_s=self._timeout,
                     max_bytes=MAX_ANSWER_BYTES, source="its answer", error=InvalidSignature)

    def _check(self, note: Note, answer: bytes) -> NoteSignature:
        lines = answer.decode("utf-8").splitlines(keepends=False)
        signatures = tuple(NoteSignature.parse_line(line, what=f"witness {self.verifier.name}")
                           for line in lines if line)
        # The answer may carry several cosignatures; only ours counts (signed-note).
        Note(note.text, signatures).verified_by(self.verifier)
        return next(s for s in signatures if s.name == self.verifier.name and s.key_id == self.verifier.key_id)


# A configured witness before any connection is made: its key and submission URL.
WitnessSpec = tuple[Verifier, str]


def witness_clients(specs: tuple[WitnessSpec, ...]) -> tuple[WitnessClient, ...]:
    """One client per witness, made in the process that uses it (a forked log worker
    must not share its parent's connections)."""
    return tuple(WitnessClient(verifier, url) for verifier, url in specs)
