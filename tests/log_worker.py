"""Helpers for test_registry: deterministic verification keys, and a worker
process that appends to a log, directly or through its HTTP front.

    python tests/log_worker.py direct LOG_DIR COUNT SEED CLOCK_DELAY_MS
    python tests/log_worker.py http URL COUNT SEED
    python tests/log_worker.py http-digest URL COUNT SEED   # prints "INDEX VK_DIGEST_HEX"

The worker prints each registered index as soon as its append returned, so a
test that kills it knows which appends certainly committed; a direct worker
also prints "clock" each time an append, holding the write lock, reads the
log's clock.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.commitment import Commitment, Scheme
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.items import ItemCommitments, TriggerKind
from wmark.protocol.keys import VK_PAYLOAD_TYPE, VerificationKey


def item_commitments(seed: bytes, n: int = 3) -> tuple[ItemCommitments, ...]:
    def value(kind: bytes, i: int) -> Commitment:
        return Commitment(Scheme.HASH, hashlib.sha256(b"test/%s/%s/%d" % (kind, seed, i)).digest())
    return tuple(ItemCommitments(value(b"item", i), value(b"label", i)) for i in range(n))


def make_vk(owner: SigningKey, seed: bytes, *, n: int = 3, commitments: tuple[ItemCommitments, ...] | None = None,
            created: str = "2026-01-01T00:00:00+00:00") -> tuple[VerificationKey, dsse.Envelope]:
    """A small owner-signed vk; ``commitments`` lets a test transplant another key's."""
    vk = VerificationKey(
        scheme=Scheme.HASH, kind=TriggerKind.IMPORTED, input_shape=(1, 2, 2), num_classes=10,
        commitments=commitments if commitments is not None else item_commitments(seed, n),
        owner=owner.public_key, vrf_key=None, created=created,
    )
    return vk, dsse.sign(VK_PAYLOAD_TYPE, vk.payload, owner)


def _direct(log_dir: str, count: int, seed: str, delay_ms: float) -> None:
    from wmark.registry import LogStore

    def slow_clock() -> int:
        # The log reads its clock inside the append's transaction, after
        # taking the write lock: a test that kills on "clock" kills mid-append.
        print("clock", flush=True)
        time.sleep(delay_ms / 1000)
        return time.time_ns() // 1_000_000

    owner = SigningKey.generate()
    with LogStore.open(log_dir, check=False, clock=slow_clock) as store:
        for i in range(count):
            vk, _ = make_vk(owner, f"{seed}-{i}".encode())
            print(store.register(vk).entry.index, flush=True)


def _http(url: str, count: int, seed: str, *, digests: bool = False) -> None:
    from wmark.protocol.transparency import verify_receipt
    from wmark.registry import LogClient

    owner = SigningKey.generate()
    with LogClient(url) as client:
        log_key = client.log_key()
        for i in range(count):
            vk, signed = make_vk(owner, f"{seed}-{i}".encode())
            info = verify_receipt(client.register(signed), vk, log_key)
            print(f"{info.index} {vk.digest.hex()}" if digests else info.index, flush=True)


if __name__ == "__main__":
    mode, where, count, seed, *rest = sys.argv[1:]
    if mode == "direct":
        _direct(where, int(count), seed, float(rest[0]))
    else:
        _http(where, int(count), seed, digests=mode == "http-digest")
