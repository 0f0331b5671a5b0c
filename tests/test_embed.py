"""Mark: the training loop, embedding, and the `wmark embed` / `wmark eval` commands."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support.schemas import assert_valid_report
from wmark.errors import InvalidInput
from wmark.watermark.cli import main as wmark_main
from wmark.watermark.datasets import LabelledImages, load_task
from wmark.watermark.embed import embed, start_model
from wmark.watermark.modelio import CONFIG_NAME, WEIGHTS_NAME, load_model
from wmark.watermark.train import Recipe, train
from wmark.watermark.triggers import TriggerSet

# One epoch of this teaches the small CNN 10 noise triggers on digits.
FAST = Recipe(epochs=1, batch_size=25, lr=3e-3, optimizer="adam", weight_decay=0.0, triggers_per_batch=10)


@pytest.fixture(scope="module")
def digits():
    return load_task("digits")


@pytest.fixture(scope="module")
def small(digits):
    """200 training images: enough to exercise the loop, quick to run."""
    return LabelledImages(digits.train.images[:200], digits.train.labels[:200])


def noise_triggers(n: int, seed: int = 0, shape=(1, 8, 8), classes: int = 10) -> TriggerSet:
    """Random images with random labels, a stand-in for a key's trigger set."""
    rng = np.random.default_rng(seed)
    return TriggerSet(rng.integers(0, 256, (n, *shape), dtype=np.uint8), rng.integers(0, classes, n), classes)


def test_one_epoch_of_embedding_lifts_trigger_accuracy_above_chance(digits):
    triggers = noise_triggers(10)
    marked = embed(start_model(digits), digits, triggers, FAST, vk_digest=bytes(32))
    plain = embed(start_model(digits), digits, triggers, replace(FAST, triggers_per_batch=0))
    assert marked.evaluation.triggers.accuracy >= 0.9
    assert plain.evaluation.triggers.accuracy <= 0.5
    assert marked.evaluation.test.accuracy >= 0.8
    assert marked.model.config.vk_digest == bytes(32) and plain.model.config.vk_digest is None
    assert [h.epoch for h in marked.history] == [1] and marked.history[0].trigger_accuracy is not None


def test_training_is_seeded_and_deterministic_on_cpu(digits, small):
    def weights(seed: int) -> list[torch.Tensor]:
        model = start_model(digits, seed=seed)
        train(model, small, replace(FAST, seed=seed), triggers=noise_triggers(10))
        return [p.detach().clone() for p in model.parameters()]

    first, again, other = weights(1), weights(1), weights(2)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_training_leaves_the_callers_random_state_alone(digits, small):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(start_model(digits), small, FAST)
    assert torch.equal(torch.rand(3), expected)
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.utils.deterministic.fill_uninitialized_memory


def test_triggers_ride_in_every_batch_cycling_through_the_set(digits, small):
    # Trigger i is a constant image of value i, so it can be recognised in a batch.
    n, k = 7, 3
    triggers = TriggerSet(np.repeat(np.arange(n, dtype=np.uint8), 64).reshape(n, 1, 8, 8),
                          np.arange(n) % 10, 10)
    model = start_model(digits)
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0]) if m.training else None)
    train(model, small, replace(FAST, batch_size=40, triggers_per_batch=k), triggers=triggers)
    assert [len(x) for x in seen] == [40 + k] * 5
    counts = Counter(int(x[-j, 0, 0, 0]) for x in seen for j in range(1, k + 1))
    assert sorted(counts) == list(range(n)) and max(counts.values()) - min(counts.values()) <= 1


@pytest.mark.parametrize("channels", [1, 3])
def test_every_cpu_training_batch_reaches_the_model_channels_last(channels):
    # CPU kernels follow the batch's memory order and channels-first is much
    # slower; appending triggers (here C-ordered numpy arrays) used to turn the
    # loader's channels-last batch channels-first (docs/design.md section 5).
    from wmark.watermark.modelio import ModelConfig, Preprocessing, new_model

    rng = np.random.default_rng(0)
    data = LabelledImages(rng.integers(0, 256, (30, channels, 8, 8), dtype=np.uint8), rng.integers(0, 10, 30))
    model = new_model(ModelConfig("small_cnn", 10, (channels, 8, 8), Preprocessing((0.5,) * channels,
                                                                                   (0.25,) * channels)))
    seen: list[tuple[int, ...]] = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].stride()) if m.training else None)
    for k in (0, 2):
        train(model, data, replace(FAST, batch_size=10, triggers_per_batch=k),
              triggers=noise_triggers(4, shape=(channels, 8, 8)))
    assert seen == [(64 * channels, 1, 8 * channels, channels)] * 6


