"""Commitment throughput: how fast KeyGen commits and a verifier checks openings.

For each trigger-sized message (a derived item's 32-byte VRF output, a
canonical 1x8x8 image and a canonical 3x32x32 image, each with its 20-byte
shape header) this times, in one run:

* ``raw sha256``: ``hashlib.sha256(message).digest()``, the physical floor of
  the hash scheme (it cannot commit faster than it can hash the message);
* ``commit`` and ``verify`` of both schemes through :mod:`wmark.protocol.hazmat.commitment`
  (``commit`` includes drawing the randomness from the OS CSPRNG; ``verify``
  recomputes and compares in constant time).

Each figure is the best of ``--repeat`` timed batches, each batch sized to take
at least ``--min-time`` seconds (as :mod:`timeit` recommends: the minimum is
the run least disturbed by the rest of the machine).  Ratios are time per
operation over the time of raw SHA-256 on the same message.

    python benchmarks/commitments.py                  # about 20 s
    python benchmarks/commitments.py --out /tmp/c.json --repeat 3

Prints a table and writes JSON to --out (default benchmarks/results/commitments.json).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import ssl
import sys
import time
from pathlib import Path
from typing import Callable

import ecdsa
import ecdsa.ellipticcurve
from Crypto import __version__ as pycryptodome_version

from _cli import provenance  # a sibling module: scripts run with this folder on sys.path

from wmark.files import atomic_write
from wmark.protocol.hazmat.commitment import Scheme, commit, verify
from wmark.protocol.hazmat.hashing import tagged_hash
from wmark.protocol.items import encode_image
from wmark.protocol.patterns import render

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "commitments.json"
SEED = tagged_hash("wmark/bench/commitments/v1", b"item 0")


def messages() -> list[tuple[str, bytes]]:
    out = [("derived seed", SEED)]
    for shape in ((1, 8, 8), (3, 32, 32)):
        name = "image " + "x".join(map(str, shape))
        out.append((name, encode_image(shape, render(SEED, shape).tobytes())))
    return out


def best_time_per_op(fn: Callable[[], object], *, repeat: int, min_time: float) -> float:
    """Seconds per call: the best of ``repeat`` batches of at least ``min_time`` seconds each."""
    number = 1
    while True:  # calibrate the batch size, as timeit.Timer.autorange does
        start = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            break
        number *= 2 if elapsed > min_time / 10 else 10
    best = elapsed / number
    for _ in range(repeat - 1):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def measure(repeat: int, min_time: float) -> list[dict]:
    rows = []
    for name, message in messages():
        floor = best_time_per_op(lambda: hashlib.sha256(message).digest(), repeat=repeat, min_time=min_time)
        rows.append(_row(name, message, "raw sha256", "-", floor, floor))
        for scheme in Scheme:
            c, o = commit(message, scheme)
            assert verify(c, message, o), "a fresh commitment must open"
            t_commit = best_time_per_op(lambda: commit(message, scheme), repeat=repeat, min_time=min_time)
            t_verify = best_time_per_op(lambda: verify(c, message, o), repeat=repeat, min_time=min_time)
            rows.append(_row(name, message, "commit", scheme.value, t_commit, floor))
            rows.append(_row(name, message, "verify", scheme.value, t_verify, floor))
    return rows


def _row(name: str, message: bytes, op: str, scheme: str, seconds: float, floor: float) -> dict:
    return {
        "message": name,
        "bytes": len(message),
        "scheme": scheme,
        "operation": op,
        "seconds_per_op": seconds,
        "ops_per_second": 1.0 / seconds,
        "ratio_to_raw_sha256": seconds / floor,
    }


def table(rows: list[dict]) -> str:
    header = f"{'message':<14} {'bytes':>6}  {'operation':<16} {'ops/s':>12} {'us/op':>10} {'x raw sha256':>13}"
    lines = [header, "-" * len(header)]
    previous = None
    for r in rows:
        first = r["message"] != previous
        previous = r["message"]
        op = r["operation"] if r["scheme"] == "-" else f"{r['scheme']} {r['operation']}"
        lines.append(f"{r['message'] if first else '':<14} {r['bytes'] if first else '':>6}  {op:<16} "
                     f"{r['ops_per_second']:>12,.0f} {r['seconds_per_op'] * 1e6:>10.2f} "
                     f"{r['ratio_to_raw_sha256']:>12.1f}x")
    return "\n".join(lines)


def environment() -> dict:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "openssl": ssl.OPENSSL_VERSION,
        "ecdsa": ecdsa.__version__,
        "ecdsa_gmpy": bool(getattr(ecdsa.ellipticcurve, "GMPY", False)),
        "pycryptodome": pycryptodome_version,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument("--repeat", type=int, default=5, help="timed batches per figure (the best is kept)")
    parser.add_argument("--min-time", type=float, default=0.1, help="seconds per timed batch")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.min_time <= 0:
        parser.error("--repeat must be >= 1 and --min-time > 0")

    started = time.perf_counter()
    rows = measure(args.repeat, args.min_time)
    env = environment()
    print(f"commitment throughput (best of {args.repeat} batches of >= {args.min_time} s; "
          f"Python {env['python']}, {env['openssl']}, ecdsa {env['ecdsa']}"
          f"{' with gmpy2' if env['ecdsa_gmpy'] else ''})")
    print(table(rows))
    elapsed = time.perf_counter() - started
    result = {
        "benchmark": "commitments",
        "provenance": provenance([], "cpu"),  # the messages are fixed bytes; nothing is seeded
        "method": f"best of {args.repeat} batches, each of at least {args.min_time} s; "
                  "ratio = time per op / time of hashlib.sha256 on the same message",
        "environment": env,
        "elapsed_seconds": elapsed,
        "results": rows,
    }
    atomic_write(args.out, (json.dumps(result, indent=2) + "\n").encode("utf-8"))
    print(f"wrote {args.out} ({elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
