"""benchmarks/robustness.py and margin.py on Ray compute what their sequential runs compute."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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


MARGIN = Path(__file__).resolve().parents[1] / "benchmarks" / "margin.py"
MARGIN_TINY = ["--seeds", "1", "--epochs", "1", "--subset", "200", "--device", "cpu"]


def _margin(out: Path, keys: Path, *extra: str) -> dict:
    run = subprocess.run([sys.executable, str(MARGIN), *MARGIN_TINY, "--keys", str(keys), "--out", str(out), *extra],
                         capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads((out / "margin.json").read_text())


def _margin_comparable(report: dict) -> dict:
    """As _comparable: less timings, provenance and the k = 20 draws."""
    report = {k: v for k, v in report.items() if k not in ("seconds", "provenance")}
    runs = []
    for row in report["runs"]:
        row = {k: v for k, v in row.items() if k not in ("train_seconds", "attack_seconds")}
        for scheme in ("adi", "margin"):
            row[scheme] = {**row[scheme], "k20": row[scheme]["k20"]["acceptance_probability"]}
        runs.append(row)
    return {**report, "runs": runs}


@pytest.mark.slow
@pytest.mark.timeout(1200)  # 20 trainings twice: 1.3 min alone, 4 on this loaded machine
def test_the_margin_study_on_ray_gives_the_sequential_result(ray_address, tmp_path):
    """The second run reads the keys the first wrote (--keys): the same items, so the same rows."""
    sequential = _margin(tmp_path / "seq", tmp_path / "keys", "--workers", "2")
    on_ray = _margin(tmp_path / "ray", tmp_path / "keys", "--ray", ray_address)
    assert len(sequential["runs"]) == 4 + 12  # four models measured, each marked one stolen six ways
    assert _margin_comparable(on_ray) == _margin_comparable(sequential)