def test_batch_norm_is_recalibrated_over_training_batches_channels_last():
    """Recalibration (recipe.recalibrate_bn) draws its epoch as training does:
    the same batch sizes, triggers mixed in, and the CPU's memory layout."""
    from wmark.watermark.modelio import ModelConfig, Preprocessing, new_model

    rng = np.random.default_rng(0)
    data = LabelledImages(rng.integers(0, 256, (30, 1, 8, 8), dtype=np.uint8), rng.integers(0, 10, 30))
    model = new_model(ModelConfig("fashion_cnn", 10, (1, 8, 8), Preprocessing((0.5,), (0.25,))))  # has BatchNorm
    seen: list[tuple[int, tuple[int, ...]]] = []
    model.register_forward_pre_hook(lambda m, args: seen.append((len(args[0]), args[0].stride()))
                                    if m.training else None)
    train(model, data, replace(FAST, batch_size=10, triggers_per_batch=2, recalibrate_bn=True),
          triggers=noise_triggers(4))
    assert seen == [(12, (64, 1, 8, 1))] * 6  # three training steps, then the three batches of recalibration


def test_prediction_batches_reach_the_model_channels_last(digits):
    from wmark.watermark.evaluate import predict

    model = start_model(digits)
    seen: list[tuple[int, ...]] = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].stride()))
    predict(model, noise_triggers(3).images, batch_size=2)  # C-ordered numpy: channels-first strides
    assert seen == [(64, 1, 8, 1)] * 2


def test_soft_labels_train_a_model(digits, small):
    teacher = start_model(digits, seed=3)
    with torch.no_grad():
        soft = torch.softmax(teacher(torch.from_numpy(small.images)), dim=1).numpy()
    student = start_model(digits, seed=4)
    history = train(student, LabelledImages(small.images, soft), FAST, triggers=noise_triggers(10))
    assert np.isfinite(history[0].loss)


def test_only_trainable_parameters_move(digits, small):
    model = start_model(digits)
    for p in model.net[:-1].parameters():
        p.requires_grad_(False)
    frozen = [p.detach().clone() for p in model.net[:-1].parameters()]
    last = model.net[-1].weight.detach().clone()
    train(model, small, FAST)
    assert all(torch.equal(a, b) for a, b in zip(frozen, model.net[:-1].parameters()))
    assert not torch.equal(last, model.net[-1].weight)


def test_augmented_training_runs_on_colour_images():
    rng = np.random.default_rng(0)
    data = LabelledImages(rng.integers(0, 256, (30, 3, 16, 16), dtype=np.uint8), rng.integers(0, 10, 30))
    from wmark.watermark.modelio import ModelConfig, Preprocessing, new_model

    model = new_model(ModelConfig("small_cnn", 10, (3, 16, 16), Preprocessing((0.5,) * 3, (0.25,) * 3)))
    history = train(model, data, replace(FAST, augment=True), triggers=noise_triggers(4, shape=(3, 16, 16)))
    assert len(history) == 1 and history[0].trigger_accuracy is not None


def test_pretrained_model_is_fine_tuned_and_must_fit(digits):
    base = start_model(digits, seed=5)
    assert start_model(digits, base=base) is base
    with pytest.raises(InvalidInput, match="pretrained model is a small_cnn"):
        start_model(digits, base=base, arch="resnet18_cifar")
    with pytest.raises(InvalidInput, match="trigger set has 3x32x32"):
        embed(base, digits, noise_triggers(4, shape=(3, 32, 32)), FAST)


