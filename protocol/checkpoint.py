"""C2SP checkpoints, witness policies and tlog-proof files (docs/design.md section 4b).

A checkpoint (c2sp.org/tlog-checkpoint) is the note text ``ORIGIN\\nSIZE\\n
base64(ROOT)\\n``, signed by the log's Ed25519 note key and cosigned by
witnesses.  A :class:`Policy` names the log's verifier key, the witnesses'
and how many of them must have cosigned (the quorum); :meth:`Policy.verify`
is the one check every reader of a checkpoint goes through.

A :class:`TlogProof` (c2sp.org/tlog-proof) is the offline receipt: entry
index, inclusion path, the cosigned checkpoint, and our log entry as its
``extra`` data, so a verifier recomputes the leaf from the proof alone.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from wmark.errors import DecodeError, InvalidProof, InvalidSignature
from wmark.protocol.hazmat import merkle
from wmark.protocol.hazmat.note import COSIGNATURE_V1, ED25519, MAX_NOTE_BYTES, Note, Verifier, b64decode_strict

PROOF_HEADER = "c2sp.org/tlog-proof@v1"
# An entry (the proof's extra data) fits an entry bundle's uint16 length prefix.
MAX_ENTRY_BYTES = 65535
MAX_PROOF_BYTES = MAX_NOTE_BYTES + 2 * MAX_ENTRY_BYTES
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")


def decimal_u64(text: str, *, what: str) -> int:
    """A size or index of the C2SP text formats: decimal, below 2^64, no leading zeroes."""
    if not _DECIMAL.fullmatch(text) or int(text) >= 2**64:
        raise DecodeError(f"{what}: {text[:30]!r} is not a decimal below 2^64 without leading zeroes")
    return int(text)


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def text(self) -> bytes:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode('ascii')}\n".encode("utf-8")

    @classmethod
    def parse(cls, text: bytes, *, what: str = "checkpoint") -> "Checkpoint":
        lines = text.decode("utf-8").split("\n")
        # Extension lines (after the root) are allowed by the spec; we sign none.
        if len(lines) < 4 or lines[-1] != "" or not lines[0]:
            raise DecodeError(f"{what}: not an origin, size and root line")
        root = b64decode_strict(lines[2], what=f"{what}: root")
        if len(root) != merkle.HASH_SIZE:
            raise DecodeError(f"{what}: the root is not a SHA-256 hash")
        return cls(lines[0], decimal_u64(lines[1], what=f"{what}: size"), root)


@dataclass(frozen=True)
class Policy:
    """Whom a verifier trusts: the log's note key and ``quorum`` of ``witnesses``."""

    log: Verifier
    witnesses: tuple[Verifier, ...] = ()
    quorum: int = 0

    def __post_init__(self) -> None:
        if self.log.sig_type != ED25519:
            raise DecodeError(f"log key {self.log.name}: not an Ed25519 note key (type 0x01)")
        for w in self.witnesses:
            if w.sig_type != COSIGNATURE_V1:
                raise DecodeError(f"witness key {w.name}: not a cosignature/v1 key (type 0x04)")
        if len({w.key_id + w.name.encode() for w in self.witnesses}) != len(self.witnesses):
            raise DecodeError("the same witness key is listed twice (it would count twice towards the quorum)")
        if not 0 <= self.quorum <= len(self.witnesses):
            raise DecodeError(f"a quorum of {self.quorum} cannot be met by {len(self.witnesses)} witness(es)")

    @property
    def origin(self) -> str:
        # Our logs name their note key after their origin, as tlog-tiles suggests.
        return self.log.name

    def verify(self, note: Note, *, what: str = "checkpoint") -> tuple[Checkpoint, dict[str, int]]:
        """The checkpoint and each counted witness's cosignature time, if the log signed it
        and at least ``quorum`` witnesses cosigned it; :class:`InvalidSignature` says why not."""
        try:
            note.verified_by(self.log)
        except InvalidSignature as exc:
            raise InvalidSignature(f"{what}: {exc}") from None
        checkpoint = Checkpoint.parse(note.text, what=what)
        if checkpoint.origin != self.origin:
            raise InvalidSignature(f"{what}: origin {checkpoint.origin[:80]!r} is not the log's {self.origin!r}")
        times, failures = {}, []
        for witness in self.witnesses:
            try:
                times[witness.name] = note.verified_by(witness)
            except InvalidSignature as exc:
                failures.append(str(exc))
        if len(times) < self.quorum:
            raise InvalidSignature(f"{what}: cosigned by {len(times)} of the {len(self.witnesses)} trusted "
                                   f"witnesses, the policy requires {self.quorum}"
                                   + (f" ({'; '.join(failures)})" if failures else ""))
        return checkpoint, {name: t for name, t in times.items() if t is not None}


@dataclass(frozen=True)
class TlogProof:
    """A c2sp.org/tlog-proof: ``extra`` is our log entry's bytes (the Merkle leaf input)."""

    extra: bytes
    index: int
    path: tuple[bytes, ...]
    checkpoint: Note

    def encode(self) -> bytes:
        lines = [PROOF_HEADER, "extra " + base64.b64encode(self.extra).decode("ascii"), f"index {self.index}"]
        lines += [base64.b64encode(h).decode("ascii") for h in self.path]
        return ("\n".join(lines) + "\n\n").encode("ascii") + self.checkpoint.encode()

    @classmethod
    def decode(cls, data: bytes, *, what: str = "tlog-proof") -> "TlogProof":
        if len(data) > MAX_PROOF_BYTES:
            raise DecodeError(f"{what}: longer than {MAX_PROOF_BYTES} bytes")
        head, sep, rest = data.partition(b"\n\n")
        if not sep:
            raise DecodeError(f"{what}: no blank line before the checkpoint")
        try:
            lines = head.decode("ascii").split("\n")
        except UnicodeDecodeError:
            raise DecodeError(f"{what}: the proof lines are not ASCII") from None
        if lines[0] != PROOF_HEADER:
            raise DecodeError(f"{what}: does not start with {PROOF_HEADER}")
        if len(lines) < 3 or not lines[1].startswith("extra "):
            raise DecodeError(f"{what}: a wmark proof carries its log entry as extra data")
        extra = b64decode_strict(lines[1][6:], what=f"{what}: extra")
        if not lines[2].startswith("index "):
            raise DecodeError(f"{what}: no index line")
        index = decimal_u64(lines[2][6:], what=f"{what}: index")
        hashes = lines[3:]
        if len(hashes) > merkle.MAX_PROOF_HASHES:
            raise DecodeError(f"{what}: more than {merkle.MAX_PROOF_HASHES} inclusion proof hashes")
        path = tuple(b64decode_strict(h, what=f"{what}: proof hash {i}") for i, h in enumerate(hashes))
        if any(len(h) != merkle.HASH_SIZE for h in path):
            raise DecodeError(f"{what}: a proof hash is not 32 bytes")
        return cls(extra, index, path, Note.decode(rest, what=f"{what}: checkpoint"))

    def verify(self, policy: Policy) -> tuple[Checkpoint, dict[str, int]]:
        """Check the checkpoint against ``policy`` and the extra data's inclusion in it."""
        checkpoint, times = policy.verify(self.checkpoint, what="tlog-proof checkpoint")
        if self.index >= checkpoint.size:
            raise InvalidProof(f"tlog-proof: index {self.index} is beyond the checkpoint's size {checkpoint.size}")
        merkle.verify_inclusion(merkle.leaf_hash(self.extra), self.index, checkpoint.size, self.path,
                                checkpoint.root)
        return checkpoint, times
