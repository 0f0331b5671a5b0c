"""Bringing your own model, end to end: a torchvision ResNet-18 state_dict saved
with torch.save is imported, fine-tuned with a watermark on an image folder,
served with ``wmark serve-model`` and accepted through ``--endpoint`` at k = 20.

The image folder is the bundled digits, upscaled to 32x32 RGB PNGs.  The
default run keeps it small (3 epochs on 400 training images, about a minute
on two cores); ``-m slow`` runs the full folder.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from tests.support.helpers import REPO, free_port
from tests.support.live import prover_server
from wmark.harness.programs import KeyDir
from wmark.protocol.transcript import audit, load_transcript
from wmark.verifier.cli import main as verifier_main
from wmark.watermark.cli import main as wmark_main
from wmark.watermark.datasets import load_task


def write_image_folder(root: Path, *, train_per_class: int, test_per_class: int) -> None:
    """Digits as ROOT/{train,test}/CLASS/*.png, 32x32 RGB (the imagefolder layout)."""
    task = load_task("digits")
    pools = {"train": task.train, "test": _concat(task.test, task.adversary)}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        data = pools[split]
        for label in range(10):
            folder = root / split / f"digit{label}"
            folder.mkdir(parents=True)
            for i, index in enumerate(np.flatnonzero(data.labels == label)[:per_class]):
                grey = Image.fromarray(data.images[index, 0]).resize((32, 32), Image.Resampling.BILINEAR)
                grey.convert("RGB").save(folder / f"{i:04d}.png")


def _concat(a, b):
    from wmark.watermark.datasets import LabelledImages

    return LabelledImages(np.concatenate([a.images, b.images]), np.concatenate([a.labels, b.labels]))


@contextlib.contextmanager
def served(model: Path, log: Path) -> Iterator[str]:
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "wmark.watermark", "serve-model", "--model", str(model),
                                 "--port", str(port), "--name", "resnet", "--device", "cpu"],
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/v2/models/resnet/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"serve-model did not start: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def bring_your_own(tmp_path: Path, monkeypatch, *, train_per_class: int, test_per_class: int, epochs: int) -> None:
    monkeypatch.chdir(tmp_path)
    write_image_folder(tmp_path / "digits32", train_per_class=train_per_class, test_per_class=test_per_class)
    # The user's network, trained elsewhere: here a seeded initialisation stands in for their weights.
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), tmp_path / "resnet18.pt")

    assert wmark_main(["import-model", "--weights", "resnet18.pt", "--arch", "torchvision:resnet18",
                       "--num-classes", "10", "--input-shape", "3x32x32", "--mean", "0.2", "--std", "0.3",
                       "--out", "mine"]) == 0
    assert wmark_main(["keygen", "--out", "keys", "--num-classes", "10", "--input-shape", "3x32x32",
                       "--insecure-plaintext"]) == 0
    assert wmark_main(["embed", "--mk", "keys/mk.wmk", "--pretrained", "mine", "--dataset", "imagefolder",
                       "--data-root", "digits32", "--epochs", str(epochs), "--batch-size", "20", "--lr", "0.05",
                       "--triggers-per-batch", "10", "--device", "cpu", "--quiet", "--out", "marked"]) == 0
    keys = KeyDir(tmp_path / "keys")
    with served(tmp_path / "marked", tmp_path / "serve.log") as url, prover_server(keys, tmp_path) as prover:
        code = verifier_main(["run", "--connect", f"127.0.0.1:{prover.port}", "--vk", str(keys.vk),
                              "--endpoint", url, "--model-name", "resnet", "--k", "20", "--out", "verdict.json",
                              "--identity", "verifier.pem", "--timeout", "60"])
    assert code == 0
    report = audit(load_transcript(tmp_path / "verdict.json"))
    assert report.verdict.accepted and report.verdict.k == 20
    assert report.challenge.model.url == url and report.challenge.model.name == "resnet"


def test_imported_resnet18_is_marked_served_and_accepted(tmp_path, monkeypatch, capsys):
    bring_your_own(tmp_path, monkeypatch, train_per_class=40, test_per_class=25, epochs=3)
    out = capsys.readouterr().out
    assert "ACCEPTED" in out and "test accuracy" in out


@pytest.mark.slow
def test_imported_resnet18_full_folder(tmp_path, monkeypatch):
    bring_your_own(tmp_path, monkeypatch, train_per_class=100, test_per_class=70, epochs=10)
