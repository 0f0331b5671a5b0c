"""The verifier's view of the suspect model: it queries the model itself
(docs/design.md section 4, "Model access"); the prover never supplies outputs.

* :class:`LocalModel`: a model directory (safetensors + model.json, never a
  pickle), named in the challenge by the digest of its files.
* :class:`InferenceEndpoint`: a server speaking the Open Inference Protocol
  (KServe v2 REST, ``POST {url}/v2/models/{name}/infer``), so a real serving
  stack can be audited.  We send FP32 pixels scaled to [0, 1], shape
  ``[batch, C, H, W]``; the server applies its own normalisation.  It may
  answer with logits ``[batch, L]`` or class indices ``[batch]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from wmark.errors import ModelOracleError
from wmark.protocol.messages import ModelRef

# numpy and httpx are imported where a model is queried, so that the commands
# that only name this module's defaults start without them.
if TYPE_CHECKING:
    import httpx
    import numpy as np

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
ENDPOINT_BATCH = 64
DEFAULT_TIMEOUT = 30.0


class ModelOracle(Protocol):
    # Read-only: what the challenge names, fixed when the oracle is opened (LocalModel is frozen).
    @property
    def model_ref(self) -> ModelRef: ...

    def classify(self, images: np.ndarray) -> np.ndarray:
        """Class indices (int64, N) for uint8 images (N x C x H x W)."""


@dataclass(frozen=True)
class LocalModel:
    model_dir: str
    model_ref: ModelRef
    # Where the model runs: a --device name (auto, cpu, cuda, cuda:N), resolved when it is queried.
    device: str = "auto"

    @classmethod
    def open(cls, model_dir: str, *, device: str = "auto") -> "LocalModel":
        from wmark.watermark.modelio import model_file_digest

        return cls(model_dir, ModelRef(sha256=model_file_digest(model_dir)), device)

    def classify(self, images: np.ndarray) -> np.ndarray:
        import numpy as np

        from wmark.watermark.device import pick_device
        from wmark.watermark.evaluate import predict
        from wmark.watermark.modelio import load_model, model_file_digest

        # Re-digest at query time: the model answering must be the one the challenge names.
        if model_file_digest(self.model_dir) != self.model_ref.sha256:
            raise ModelOracleError(f"{self.model_dir}: the model files changed since the challenge named them")
        model = load_model(self.model_dir).to(pick_device(self.device))
        return predict(model, images).argmax(axis=1).astype(np.int64)


class InferenceEndpoint:
    """An Open Inference Protocol v2 REST endpoint."""

    def __init__(self, url: str, name: str, *, timeout: float = DEFAULT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ModelOracleError(f"endpoint {url!r}: expected an http:// or https:// URL")
        if not name or "/" in name:
            raise ModelOracleError(f"endpoint model name {name!r} is empty or contains '/'")
        self.url = url.rstrip("/")
        self.name = name
        self.model_ref = ModelRef(url=self.url, name=name)
        import httpx

        self._client = httpx.Client(timeout=timeout, transport=transport)

    def classify(self, images: np.ndarray) -> np.ndarray:
        import numpy as np

        return np.concatenate([self._infer(images[i:i + ENDPOINT_BATCH])
                               for i in range(0, len(images), ENDPOINT_BATCH)])

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        import httpx
        import numpy as np

        where = f"endpoint {self.url} model {self.name}"
        request = {"inputs": [{
            "name": "input-0", "shape": list(batch.shape), "datatype": "FP32",
            "data": (batch.astype(np.float32) / 255.0).ravel().tolist(),
        }]}
        try:
            with self._client.stream("POST", f"{self.url}/v2/models/{self.name}/infer", json=request) as resp:
                body = b""
                for chunk in resp.iter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise ModelOracleError(f"{where}: response larger than {MAX_RESPONSE_BYTES} bytes")
                status = resp.status_code
        except httpx.TimeoutException:
            raise ModelOracleError(f"{where}: timed out") from None
        except httpx.HTTPError as exc:
            raise ModelOracleError(f"{where}: request failed ({exc})") from None
        if status != 200:
            raise ModelOracleError(f"{where}: HTTP {status}: {body[:200].decode('utf-8', 'replace')}")
        try:
            output = json.loads(body)["outputs"][0]
            shape, data = [int(d) for d in output["shape"]], np.asarray(output["data"], dtype=np.float64)
        except (ValueError, KeyError, IndexError, TypeError):
            raise ModelOracleError(f"{where}: response is not an Open Inference Protocol answer") from None
        n = len(batch)
        if data.size != int(np.prod(shape)) or not shape or shape[0] != n:
            raise ModelOracleError(f"{where}: answered shape {shape} for a batch of {n}")
        if len(shape) == 2 and shape[1] > 1:
            return data.reshape(shape).argmax(axis=1).astype(np.int64)
        if len(shape) in (1, 2) and np.all(data == np.round(data)) and np.all(data >= 0):
            return data.reshape(n).astype(np.int64)
        raise ModelOracleError(f"{where}: answered shape {shape}, expected logits [batch, L] or classes [batch]")


def open_oracle(*, model_dir: str | None = None, endpoint: str | None = None, model_name: str | None = None,
                timeout: float = DEFAULT_TIMEOUT, device: str = "auto") -> ModelOracle:
    if (model_dir is None) == (endpoint is None):
        raise ModelOracleError("give either a model directory (--model) or an endpoint (--endpoint, --model-name)")
    if endpoint is not None:
        if not model_name:
            raise ModelOracleError("--endpoint needs --model-name")
        return InferenceEndpoint(endpoint, model_name, timeout=timeout)
    assert model_dir is not None  # exactly one of model_dir and endpoint, checked above
    return LocalModel.open(model_dir, device=device)
