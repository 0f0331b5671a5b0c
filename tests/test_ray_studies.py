"""benchmarks/robustness.py and margin.py on Ray compute what their sequential runs compute."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "robustness.py"
TINY = ["--seeds", "2", "--epochs", "1", "--attacks", "ftll", "--device", "cpu"]


def _study(out: Path, *extra: str) -> dict:
    run = subprocess.run([sys.executable, str(SCRIPT), *TINY, "--out", str(out), *extra],
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads((out / "robustness.json").read_text())


def _comparable(report: dict) -> dict:
    """The report less what no two runs share: timings, provenance (date, command
    line), and the k = 20 verification's random draw of items (its acceptance
    probability over all draws stays)."""
    report = {k: v for k, v in report.items() if k not in ("seconds", "provenance")}
    report["runs"] = [{**{k: v for k, v in r.items() if k not in ("seconds", "private")},
                       "private_probability": r["private"]["acceptance_probability"]} for r in report["runs"]]
    for s in report["summary"]:
        s.pop("private_accepted")
    return report


def test_a_study_on_ray_gives_the_sequential_result(ray_address, tmp_path):
    sequential = _study(tmp_path / "seq")
    on_ray = _study(tmp_path / "ray", "--ray", ray_address)
    assert [r["row"] for r in on_ray["runs"]] == [r["row"] for r in sequential["runs"]]
    assert len(sequential["runs"]) == 2 * 3  # marked, own, FTLL for each seed
    assert _comparable(on_ray) == _comparable(sequential)
