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

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from wmark.errors import DecodeError, ModelOracleError
from wmark.protocol.hazmat.encoding import parse_json
from wmark.protocol.messages import ModelRef

# numpy and httpx are imported where a model is queried, so that the commands
# that only name this module's defaults start without them.
if TYPE_CHECKING:
    import httpx
    import numpy as np

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
ENDPOINT_BATCH = 64
# Per item: logits for up to this many classes (wmark's own limit on L).
MAX_OUTPUTS = 100_000
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
        self._timeout = timeout
        import httpx

        self._client = httpx.Client(timeout=timeout, transport=transport)

    def classify(self, images: np.ndarray) -> np.ndarray:
        import numpy as np

        return np.concatenate([self._infer(images[i:i + ENDPOINT_BATCH])
                               for i in range(0, len(images), ENDPOINT_BATCH)])

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        import numpy as np

        from wmark.net import fetch  # imports httpx

        where = f"endpoint {self.url} model {self.name}"
        request = {"inputs": [{
            "name": "input-0", "shape": list(batch.shape), "datatype": "FP32",
            "data": (batch.astype(np.float32) / 255.0).ravel().tolist(),
        }]}
        status, _, body = fetch(self._client, "POST", f"{self.url}/v2/models/{self.name}/infer", json=request,
                                deadline_s=self._timeout, max_bytes=MAX_RESPONSE_BYTES, source=where,
                                error=ModelOracleError)
        if status != 200:
            raise ModelOracleError(f"{where}: HTTP {status}: {body[:200].decode('utf-8', 'replace')}")
        shape, data = _answer(body, len(batch), where=where)
        n = len(batch)
        if len(shape) == 2 and shape[1] > 1:
            return data.reshape(shape).argmax(axis=1).astype(np.int64)
        if len(shape) in (1, 2) and np.all(data == np.round(data)) and np.all(data >= 0) and np.all(data < 2**31):
            return data.reshape(n).astype(np.int64)
        raise ModelOracleError(f"{where}: answered shape {shape}, expected logits [batch, L] or classes [batch]")


def _answer(body: bytes, n: int, *, where: str) -> tuple[list[int], np.ndarray]:
    """The first output's shape and data, each checked before it is used: a shape of
    [1e400] or 10^400, or data that is not a flat list of numbers, is the endpoint's fault."""
    import numpy as np

    try:
        obj = parse_json(body, what=where, max_bytes=MAX_RESPONSE_BYTES, max_depth=8)
        output = obj["outputs"][0]
        shape, values = output["shape"], output["data"]
    except DecodeError as exc:
        raise ModelOracleError(f"{where}: response is not an Open Inference Protocol answer ({exc})") from None
    except (KeyError, IndexError, TypeError):
        raise ModelOracleError(f"{where}: response is not an Open Inference Protocol answer") from None
    if (not isinstance(shape, list) or not 1 <= len(shape) <= 2
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_OUTPUTS for d in shape)):
        raise ModelOracleError(f"{where}: answered shape {str(shape)[:64]}, expected [batch] or [batch, L] of "
                               f"at most {MAX_OUTPUTS}")
    if shape[0] != n:
        raise ModelOracleError(f"{where}: answered shape {shape} for a batch of {n}")
    if not isinstance(values, list) or len(values) != math.prod(shape) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ModelOracleError(f"{where}: answered shape {shape} with "
                               f"{len(values) if isinstance(values, list) else 'no list of'} numbers")
    return shape, np.asarray(values, dtype=np.float64)


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
