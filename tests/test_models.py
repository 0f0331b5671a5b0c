"""Models: the registry, the on-disk format, and what loading refuses."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from wmark.errors import DecodeError, InvalidInput
from wmark.protocol.hazmat.encoding import b64u_encode
from wmark.protocol.hazmat.hashing import tagged_hash
from wmark.watermark import modelio
from wmark.watermark.evaluate import predict
from wmark.watermark.modelio import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    ModelConfig,
    Preprocessing,
    check_fits,
    load_model,
    model_file_digest,
    new_model,
    save_model,
)
from wmark.watermark.models import build_model
from wmark.watermark.triggers import TriggerSet

DIGITS_CONFIG = ModelConfig("small_cnn", 10, (1, 8, 8), Preprocessing((0.3,), (0.4,)), vk_digest=bytes(range(32)))
IMAGES = np.random.default_rng(0).integers(0, 256, (16, 1, 8, 8), dtype=np.uint8)


@pytest.fixture
def saved(tmp_path) -> Path:
    torch.manual_seed(0)
    save_model(tmp_path / "model", new_model(DIGITS_CONFIG))
    return tmp_path / "model"


@pytest.mark.parametrize("arch, shape, classes", [("small_cnn", (1, 8, 8), 10), ("small_cnn", (3, 32, 32), 100),
                                                  ("resnet18_cifar", (3, 32, 32), 10),
                                                  ("fashion_cnn", (1, 28, 28), 10), ("fashion_cnn", (3, 32, 32), 5),
                                                  ("torchvision:mobilenet_v3_small", (3, 32, 32), 7)])
def test_registry_builds_networks_with_the_asked_outputs(arch, shape, classes):
    net = build_model(arch, classes, shape).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, *shape)).shape == (1, classes)
    if arch == "resnet18_cifar":
        # The paper's CIFAR stem: full resolution into the first block.
        assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
        assert isinstance(net.maxpool, torch.nn.Identity)
    if arch == "fashion_cnn" and shape == (1, 28, 28):
        # Sized for two CPU cores (docs/design.md section 5): 0.39M weights.
        assert sum(p.numel() for p in net.parameters()) == 390_634


@pytest.mark.parametrize("arch, shape, message", [("lenet", (1, 8, 8), "unknown architecture"),
                                                  ("torchvision:nonesuch", (3, 32, 32), "not a torchvision"),
                                                  ("torchvision:resnet18", (1, 8, 8), "3-channel")])
def test_registry_refuses_unknown_or_unfit_architectures(arch, shape, message):
    with pytest.raises(InvalidInput, match=message):
        build_model(arch, 10, shape)


def test_saved_model_reloads_to_identical_outputs(saved):
    reloaded = load_model(saved)
    torch.manual_seed(0)
    original = new_model(DIGITS_CONFIG)
    assert reloaded.config == DIGITS_CONFIG
    assert np.array_equal(predict(reloaded, IMAGES), predict(original, IMAGES))
    assert not reloaded.training


def test_config_is_canonical_versioned_json(saved):
    text = (saved / CONFIG_NAME).read_bytes()
    obj = json.loads(text)
    assert obj["type"] == "wmark/model" and obj["version"] == 2 and obj["input_shape"] == [1, 8, 8]
    assert obj["vk_digest"] == bytes(range(32)).hex()  # hex, as the terminal and the JSON reports show it
    assert text == DIGITS_CONFIG.to_json() and ModelConfig.from_json(text, what="x") == DIGITS_CONFIG


def test_version_1_config_with_a_base64url_digest_is_still_read(saved):
    obj = json.loads((saved / CONFIG_NAME).read_bytes())
    obj.update(version=1, vk_digest=b64u_encode(bytes(range(32))))
    assert ModelConfig.from_json(json.dumps(obj).encode(), what="x") == DIGITS_CONFIG
    obj.update(vk_digest=bytes(range(32)).hex())  # each version reads only its own encoding
    with pytest.raises(InvalidInput, match="vk_digest"):
        ModelConfig.from_json(json.dumps(obj).encode(), what="x")


@pytest.mark.parametrize("edit, message", [
    (lambda o: o.update(version=3), "unsupported version"),
    (lambda o: o.update(version=True), "unsupported version"),
    (lambda o: o.update(vk_digest="AB" * 32), "hex"),
    (lambda o: o.update(extra=1), "unknown field"),
    (lambda o: o.update(arch="nonesuch"), "unknown architecture"),
    (lambda o: o.update(input_shape=[1, 8]), "input_shape"),
    (lambda o: o["preprocessing"].update(std=[0.0]), "positive"),
    (lambda o: o["preprocessing"].update(mean=[0.1, 0.2], std=[0.3, 0.4]), "channels"),
])
def test_malformed_config_is_refused(saved, edit, message):
    obj = json.loads((saved / CONFIG_NAME).read_bytes())
    edit(obj)
    (saved / CONFIG_NAME).write_text(json.dumps(obj))
    with pytest.raises(InvalidInput, match=message):
        load_model(saved)


class _Payload:
    """Unpickling this runs ``touch``: proof that a loader executed the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_disguised_as_model_is_refused_unexecuted(saved, tmp_path):
    marker = tmp_path / "executed"
    (saved / WEIGHTS_NAME).write_bytes(pickle.dumps(_Payload(marker), protocol=4))
    with pytest.raises(DecodeError, match="pickle.*never unpickles"):
        load_model(saved)
    assert not marker.exists()