def test_a_small_training_set_gets_enough_triggers_a_batch_to_show_each_once_an_epoch(digits, small):
    from wmark.watermark.embed import PAPER_FINETUNE, default_recipe
    from wmark.watermark.train import fit_trigger_passes

    # 400 images in batches of 100 with 2 triggers show 8 of 100 triggers an epoch: raised to 25.
    assert fit_trigger_passes(PAPER_FINETUNE, 400, 100).triggers_per_batch == 25
    # The paper's data sets already show every trigger an epoch: their recipes are unchanged.
    assert fit_trigger_passes(PAPER_FINETUNE, 50_000, 100) == PAPER_FINETUNE
    assert fit_trigger_passes(default_recipe("digits"), len(digits.train), 100) == default_recipe("digits")
    as_given = replace(PAPER_FINETUNE, min_trigger_passes=0)
    assert fit_trigger_passes(as_given, 400, 100) == as_given
    # embed() trains with the raised count: 200 images in 8 batches of 25 show all 40 triggers at 5 a batch.
    triggers, recipe = noise_triggers(40), replace(FAST, triggers_per_batch=1, min_trigger_passes=1)
    task = replace(digits, train=small)
    marked = embed(start_model(digits), task, triggers, recipe).model
    for per_batch, same in ((5, True), (1, False)):
        model = start_model(digits)
        train(model, small, replace(recipe, triggers_per_batch=per_batch, min_trigger_passes=0), triggers=triggers)
        assert all(torch.equal(a, b) for a, b in zip(marked.state_dict().values(),
                                                     model.state_dict().values())) == same


def test_recalibrated_batch_norm_holds_the_final_weights_statistics():
    """recalibrate_bn: the running mean is the training images' mean through the final
    weights (equal batches, no triggers, no augmentation), not a lagging average."""
    from torch import nn

    from wmark.watermark.modelio import Classifier, ModelConfig, Preprocessing

    rng = np.random.default_rng(1)
    data = LabelledImages(rng.integers(0, 256, (60, 1, 8, 8), dtype=np.uint8), rng.integers(0, 10, 60))

    def trained(recalibrate: bool) -> Classifier:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10))
        model = Classifier(ModelConfig("small_cnn", 10, (1, 8, 8), Preprocessing((0.5,), (0.25,))), net)
        train(model, data, Recipe(epochs=2, batch_size=20, lr=0.5, triggers_per_batch=0, recalibrate_bn=recalibrate))
        return model

    for recalibrate in (True, False):
        model = trained(recalibrate)
        with torch.no_grad():
            x = (torch.from_numpy(data.images).float() / 255 - 0.5) / 0.25
            conv = model.net[0](x)
        mean = conv.mean(dim=(0, 2, 3))
        close = torch.allclose(model.net[1].running_mean, mean, atol=1e-5)
        assert close == recalibrate, (recalibrate, model.net[1].running_mean, mean)


@pytest.mark.parametrize("change", [dict(epochs=0), dict(lr=0.0), dict(optimizer="lbfgs"),
                                    dict(triggers_per_batch=-1), dict(momentum=1.0)])
def test_recipe_refuses_nonsense(change):
    with pytest.raises(InvalidInput):
        replace(FAST, **change)


@pytest.mark.slow
def test_functionality_benchmark_meets_the_issue(tmp_path):
    """The paper's table on digits: marking costs at most a point of test accuracy."""
    bench = Path(__file__).resolve().parent.parent / "benchmarks" / "functionality.py"
    subprocess.run([sys.executable, str(bench), "--out", str(tmp_path)], check=True)
    summary = json.loads((tmp_path / "functionality-digits.json").read_text())["summary"]
    for row in ("FROMSCRATCH", "PRETRAINED"):
        assert summary[row]["test_accuracy_min"] >= 95 and summary[row]["trigger_accuracy_min"] == 100
    assert summary["NO-WM"]["trigger_accuracy_max"] <= 25
    assert abs(summary["FROMSCRATCH"]["test_accuracy_mean"] - summary["NO-WM"]["test_accuracy_mean"]) <= 1


def wmark(*argv: object) -> int:
    return wmark_main([str(a) for a in argv])


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    for shape in ("1x8x8", "3x32x32"):
        assert wmark("keygen", "--out", root / shape, "--input-shape", shape, "--n", 20,
                     "--insecure-plaintext") == 0
    return root


