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
(each target's focus below), and past ``--budget`` mutants per module a deterministic sample
(by a hash of the mutation's position and operator) is run; the report says
how many were sampled out; a ``--strict-budget`` above the focus runs every
mutant.  Each mutant's tests run in a fork of benchmarks/pytest_forkserver.py,
which has the third-party imports done (about half the cost of a fresh
interpreter: ``--cost 3`` measures both), with ``-x`` (a kill needs one failure)
and a timeout of four times the baseline.  Never run this beside other tests of
this tree: while it runs, the module under test is mutated on disk (run it in a
clone of the commit to keep working meanwhile).

    nice -n 19 python benchmarks/mutation.py [--only decision,items] [--budget 20] [--strict-budget 60]
    nice -n 19 python benchmarks/mutation.py --append --recheck   # the survivors again, after new tests
    nice -n 19 python benchmarks/mutation.py --named              # the four named mutations, by hand
    nice -n 19 python benchmarks/mutation.py --cost 3 --only decision   # per-mutant cost, both ways
"""

from __future__ import annotations

import argparse
import ast
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
# plugin keeps hypothesis derandomised without it.  -x: a kill needs one failure.
PYTEST_ARGS = ["-x", "-q", "-p", "no:cacheprovider", "--noconftest", "-p", "tests.hypothesis_profiles"]
PYTEST = [sys.executable, "-m", "pytest", *PYTEST_ARGS]
FORKSERVER = ROOT / "benchmarks" / "pytest_forkserver.py"
# The limit on a run of the unmutated tests (the baseline, the cost measurement).
UNMUTATED_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Target:
    name: str
    path: str
    focus: tuple[str, ...]  # the functions (cosmic-ray's definition names) that decide
    tests: tuple[str, ...]
    strict: bool = False  # the acceptance asks for 0 surviving non-equivalent mutants here


TARGETS = (
    # The decision rule in two targets, each reported on its own: the decision (tail, tau, accept) and
    # the exact binomial arithmetic under it (bounds, terms, the threshold's scan).
    Target("decision", "protocol/decision.py", ("tail", "threshold", "accepted", "decide"),
           ("tests/test_deciding_checks.py", "tests/test_decision.py"), strict=True),
    Target("decision-terms", "protocol/decision.py", ("_check", "_terms", "_scan"),
           ("tests/test_deciding_checks.py", "tests/test_decision.py"), strict=True),
    Target("items", "protocol/items.py", ("open_item", "vrf_alpha", "label_message", "seeded"),
           ("tests/test_deciding_checks.py", "tests/test_session.py"), strict=True),
    Target("sampling", "protocol/hazmat/sampling.py", ("_take", "randbelow", "sample_subset", "derive_label"),
           ("tests/test_sampling_vectors.py", "tests/test_deciding_checks.py", "tests/test_session.py",
            "tests/test_vrf.py")),
    Target("session", "protocol/session.py", ("null_match_probability", "_check_answer", "check_reveal",
                                              "check_zk_reveal", "zk_results", "check_challenge", "build_verdict"),
           ("tests/test_deciding_checks.py", "tests/test_session.py")),
    Target("transcript", "protocol/transcript.py", ("audit", "audit_with_key", "_expected_results"),
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
_ENUM = "equivalent: enum members are singletons, so == and `is` (!= and `is not`) agree on them"
EQUIVALENT: dict[tuple[str, str, str], str] = {
    ("items", "ReplaceComparisonOperator_IsNot_NotEq", "return self is not TriggerKind.IMPORTED"): _ENUM,
    ("items", "ReplaceComparisonOperator_Is_Eq", "if kind is TriggerKind.MARGIN:"): _ENUM,
    ("ledger", "ReplaceComparisonOperator_IsNot_NotEq", "if session.state is not ProverState.DECIDE:"): _ENUM,
    ("ledger", "ReplaceBinaryOperator_Mul_Div",
     "def answer(self, session: ProverSession, event: ChallengeReceived, challenge: dsse.Envelope, *,"):
        "equivalent: `/` in place of `*` only lets `budget` be passed by position too; every call names it",
    ("session", "NumberReplacer",
     "f\"{missing[:8]}{', or out of order' if not extra and not missing else ''})\")"):
        "equivalent for every decision: it changes only how many missing indices the error message lists",
    ("commitment", "ReplaceComparisonOperator_Is_LtE", "if scheme is Scheme.HASH:"):
        "equivalent: Scheme has two members, and s <= \"hash\" holds only for s = \"hash\" (\"pedersen\" sorts after)",
    ("transparency", "NumberReplacer",
     "raise InvalidSignature(f\"receipt was issued by log SHA256:{receipt.log_keyid[:16]}…, \""):
        "equivalent for every decision: it changes only how much of a key id the error message shows",
    ("session", "ReplaceComparisonOperator_LtE_Eq", "if not 0 <= item.label < vk.num_classes:"):
        "NOT RE-RUN since run 4 (session.py's lines moved, so --recheck cannot find the mutant); the label-range "
        "check now has tests (tests/test_deciding_checks.py, zero-knowledge reveals of labels L and L + 1; "
        "removing the check by hand fails them) and honest ZK runs in tests/test_session.py refuse `==`",
    ("session", "ReplaceComparisonOperator_Is_IsNot", "if challenge.zk is None or vk.zk is None:"):
        "NOT RE-RUN since run 4 (session.py's lines moved, so --recheck cannot find the mutants); both are "
        "killed by hand now (each `is not` refuses the honest ZK runs of tests/test_session.py), and removing "
        "either half of the check fails a test in tests/test_deciding_checks.py",
}



def _on_line(target: str, source: str, why: str, *operators: str) -> dict[tuple[str, str, str], str]:
    return {(target, operator, source): why for operator in operators}


_SIDE = ("equivalent: the branch only picks which side of the binomial sum is added up (a speed choice); "
         "both sides are exact integer sums, so every tail is the same Fraction whichever side runs")
_CMP = ("ReplaceComparisonOperator_Gt_GtE", "ReplaceComparisonOperator_Gt_Lt", "ReplaceComparisonOperator_Gt_LtE",
        "ReplaceComparisonOperator_Gt_Eq", "ReplaceComparisonOperator_Gt_NotEq", "ReplaceComparisonOperator_Gt_Is",
        "ReplaceComparisonOperator_Gt_IsNot")
_DIV = tuple(f"ReplaceBinaryOperator_FloorDiv_{op}" for op in
             ("Add", "Sub", "Mul", "Div", "Mod", "Pow", "LShift", "RShift", "BitOr", "BitXor", "BitAnd"))
EQUIVALENT |= _on_line("decision", "if matches > k // 2:  # sum the shorter side", _SIDE,
                       *_CMP, *_DIV, "AddNot", "NumberReplacer")
EQUIVALENT |= _on_line(
    "decision", "if matches <= 0:",
    "equivalent: a shortcut; for matches <= 0 the general sum subtracts nothing from the whole and returns "
    "1 too, so moving the shortcut's edge to < 0, == 0 or <= -1 changes no tail",
    "ReplaceComparisonOperator_LtE_Lt", "ReplaceComparisonOperator_LtE_Eq", "NumberReplacer")
EQUIVALENT |= _on_line(
    "decision", "upper = whole - sum(term for j, term in itertools.takewhile(lambda jt: jt[0] < matches,",
    "equivalent: j counts up from 0 and 1 <= matches here, so `j != matches` stops the sum at the same j "
    "as `j < matches` (`is not` does not: tests/test_deciding_checks.py kills it with j beyond 256)",
    "ReplaceComparisonOperator_Lt_NotEq")

EQUIVALENT |= _on_line(
    "decision-terms", "if j < k:",
    "equivalent: at j = k (the last pass) `is not` computes one more term, (k - k) * a // ... = 0, which is "
    "never yielded; b > 0 since p0 < 1, so no division by zero", "ReplaceComparisonOperator_Lt_IsNot")
EQUIVALENT |= _on_line(
    "decision-terms", "for j in range(k, -1, -1):",
    "equivalent: with the stop at ~1 = -2 a term for j = -1 follows, which nothing reads: the downward sum in "
    "tail stops at matches >= 1, and the threshold's scan breaks at t = 0 at the latest (its tail is 1 > "
    "2^-lambda)", "ReplaceUnaryOperator_USub_Invert")
EQUIVALENT |= _on_line(
    "decision-terms", "for j in range(k + 1):",
    "equivalent: the upward terms are summed only while j < matches <= k // 2, so the terms from j = k // 2 "
    "on are never read", "ReplaceBinaryOperator_Add_FloorDiv", "ReplaceBinaryOperator_Add_Sub",
    "ReplaceBinaryOperator_Add_Mul", "ReplaceBinaryOperator_Add_Pow", "ReplaceBinaryOperator_Add_BitOr",
    "ReplaceBinaryOperator_Add_BitXor")
EQUIVALENT |= _on_line(
    "decision-terms", "if j < k:",
    "equivalent: for j in range(k + 1), `!=` is `<`, and `<=` computes one more term at j = k, (k - k) * a // "
    "... = 0, which is never yielded", "ReplaceComparisonOperator_Lt_LtE", "ReplaceComparisonOperator_Lt_NotEq")
EQUIVALENT |= _on_line(
    "decision-terms", "for j in range(k, -1, -1):",
    "equivalent: a stop of 0 (-1 made 0, or `not 1`) drops the j = 0 term and a stop of -2 adds one for j = -1, "
    "and neither is read: the downward sum in tail stops at matches >= 1, the threshold's scan breaks at t = 0 at "
    "the latest (the whole sum times 2^lambda exceeds d^k), and without the j = 0 term it ends at t = 1 with the "
    "same tau, a decision at 0 matches then taking its p-value, 1, from tail (the step's mutants, a 0 or -2 "
    "step, are killed)", "NumberReplacer", "ReplaceUnaryOperator_USub_Not")
EQUIVALENT |= _on_line(
    "decision-terms", "for j in range(k + 1):",
    "equivalent: the upward terms are summed only while j < matches <= k // 2, so any stop from k // 2 on (k, "
    "k + 2, k << 1, k >> 1 = k // 2) yields every term that is read", "NumberReplacer",
    "ReplaceBinaryOperator_Add_LShift", "ReplaceBinaryOperator_Add_RShift")
EQUIVALENT |= _on_line(
    "decision-terms", "def _terms(k: int, p0: Fraction, *, downward: bool) -> Iterator[tuple[int, int]]:",
    "equivalent: `/` in place of `*` only lets `downward` be passed by position too; every call names it",
    "ReplaceBinaryOperator_Mul_Div")
EQUIVALENT |= _on_line(
    "decision-terms", "if t == matches:",
    "equivalent for every decision: past 256 (ints not cached) `is` never holds, the scan records no tail, and "
    "decide sums the same exact tail apart (tail); only the cost changes", "ReplaceComparisonOperator_Eq_Is")
EQUIVALENT |= _on_line(
    "decision-terms", "break",
    "equivalent for every decision: once a tail exceeds 2^-lambda, later ones only grow, so tau is never "
    "updated again; the scan then also records the tail at matches below tau, which decide would otherwise "
    "sum apart to the same exact value; only the cost changes (all k + 1 <= MAX_K + 1 terms are read)",
    "ReplaceBreakWithContinue")
EQUIVALENT |= _on_line(
    "transcript", "if verdict.challenge_digest != challenge_digest or verdict.k != challenge.k:",
    "equivalent for every decision: a verdict naming another challenge digest (or k) that this cheap check "
    "lets through is still refused, later: the verdict rebuilt over the real challenge digest differs from it "
    "(results for another k differ from the reveal's items)",
    "ReplaceComparisonOperator_NotEq_Lt", "ReplaceComparisonOperator_NotEq_Gt", "ReplaceComparisonOperator_NotEq_Is")
EQUIVALENT |= _on_line(
    "transcript", "if verdict.model != challenge.model:",
    "equivalent for every decision: `is` never holds for two decoded ModelRefs, so this cheap check is skipped, "
    "and a verdict about another model is still refused at the end (the verdict rebuilt over the challenge's "
    "model differs from it)", "ReplaceComparisonOperator_NotEq_Is")
EQUIVALENT |= _on_line(
    "items", "if kind is TriggerKind.MARGIN:",
    "equivalent: the branch is reached only by seeded kinds, derived and margin, and of those only \"margin\" "
    "sorts >= \"margin\" (\"derived\" sorts before it)", "ReplaceComparisonOperator_Is_GtE")
EQUIVALENT |= _on_line(
    "items", "*,", "equivalent: `/` in place of `*` only lets open_item's options be passed by position too; "
    "every call names them", "ReplaceBinaryOperator_Mul_Div")
_KEYWORDS = ("equivalent: `/` in place of `*` only lets `margin` be passed by position too; every call names it")
EQUIVALENT |= _on_line(
    "transcript", "def audit(transcript: Transcript, *, margin: QuerySplit | None = None) -> AuditReport:", _KEYWORDS,
    "ReplaceBinaryOperator_Mul_Div")
EQUIVALENT |= _on_line(
    "transcript", ("def audit_with_key(transcript: Transcript, vk: VerificationKey, *, margin: QuerySplit | None = "
                   "None) -> AuditReport:"), _KEYWORDS, "ReplaceBinaryOperator_Mul_Div")


# The four mutations the acceptance names, applied by hand: each must make the
# default test command fail (here: the default tests of the modules concerned).
NAMED = (
    ("label re-derivation removed", "protocol/items.py",
     ("        if label != opening.label:\n"
      "            raise InvalidOpening(f\"{what}: label is not the one derived from the VRF output\")\n"), "",
     ("tests/test_deciding_checks.py", "tests/test_session.py")),
    ("`>=` to `>` at the threshold", "protocol/decision.py", "self.matches >= self.tau", "self.matches > self.tau",
     ("tests/test_deciding_checks.py", "tests/test_decision.py")),
    ("audit's p0 check removed", "protocol/transcript.py",
     "    if (vk.kind.seeded or vk.registry_bound) and verdict.p0 != null_match_probability(vk, None):",
     "    if False:",
     ("tests/test_deciding_checks.py",)),
    ("ledger's cumulative budget removed", "prover/ledger.py", "Fraction(len(prior) + len(new), self.n) > budget",
     "Fraction(len(new), self.n) > budget", ("tests/test_deciding_checks.py", "tests/test_ledger.py")),
)


def run_named() -> list[dict]:
    results = []
    for name, path, old, new, tests in NAMED:
        file = ROOT / path
        original = file.read_text()
        if original.count(old) != 1:
            raise SystemExit(f"{name}: the line to mutate is not (once) in {path}")
        try:
            file.write_text(original.replace(old, new))
            done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                                  check=False, cwd=ROOT, capture_output=True, text=True)
        finally:
            file.write_text(original)
        summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-200:]
        results.append({"mutation": name, "path": path, "tests": list(tests), "exit": done.returncode,
                        "summary": summary, "killed": done.returncode != 0})
        print(f"{name}: exit {done.returncode}, {summary}", flush=True)
    return results


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def machine() -> str:
    return f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}"


def sample_key(spec) -> str:
    text = f"{spec.module_path}:{spec.start_pos}:{spec.operator_name}:{spec.occurrence}"
    return hashlib.sha256(text.encode()).hexdigest()


def annotation_spans(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where the type annotations are: with ``from __future__ import annotations``
    they are never evaluated, so every mutant inside one is equivalent and not run."""
    spans = []
    for node in ast.walk(ast.parse(path.read_text())):
        notes = []
        if isinstance(node, ast.arg) and node.annotation is not None:
            notes.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            notes.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            notes.append(node.annotation)
        spans += [((n.lineno, n.col_offset), (n.end_lineno or n.lineno, n.end_col_offset or 0)) for n in notes]
    return spans


def in_annotation(spec, spans: list[tuple[tuple[int, int], tuple[int, int]]]) -> bool:
    return any(start <= tuple(spec.start_pos) and tuple(spec.end_pos) <= end for start, end in spans)


class ForkServer:
    """benchmarks/pytest_forkserver.py, serving one target's runs: each mutant's
    tests run in a fork of a process that has the third-party imports done."""

    def __init__(self, work: Path) -> None:
        self.socket = work / "pytest.sock"
        self.socket.unlink(missing_ok=True)
        self.process = subprocess.Popen([sys.executable, str(FORKSERVER), "serve", str(self.socket)], cwd=ROOT)
        deadline = time.monotonic() + 120
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the pytest fork server did not start")
            time.sleep(0.1)

    def command(self, tests: tuple[str, ...], timeout: float) -> list[str]:
        """One run of ``tests``, killed after ``timeout`` seconds (sent with the request)."""
        return [sys.executable, "-S", str(FORKSERVER), "run", str(self.socket), f"{timeout:g}", *PYTEST_ARGS, *tests]

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        self.socket.unlink(missing_ok=True)


def timed(command: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    done = subprocess.run(command, check=False, cwd=ROOT, capture_output=True, text=True)
    return done, time.monotonic() - start


def baseline(target: Target, command: list[str]) -> float:
    done, seconds = timed(command)
    if done.returncode != 0:
        raise SystemExit(f"baseline fails for {target.name}; fix the tests first:\n{done.stdout[-2000:]}")
    return seconds


def measure_cost(targets: list[Target], repeats: int, work: Path) -> list[dict]:
    """The per-mutant test command's cost, a fresh interpreter against the fork
    server, alternated in the same run so both meet the same load."""
    rows = []
    for target in targets:
        server = ForkServer(work)
        try:
            walls: dict[str, list[float]] = {"interpreter": [], "fork server": []}
            for _ in range(repeats):
                for way, command in (("interpreter", [*PYTEST, *target.tests]),
                                     ("fork server", server.command(target.tests, UNMUTATED_TIMEOUT_S))):
                    done, seconds = timed(command)
                    if done.returncode != 0:
                        raise SystemExit(f"{target.name}: the tests fail ({way}):\n{done.stdout[-2000:]}")
                    walls[way].append(seconds)
        finally:
            server.close()
        row = {"target": target.name, "tests": list(target.tests), "repeats": repeats,
               **{f"{way} s": sorted(w)[len(w) // 2] for way, w in walls.items()}}
        rows.append(row)
        print(f"{target.name}: median wall s per run, interpreter {row['interpreter s']:.2f}, "
              f"fork server {row['fork server s']:.2f} ({repeats} each, alternated)", flush=True)
    return rows


def run_target(target: Target, budget: int, work: Path, recheck: set[tuple[int, str]] | None = None) -> dict:
    """Mutate ``target`` and run its tests against each mutant.

    ``recheck``: instead of a sample, exactly the mutants at these (line,
    operator) pairs, the survivors of an earlier run.
    """
    server = ForkServer(work)  # one per target: the baseline sets the mutants' time limit, sent with each run
    try:
        seconds = baseline(target, server.command(target.tests, UNMUTATED_TIMEOUT_S))
        timeout = max(30.0, 4 * seconds)
        return _run_target(target, budget, work, recheck, seconds, timeout, server.command(target.tests, timeout))
    finally:
        server.close()


def _run_target(target: Target, budget: int, work: Path, recheck: set[tuple[int, str]] | None, seconds: float,
                timeout: float, test_command: list[str]) -> dict:
    config = work / f"{target.name}.toml"
    db_path = work / f"{target.name}.sqlite"
    command = " ".join(test_command)
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{target.path}"\n'
        # cosmic-ray's own limit a little above the server's, which kills the run and reports exit 124
        f"timeout = {timeout + 10:.0f}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(command)}\n"
        '[cosmic-ray.distributor]\nname = "local"\n')
    cosmic = [sys.executable, "-m", "cosmic_ray.cli"]
    subprocess.run([*cosmic, "init", str(config), str(db_path)], cwd=ROOT, check=True, capture_output=True)
    with use_db(str(db_path), WorkDB.Mode.open) as db:
        items = db.work_items
        spans = annotation_spans(ROOT / target.path)
        annotations = [i for i in items if in_annotation(i.mutations[0], spans)]
        focus = [i for i in items if i.mutations[0].definition_name in target.focus
                 and not in_annotation(i.mutations[0], spans)]
        if recheck is None:
            keep = {i.job_id for i in sorted(focus, key=lambda i: sample_key(i.mutations[0]))[:budget]}
        else:
            keep = {i.job_id for i in focus
                    if (i.mutations[0].start_pos[0], i.mutations[0].operator_name.split("/")[-1]) in recheck}
        skipped = [i.job_id for i in items if i.job_id not in keep]
        if skipped:
            db.set_multiple_results(skipped, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
    start = time.monotonic()
    done = subprocess.run([*cosmic, "exec", str(config), str(db_path)], cwd=ROOT, check=False, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"cosmic-ray exec failed for {target.name} (exit {done.returncode}):\n{done.stderr[-3000:]}")
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
                })
    survivors.sort(key=lambda s: (s["line"], s["operator"]))
    return {"target": target.name, "path": target.path, "strict": target.strict, "focus": list(target.focus),
            "tests": list(target.tests), "generated": len(items), "annotations": len(annotations),
            "in_focus": len(focus), "run": len(keep),
            "sampled_out": len(focus) - len(keep), "recheck": recheck is not None, "baseline_s": round(seconds, 2),
            "elapsed_s": round(elapsed, 1), "per_mutant_s": round(elapsed / max(1, len(keep)), 2),
            **counts, "survivors": survivors}


def _table(doc: dict) -> list[str]:
    out = [f"commit `{doc['commit']}` ({doc['date']}, {doc['machine']}); tool {doc['tool']};",
           (f"command `{doc['command']}`; seeds: hypothesis profile \"ci\" (derandomised), "
            "sample order sha256 of each mutation's position and operator."), "",
           ("| module | mode | generated | in focus | run | sampled out | killed | timeout | incompetent | "
            "survived | baseline s | time s | s per mutant |"),
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["targets"]:
        out.append(f"| {r['path']}{' (strict)' if r['strict'] else ''} | "
                   f"{'recheck' if r.get('recheck') else 'full' if r['sampled_out'] == 0 else 'sample'} | "
                   f"{r['generated']} | {r['in_focus']} | "
                   f"{r['run']} | {r['sampled_out']} | {r['killed']} | {r['timeout']} | {r['incompetent']} | "
                   f"{r['survived']} | {r['baseline_s']} | {r['elapsed_s']} | "
                   f"{r.get('per_mutant_s', round(r['elapsed_s'] / max(1, r['run']), 2))} |")
    return out


def latest(runs: list[dict]) -> dict[str, dict]:
    """Per target, its last result: a recheck of a sample's survivors supersedes them."""
    return {r["target"]: r for doc in runs for r in doc["targets"]}


def write_report(runs: list[dict], named: dict | None = None) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "mutation.json").write_text(json.dumps({"runs": runs, "named": named}, indent=1) + "\n")
    out = ["# Mutation testing of the deciding modules", "",
           ("Only the functions that decide are mutated (each target's focus in benchmarks/mutation.py; a run whose "
            "\"sampled out\" is 0 ran every mutant of them); "
            "\"sampled out\" mutants of those functions were not run (the budget), nor were mutants inside type "
            "annotations (never evaluated: the modules use `from __future__ import annotations`). A recheck runs a sample's "
            "survivors again after tests were added for them. Strict modules must end with no unexplained "
            "survivor."), ""]
    for number, doc in enumerate(runs, 1):
        out += [f"## Run {number}", "", *_table(doc), ""]
    out += ["## Survivors after the last run of each module", ""]
    for r in latest(runs).values():
        for s in r["survivors"]:
            why = EQUIVALENT.get((r["target"], s["operator"], s["source"])) or "NOT EXPLAINED: a missing test"
            out.append(f"- {r['path']} line {s['line']} in `{s['function']}`, {s['operator']}: "
                       f"`{s['source']}` — {why}")
    out.append("")
    if named is not None:
        out += ["## The named mutations, applied by hand", "",
                f"commit `{named['commit']}` ({named['date']}); command `{named['command']}`", "",
                "| mutation | file | tests | exit | result |", "|---|---|---|---|---|"]
        out += [f"| {n['mutation']} | {n['path']} | {' '.join(n['tests'])} | {n['exit']} | "
                f"{'killed' if n['killed'] else 'SURVIVED'}: {n['summary']} |" for n in named["results"]]
        out.append("")
    (RESULTS / "mutation.md").write_text("\n".join(out) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated target names (default: all)")
    parser.add_argument("--budget", type=int, default=20, help="most mutants run per module (default 20)")
    parser.add_argument("--strict-budget", type=int, default=60,
                        help="most mutants run per strict module (default 60)")
    parser.add_argument("--append", action="store_true",
                        help="keep the earlier runs of benchmarks/results/mutation.json in the report")
    parser.add_argument("--recheck", action="store_true",
                        help="with --append: run only the last survivors of each chosen module again")
    parser.add_argument("--cost", type=int, metavar="N",
                        help="only measure the per-mutant test command of the chosen modules, N runs each way")
    parser.add_argument("--report-only", action="store_true", help="rewrite mutation.md from mutation.json")
    parser.add_argument("--named", action="store_true",
                        help="apply the four named mutations by hand, run their tests, add them to the report")
    args = parser.parse_args()
    stored = json.loads((RESULTS / "mutation.json").read_text()) if (RESULTS / "mutation.json").exists() else {}
    earlier = stored.get("runs", []) if args.append or args.report_only or args.named else []
    named = stored.get("named") if args.append or args.report_only else None
    if args.report_only:
        write_report(earlier, named)
        return
    if args.named:
        if git("status", "--porcelain", "--", *(n[1] for n in NAMED)):
            raise SystemExit("the modules to mutate have uncommitted changes; commit them first")
        write_report(earlier, {"commit": git("rev-parse", "HEAD"),
                               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               "command": "python benchmarks/mutation.py --named", "results": run_named()})
        return
    chosen = [t for t in TARGETS if not args.only or t.name in args.only.split(",")]
    if args.cost:
        with tempfile.TemporaryDirectory() as tmp:
            rows = measure_cost(chosen, args.cost, Path(tmp))
        out = RESULTS / "mutation-cost.json"
        out.write_text(json.dumps({"commit": git("rev-parse", "HEAD"), "command": "python benchmarks/mutation.py "
                                   + " ".join(sys.argv[1:]), "date": datetime.now(timezone.utc).isoformat(
                                       timespec="seconds"), "machine": machine(), "rows": rows}, indent=1) + "\n")
        print(f"wrote {out}")
        return
    last = latest(earlier)
    if args.recheck:
        chosen = [t for t in chosen if t.name in last and last[t.name]["survivors"]]
    if git("status", "--porcelain", "--", *(t.path for t in chosen)):
        raise SystemExit("the modules to mutate have uncommitted changes; commit them first")
    meta = {"commit": git("rev-parse", "HEAD"), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(),
            "tool": "cosmic-ray " + __import__("importlib.metadata").metadata.version("cosmic-ray"),
            "command": "python benchmarks/mutation.py " + " ".join(sys.argv[1:]), "budget": args.budget,
            "strict_budget": args.strict_budget}
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for target in chosen:
            print(f"{target.name}: mutating {target.path} ...", flush=True)
            recheck = ({(s["line"], s["operator"]) for s in last[target.name]["survivors"]} if args.recheck
                       else None)
            runs.append(run_target(target, args.strict_budget if target.strict else args.budget, Path(tmp), recheck))
            r = runs[-1]
            print(f"  {r['run']} run of {r['in_focus']} in focus ({r['generated']} generated): "
                  f"{r['killed']} killed, {r['timeout']} timeout, {r['survived']} survived, {r['elapsed_s']} s",
                  flush=True)
    write_report([*earlier, {**meta, "targets": runs}], named)
    print(f"wrote {RESULTS / 'mutation.md'}")


if __name__ == "__main__":
    main()
