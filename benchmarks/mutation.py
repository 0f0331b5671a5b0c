"""Mutation testing of the modules that decide (docs/design.md section 4).

Runs cosmic-ray over each deciding module with that module's fast tests and
writes benchmarks/results/mutation.md and mutation.json: mutants generated,
run, killed and surviving per module, each survivor with its diff and, when
it is an equivalent mutant, why.  The baseline is the same test command on the
unmutated tree, which must pass (and sets the per-mutant timeout).

Why cosmic-ray, not mutmut 3: cosmic-ray applies each mutation to the file in
place and runs an arbitrary test command, so the editable install's
``[tool.setuptools] package-dir`` mapping (protocol/ is wmark.protocol) imports
the mutant as it would import the original.  mutmut 3 copies the tree into
``mutants/`` and names its trampolines after the file path (protocol.decision),
which matches neither the import path the package-dir mapping gives
(wmark.protocol.decision) nor the folder the editable finder resolves to.

Budget (the CPU is shared): only the functions that decide are mutated
(FOCUS below), and past ``--budget`` mutants per module a deterministic sample
(by a hash of the mutation's position and operator) is run; the report says
how many were sampled out.  Never run this beside other tests of this tree:
while it runs, the module under test is mutated on disk.

    nice -n 19 python benchmarks/mutation.py [--only decision,items] [--budget 20] [--strict-budget 60]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
# The torch-importing conftest would cost seconds per mutant; the profiles
# plugin keeps hypothesis derandomised without it.
PYTEST = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--noconftest",
          "-p", "tests.hypothesis_profiles"]


@dataclass(frozen=True)
class Target:
    name: str
    path: str
    focus: tuple[str, ...]  # the functions (cosmic-ray's definition names) that decide
    tests: tuple[str, ...]
    strict: bool = False  # the acceptance asks for 0 surviving non-equivalent mutants here


TARGETS = (
    Target("decision", "protocol/decision.py", ("_tails", "tail", "threshold", "accepted", "decide"),
           ("tests/test_deciding_checks.py", "tests/test_decision.py"), strict=True),
    Target("items", "protocol/items.py", ("open_item", "vrf_alpha", "label_message", "seeded"),
           ("tests/test_deciding_checks.py", "tests/test_session.py"), strict=True),
    Target("sampling", "protocol/hazmat/sampling.py", ("_take", "randbelow", "sample_subset", "derive_label"),
           ("tests/test_deciding_checks.py", "tests/test_session.py", "tests/test_vrf.py")),
    Target("session", "protocol/session.py", ("null_match_probability", "_check_answer", "check_reveal",
                                              "check_zk_reveal", "zk_results", "check_challenge", "build_verdict"),
           ("tests/test_deciding_checks.py", "tests/test_session.py")),
    Target("transcript", "protocol/transcript.py", ("audit", "_expected_results"),
           ("tests/test_deciding_checks.py", "tests/test_session.py"), strict=True),
    Target("dsse", "protocol/hazmat/dsse.py", ("pae", "verify"), ("tests/test_dsse.py",)),
    Target("commitment", "protocol/hazmat/commitment.py", ("check", "verify", "_compute", "_hash_commit"),
           ("tests/test_commitment.py",)),
    Target("vrf", "protocol/hazmat/vrf.py", ("verify", "proof_to_hash", "_challenge", "_decode_proof",
                                             "_string_to_point", "_gamma_to_hash"), ("tests/test_vrf.py",)),
    Target("ledger", "prover/ledger.py", ("answer",), ("tests/test_deciding_checks.py", "tests/test_ledger.py"),
           strict=True),
    Target("transparency", "protocol/transparency.py", ("verify_receipt",), ("tests/test_registry.py",)),
)

# Survivors judged equivalent (the mutant behaves as the original on every
# input the code can meet), keyed by (target, operator, source line as it
# stands), with the reason.  Filled in from the report, one by one.
EQUIVALENT: dict[tuple[str, str, str], str] = {}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def sample_key(spec) -> str:
    text = f"{spec.module_path}:{spec.start_pos}:{spec.operator_name}:{spec.occurrence}"
    return hashlib.sha256(text.encode()).hexdigest()


def baseline(target: Target) -> float:
    start = time.monotonic()
    done = subprocess.run([*PYTEST, *target.tests], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"baseline fails for {target.name}; fix the tests first:\n{done.stdout[-2000:]}")
    return time.monotonic() - start


def run_target(target: Target, budget: int, work: Path) -> dict:
    seconds = baseline(target)
    config = work / f"{target.name}.toml"
    db_path = work / f"{target.name}.sqlite"
    command = " ".join(PYTEST + list(target.tests))
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{target.path}"\n'
        f"timeout = {max(30.0, 4 * seconds):.0f}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(command)}\n"
        '[cosmic-ray.distributor]\nname = "local"\n')
    cosmic = [sys.executable, "-m", "cosmic_ray.cli"]
    subprocess.run([*cosmic, "init", str(config), str(db_path)], cwd=ROOT, check=True, capture_output=True)
    with use_db(str(db_path), WorkDB.Mode.open) as db:
        items = db.work_items
        focus = [i for i in items if i.mutations[0].definition_name in target.focus]
        keep = {i.job_id for i in sorted(focus, key=lambda i: sample_key(i.mutations[0]))[:budget]}
        skipped = [i.job_id for i in items if i.job_id not in keep]
        if skipped:
            db.set_multiple_results(skipped, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
    start = time.monotonic()
    subprocess.run([*cosmic, "exec", str(config), str(db_path)], cwd=ROOT, check=True, capture_output=True)
    elapsed = time.monotonic() - start
    dirty = git("status", "--porcelain", "--", target.path)
    if dirty:
        raise SystemExit(f"{target.path} was left mutated: {dirty} (restore it with git checkout)")
    survivors, counts = [], {"killed": 0, "survived": 0, "incompetent": 0, "timeout": 0}
    lines = (ROOT / target.path).read_text().splitlines()
    with use_db(str(db_path), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome is WorkerOutcome.SKIPPED:
                continue
            spec = item.mutations[0]
            if result.test_outcome is TestOutcome.KILLED:
                counts["timeout" if result.output and "timeout" in result.output.lower() else "killed"] += 1
            elif result.test_outcome is TestOutcome.INCOMPETENT:
                counts["incompetent"] += 1
            else:
                counts["survived"] += 1
                source = lines[spec.start_pos[0] - 1].strip()
                operator = spec.operator_name.split("/")[-1]
                survivors.append({
                    "function": spec.definition_name, "line": spec.start_pos[0], "operator": operator,
                    "source": source, "diff": result.diff or "",
                    "equivalent": EQUIVALENT.get((target.name, operator, source)),
                })
    survivors.sort(key=lambda s: (s["line"], s["operator"]))
    return {"target": target.name, "path": target.path, "strict": target.strict, "focus": list(target.focus),
            "tests": list(target.tests), "generated": len(items), "in_focus": len(focus), "run": len(keep),
            "sampled_out": len(focus) - len(keep), "baseline_s": round(seconds, 2), "elapsed_s": round(elapsed, 1),
            **counts, "survivors": survivors}


def write_report(runs: list[dict], meta: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "mutation.json").write_text(json.dumps({**meta, "targets": runs}, indent=1) + "\n")
    out = ["# Mutation testing of the deciding modules", "",
           f"commit `{meta['commit']}` ({meta['date']}, {meta['machine']}); tool {meta['tool']};",
           f"command `{meta['command']}`; seeds: hypothesis profile \"ci\" (derandomised), "
           "sample order sha256 of each mutation's position and operator.", "",
           "| module | generated | in focus | run | sampled out | killed | timeout | incompetent | survived | "
           "unexplained | baseline s | time s |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        unexplained = sum(1 for s in r["survivors"] if not s["equivalent"])
        out.append(f"| {r['path']}{' (strict)' if r['strict'] else ''} | {r['generated']} | {r['in_focus']} | "
                   f"{r['run']} | {r['sampled_out']} | {r['killed']} | {r['timeout']} | {r['incompetent']} | "
                   f"{r['survived']} | {unexplained} | {r['baseline_s']} | {r['elapsed_s']} |")
    out += ["", "Focus: only the functions that decide are mutated; \"sampled out\" mutants of those functions "
            "were not run (budget). Strict modules must have no unexplained survivor.", ""]
    for r in runs:
        if not r["survivors"]:
            continue
        out += [f"## Survivors in {r['path']}", ""]
        for s in r["survivors"]:
            why = s["equivalent"] or "NOT EXPLAINED: a missing test"
            out += [f"- line {s['line']} in `{s['function']}`, {s['operator']}: `{s['source']}` — {why}"]
        out.append("")
    (RESULTS / "mutation.md").write_text("\n".join(out) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated target names (default: all)")
    parser.add_argument("--budget", type=int, default=20, help="most mutants run per module (default 20)")
    parser.add_argument("--strict-budget", type=int, default=60,
                        help="most mutants run per strict module (default 60)")
    args = parser.parse_args()
    chosen = [t for t in TARGETS if not args.only or t.name in args.only.split(",")]
    if git("status", "--porcelain", "--", *(t.path for t in chosen)):
        raise SystemExit("the modules to mutate have uncommitted changes; commit them first")
    meta = {"commit": git("rev-parse", "HEAD"), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, Python "
                       f"{platform.python_version()}",
            "tool": "cosmic-ray " + __import__("importlib.metadata").metadata.version("cosmic-ray"),
            "command": "python benchmarks/mutation.py " + " ".join(sys.argv[1:]), "budget": args.budget, "strict_budget": args.strict_budget}
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for target in chosen:
            print(f"{target.name}: mutating {target.path} ...", flush=True)
            runs.append(run_target(target, args.strict_budget if target.strict else args.budget, Path(tmp)))
            r = runs[-1]
            print(f"  {r['run']} run of {r['in_focus']} in focus ({r['generated']} generated): "
                  f"{r['killed']} killed, {r['timeout']} timeout, {r['survived']} survived, {r['elapsed_s']} s",
                  flush=True)
    write_report(runs, meta)
    print(f"wrote {RESULTS / 'mutation.md'}")


if __name__ == "__main__":
    main()
