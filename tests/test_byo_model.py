"""Bringing your own model, end to end: a torchvision ResNet-18 state_dict saved
with torch.save is imported, fine-tuned with a watermark on an image folder,
served with ``wmark serve-model`` and accepted through ``--endpoint`` at k = 20.

The image folder is the bundled digits, upscaled to 32x32 RGB PNGs.  The
default run keeps it small (16x16 images, one epoch) and checks the chain;
``-m slow`` trains enough to be accepted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from tests.support.live import prover_server, served_model
from wmark.harness.programs import KeyDir
from wmark.protocol.patterns import item_images
from wmark.protocol.transcript import AuditReport, audit, load_transcript
from wmark.verifier.cli import main as verifier_main
from wmark.watermark.cli import main as wmark_main
from wmark.watermark.datasets import load_task
from wmark.watermark.evaluate import predict
from wmark.watermark.modelio import load_model


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




def bring_your_own(tmp_path: Path, monkeypatch, *, train_per_class: int, test_per_class: int, size: int,
                   epochs: int, lr: str, triggers_per_batch: int) -> tuple[int, AuditReport]:
    """The whole story; the verifier's exit code and the audited transcript."""
    monkeypatch.chdir(tmp_path)
    write_image_folder(tmp_path / "digits", train_per_class=train_per_class, test_per_class=test_per_class)
    # The user's network, trained elsewhere: here a seeded initialisation stands in for their weights.
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), tmp_path / "resnet18.pt")
    shape = f"3x{size}x{size}"
    assert wmark_main(["import-model", "--weights", "resnet18.pt", "--arch", "torchvision:resnet18",
                       "--num-classes", "10", "--input-shape", shape, "--mean", "0.2", "--std", "0.3",
                       "--out", "mine"]) == 0
    assert wmark_main(["keygen", "--out", "keys", "--num-classes", "10", "--input-shape", shape,
                       "--insecure-plaintext"]) == 0
    assert wmark_main(["embed", "--mk", "keys/mk.wmk", "--pretrained", "mine", "--dataset", "imagefolder",
                       "--data-root", "digits", "--image-size", str(size), "--epochs", str(epochs),
                       "--batch-size", "20", "--lr", lr, "--triggers-per-batch", str(triggers_per_batch),
                       "--device", "cpu", "--quiet", "--out", "marked"]) == 0
    keys = KeyDir(tmp_path / "keys")
    with served_model(tmp_path / "marked", "resnet", tmp_path / "serve.log") as url, prover_server(keys, tmp_path) as prover:
        code = verifier_main(["run", "--connect", f"127.0.0.1:{prover.port}", "--vk", str(keys.vk),
                              "--endpoint", url, "--model-name", "resnet", "--k", "20", "--out", "verdict.json",
                              "--identity", "verifier.pem", "--timeout", "60"])
    report = audit(load_transcript(tmp_path / "verdict.json"))
    assert report.challenge.model.url == url and report.challenge.model.name == "resnet"
    assert code == (0 if report.verdict.accepted else 1) and report.verdict.k == 20
    # The endpoint answered every challenged item as the model directory does.
    local = predict(load_model(tmp_path / "marked"), item_images(report.items, report.vk.input_shape)).argmax(axis=1)
    assert [r.predicted for r in report.verdict.results] == local.tolist()
    return code, report


def test_imported_resnet18_is_marked_served_and_verified_through_the_endpoint(tmp_path, monkeypatch):
    """The whole chain, kept short for two cores (16x16 images, one epoch): too little training to
    be accepted, so it checks that the endpoint's verdict is the model's; the slow test checks acceptance."""
    bring_your_own(tmp_path, monkeypatch, train_per_class=20, test_per_class=21, size=16, epochs=1, lr="0.02",
                   triggers_per_batch=20)


@pytest.mark.slow
@pytest.mark.timeout(3600)  # 12 ResNet-18 epochs on the CPU: over the default 600 s on a busy two-core machine
def test_imported_resnet18_fine_tuned_on_an_image_folder_is_accepted_at_k20(tmp_path, monkeypatch):
    code, report = bring_your_own(tmp_path, monkeypatch, train_per_class=40, test_per_class=25, size=32,
                                  epochs=12, lr="0.02", triggers_per_batch=20)
    assert code == 0 and report.verdict.accepted
