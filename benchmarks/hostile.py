"""Hostile inputs: what a crafted file costs the party that checks it (docs/design.md section 4).

Each case runs the real command as a process under ``/usr/bin/time -v`` and
reports wall time, CPU time and peak memory, beside a baseline measured in
the same run:

* ``audit-crafted``: ``wmark-verifier audit`` of a transcript of n = k = 10,000
  imported 1x1 items (4 MB, every signature valid: the attacker owns both
  keys), with p0 = 123457/999983 (within the limits: audited in full) and with
  the red team's p0 = 123456789011/999999999989 (refused before any tail).
  Baseline: the same audit of a k = 100 transcript.
* ``model-oversized``: ``wmark-verifier challenge --model`` of a directory whose
  188-byte model.json names ViT-H/14 (632 M parameters), refused from its
  architecture's shapes on torch's meta device.  Baseline: importing torch and
  torchvision alone.

    python benchmarks/hostile.py            # about a minute on an idle machine

Prints a table and writes benchmarks/results/hostile.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

from wmark.files import atomic_write
from wmark.protocol.decision import MAX_P0_DENOMINATOR
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.keygen import keygen_imported
from wmark.protocol.messages import ModelRef, Verdict, decode
from wmark.protocol.session import ProverSession, VerifierSession
from wmark.protocol.transcript import Transcript

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "hostile.json"
WITHIN_LIMITS_P0 = Fraction(123457, 999983)
RED_TEAM_P0 = Fraction(123456789011, 999999999989)
HUGE_CONFIG = (b'{"arch":"torchvision:vit_h_14","input_shape":[3,224,224],"num_classes":1000,"preprocessing":'
               b'{"mean":[0.5,0.5,0.5],"std":[0.25,0.25,0.25]},"type":"wmark/model","version":1,"vk_digest":null}')


def crafted_transcript(path: Path, *, n: int, p0: Fraction) -> None:
    """A transcript whose every signature is valid (the attacker owns both keys): n = k
    imported 1x1 items, all matched, decided with ``p0`` or, beyond the limits a
    verifier would accept, decided with 1/10 and re-signed naming ``p0``."""
    owner, verifier = SigningKey.generate(), SigningKey.generate()
    pair = keygen_imported(owner=owner, images=[bytes([i % 256]) for i in range(n)],
                           labels=[i % 10 for i in range(n)], num_classes=10, input_shape=(1, 1, 1))
    decided = p0 if p0.denominator <= MAX_P0_DENOMINATOR else Fraction(1, 10)
    session = VerifierSession(pair.verification_key, verifier, ModelRef(sha256=bytes(32)), n, p0=decided)
    prover = ProverSession(pair.marking_key, pair.verification_key, owner)
    challenge = session.challenge()
    prover.receive(challenge)
    reveal = prover.reveal()
    event = session.receive(reveal)
    honest = decode(session.decide({item.index: item.label for item in event.items}), (Verdict,))
    verdict = replace(honest, p0=p0).sign(verifier) if p0 != decided else honest.sign(verifier)
    atomic_write(path, Transcript(pair.signed_vk, challenge, reveal, verdict).to_json())


def timed(command: list[str]) -> dict:
    """Run ``command`` under /usr/bin/time -v: exit code, wall and CPU seconds, peak RSS."""
    result = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    stats = dict(re.findall(r"^\s*(.+?): ([^:]+|[0-9:.]+)$", result.stderr, re.M))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([0-9:.]+)", result.stderr)
    minutes, seconds = (wall.group(1) if wall else "0:0").rsplit(":", 1)
    return {"command": " ".join(Path(c).name if c.startswith(str(BIN)) else c for c in command),
            "exit": result.returncode,
            "wall_s": round(float(minutes.split(":")[-1]) * 60 + float(seconds), 2),
            "cpu_s": round(float(stats.get("User time (seconds)", 0)) + float(stats.get("System time (seconds)", 0)), 2),
            "peak_rss_mb": round(int(stats.get("Maximum resident set size (kbytes)", 0)) / 1024, 1),
            "message": next((line for line in result.stderr.splitlines() if "error" in line), "")[:160]}


def measure(work: Path) -> list[dict]:
    rows = []
    for name, n, p0 in (("baseline: k = 100", 100, WITHIN_LIMITS_P0),
                        ("k = 10,000, p0 within limits", 10_000, WITHIN_LIMITS_P0),
                        ("k = 10,000, red team's p0", 10_000, RED_TEAM_P0)):
        path = work / f"crafted-{n}-{p0.denominator}.json"
        crafted_transcript(path, n=n, p0=p0)
        rows.append({"case": "audit-crafted", "variant": name, "bytes": path.stat().st_size,
                     **timed([str(BIN / "wmark-verifier"), "audit", str(path)])})
    model = work / "huge"
    model.mkdir()
    (model / "model.json").write_bytes(HUGE_CONFIG)
    (model / "model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    rows.append({"case": "model-oversized", "variant": "baseline: import torch, torchvision", "bytes": 0,
                 **timed([sys.executable, "-c", "import torch, torchvision.models"])})
    vk = work / "vk.json"
    owner = SigningKey.generate()
    from wmark.protocol.keygen import keygen_derived

    atomic_write(vk, keygen_derived(owner=owner, n=10, num_classes=10, input_shape=(1, 8, 8)).signed_vk.to_json())
    rows.append({"case": "model-oversized", "variant": "ViT-H/14 config (188 bytes)", "bytes": len(HUGE_CONFIG),
                 **timed([str(BIN / "wmark-verifier"), "challenge", "--vk", str(vk), "--model", str(model),
                          "--k", "5", "--out", str(work / "c.json"), "--identity", str(work / "v.pem")])})
    return rows


def table(rows: list[dict]) -> str:
    header = "| case | variant | input bytes | exit | wall s | CPU s | peak RSS MB |"
    lines = [header, "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['case']} | {r['variant']} | {r['bytes']:,} | {r['exit']} | {r['wall_s']} | {r['cpu_s']} | "
              f"{r['peak_rss_mb']} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file (.md beside it)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="wmark-hostile-") as tmp:
        rows = measure(Path(tmp))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    load = os.getloadavg()
    result = {
        "benchmark": "hostile",
        "command": "python benchmarks/hostile.py",
        "commit": commit,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "load_average_1_5_15": [round(x, 1) for x in load]},
        "seeds": "none: every key is drawn from the OS CSPRNG; the costs do not depend on it",
        "elapsed_seconds": round(time.perf_counter() - started, 1),
        "results": rows,
    }
    text = table(rows)
    print(text)
    atomic_write(args.out, (json.dumps(result, indent=2) + "\n").encode("utf-8"))
    atomic_write(args.out.with_suffix(".md"), (
        f"# Hostile inputs\n\n`{result['command']}` at {commit[:12]} on {result['machine']['platform']}, "
        f"{result['machine']['cpus']} CPUs, load average {result['machine']['load_average_1_5_15']} "
        f"(shared machine), {result['date']}.\n\n{text}\n").encode("utf-8"))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
