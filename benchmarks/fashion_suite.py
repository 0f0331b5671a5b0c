"""The four Fashion-MNIST studies in one command, with their total wall time.

Runs, one after another, each as its own process with the options benchmarks/README.md gives for the full
Fashion-MNIST runs, their output streamed here:

1. functionality.py --ray local
2. robustness.py --ray local
3. margin.py --workers 2 --save-models WORK/models
4. evasion.py --ray local --paper-images DIR --models-from WORK/models

Step 3 keeps each seed's derived-key and margin model with their keys, and step 4 uses them instead of
training the same six models again (benchmarks/_marked.py); evasion trains only the paper-images ones.
The budget the Fashion-MNIST study set is 3 hours for all four on 2 cores.

Each study writes its own results to --out; this command writes fashion-suite.json and .md there too,
with every step's command, exit status and wall seconds and the total, after every step (a suite cut off
keeps what finished).  It stops at the first step that fails.  The paper's trigger images (--paper-images,
the WatermarkNN folder with pics/ and labels-cifar.txt) are checked before anything trains, and
WORK/models must not hold an earlier suite's models.

``--only margin,evasion`` runs those studies and takes the others' wall seconds from their result files in
--out (each records its own ``seconds``, commit and command), so that the total still covers all four: the
report names, for every study, whether it ran here or which committed result it is quoted from.  Evasion
without margin in the same run is refused (its models come from that margin run).

    python benchmarks/fashion_suite.py --paper-images /work/shared/data/watermarknn-trigger-set
    python benchmarks/fashion_suite.py --paper-images DIR --dry-run     # print the four commands
    python benchmarks/fashion_suite.py --paper-images DIR --only margin,evasion
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _marked
from _cli import ROOT, provenance, write_result

from wmark.errors import WmarkError

HERE = Path(__file__).resolve().parent
SEEDS = 3  # every study's default
BUDGET_SECONDS = 3 * 3600
STUDIES = ("functionality", "robustness", "margin", "evasion")


@dataclass(frozen=True)
class Step:
    name: str
    command: tuple[str, ...]


def steps(args: argparse.Namespace) -> list[Step]:
    """The four studies' commands, as benchmarks/README.md runs them, with the suite's shared options."""
    models = str(args.work / "models")
    shared = ["--dataset", "fashion-mnist", *(["--data-root", args.data_root] if args.data_root else []),
              "--out", str(args.out), *(["--label", args.label] if args.label else [])]
    own = {"functionality": ["--ray", "local"],
           "robustness": ["--ray", "local"],
           "margin": ["--workers", "2", "--save-models", models],
           "evasion": ["--ray", "local", "--paper-images", str(args.paper_images), "--models-from", models]}
    # Relative to the root, where they run, so that each result names its script as the committed ones do.
    return [Step(name, (sys.executable, f"benchmarks/{name}.py", *shared, *extra)) for name, extra in own.items()]


def parse_only(text: str | None) -> tuple[str, ...]:
    """The studies --only names, in the suite's order; evasion needs the margin run that keeps its models."""
    if text is None:
        return STUDIES
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = sorted(names - set(STUDIES))
    if unknown or not names:
        raise WmarkError(f"--only {text!r}: expected some of {', '.join(STUDIES)}, comma-separated")
    if "evasion" in names and "margin" not in names:
        raise WmarkError("--only: evasion reuses the models of margin in the same run; name margin too")
    return tuple(name for name in STUDIES if name in names)


def quoted(out: Path, name: str) -> dict[str, Any]:
    """A study not run here, as its committed result file records it: complete, with its wall seconds."""
    path = out / f"{name}-fashion-mnist.json"
    try:
        result = json.loads(path.read_text())
        origin = result["provenance"]
        seconds, complete = float(result["seconds"]), result.get("complete", True)
        entry = {"name": name, "command": origin["command"], "rc": 0, "seconds": round(seconds, 1),
                 "from": f"{path.name} (commit {origin['commit'][:12]}{', dirty' if origin['dirty'] else ''}, "
                         f"{origin['date']})"}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WmarkError(f"--only: {name} does not run, and {path} gives no wall time for it ({exc})") from None
    if complete is not True:
        raise WmarkError(f"--only: {path} is a run that did not finish; run {name} too")
    return entry


