"""The log's HTTP front, on loopback, so several parties can share one log.

    POST /entries                               body: a signed vk (DSSE JSON) -> receipt
    GET  /entries/{index}                       -> log entry
    GET  /entries?commitment=B64U               -> the entries committing to that item
    GET  /proof/inclusion?index=I[&size=N]      -> inclusion proof (latest tree by default)
    GET  /proof/consistency?first=M[&second=N]  -> consistency proof (to the latest tree by default)
    GET  /tree-head[?size=N]                    -> signed tree head (DSSE JSON)
    GET  /log-key                               -> the log's public key (PEM)
    GET  /checkpoint                            -> the latest cosigned C2SP checkpoint (signed note)
    GET  /tile/{L}/{N}[.p/{W}]                  -> a tlog-tiles Merkle tile
    GET  /tile/entries/{N}[.p/{W}]              -> a tlog-tiles entry bundle
    GET  /log.vkey                              -> the verifier key of the checkpoints

Answers are JSON; errors are ``{"error": {"code": ..., "message": ...}}``
with a 4xx status for the client's mistakes (:mod:`.errors`).  Bodies need a
Content-Length and are bounded; idle connections time out (:mod:`.front`).  Nothing served
needs trusting: receipts, heads and proofs verify against the log's public
key alone.
"""

from __future__ import annotations

import json
import re
import signal
import threading
from typing import Any, Callable, overload
from urllib.parse import SplitResult, parse_qs, urlsplit

from wmark.errors import DecodeError, InvalidInput, WmarkError
from wmark.protocol import tiles
from wmark.protocol.hazmat.encoding import b64u_decode, expect_header, field, only_fields, parse_json
from wmark.protocol.hazmat.merkle import HASH_SIZE
from wmark.protocol.keys import MAX_VK_BYTES
from wmark.registry.checkers import CheckerPool, check_posted
from wmark.registry.cosigning import WitnessClient
from wmark.registry.errors import encode_error
from wmark.registry.front import JSON, LOOPBACK, Front, Refused, Request, Response
from wmark.registry.integrator import Integrator
from wmark.registry.store import MAX_LOOKUP, LogStore

MAX_BODY_BYTES = MAX_VK_BYTES
LOOKUP_TYPE = "wmark/commitment-lookup"
TEXT = "text/plain; charset=utf-8"
OCTETS = "application/octet-stream"
_NUMBER = re.compile(r"[0-9]{1,16}")
_ENTRY_PATH = re.compile(r"/entries/([^/]*)")


def encode_lookup(commitment: str, indices: list[int]) -> bytes:
    return json.dumps({"type": LOOKUP_TYPE, "version": 1, "commitment": commitment,
                       "indices": indices}).encode("utf-8")


def decode_lookup(data: bytes, *, what: str) -> list[int]:
    obj = expect_header(parse_json(data, what=what, max_bytes=64 * MAX_LOOKUP), type_=LOOKUP_TYPE,
                        version=1, what=what)
    only_fields(obj, {"type", "version", "commitment", "indices"}, what=what)
    indices = field(obj, "indices", list, what=what)
    if len(indices) > MAX_LOOKUP or not all(type(i) is int and i >= 0 for i in indices):
        raise DecodeError(f"{what}: 'indices' must be at most {MAX_LOOKUP} entry indices")
    return indices


def _query(url: SplitResult, *, required: frozenset[str] = frozenset(),
           optional: frozenset[str] = frozenset()) -> dict[str, str]:
    try:
        pairs = parse_qs(url.query, strict_parsing=bool(url.query), max_num_fields=4)
    except ValueError:
        raise Refused(400, "bad-query", f"malformed query string {url.query[:200]!r}") from None
    unknown = set(pairs) - required - optional
    if unknown:
        raise Refused(400, "bad-query", f"{url.path} takes no parameter(s) {sorted(unknown)}")
    missing = required - set(pairs)
    if missing:
        raise Refused(400, "bad-query", f"{url.path} needs the parameter(s) {sorted(missing)}")
    if any(len(values) > 1 for values in pairs.values()):
        raise Refused(400, "bad-query", f"{url.path}: a parameter is given twice")
    return {name: values[0] for name, values in pairs.items()}


# A required query parameter always yields a number, an absent optional one None.
@overload
def _number(text: str, name: str) -> int: ...
@overload
def _number(text: str | None, name: str) -> int | None: ...
def _number(text: str | None, name: str) -> int | None:
    if text is None:
        return None
    if not _NUMBER.fullmatch(text):
        raise Refused(400, "bad-query", f"{name} must be a non-negative decimal integer, got {text[:40]!r}")
    return int(text)


def _json(obj: Any) -> tuple[bytes, str]:
    return json.dumps(obj).encode("utf-8"), JSON


