"""The registry's per-append parts, each against the way it was done before, in one run.

``benchmarks/registry.py`` measures appends/s end to end, but on this shared
2-core machine one configuration's rate moves by a third between runs minutes
apart, more than any one of these changes is worth.  So this times the parts
themselves, each beside its baseline (the code it replaced, written out here),
alternating the two:

* ``entry encoding``: a new entry's leaf bytes (100 commitments), with their
  base64url in one call (``b64u_encode_many``) and one shared encoder, against
  one ``b64u_encode`` per commitment and ``json.dumps`` with options (which
  builds an encoder per call).  Both must give the same bytes.
* ``receipt on the wire``: a batch of 8 receipts written for HTTP, their shared
  tree head and beacon key fresh (as after every batch), with the entry's leaf
  encoding and the shared parts spliced in (``wire_json``), against
  ``json.dumps`` of each receipt's object after a DSSE round trip of its tree
  head (``envelope_to_obj`` was ``json.loads(envelope.to_json())``).  Both must
  parse to the same object.
* ``merge pauses``: the integrator's loop on a fresh log (batches of 8 entries
  of 100 commitments, each followed by ``merge_index()``, as
  registry/integrator.py does), its index merged in slices of
  ``MERGE_SLICE_ROWS`` rows, against one insert per merge (the slice made
  larger than any merge).  Reported: the longest pause of one batch plus its
  merge call, the 99th percentile, and the time per append over the run.

Timings are the best of ``--repeat`` rounds (the round least disturbed by the
rest of the machine), except the pauses, which are each mode's median round.

    python benchmarks/registry_parts.py                   # about 2 minutes
    python benchmarks/registry_parts.py --repeat 3 --appends 2048 --out /tmp/parts.json

Prints a table and writes JSON to --out (default benchmarks/results/registry-parts.json).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from _cli import provenance  # a sibling module: scripts run with this folder on sys.path

from wmark.files import atomic_write
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.encoding import b64u_encode
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.keys import VkRecord
from wmark.protocol.transparency import ENTRY_TYPE, VERSION, LogEntry, Receipt
from wmark.registry import LogStore
from wmark.registry import store as store_module

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "registry-parts.json"
ITEMS = 100  # commitments per vk, as benchmarks/registry.py
BATCH = 8  # what 64 clients with one checker gave (benchmarks/results/registry.json)


def records(owner: SigningKey, start: int, count: int, tag: bytes = b"parts") -> list[VkRecord]:
    """``count`` distinct vk records of ITEMS commitment digests (seeded)."""
    return [VkRecord(hashlib.sha256(b"bench/%s/vk/%d" % (tag, i)).digest(), owner.public_key,
                     tuple(hashlib.sha256(b"bench/%s/item/%d/%d" % (tag, i, j)).digest() for j in range(ITEMS)))
            for i in range(start, start + count)]


def best_of(fn: Callable[[], object], repeat: int, number: int) -> float:
    """Seconds per call of ``fn``: the best of ``repeat`` rounds of ``number`` calls."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


# --- The baselines: the code each part replaced.

def entry_bytes_before(entry: LogEntry) -> bytes:
    obj = {"type": ENTRY_TYPE, "version": VERSION, "index": entry.index, "time_ms": entry.time_ms,
           "vk_digest": b64u_encode(entry.vk_digest), "owner": entry.owner,
           "commitments": [b64u_encode(c) for c in entry.commitments]}
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("ascii")


def receipt_wire_before(receipt: Receipt) -> bytes:
    obj = receipt.to_obj()
    obj["tree_head"] = json.loads(receipt.tree_head.to_json())
    return (json.dumps(obj, sort_keys=True) + "\n").encode("utf-8")


def fresh(receipts: list[Receipt]) -> list[Receipt]:
    """The batch's receipts with new (uncached) shared tree head and beacon key, as the log builds them."""
    head = dsse.Envelope(**{f: getattr(receipts[0].tree_head, f) for f in ("payload_type", "payload", "signatures")})
    key = receipts[0].beacon.key_statement if receipts[0].beacon else None
    key = dsse.Envelope(key.payload_type, key.payload, key.signatures) if key else None
    return [replace(r, tree_head=head, beacon=replace(r.beacon, key_statement=key) if r.beacon else None)
            for r in receipts]


# --- The parts.