def check_inputs(args: argparse.Namespace, only: tuple[str, ...]) -> None:
    """What would otherwise fail hours in: the paper's images (evasion, the last step) and a fresh models folder."""
    from wmark.watermark.triggers import Fit, import_images

    if "evasion" in only:
        # As evasion.py imports them: grey, resized to Fashion-MNIST's 28x28, labelled in its 10 classes.
        imported = import_images(args.paper_images, (1, 28, 28), fit=Fit.RESIZE, labels_file=None, num_classes=10)
        if imported.labels is None:
            raise WmarkError(f"{args.paper_images}: no labels file (expected the paper's labels-cifar.txt)")
    if "margin" in only:
        _marked.check_fresh(args.work / "models", "the models folder of --work,")


def table(report: dict[str, Any]) -> str:
    lines = ["# The four Fashion-MNIST studies", "", "| study | command | exit status | wall (min) |",
             "|---|---|---:|---:|"]
    lines += [f"| {s['name']} | `{s['command']}` | {s['rc']} | {s['seconds'] / 60:.1f} |" for s in report["steps"]]
    quotes = [s for s in report["steps"] if "from" in s]
    if quotes:
        lines += ["", "Not run here; their wall time is quoted from their committed result files: "
                  + "; ".join(f"{s['name']} from {s['from']}" for s in quotes) + "."]
    total = report["total_seconds"]
    verdict = "within" if total <= BUDGET_SECONDS else "over"
    lines += ["", f"Total {total / 60:.1f} min ({total / 3600:.2f} h), {verdict} the 3-hour budget"
                  + ("." if report["complete"] else "; the suite did not finish.")]
    if report["models"]:
        lines.append(f"Evasion's derived-key and margin models are margin's, kept in {report['models']}.")
    return "\n".join(lines)


def run_suite(args: argparse.Namespace, plan: list[Step], quotes: tuple[dict[str, Any], ...] = ()) -> int:
    """Run ``plan`` in order; ``quotes`` are the studies not run here, counted in the total as their files say."""
    origin = provenance(list(range(SEEDS)), "each study's own (see its result)", args.label)
    report: dict[str, Any] = {"provenance": origin, "models": str(args.work / "models"),
                              "budget_seconds": BUDGET_SECONDS, "complete": False, "total_seconds": 0.0, "steps": []}
    stem = args.out / "fashion-suite"
    report["steps"] += quotes
    report["total_seconds"] = round(sum(q["seconds"] for q in quotes), 1)
    for step in plan:
        print(f"== {step.name}: {shlex.join(step.command)}", flush=True)
        start = time.perf_counter()
        rc = subprocess.run(step.command, cwd=ROOT, check=False).returncode
        seconds = round(time.perf_counter() - start, 1)
        report["steps"].append({"name": step.name, "command": shlex.join(step.command), "rc": rc,
                                "seconds": seconds})
        report["total_seconds"] = round(report["total_seconds"] + seconds, 1)
        report["complete"] = rc == 0 and len(report["steps"]) == len(plan) + len(quotes)
        write_result(stem, report, table(report))
        if rc != 0:
            print(f"error: {step.name} exited with status {rc}; the suite stops here", file=sys.stderr)
            return 1
    print(table(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paper-images", type=Path, required=True, metavar="DIR",
                        help="the paper's trigger set (pics/1.jpg ... and labels-cifar.txt), for evasion.py")
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "fashion-suite", metavar="DIR",
                        help="where margin.py keeps its marked models for evasion.py, in DIR/models "
                             "(secret: marking keys in plaintext; default out/fashion-suite)")
    parser.add_argument("--data-root", metavar="PATH", help="Fashion-MNIST's IDX files, passed to every study")
    parser.add_argument("--out", type=Path, default=HERE / "results",
                        help="every study's results and the suite's report (default benchmarks/results)")
    parser.add_argument("--label", metavar="TEXT", help="what the run is, passed to every study's results")
    parser.add_argument("--only", metavar="STUDY,...",
                        help="run only these of functionality, robustness, margin, evasion; the others' wall "
                             "time is quoted from their result files in --out")
    parser.add_argument("--dry-run", action="store_true", help="print the four commands and run nothing")
    args = parser.parse_args(argv)
    # The studies run from the repository's root: paths given relative to here must still name the same files.
    args.work, args.out, args.paper_images = args.work.resolve(), args.out.resolve(), args.paper_images.resolve()
    args.data_root = args.data_root and str(Path(args.data_root).expanduser().resolve())
    try:
        only = parse_only(args.only)
        plan = [step for step in steps(args) if step.name in only]
        if args.dry_run:
            for step in plan:
                print(shlex.join(step.command))
            return 0
        # Quoted before anything runs: a missing or unfinished result must not surface hours in.
        quotes = tuple(quoted(args.out, name) for name in STUDIES if name not in only)
        check_inputs(args, only)
    except WmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run_suite(args, plan, quotes)


if __name__ == "__main__":
    sys.exit(main())
