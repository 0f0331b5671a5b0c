"""A KServe ``ModelServer`` (not our code) serving a wmark model directory over
the Open Inference Protocol v2 REST, for the oracle's interoperability test.

Usage: python -m tests.support.kserve_server MODEL_DIR NAME PORT [--classes]
"""

from __future__ import annotations

import sys
import uuid

import numpy as np
import torch
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer

from wmark.watermark.modelio import load_model


class WmarkModel(Model):
    def __init__(self, name: str, model_dir: str, answer_classes: bool) -> None:
        super().__init__(name)
        self._model = load_model(model_dir)
        self._answer_classes = answer_classes
        self.ready = True

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        pixels = payload.inputs[0].as_numpy().astype(np.float32) * 255.0  # protocol: FP32 in [0, 1]
        with torch.inference_mode():
            logits = self._model(torch.from_numpy(pixels)).numpy()
        if self._answer_classes:
            out = InferOutput("classes", [len(logits)], "INT64", logits.argmax(axis=1).astype(np.int64))
        else:
            out = InferOutput("logits", list(logits.shape), "FP32", logits.astype(np.float32))
        return InferResponse(response_id=str(uuid.uuid4()), model_name=self.name, infer_outputs=[out])


if __name__ == "__main__":
    model_dir, name, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    model = WmarkModel(name, model_dir, "--classes" in sys.argv)
    ModelServer(http_port=port, enable_grpc=False, workers=1, enable_latency_logging=False).start([model])
