"""``wmark import-model``: a user's weights become a model directory, or one clear line says why not."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from wmark.errors import DecodeError, InvalidInput
from wmark.watermark.cli import main as wmark_main
from wmark.watermark.device import device_name, pick_device, torch_threads
from wmark.watermark.evaluate import predict
from wmark.watermark.importing import import_weights, parse_channel_values
from wmark.watermark.modelio import ModelConfig, Preprocessing, load_model
from wmark.watermark.models import build_model

CONFIG = ModelConfig("small_cnn", 10, (1, 8, 8), Preprocessing((0.3,), (0.4,)))
IMAGES = np.random.default_rng(0).integers(0, 256, (16, 1, 8, 8), dtype=np.uint8)


@pytest.fixture
def net():
    torch.manual_seed(1)
    return build_model("small_cnn", 10, (1, 8, 8))


def import_args(weights: Path, out: Path, *extra: str) -> list[str]:
    return ["import-model", "--weights", str(weights), "--arch", "small_cnn", "--num-classes", "10",
            "--input-shape", "1x8x8", "--mean", "0.3", "--std", "0.4", "--out", str(out), *extra]


def expected_logits(net) -> np.ndarray:
    with torch.inference_mode():
        return net.eval()(torch.from_numpy((IMAGES / 255.0 - 0.3) / 0.4).float()).numpy()


@pytest.mark.parametrize("save", ["torch", "safetensors", "wrapped"])
def test_imported_model_answers_as_the_users_network(net, tmp_path, save):
    weights = tmp_path / "net.bin"
    if save == "torch":
        torch.save(net.state_dict(), weights)
    elif save == "safetensors":
        save_file(net.state_dict(), weights)
    else:  # a training checkpoint from nn.DataParallel
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, weights)
    assert wmark_main(import_args(weights, tmp_path / "model")) == 0
    model = load_model(tmp_path / "model")
    assert model.config == CONFIG
    np.testing.assert_allclose(predict(model, IMAGES), expected_logits(net), rtol=1e-5, atol=1e-5)


def test_class_names_are_stored_in_model_json(net, tmp_path):
    torch.save(net.state_dict(), tmp_path / "net.pt")
    names = [f"class {i}" for i in range(10)]
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n\n")
    assert wmark_main(import_args(tmp_path / "net.pt", tmp_path / "model", "--class-names",
                                  str(tmp_path / "names.txt"))) == 0
    assert json.loads((tmp_path / "model" / "model.json").read_text())["class_names"] == names
    assert load_model(tmp_path / "model").config.class_names == tuple(names)


class _Payload:
    """Unpickling this runs ``touch``: proof that a loader executed the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_file_holding_code_is_refused_unexecuted(tmp_path):
    marker = tmp_path / "executed"
    torch.save({"0.weight": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(DecodeError, match="objects other than tensors"):
        import_weights(tmp_path / "evil.pt", CONFIG)
    assert not marker.exists()


@pytest.mark.parametrize("edit, message", [
    (lambda sd: {k: v for k, v in sd.items() if k != "0.bias"}, "missing 0.bias"),
    (lambda sd: {**sd, "extra.weight": torch.zeros(2)}, "unexpected extra.weight"),
    (lambda sd: {**sd, "10.weight": torch.zeros(12, 256), "10.bias": torch.zeros(12)},
     r"10.weight has shape \[12, 256\], needs \[10, 256\]; 10.bias has shape \[12\], needs \[10\]"),
    (lambda sd: {**sd, "0.bias": torch.full((32,), float("nan"))}, "0.bias hold NaN"),
])
def test_weights_that_do_not_fit_are_refused_by_name(net, tmp_path, edit, message):
    torch.save(edit(net.state_dict()), tmp_path / "net.pt")
    with pytest.raises(DecodeError, match=message):
        import_weights(tmp_path / "net.pt", CONFIG)


def test_a_misfit_names_the_files_tensors_escaped(net, tmp_path):
    weights = {("0.bias\x1b[2J" if k == "0.bias" else k): v for k, v in net.state_dict().items()}
    torch.save(weights, tmp_path / "net.pt")
    with pytest.raises(DecodeError) as refused:
        import_weights(tmp_path / "net.pt", CONFIG)
    assert "unexpected 0.bias\\x1b[2J" in str(refused.value) and "\x1b" not in str(refused.value)


def test_mistakes_are_one_line_and_exit_2_with_nothing_written(net, tmp_path, capsys):
    torch.save(net, tmp_path / "module.pt")  # the whole module, not its state_dict
    torch.save(net.state_dict(), tmp_path / "net.pt")
    (tmp_path / "two.txt").write_text("a\nb\n")
    cases = [
        (import_args(tmp_path / "module.pt", tmp_path / "m"), "torch.save(net.state_dict(), FILE)"),
        (import_args(tmp_path / "absent.pt", tmp_path / "m"), "not found"),
        (import_args(tmp_path / "net.pt", tmp_path / "m", "--class-names", str(tmp_path / "two.txt")),
         "2 class names for 10 classes"),
        (import_args(tmp_path / "net.pt", tmp_path / "m", "--std", "0.1,0.2"), "2 values for a 1-channel"),
        ([a.replace("small_cnn", "nonesuch") for a in import_args(tmp_path / "net.pt", tmp_path / "m")],
         "unknown architecture"),
    ]
    for argv, message in cases:
        assert wmark_main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert not (tmp_path / "m").exists()


def test_channel_values_broadcast_or_match():
    assert parse_channel_values("0.5", 3, what="--mean") == (0.5, 0.5, 0.5)
    assert parse_channel_values("0.1,0.2,0.3", 3, what="--mean") == (0.1, 0.2, 0.3)
    with pytest.raises(InvalidInput, match="one number"):
        parse_channel_values("x", 3, what="--mean")


def test_device_names():
    assert pick_device("cpu") == torch.device("cpu")
    assert device_name("cuda:1") == "cuda:1"
    with pytest.raises(Exception, match="unknown device 'gpu'"):
        device_name("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInput, match="sees no CUDA GPU"):
            pick_device("cuda:0")
        assert pick_device("auto") == torch.device("cpu")
    else:
        with pytest.raises(InvalidInput, match="sees"):
            pick_device(f"cuda:{torch.cuda.device_count()}")


def test_torch_threads_restores_the_callers_count_even_on_error():
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    with pytest.raises(RuntimeError):
        with torch_threads(wanted):
            assert torch.get_num_threads() == wanted
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before