def encoding_rows(owner: SigningKey, repeat: int) -> list[dict[str, Any]]:
    record, = records(owner, 0, 1)
    new_entry = lambda: LogEntry.for_key(record, index=7, time_ms=1_767_225_600_000)  # noqa: E731
    if new_entry().encode() != entry_bytes_before(new_entry()):
        raise AssertionError("entry encodings differ")
    after = best_of(lambda: new_entry().encode(), repeat, 2000)
    before = best_of(lambda: entry_bytes_before(new_entry()), repeat, 2000)
    rows = [_row("entry encoding", "one entry", before, after)]
    with tempfile.TemporaryDirectory() as tmp, LogStore.open(Path(tmp) / "log") as log:
        batch = log.register_many(records(owner, 0, BATCH))
    receipts = [r for r in batch if isinstance(r, Receipt)]
    for new, old in zip(fresh(receipts), receipts):
        if json.loads(new.to_json(indent=None)) != json.loads(receipt_wire_before(old)):
            raise AssertionError("receipt encodings differ")
    after = best_of(lambda: [r.to_json(indent=None) for r in fresh(receipts)], repeat, 300)
    before = best_of(lambda: [receipt_wire_before(r) for r in fresh(receipts)], repeat, 300)
    copies = best_of(lambda: fresh(receipts), repeat, 300)  # not the encoding's: taken off both
    rows.append(_row("receipt on the wire", f"a batch of {BATCH}", before - copies, after - copies))
    return rows


def pauses(owner: SigningKey, appends: int, sliced: bool, tag: bytes) -> dict[str, float]:
    """The integrator's loop over a fresh log: each batch's pause (append + merge call), in seconds."""
    saved = store_module.MERGE_SLICE_ROWS
    if not sliced:
        store_module.MERGE_SLICE_ROWS = 2 ** 62  # every merge in one slice: one insert, as before
    try:
        batches = [records(owner, at, BATCH, tag) for at in range(0, appends, BATCH)]
        taken = []
        with tempfile.TemporaryDirectory() as tmp, LogStore.open(Path(tmp) / "log") as log:
            log.merge_index(due_only=False)  # numpy imported and the log warmed before the clock starts
            for batch in batches:
                start = time.perf_counter()
                log.register_many(batch, defer_merge=True)
                log.merge_index()
                taken.append(time.perf_counter() - start)
    finally:
        store_module.MERGE_SLICE_ROWS = saved
    ordered = sorted(taken)
    return {"max_ms": 1000 * ordered[-1], "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
            "ms_per_append": 1000 * sum(taken) / (len(batches) * BATCH)}


def merge_rows(owner: SigningKey, appends: int, repeat: int) -> list[dict[str, Any]]:
    runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for round_ in range(repeat):
        for sliced in (False, True):  # alternating, so that a slow minute hits both
            runs[sliced].append(pauses(owner, appends, sliced, b"merge/%d/%d" % (round_, sliced)))
            print(f"  round {round_ + 1} of {repeat}, {'sliced' if sliced else 'one insert'}: "
                  f"{runs[sliced][-1]['max_ms']:.1f} ms longest pause", file=sys.stderr)
    median = {s: {k: statistics.median(r[k] for r in runs[s]) for k in runs[s][0]} for s in runs}
    return [_row(f"merge pauses, {label}", f"{appends} appends in batches of {BATCH}", median[False][key] / 1000,
                 median[True][key] / 1000, runs={"before": [r[key] for r in runs[False]],
                                                 "after": [r[key] for r in runs[True]]})
            for key, label in (("max_ms", "longest"), ("p99_ms", "99th percentile"),
                               ("ms_per_append", "per append"))]


def _row(part: str, unit: str, before: float, after: float, **extra: Any) -> dict[str, Any]:
    return {"part": part, "unit": unit, "before_ms": 1000 * before, "after_ms": 1000 * after,
            "x_before": after / before, **extra}


def table(rows: list[dict[str, Any]]) -> str:
    header = f"{'part':<34} {'of':<30} {'before ms':>10} {'after ms':>10} {'x before':>9}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['part']:<34} {r['unit']:<30} {r['before_ms']:>10.3f} {r['after_ms']:>10.3f} "
                     f"{r['x_before']:>8.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="rounds per figure (default: %(default)s)")
    parser.add_argument("--appends", type=int, default=4096,
                        help="appends per merge run (default: %(default)s: four merges of 1,024 entries)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.appends < BATCH:
        parser.error(f"--repeat must be at least 1 and --appends at least {BATCH}")
    owner = SigningKey.generate()
    result = provenance([], "cpu")
    rows = encoding_rows(owner, args.repeat) + merge_rows(owner, args.appends, args.repeat)
    print(table(rows))
    atomic_write(args.out, (json.dumps({**result, "results": rows}, indent=2) + "\n").encode())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