def test_torch_save_file_is_refused(saved):
    torch.save(new_model(DIGITS_CONFIG).net.state_dict(), saved / WEIGHTS_NAME)
    with pytest.raises(DecodeError, match="torch.save"):
        load_model(saved)


def test_garbage_weights_are_refused(saved):
    (saved / WEIGHTS_NAME).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(DecodeError, match="safetensors"):
        load_model(saved)


def test_tensors_that_do_not_fit_the_config_are_refused(saved):
    tensors = {k: v.clone() for k, v in new_model(DIGITS_CONFIG).net.state_dict().items()}
    # Another number of values than the architecture holds: refused from the header's count.
    wider = ModelConfig("small_cnn", 12, (1, 8, 8), Preprocessing((0.3,), (0.4,)))
    (saved / CONFIG_NAME).write_bytes(wider.to_json())
    with pytest.raises(DecodeError, match=r"holds 283,786 numbers, the config's small_cnn, 12 classes.* has 284,300"):
        load_model(saved)
    (saved / CONFIG_NAME).write_bytes(DIGITS_CONFIG.to_json())
    save_file({**tensors, "backdoor.weight": torch.zeros(3)}, saved / WEIGHTS_NAME)
    with pytest.raises(DecodeError, match="holds 283,789 numbers"):
        load_model(saved)
    # As many values, other names or shapes: refused by name and shape.
    renamed = {("backdoor.bias" if k == "0.bias" else k): v for k, v in tensors.items()}
    save_file(renamed, saved / WEIGHTS_NAME)
    with pytest.raises(DecodeError, match="missing 0.bias; unexpected backdoor.bias"):
        load_model(saved)
    save_file({**tensors, "10.weight": tensors["10.weight"].T.contiguous()}, saved / WEIGHTS_NAME)
    with pytest.raises(DecodeError, match=r"shape \[256, 10\].*needs \[10, 256\]"):
        load_model(saved)
    save_file({**tensors, "0.weight": tensors["0.weight"].to(torch.int32)}, saved / WEIGHTS_NAME)
    with pytest.raises(DecodeError, match="int32"):
        load_model(saved)


def test_a_model_inspected_once_loads_from_its_files_and_its_weights_are_still_checked(saved):
    """run_cli inspects a command's model directory before torch is imported and hands
    the command that inspection: loading from it does not read the config again."""
    from wmark.watermark.modelfiles import inspect_files

    files = inspect_files(saved)
    before = predict(load_model(saved), IMAGES)
    (saved / CONFIG_NAME).write_bytes(b"not json")
    np.testing.assert_array_equal(predict(load_model(files), IMAGES), before)
    with pytest.raises(DecodeError):
        load_model(saved)
    (saved / WEIGHTS_NAME).write_bytes(b"garbage")  # the weights are read now, and checked
    with pytest.raises(DecodeError):
        load_model(files)


def test_model_digest_covers_both_files(saved):
    digest = model_file_digest(saved)
    assert digest == tagged_hash("wmark/model/v1", (saved / CONFIG_NAME).read_bytes(),
                                 (saved / WEIGHTS_NAME).read_bytes())
    assert model_file_digest(saved) == digest
    (saved / CONFIG_NAME).write_bytes(ModelConfig("small_cnn", 10, (1, 8, 8),
                                                  Preprocessing((0.3,), (0.4,))).to_json())
    assert model_file_digest(saved) != digest


def test_existing_model_is_replaced_only_when_asked(saved):
    model = load_model(saved)
    with pytest.raises(InvalidInput, match="already exists"):
        save_model(saved, model)
    save_model(saved, model, overwrite=True)
    (saved / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInput, match="other than a model"):
        save_model(saved, model, overwrite=True)


def test_interrupted_save_leaves_no_model(tmp_path, monkeypatch):
    real_write = modelio.atomic_write
    calls = []

    def interrupted(path, data, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_write(path, data, **kwargs)

    monkeypatch.setattr(modelio, "atomic_write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_model(tmp_path / "model", new_model(DIGITS_CONFIG))
    assert list(tmp_path.iterdir()) == []


def test_key_and_model_shapes_must_agree():
    other_shape = TriggerSet(np.zeros((4, 3, 32, 32), dtype=np.uint8), np.zeros(4, dtype=np.int64), 10)
    with pytest.raises(InvalidInput, match="3x32x32 images in 10 classes.*model takes 1x8x8"):
        check_fits(DIGITS_CONFIG, other_shape, what="the marking key")
    other_classes = TriggerSet(np.zeros((4, 1, 8, 8), dtype=np.uint8), np.zeros(4, dtype=np.int64), 100)
    with pytest.raises(InvalidInput, match="100 classes"):
        check_fits(DIGITS_CONFIG, other_classes, what="the marking key")


def test_predict_refuses_images_of_another_shape(saved):
    with pytest.raises(InvalidInput, match="uint8 N x 1x8x8"):
        predict(load_model(saved), np.zeros((2, 3, 8, 8), dtype=np.uint8))
    with pytest.raises(InvalidInput, match="uint8"):
        predict(load_model(saved), IMAGES.astype(np.float32))


def test_float_pixels_give_the_same_logits_and_a_gradient(saved):
    model = load_model(saved)
    pixels = torch.from_numpy(IMAGES).float().requires_grad_()
    logits = model(pixels)
    logits.sum().backward()
    assert pixels.grad is not None
    assert np.allclose(logits.detach().numpy(), predict(model, IMAGES), atol=1e-5)
