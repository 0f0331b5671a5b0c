"""benchmarks/evasion.py runs end to end: every key kind behind every endpoint, verified over HTTP."""

from __future__ import annotations

import argparse
import importlib
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from wmark.errors import WmarkError
from wmark.watermark.datasets import load_task
from wmark.watermark.embed import start_model
from wmark.watermark.margin import query_split

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


# margin.py's kept models, used by evasion.py as its own (benchmarks/_marked.py).

BENCHMARKS = SCRIPT.parent
TINY = 200  # --subset of the kept models below


@pytest.fixture
def studies(monkeypatch):
    """margin.py and evasion.py as modules (scripts that import their sibling modules by name)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("margin"), importlib.import_module("evasion")


@pytest.fixture
def kept(studies, tmp_path):
    """What ``margin.py --subset 200 --epochs 1 --seeds 1 --save-models DIR`` keeps, its trainings
    replaced by freshly initialised models (what is kept does not depend on how long they trained)."""
    margin, _ = studies
    task = margin.subset(load_task("digits"), TINY)
    owners, by_seed = margin.make_keys(task, query_split(task), 1, None)
    args = argparse.Namespace(dataset="digits", data_root=None, subset=TINY, epochs=1, save_models=tmp_path / "kept")
    world = margin.World({name: margin._pack(pair) for name, pair in by_seed.items()}, owners, args)
    models = {scheme: start_model(task, seed=0) for scheme in margin.SCHEMES}
    for scheme, model in models.items():
        margin.keep(world, scheme, 0, {"train_seconds": 12.5}, model)
    keys = {scheme: by_seed[scheme, 0] for scheme in margin.SCHEMES}
    return task, keys, models, tmp_path / "kept"


def test_evasion_takes_margins_kept_models_and_keys_as_its_own(studies, kept):
    _, evasion = studies
    task, keys, models, folder = kept
    args = argparse.Namespace(models_from=folder, subset=TINY, seeds=1, epochs=1)
    loaded = evasion.kept_models(task, args)
    assert set(loaded) == {(0, "derived"), (0, "margin")}
    for kind, scheme in evasion.MARGIN_SCHEME.items():
        got = loaded[0, kind]
        assert got.pair().verification_key.digest == keys[scheme].verification_key.digest
        assert got.pair().marking_key.to_bytes() == keys[scheme].marking_key.to_bytes()
        assert got.train_seconds == 12.5
        for name, tensor in models[scheme].net.state_dict().items():
            assert torch.equal(got.model.net.state_dict()[name], tensor)
    # The loaded model and key go through the job as a trained one would, and its rows say the model
    # was loaded, its training time another run's.
    study = evasion.Study(None, 1, 0.05, 4)
    rows = evasion.run_key(task, 0, "derived", study, torch.device("cpu"), task.test.images[:20], loaded[0, "derived"])
    assert {r["detector"] for r in rows} == set(evasion.DETECTORS)
    for row in rows:
        assert row["model_from"].startswith(f"loaded from {folder}")
        assert row["train_seconds_in_margin_run"] == 12.5 and "train_seconds" not in row


@pytest.mark.parametrize(("options", "complaint"), [
    (["--epochs", "2"], "recipe.epochs is 1, this run needs 2"),
    (["--epochs", "1", "--subset", "300"], "subset is 200, this run needs 300"),
    (["--epochs", "1", "--seeds", "2"], "seed-1/adi/manifest.json: missing"),
])
def test_evasion_refuses_kept_models_it_would_not_train(studies, kept, capsys, options, complaint):
    _, evasion = studies
    _, _, _, folder = kept
    defaults = ["--seeds", "1", "--subset", str(TINY), "--device", "cpu", "--out", str(folder.parent / "out")]
    # The later option wins: each case overrides a default.
    assert evasion.main([*defaults, *options, "--models-from", str(folder)]) == 2
    error = capsys.readouterr().err
    assert complaint in error and error.count("\n") == 1
    assert not (folder.parent / "out" / "evasion-digits.json").exists()  # refused before any job


def test_margin_will_not_save_models_over_an_earlier_runs(studies, kept, capsys):
    margin, _ = studies
    assert margin.main(["--seeds", "1", "--save-models", str(kept[3])]) == 2
    assert "not an empty folder" in capsys.readouterr().err


def test_the_suite_runs_the_four_studies_with_the_reuse_flags(tmp_path):
    suite = [sys.executable, str(BENCHMARKS / "fashion_suite.py"), "--work", str(tmp_path)]
    run = subprocess.run([*suite, "--paper-images", str(tmp_path / "pics"), "--dry-run"],
                         capture_output=True, text=True, timeout=60, check=True)
    commands = [shlex.split(line) for line in run.stdout.splitlines()]
    assert [c[1] for c in commands] == [f"benchmarks/{name}.py"
                                        for name in ("functionality", "robustness", "margin", "evasion")]
    assert all(c[c.index("--dataset") + 1] == "fashion-mnist" for c in commands)
    margin, evasion = commands[2], commands[3]
    assert margin[margin.index("--save-models") + 1] == evasion[evasion.index("--models-from") + 1] == str(
        tmp_path / "models")
    assert evasion[evasion.index("--paper-images") + 1] == str(tmp_path / "pics")
    # Without the dry run, a missing paper-images folder is refused before the first study starts.
    refused = subprocess.run([*suite, "--paper-images", str(tmp_path / "absent"), "--out", str(tmp_path / "out")],
                             capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "not found" in refused.stderr
    assert not (tmp_path / "out").exists()


def test_the_suite_saves_its_report_after_every_step_and_stops_at_a_failure(studies, tmp_path):
    suite = importlib.import_module("fashion_suite")
    args = argparse.Namespace(work=tmp_path, out=tmp_path, label="test")
    steps = [suite.Step(name, (sys.executable, "-c", f"import sys; sys.exit({rc})"))
             for name, rc in (("passes", 0), ("fails", 3), ("never runs", 0))]
    assert suite.run_suite(args, steps) == 1
    report = json.loads((tmp_path / "fashion-suite.json").read_text())
    assert [(s["name"], s["rc"]) for s in report["steps"]] == [("passes", 0), ("fails", 3)]
    assert report["complete"] is False
    assert report["total_seconds"] == pytest.approx(sum(s["seconds"] for s in report["steps"]), abs=0.2)
    assert "did not finish" in (tmp_path / "fashion-suite.md").read_text()


def test_the_suite_can_run_some_studies_and_quote_the_others_wall_time_from_their_results(studies, tmp_path):
    suite = [sys.executable, str(BENCHMARKS / "fashion_suite.py"), "--work", str(tmp_path / "work"),
             "--paper-images", str(tmp_path / "pics"), "--out", str(tmp_path / "out")]
    run = subprocess.run([*suite, "--only", "evasion, margin", "--dry-run"],
                         capture_output=True, text=True, timeout=60, check=True)
    assert [shlex.split(line)[1] for line in run.stdout.splitlines()] == ["benchmarks/margin.py",
                                                                          "benchmarks/evasion.py"]
    for only, complaint in (("evasion", "name margin too"), ("margin,zk", "expected some of"),
                            ("margin", "gives no wall time for it")):
        refused = subprocess.run([*suite, "--only", only], capture_output=True, text=True, timeout=60, check=False)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and complaint in refused.stderr
    assert not (tmp_path / "out").exists()
    fashion_suite = importlib.import_module("fashion_suite")
    (tmp_path / "out").mkdir()
    for name, seconds, complete in (("functionality", 600.0, True), ("robustness", 120.5, False)):
        (tmp_path / "out" / f"{name}-fashion-mnist.json").write_text(json.dumps({
            "provenance": {"command": f"python benchmarks/{name}.py", "commit": "ab" * 20, "dirty": False,
                           "date": "2026-12-01"}, "seconds": seconds, "complete": complete}))
    quote = fashion_suite.quoted(tmp_path / "out", "functionality")
    assert quote["seconds"] == 600.0 and "functionality-fashion-mnist.json (commit abababababab" in quote["from"]
    with pytest.raises(WmarkError, match="did not finish"):
        fashion_suite.quoted(tmp_path / "out", "robustness")
    args = argparse.Namespace(work=tmp_path, out=tmp_path, label="test")
    plan = [fashion_suite.Step("margin", (sys.executable, "-c", "pass"))]
    assert fashion_suite.run_suite(args, plan, (quote,)) == 0
    report = json.loads((tmp_path / "fashion-suite.json").read_text())
    assert [s["name"] for s in report["steps"]] == ["functionality", "margin"] and report["complete"] is True
    assert report["total_seconds"] == pytest.approx(600.0 + report["steps"][1]["seconds"], abs=0.2)
    assert "functionality from functionality-fashion-mnist.json" in (tmp_path / "fashion-suite.md").read_text()


def test_margin_draws_a_fresh_owner_and_keys_for_every_seed_and_keeps_them_per_seed(studies, tmp_path):
    margin, _ = studies
    task = margin.subset(load_task("digits"), TINY)
    owners, keys = margin.make_keys(task, query_split(task), 2, tmp_path / "keys")
    assert owners[0].public_key != owners[1].public_key
    assert len({pair.verification_key.digest for pair in keys.values()}) == 4
    assert all(keys[scheme, seed].verification_key.owner == owners[seed].public_key
               for scheme in margin.SCHEMES for seed in (0, 1))
    # A second run reads the same keys back, seed by seed.
    again_owners, again = margin.make_keys(task, query_split(task), 2, tmp_path / "keys")
    assert {name: pair.verification_key.digest for name, pair in again.items()} == {
        name: pair.verification_key.digest for name, pair in keys.items()}
    assert again_owners[1].public_key == owners[1].public_key
    # A folder of the older layout (one key for every seed) is refused, not half used.
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "owner.pem").write_bytes(b"")
    with pytest.raises(WmarkError, match="one key for every seed"):
        margin.make_keys(task, query_split(task), 2, tmp_path / "old")


def test_margin_queries_and_ascent_steps_are_checked_before_anything_trains(studies, tmp_path, capsys):
    margin, _ = studies
    task = margin.subset(load_task("digits"), TINY)
    split = query_split(task)
    _, keys = margin.make_keys(task, split, 1, tmp_path / "keys", queries=5)
    assert keys["margin", 0].verification_key.n == 5 and keys["adi", 0].verification_key.n == margin.ITEMS
    with pytest.raises(WmarkError, match="has 5 queries, not 7"):
        margin.make_keys(task, split, 1, tmp_path / "keys", queries=7)
    out = tmp_path / "out"
    for argv, complaint in ((["--queries", "0"], "give 1 to"), (["--queries", str(len(split) + 1)], "give 1 to"),
                            (["--ascent-steps", "-1"], "ascent steps -1 outside"),
                            (["--ascent-steps", "2", "--save-models", str(tmp_path / "m")], "default --ascent-steps")):
        assert margin.main(["--seeds", "1", "--subset", str(TINY), "--out", str(out), *argv]) == 2
        err = capsys.readouterr().err
        assert complaint in err and err.count("\n") == 1, err
    assert not out.exists() and not (tmp_path / "m").exists()
