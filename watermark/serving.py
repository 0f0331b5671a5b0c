"""A model directory behind an Open Inference Protocol (KServe v2 REST) server,
built on KServe's ``ModelServer`` (docs/design.md section 4, "Model access").

The endpoint contract, what ``wmark-verifier --endpoint`` sends and reads:

* request: one input tensor, datatype ``FP32``, shape ``[N, C, H, W]`` (the
  model's ``input_shape``), pixels scaled to [0, 1] (a uint8 pixel ``p`` is
  sent as ``p / 255``);
* response: one output, ``FP32`` logits ``[N, L]`` (or, with
  ``answer="classes"``, ``INT64`` class indices ``[N]``).

The server rounds each input value to the nearest of the 256 grey levels the
verifier's images have, then applies the model's own preprocessing, so it
answers exactly as the model directory does under ``wmark eval``.  Requests
are bounded before work: the body (``MAX_BODY_BYTES``), the batch
(``MAX_BATCH``), the shape and every value's range.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np
import torch

from wmark.watermark.modelio import Classifier, ModelFiles, load_model

ANSWERS = ("logits", "classes")
MAX_BATCH = 1024
# The verifier sends 64 images a request; 3x224x224 FP32 as JSON is ~2.5 MB an image.
MAX_BODY_BYTES = 256 * 1024 * 1024

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


def _kserve() -> None:
    """Import KServe, which parses ``sys.argv`` when imported (its own flags): hide ours from it."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        # Imported for their side effect: loaded now, under the hidden flags, they are what
        # serve's own imports of them find in sys.modules.
        import kserve
        import kserve.model_server
        import kserve.protocol.rest.server  # noqa: F401
    except ImportError:
        from wmark.errors import InvalidInput

        raise InvalidInput("serve-model needs KServe: pip install 'wmark[serve]'") from None
    finally:
        sys.argv = saved


def answer_batch(model: Classifier, pixels01: np.ndarray, *, answer: str) -> tuple[str, str, np.ndarray]:
    """(output name, datatype, array) for a request's FP32 [0, 1] batch; raises ValueError on a bad one."""
    shape = (len(model.config.preprocessing.mean), *model.config.input_shape[1:])
    if pixels01.ndim != 4 or tuple(pixels01.shape[1:]) != shape:
        raise ValueError(f"expected shape [N, {', '.join(map(str, shape))}], got {list(pixels01.shape)}")
    if not 1 <= len(pixels01) <= MAX_BATCH:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH} images, got {len(pixels01)}")
    if not np.all(np.isfinite(pixels01)) or pixels01.min() < 0 or pixels01.max() > 1:
        raise ValueError("pixel values must be in [0, 1] (a uint8 pixel p is sent as p / 255)")
    pixels = np.rint(pixels01.astype(np.float64) * 255.0).astype(np.uint8)
    device = next(model.parameters()).device
    with torch.inference_mode():
        logits = model(torch.from_numpy(pixels).to(device)).float().cpu().numpy()
    if answer == "classes":
        return "classes", "INT64", logits.argmax(axis=1).astype(np.int64)
    return "logits", "FP32", logits.astype(np.float32)


def limit_body(app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> ASGIApp:
    """ASGI middleware (written here: KServe and uvicorn bound no body size): refuse a request
    whose declared or delivered body exceeds ``max_bytes`` with 413."""
    async def bounded(scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
            return await _refuse(send)
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > max_bytes:
                raise _TooLarge()
            return message
        try:
            await app(scope, counted, send)
        except _TooLarge:
            await _refuse(send)
    return bounded


class _TooLarge(Exception):
    pass


async def _refuse(send) -> None:
    body = b'{"error":"request body too large"}'
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def serve(model_dir: str | os.PathLike[str] | ModelFiles, name: str, *, host: str, port: int, device: torch.device,
          answer: str = "logits") -> None:
    """Serve ``model_dir`` (a directory or its :class:`ModelFiles`) as model ``name`` until interrupted (blocks)."""
    _kserve()  # the first import, with our flags hidden; the ones below find it in sys.modules
    from kserve import InferOutput, InferResponse, Model
    from kserve.errors import InvalidInput as RequestError
    from kserve.model_server import FASTAPI_APP_IMPORT_STRING, ModelServer, app
    from kserve.protocol.rest.server import RESTServer

    classifier = load_model(model_dir).to(device)

    class WmarkModel(Model):
        def __init__(self) -> None:
            super().__init__(name)
            self.ready = True

        def predict(self, payload: Any, headers: Any = None, response_headers: Any = None) -> Any:
            if len(payload.inputs) != 1:
                raise RequestError(f"expected one input tensor, got {len(payload.inputs)}")
            tensor = payload.inputs[0]
            if tensor.datatype != "FP32":
                raise RequestError(f"expected datatype FP32, got {tensor.datatype}")
            try:
                out_name, datatype, data = answer_batch(classifier, tensor.as_numpy(), answer=answer)
            except ValueError as exc:
                raise RequestError(str(exc)) from None
            return InferResponse(response_id=str(uuid.uuid4()), model_name=name, infer_outputs=[
                InferOutput(out_name, list(data.shape), datatype, data)])

    class BoundModelServer(ModelServer):
        """KServe's single-worker ``start`` (KServe 0.21's, rewritten here) with the listening address
        chosen: KServe always binds 0.0.0.0, which would expose the model to every network the host is on."""

        def start(self, models: list[Any]) -> None:
            self._register_and_check_atleast_one_model_is_ready(models)
            self._rest_server = RESTServer(FASTAPI_APP_IMPORT_STRING, self.dataplane,
                                           self.model_repository_extension, self.http_port,
                                           grace_period=self.grace_period, event_loop=self.event_loop,
                                           timeout_keep_alive=self.timeout_keep_alive)
            self._rest_server.config.host = host
            self.servers.append(self._rest_server.start())
            self.setup_event_loop()
            # No KServe signal handlers: its stop() leaves a single-worker server running;
            # uvicorn's own handlers stop it on SIGINT or SIGTERM.
            asyncio.run(self._serve())

    app.add_middleware(_BodyLimit)
    BoundModelServer(http_port=port, enable_grpc=False, workers=1, enable_latency_logging=False,
                     grace_period=2).start([WmarkModel()])


class _BodyLimit:
    """:func:`limit_body` in the form Starlette's ``add_middleware`` takes."""

    def __init__(self, app: ASGIApp) -> None:
        self._bounded = limit_body(app)

    async def __call__(self, scope: Scope, receive, send) -> None:
        await self._bounded(scope, receive, send)
