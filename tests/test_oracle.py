"""The verifier's model oracle: local models, and an Open Inference Protocol
server, ``wmark serve-model`` (KServe's ModelServer) on loopback."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from tests.support.live import served_model
from wmark.errors import ModelOracleError
from wmark.verifier.oracle import InferenceEndpoint, LocalModel, open_oracle
from wmark.verifier.verify import query_shuffled
from wmark.watermark.datasets import load_task
from wmark.watermark.evaluate import predict
from wmark.watermark.modelio import load_model
from wmark.watermark.triggers import trigger_set_from_marking_key


@pytest.fixture(scope="module", params=["logits", "classes"])
def kserve_endpoint(request, digits_world, tmp_path_factory):
    pytest.importorskip("kserve")
    with served_model(digits_world.marked, "m", tmp_path_factory.mktemp("serve-model") / "log",
                      "--answer", request.param, startup_s=60) as url:
        yield url


def test_kserve_endpoint_answers_like_the_local_model(kserve_endpoint, digits_world):
    images = trigger_set_from_marking_key(digits_world.pair.marking_key).images
    images = np.concatenate([images, load_task("digits").test.images[:100]])
    expected = predict(load_model(digits_world.marked), images).argmax(axis=1)
    endpoint = open_oracle(endpoint=kserve_endpoint, model_name="m")
    assert np.array_equal(endpoint.classify(images), expected)
    # Shuffled among decoys, answers still come back to the right items.
    decoys = load_task("digits").test.images
    assert np.array_equal(query_shuffled(endpoint, images[:100], decoys), expected[:100])


def test_unknown_model_name_is_an_oracle_error(kserve_endpoint):
    with pytest.raises(ModelOracleError, match="HTTP 404"):
        open_oracle(endpoint=kserve_endpoint, model_name="nope").classify(np.zeros((1, 1, 8, 8), np.uint8))


def test_served_model_refuses_requests_outside_the_contract(kserve_endpoint):
    def infer(shape, data, datatype="FP32"):
        return httpx.post(f"{kserve_endpoint}/v2/models/m/infer", timeout=30, json={
            "inputs": [{"name": "x", "shape": shape, "datatype": datatype, "data": data}]})
    assert infer([1, 1, 8, 8], [0.5] * 64).status_code == 200
    for response, message in [(infer([1, 1, 8, 8], [255.0] * 64), "in [0, 1]"),
                              (infer([1, 3, 8, 8], [0.5] * 192), "expected shape"),
                              (infer([1, 1, 8, 8], [0] * 64, "INT64"), "FP32")]:
        assert response.status_code == 400 and message in response.json()["error"]


def test_local_model_runs_on_the_device_asked_for(digits_world, monkeypatch):
    from wmark.watermark import device

    asked = []
    real = device.pick_device
    monkeypatch.setattr(device, "pick_device", lambda name="auto": asked.append(name) or real("cpu"))
    oracle = open_oracle(model_dir=str(digits_world.marked), device="cpu")
    assert oracle.classify(np.zeros((2, 1, 8, 8), np.uint8)).shape == (2,) and asked == ["cpu"]


def fake_endpoint(handler) -> InferenceEndpoint:
    return InferenceEndpoint("http://suspect.test", "m", transport=httpx.MockTransport(handler))


def answer(shape, data, datatype="FP32"):
    return lambda request: httpx.Response(200, json={"outputs": [{"name": "o", "shape": shape,
                                                                  "datatype": datatype, "data": data}]})


@pytest.mark.parametrize("handler, message", [
    (answer([2, 10], [0.0] * 20), "answered shape \\[2, 10\\] for a batch of 3"),
    (answer([3, 10], [0.0] * 7), "answered shape"),
    (answer([3], [1.5, 2, 3]), "expected logits"),
    (lambda r: httpx.Response(200, content=b"not json"), "not an Open Inference Protocol answer"),
    (lambda r: httpx.Response(200, json={"outputs": []}), "not an Open Inference Protocol answer"),
    (lambda r: httpx.Response(500, text="boom"), "HTTP 500"),
])
def test_malformed_endpoint_answers_are_reported(handler, message):
    with pytest.raises(ModelOracleError, match=message):
        fake_endpoint(handler).classify(np.zeros((3, 1, 8, 8), np.uint8))


def test_endpoint_timeout_is_reported():
    def slow(request):
        raise httpx.ReadTimeout("slow", request=request)
    with pytest.raises(ModelOracleError, match="timed out"):
        fake_endpoint(slow).classify(np.zeros((1, 1, 8, 8), np.uint8))


def test_endpoint_request_follows_the_protocol():
    seen = {}

    def handler(request):
        seen.update(json.loads(request.content), path=request.url.path)
        return httpx.Response(200, json={"outputs": [{"name": "o", "shape": [2], "datatype": "INT64",
                                                      "data": [3, 4]}]})
    images = np.full((2, 1, 8, 8), 255, np.uint8)
    assert fake_endpoint(handler).classify(images).tolist() == [3, 4]
    tensor = seen["inputs"][0]
    assert seen["path"] == "/v2/models/m/infer"
    assert tensor["shape"] == [2, 1, 8, 8] and tensor["datatype"] == "FP32" and set(tensor["data"]) == {1.0}


def test_local_model_refuses_files_changed_after_the_challenge(digits_world, fresh_copy):
    model_dir = fresh_copy(digits_world.marked)
    oracle = LocalModel.open(str(model_dir))
    (model_dir / "model.json").write_text((model_dir / "model.json").read_text() + " ")
    with pytest.raises(ModelOracleError, match="changed since the challenge"):
        oracle.classify(np.zeros((1, 1, 8, 8), np.uint8))


def test_shuffled_queries_return_answers_in_item_order():
    class PixelSum:
        def classify(self, images):
            return images.reshape(len(images), -1).sum(axis=1) % 10

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 1, 8, 8), dtype=np.uint8)
    decoys = rng.integers(0, 256, (50, 1, 8, 8), dtype=np.uint8)
    assert np.array_equal(query_shuffled(PixelSum(), images, decoys), PixelSum().classify(images))