class LogServer(Front):
    """The HTTP front of ``store``: appends go through an :class:`Integrator` (batches,
    then cosignatures from ``witnesses``); every read a verifier needs is a tile read."""

    server_name = "wmark-log/1"
    # The largest request is a signed vk; the log accepts any vk a vk file may hold.
    max_body_bytes = MAX_BODY_BYTES

    def __init__(self, store: LogStore, port: int = 0, *, verbose: bool = False,
                 witnesses: tuple[WitnessClient, ...] = (), batching: bool = True, reuse_port: bool = False,
                 checkers: int = 0) -> None:
        # batching=False appends each request in its own transaction, as before
        # batches existed: the baseline benchmarks/registry.py measures against.
        if not batching and (witnesses or checkers):
            raise InvalidInput("witnesses cosign batches and checkers feed them: they need batching")
        self.store = store
        # checkers > 0: posted vks are checked, and their beacons evaluated, on that many processes.
        self.checkers = CheckerPool(checkers, *store.beacon_key()) if checkers else None
        try:
            super().__init__(port, verbose=verbose, reuse_port=reuse_port)
        except BaseException:
            if self.checkers is not None:
                self.checkers.close()
            raise
        self.integrator = Integrator(store, witnesses) if batching else None

    def server_close(self) -> None:
        super().server_close()
        if self.integrator is not None:
            self.integrator.close()
        if self.checkers is not None:
            self.checkers.close()

    async def respond(self, request: Request) -> Response:
        try:
            url = urlsplit(request.target)
            if request.method == "GET":
                # Reads wait on the store's lock while a batch commits: off the loop.
                body, content_type = await self.blocking(self._get, url)
            elif request.method == "POST":
                body, content_type = await self._post(url, request.body), JSON
            else:
                raise Refused(501, "bad-request", f"unsupported method {request.method[:20]!r}")
        except WmarkError as exc:
            (status, body), content_type = encode_error(exc), JSON
            return Response(status, body, content_type)
        return Response(200, body, content_type)

    def _get(self, url: SplitResult) -> tuple[bytes, str]:
        store = self.store
        if url.path == "/tree-head":
            q = _query(url, optional=frozenset({"size"}))
            return store.tree_head(_number(q.get("size"), "size")).to_json(), JSON
        if url.path == "/proof/inclusion":
            q = _query(url, required=frozenset({"index"}), optional=frozenset({"size"}))
            inclusion = store.inclusion_proof(_number(q["index"], "index"), _number(q.get("size"), "size"))
            return _json(inclusion.to_obj())
        if url.path == "/proof/consistency":
            q = _query(url, required=frozenset({"first"}), optional=frozenset({"second"}))
            consistency = store.consistency_proof(_number(q["first"], "first"), _number(q.get("second"), "second"))
            return _json(consistency.to_obj())
        if url.path == "/entries":
            commitment = _query(url, required=frozenset({"commitment"}))["commitment"]
            digest = b64u_decode(commitment, what="commitment", size=HASH_SIZE)
            return encode_lookup(commitment, store.entries_with_commitment(digest)), JSON
        if url.path == "/checkpoint":
            _query(url)
            return store.checkpoint().encode(), TEXT
        if url.path == "/log.vkey":
            _query(url)
            return store.vkey.encode("ascii") + b"\n", TEXT
        if url.path.startswith("/tile/"):
            _query(url)
            return self._tile(url.path[1:]), OCTETS
        if url.path == "/log-key":
            _query(url)
            return store.public_key.to_pem().encode("ascii"), "application/x-pem-file"
        match = _ENTRY_PATH.fullmatch(url.path)
        if match:
            _query(url)
            return store.entry(_number(match.group(1), "entry index")).encode(), JSON
        raise Refused(404, "no-route", f"no endpoint GET {url.path[:200]}")

    def _tile(self, path: str) -> bytes:
        try:
            bundle, tile = tiles.parse_bundle_path(path), tiles.parse_tile_path(path)
        except DecodeError as exc:
            raise Refused(404, "no-route", str(exc)) from None
        if bundle is not None:
            return self.store.entry_bundle(*bundle)
        if tile is not None:
            return self.store.tile(*tile)
        raise Refused(404, "no-route", f"{path[:200]} is not a tlog-tiles path")

    async def _post(self, url: SplitResult, body: bytes) -> bytes:
        if url.path != "/entries":
            raise Refused(404, "no-route", f"no endpoint POST {url.path[:200]}")
        _query(url)
        if self.checkers is not None:
            vk, beacon = await self.checkers.check(body)
        else:
            vk, beacon = check_posted(body), None
        if self.integrator is None:
            receipt = await self.blocking(self.store.register, vk)
        else:
            receipt = await self.integrator.wait(vk, beacon)
        return receipt.to_json(indent=None)


def serve_until_signalled(server: Front, on_ready: Callable[[], None] = lambda: None) -> signal.Signals:
    """Serve until SIGTERM or SIGINT; return the signal once no new request can start.

    The signals are blocked in every thread and taken by ``sigwait`` here, so
    no handler runs in the middle of a request.  ``on_ready`` is called once
    they are blocked: a supervisor that signals as soon as it hears of it
    stops the server cleanly instead of killing it.
    """
    stop_on = {signal.SIGTERM, signal.SIGINT}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, stop_on)
    try:
        on_ready()
        worker = threading.Thread(target=server.serve_forever, name="wmark-log-http")
        worker.start()
        try:
            return signal.Signals(signal.sigwait(stop_on))
        finally:
            server.shutdown()
            worker.join()
            server.server_close()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
