"""benchmarks/evasion.py runs end to end: every key kind behind every endpoint, verified over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "evasion.py"


def test_a_tiny_evasion_study_verifies_each_key_behind_each_endpoint(tmp_path):
    run = subprocess.run([sys.executable, str(SCRIPT), "--seeds", "1", "--epochs", "1", "--subset", "200",
                          "--device", "cpu", "--out", str(tmp_path), "--label", "test"],
                         capture_output=True, text=True, timeout=300, check=False)
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


def test_an_option_it_would_ignore_is_refused():
    run = subprocess.run([sys.executable, str(SCRIPT), "--ray", "local"], capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 2 and "--ray: this study trains its models in this process" in run.stderr