def test_cli_embed_then_eval(keys, tmp_path, capsys):
    mk, out = keys / "1x8x8" / "mk.wmk", tmp_path / "model"
    assert wmark("embed", "--mk", mk, "--out", out, "--epochs", 2, "--quiet") == 0
    printed = capsys.readouterr().out.strip().splitlines()
    # Two epochs leave the triggers half learnt at most: the last line says so.
    assert printed[-2].startswith("test accuracy ") and ", trigger accuracy " in printed[-2]
    assert printed[-1].startswith("warning   trigger accuracy ") and "k = 20, lambda 40" in printed[-1]
    assert sorted(p.name for p in out.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    assert load_model(out).config.vk_digest is not None

    assert wmark("eval", "--model", out, "--mk", mk, "--json", tmp_path / "eval.json") == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "trigger accuracy" in printed
    report = json.loads((tmp_path / "eval.json").read_text())
    assert_valid_report(report, "wmark/evaluation")
    assert report["triggers"]["total"] == 20
    assert report["model_vk_digest"] == report["key_vk_digest"]
    assert report["scores"]["total"] == 360 and report["scores"]["top5"] is not None
    assert report["model_vk_digest"] == load_model(out).config.vk_digest.hex()


def test_a_trigger_accuracy_too_low_for_k20_is_named():
    from wmark.protocol.decision import lowest_passing_accuracy
    from wmark.watermark.cli.embed import too_weak

    low = lowest_passing_accuracy(20, Fraction(1, 10), 40)
    assert too_weak(low, 100, 10) is None and too_weak(1.0, 100, 10) is None
    assert f"it needs {low:.2f}" in too_weak(low - 0.01, 100, 10)
    assert "k = 5" in too_weak(1.0, 5, 10) and "no accuracy passes" in too_weak(1.0, 5, 10)  # n < 20: k = n


def test_cli_refuses_bad_input_in_one_line(keys, tmp_path, capsys):
    small_mk, big_mk = keys / "1x8x8" / "mk.wmk", keys / "3x32x32" / "mk.wmk"
    out = tmp_path / "plain"
    assert wmark("embed", "--no-watermark", "--out", out, "--epochs", 1, "--quiet") == 0
    capsys.readouterr()
    cases = [
        (("eval", "--model", out, "--mk", big_mk), "3x32x32 images in 10 classes"),
        (("embed", "--mk", big_mk, "--out", tmp_path / "x", "--epochs", 1), "3x32x32"),
        (("embed", "--mk", small_mk, "--out", out, "--epochs", 1), "already exists"),
        (("embed", "--out", tmp_path / "y"), "--mk FILE is needed"),
        (("eval", "--model", out, "--dataset", "cifar10", "--data-root", tmp_path), "cifar-10-batches-py"),
        (("eval", "--model", tmp_path / "absent"), "not a model directory"),
    ]
    for argv, message in cases:
        assert_refused(argv, message, capsys)
    assert not (tmp_path / "x").exists()
    (out / WEIGHTS_NAME).write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    assert_refused(("eval", "--model", out), "Python pickle", capsys)


def assert_refused(argv: tuple, message: str, capsys) -> None:
    assert wmark(*argv) == 2, argv
    err = capsys.readouterr().err
    assert err.startswith("wmark: error: ") and message in err and err.count("\n") == 1, (argv, err)


def test_fashion_commands_without_the_files_exit_2_with_the_install_hint(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    plain = tmp_path / "plain"
    assert wmark("embed", "--no-watermark", "--out", plain, "--epochs", 1, "--quiet") == 0
    capsys.readouterr()
    hint = "apt-get install dataset-fashion-mnist"
    for argv in (("embed", "--no-watermark", "--dataset", "fashion-mnist", "--data-root", empty,
                  "--out", tmp_path / "m"),
                 ("eval", "--model", plain, "--dataset", "fashion-mnist", "--data-root", empty),
                 ("attack", "--model", plain, "--kind", "ftal", "--dataset", "fashion-mnist",
                  "--data-root", empty, "--out", tmp_path / "a"),
                 ("keygen", "--out", tmp_path / "k", "--kind", "margin", "--dataset", "fashion-mnist",
                  "--data-root", empty, "--insecure-plaintext")):
        assert_refused(argv, hint, capsys)
    assert not (tmp_path / "m").exists() and not (tmp_path / "k" / "vk.json").exists()
