"""`wmark demo` runs the whole story through the real programs."""

import json

from wmark.harness.programs import run_cli
from wmark.protocol.transcript import audit, load_transcript


def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = run_cli("wmark", "demo", "--out", str(out), timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    marked = audit(load_transcript(out / "verdict-marked.json")).verdict
    plain = audit(load_transcript(out / "verdict-plain.json")).verdict
    assert marked.accepted and marked.registration is not None and marked.registration.beta is not None
    # The order registry-bound labels need: the labels exist only once the key is registered.
    steps = [result.stdout.index(f"$ wmark {name} ") for name in ("keygen", "register", "embed")]
    assert steps == sorted(steps)
    assert json.loads((out / "keys" / "vk.json").read_text())["payload"]  # a signed vk
    assert not plain.accepted
    assert "re-queried the model: 20 of 20 answers as recorded" in result.stdout
    assert json.loads((out / "keys" / "mk.wmk").read_text())["type"] == "wmark/sealed-marking-key"


def test_demo_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "something").write_text("x")
    result = run_cli("wmark", "demo", "--out", str(tmp_path))
    assert result.returncode == 2 and "not empty" in result.stderr and "Traceback" not in result.stderr
