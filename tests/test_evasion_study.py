"""benchmarks/evasion.py runs end to end: every key kind behind every endpoint, verified over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "evasion.py"


def tiny_study(out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "--seeds", "1", "--epochs", "1", "--subset", "200",
                           "--device", "cpu", "--out", str(out), "--label", "test", *options],
                          capture_output=True, text=True, timeout=300, check=False)


def test_a_tiny_evasion_study_verifies_each_key_behind_each_endpoint(tmp_path):
    run = tiny_study(tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((tmp_path / "evasion-digits.json").read_text())
    assert report["complete"] is True  # rows are saved as they come; the last write says the run ended
    assert {(r["key"], r["detector"]) for r in report["rows"]} == {
        (key, detector) for key in ("derived", "margin") for detector in ("plain", "msp", "pca")}
    for row in report["rows"]:
        assert [v["k"] for v in row["verifications"]] == [20, report["items"]]
        if row["detector"] == "plain":  # the honest endpoint flags nothing
            assert row["false_positive_rate"] == 0 and row["decoys_flagged"] == 0
            assert all(v["items_flagged"] == 0 for v in row["verifications"])


def test_on_ray_each_key_kind_is_a_job_and_the_rows_come_back_in_order(tmp_path, ray_address):
    run = tiny_study(tmp_path, "--seeds", "2", "--ray", ray_address)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((tmp_path / "evasion-digits.json").read_text())
    assert report["complete"] is True
    # Seed by seed, key kind by key kind, whichever job ended first.
    assert [(r["seed"], r["key"], r["detector"]) for r in report["rows"]] == [
        (seed, key, detector) for seed in (0, 1) for key in ("derived", "margin")
        for detector in ("plain", "msp", "pca")]
    assert all(r["verifications"][1]["k"] == report["items"] for r in report["rows"])
