"""Hostile inputs: what a crafted file costs the party that checks it (docs/design.md section 4).

Each case runs the real command as a process under ``/usr/bin/time -v`` and
reports wall time, CPU time and peak memory, beside a baseline measured in
the same run:

* ``audit-crafted``: ``wmark-verifier audit`` of a transcript of n = k = 10,000
  imported 1x1 items (4 MB, every signature valid: the attacker owns both
  keys), with p0 = 123457/999983 (within the limits: audited in full) and with
  the red team's p0 = 123456789011/999999999989 (refused before any tail).
  Baseline: the same audit of a k = 100 transcript.
* ``serve``: an honest ``wmark-verifier run`` (k = 20) against ``wmark-prover serve``,
  alone, then while 200 idle connections are kept open (each reopened when
  the server closes it) and 32 frames of 32 MiB of ``[{},{},...]`` are sent;
  the peak memory is the server's.
* ``model-oversized``: ``wmark-verifier challenge --model`` of a directory whose
  188-byte model.json names ViT-H/14 (632 M parameters), refused from the
  committed table of architecture sizes before torch is imported
  (docs/design.md section 5).  Baseline: importing torch and torchvision alone,
  which the refusal no longer pays.

    python benchmarks/hostile.py            # about a minute on an idle machine

Prints a table and writes benchmarks/results/hostile.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import select
import socket
import subprocess
import sys
import tempfile
import threading
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


def _connect(port: int, source: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))  # 127.0.0.0/8 is all loopback: the attacker is another peer address
    sock.connect(("127.0.0.1", port))
    return sock


def _slowloris(port: int, count: int, stop: threading.Event, opened: list[int]) -> None:
    """Keep ``count`` idle connections open from 127.0.0.2, reopening each one closed."""
    socks: list[socket.socket] = []
    while not stop.is_set():
        while len(socks) < count:
            try:
                socks.append(_connect(port, "127.0.0.2"))
                opened[0] += 1
            except OSError:
                break
        ready, _, _ = select.select(socks, [], [], 0.2)
        for sock in ready:
            sock.close()
            socks.remove(sock)
    for sock in socks:
        sock.close()


def _flood(port: int, frames: int, size: int) -> None:
    """``frames`` connections from 127.0.0.3, each sending a frame of ``size`` bytes of ``[{},{},...]``."""
    body = (b"[" + b"{}," * (size // 3))[:size - 1] + b"]"
    for _ in range(frames):
        try:
            with _connect(port, "127.0.0.3") as sock:
                sock.sendall(size.to_bytes(4, "big") + body)
        except OSError:
            pass  # refused from its header: the server closed the connection


def measure_server(work: Path, *, connections: int, frames: int, frame_bytes: int) -> list[dict]:
    """An honest `wmark-verifier run` against `wmark-prover serve`, alone and under attack."""
    from wmark.protocol.hazmat.identity import save_signing_key
    from wmark.protocol.keyfile import save_marking_key
    from wmark.protocol.keygen import keygen_derived
    from wmark.watermark.modelio import ModelConfig, Preprocessing, new_model, save_model

    owner = SigningKey.generate()
    pair = keygen_derived(owner=owner, n=100, num_classes=10, input_shape=(1, 8, 8))
    keys = work / "keys"
    save_signing_key(keys / "owner.pem", owner)
    save_marking_key(keys / "mk.wmk", pair.marking_key, None)
    atomic_write(keys / "vk.json", pair.signed_vk.to_json())
    # Any model will do: a session is served when a transcript is written, whatever it decides.
    save_model(work / "model", new_model(ModelConfig("small_cnn", 10, (1, 8, 8), Preprocessing((0.5,), (0.25,)))))
    serve_out = (work / "serve.out").open("wb")
    server = subprocess.Popen([str(BIN / "wmark-prover"), "serve", "--mk", str(keys / "mk.wmk"), "--vk",
                               str(keys / "vk.json"), "--port", "0", "--budget", "1", "--ledger",
                               str(work / "ledger.sqlite")], stdout=serve_out, stderr=subprocess.DEVNULL)
    rows = []
    try:
        while "listening on" not in (work / "serve.out").read_text():
            assert server.poll() is None, "serve exited"
            time.sleep(0.1)
        port = int((work / "serve.out").read_text().split("listening on ")[1].split()[0].rsplit(":", 1)[1])
        for attack in ("none (baseline)", f"slowloris {connections} + flood {frames} x {frame_bytes >> 20} MiB"):
            stop, opened = threading.Event(), [0]
            threads = []
            if attack.startswith("slowloris"):
                threads = [threading.Thread(target=_slowloris, args=(port, connections, stop, opened), daemon=True),
                           threading.Thread(target=_flood, args=(port, frames, frame_bytes), daemon=True)]
                for t in threads:
                    t.start()
                time.sleep(3)
            served, start = 0, time.monotonic()
            run = timed([str(BIN / "wmark-verifier"), "run", "--connect", f"127.0.0.1:{port}", "--vk",
                         str(keys / "vk.json"), "--model", str(work / "model"), "--k", "20", "--out",
                         str(work / "verdict.json"), "--identity", str(work / "v.pem")])
            took = time.monotonic() - start
            served += run["exit"] in (0, 1) and (work / "verdict.json").exists()
            stop.set()
            for t in threads:
                t.join(30)
            (work / "verdict.json").unlink(missing_ok=True)
            hwm = next((line.split()[1] for line in Path(f"/proc/{server.pid}/status").read_text().splitlines()
                        if line.startswith("VmHWM")), "0")
            rows.append({"case": "serve", "variant": attack, "bytes": frames * frame_bytes if threads else 0,
                         "exit": run["exit"], "wall_s": round(took, 2), "cpu_s": run["cpu_s"],
                         "peak_rss_mb": round(int(hwm) / 1024, 1), "sessions_served": int(served),
                         "attacker_connections_opened": opened[0], "message": run["message"],
                         "command": "wmark-verifier run --k 20 (peak RSS: the server's)"})
    finally:
        server.terminate()
        server.wait(30)
        serve_out.close()
    return rows


def table(rows: list[dict]) -> str:
    header = "| case | variant | input bytes | exit | wall s | CPU s | peak RSS MB | sessions served |"
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['case']} | {r['variant']} | {r['bytes']:,} | {r['exit']} | {r['wall_s']} | {r['cpu_s']} | "
              f"{r['peak_rss_mb']} | {r.get('sessions_served', '-')} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file (.md beside it)")
    parser.add_argument("--connections", type=int, default=200, help="slowloris connections kept open")
    parser.add_argument("--frames", type=int, default=32, help="oversized frames sent")
    parser.add_argument("--frame-mib", type=int, default=32, help="size of each oversized frame, MiB")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="wmark-hostile-") as tmp:
        rows = measure(Path(tmp))
    with tempfile.TemporaryDirectory(prefix="wmark-hostile-") as tmp:
        rows += measure_server(Path(tmp), connections=args.connections, frames=args.frames,
                               frame_bytes=args.frame_mib << 20)
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
