"""Bringing your own model, end to end: a torchvision ResNet-18 state_dict saved
with torch.save is imported, fine-tuned with a watermark on an image folder,
served with ``wmark serve-model`` and accepted through ``--endpoint`` at k = 20.

The image folder is the bundled digits, upscaled to 32x32 RGB PNGs.  The
user's network is trained on it first by code of their own (torchvision's
ImageFolder and a plain loop), as a trained checkpoint would be.  The default
run keeps it small (16x16 images, a random initialisation, one epoch) and
checks the chain; ``-m slow`` marks a trained network with wmark's default
fine-tuning recipe and is accepted.
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




def users_own_training(root: Path, size: int, epochs: int) -> torch.nn.Module:
    """The user's ResNet-18, trained on ROOT/train by their own code: torchvision's
    ImageFolder, ToTensor and Normalize (mean 0.2, std 0.3) and a plain SGD loop.
    ``epochs`` 0: a seeded initialisation."""
    from torchvision import transforms

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10)
    folder = torchvision.datasets.ImageFolder(root / "train", transform=transforms.Compose([
        transforms.Resize(size), transforms.ToTensor(), transforms.Normalize((0.2,) * 3, (0.3,) * 3)]))
    loader = torch.utils.data.DataLoader(folder, batch_size=20, shuffle=True)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
    net.train()
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            optimizer.step()
    return net.eval()


def bring_your_own(tmp_path: Path, monkeypatch, *, train_per_class: int, test_per_class: int, size: int,
                   own_epochs: int, embed_options: list[str]) -> tuple[int, AuditReport]:
    """The whole story; the verifier's exit code and the audited transcript."""
    monkeypatch.chdir(tmp_path)
    write_image_folder(tmp_path / "digits", train_per_class=train_per_class, test_per_class=test_per_class)
    torch.save(users_own_training(tmp_path / "digits", size, own_epochs).state_dict(), tmp_path / "resnet18.pt")
    shape = f"3x{size}x{size}"
    assert wmark_main(["import-model", "--weights", "resnet18.pt", "--arch", "torchvision:resnet18",
                       "--num-classes", "10", "--input-shape", shape, "--mean", "0.2", "--std", "0.3",
                       "--out", "mine"]) == 0
    assert wmark_main(["keygen", "--out", "keys", "--num-classes", "10", "--input-shape", shape,
                       "--insecure-plaintext"]) == 0
    assert wmark_main(["embed", "--mk", "keys/mk.wmk", "--pretrained", "mine", "--dataset", "imagefolder",
                       "--data-root", "digits", "--image-size", str(size), *embed_options,
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
    bring_your_own(tmp_path, monkeypatch, train_per_class=20, test_per_class=21, size=16, own_epochs=0,
                   embed_options=["--epochs", "1", "--batch-size", "20", "--lr", "0.02", "--triggers-per-batch", "20"])


@pytest.mark.slow
@pytest.mark.timeout(3600)  # minutes of ResNet-18 epochs on a busy two-core machine
def test_imported_resnet18_fine_tuned_on_an_image_folder_is_accepted_at_k20(tmp_path, monkeypatch):
    """The user's trained network (4 epochs of their own), marked by ``wmark embed --pretrained``:
    half of each batch of 40 trigger images, 10 epochs at lr 0.02, then the BatchNorm statistics
    recomputed for the final weights (the fine-tuning recipe's last step)."""
    code, report = bring_your_own(tmp_path, monkeypatch, train_per_class=40, test_per_class=25, size=32,
                                  own_epochs=4, embed_options=["--epochs", "10", "--batch-size", "20", "--lr", "0.02",
                                                               "--triggers-per-batch", "20"])
    assert code == 0 and report.verdict.accepted
