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
Content-Length and are bounded; idle connections time out.  Nothing served
needs trusting: receipts, heads and proofs verify against the log's public
key alone.
"""

from __future__ import annotations

import json
import re
import signal
import socketserver
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, overload
from urllib.parse import SplitResult, parse_qs, urlsplit

from wmark.errors import DecodeError, InvalidInput, WmarkError
from wmark.protocol import tiles
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.encoding import b64u_decode, expect_header, field, only_fields, parse_json
from wmark.protocol.hazmat.merkle import HASH_SIZE
from wmark.protocol.keys import MAX_VK_BYTES, verify_vk_for_log
from wmark.registry.cosigning import WitnessClient
from wmark.registry.errors import encode_error, error_body
from wmark.registry.integrator import Integrator
from wmark.registry.store import MAX_LOOKUP, LogStore

LOOPBACK = "127.0.0.1"
# The largest request is a signed vk; the log accepts any vk a vk file may hold.
MAX_BODY_BYTES = MAX_VK_BYTES
IDLE_TIMEOUT_S = 30
LOOKUP_TYPE = "wmark/commitment-lookup"
JSON = "application/json"
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


class Refused(Exception):
    """A request refused at the HTTP level, before the log is asked."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


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


class BoundedHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive with bounded, Content-Length-only bodies; shared by the log and the witness."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_S
    # Headers and body leave in two writes; with Nagle's algorithm the body
    # would wait for the client's delayed ACK (~40 ms) on every request.
    disable_nagle_algorithm = True

    def _body(self, max_bytes: int = MAX_BODY_BYTES) -> bytes:
        # A body this server does not read would be taken for the next
        # request, so every refusal here also closes the connection.
        length = self.headers.get("Content-Length")
        if "Transfer-Encoding" in self.headers or length is None:
            self.close_connection = True
            raise Refused(411, "length-required", "send the body with a Content-Length (no chunked encoding)")
        if not _NUMBER.fullmatch(length):
            self.close_connection = True
            raise Refused(400, "bad-request", f"malformed Content-Length {length[:40]!r}")
        if int(length) > max_bytes:
            self.close_connection = True
            raise Refused(413, "too-large", f"request body of {length} bytes exceeds the limit of {max_bytes}")
        try:
            body = self.rfile.read(int(length))
        except TimeoutError:
            body = b""
        if len(body) != int(length):
            self.close_connection = True
            raise Refused(400, "bad-request", f"request body ended after {len(body)} of {length} bytes "
                                               f"(or took longer than {IDLE_TIMEOUT_S} s)")
        return body

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        try:
            self.end_headers()
            self.wfile.write(body)
        except ConnectionError:  # the client left; what it asked for is done either way
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own refusals (malformed request line, unknown method,
        # oversized headers) answer in JSON like everything else.
        self.close_connection = True
        self._send(code, error_body("bad-request", message or self.responses.get(code, ("error",))[0]), JSON)

    def log_message(self, format: str, *args: Any) -> None:
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)


class _Handler(BoundedHandler):
    server_version = "wmark-log/1"
    server: "LogServer"

    def do_GET(self) -> None:
        self._answer(self._get)

    def do_POST(self) -> None:
        self._answer(self._post)

    def _answer(self, route: Callable[[SplitResult], tuple[bytes, str]]) -> None:
        try:
            body, content_type = route(urlsplit(self.path))
            status = 200
        except Refused as exc:
            status, body, content_type = exc.status, error_body(exc.code, str(exc)), JSON
        except WmarkError as exc:
            (status, body), content_type = encode_error(exc), JSON
        except Exception:
            traceback.print_exc(file=sys.stderr)
            status, body, content_type = 500, error_body("internal", "internal error in the log server"), JSON
        self._send(status, body, content_type)

    def _get(self, url: SplitResult) -> tuple[bytes, str]:
        store = self.server.store
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
            return self.server.store.entry_bundle(*bundle)
        if tile is not None:
            return self.server.store.tile(*tile)
        raise Refused(404, "no-route", f"{path[:200]} is not a tlog-tiles path")

    def _post(self, url: SplitResult) -> tuple[bytes, str]:
        if url.path != "/entries":
            raise Refused(404, "no-route", f"no endpoint POST {url.path[:200]}")
        _query(url)
        envelope = dsse.Envelope.from_json(self._body(), what="posted verification key", max_bytes=MAX_BODY_BYTES)
        vk = verify_vk_for_log(envelope, what="posted verification key")
        integrator = self.server.integrator
        receipt = self.server.store.register(vk) if integrator is None else integrator.submit(vk)
        return receipt.to_json(indent=None), JSON

class LoopbackServer(ThreadingHTTPServer):
    """A threaded HTTP server on loopback only (port 0: any free port)."""

    daemon_threads = True
    # Shutting down must not wait for idle keep-alive connections to time out;
    # an append in progress finishes anyway, because closing the store waits for it.
    block_on_close = False
    # Many clients connect at once when a batch of receipts returns.
    request_queue_size = 128

    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler], *, verbose: bool = False,
                 reuse_port: bool = False) -> None:
        if not 0 <= port <= 65535:
            raise InvalidInput(f"port {port} is not between 0 and 65535")
        self.verbose = verbose
        # Several worker processes listen on one port (registry/workers.py).
        self.allow_reuse_port = reuse_port
        try:
            super().__init__((LOOPBACK, port), handler)
        except OSError as exc:
            raise InvalidInput(f"cannot listen on {LOOPBACK}:{port}: {exc.strerror or exc}") from None

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up in DNS; a loopback
        # server has no use for it, and an offline machine may stall on it.
        socketserver.TCPServer.server_bind(self)
        host, self.server_port = self.server_address[:2]
        # An AF_INET socket's name is a (str, int) pair; typeshed's type also admits AF_UNIX's bytes paths.
        assert isinstance(host, str)
        self.server_name = host

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server_port}"


class LogServer(LoopbackServer):
    """The HTTP front of ``store``: appends go through an :class:`Integrator` (batches,
    then cosignatures from ``witnesses``); every read a verifier needs is a tile read."""

    def __init__(self, store: LogStore, port: int = 0, *, verbose: bool = False,
                 witnesses: tuple[WitnessClient, ...] = (), batching: bool = True, reuse_port: bool = False) -> None:
        self.store = store
        super().__init__(port, _Handler, verbose=verbose, reuse_port=reuse_port)
        # batching=False appends each request in its own transaction, as before
        # batches existed: the baseline benchmarks/registry.py measures against.
        if not batching and witnesses:
            raise InvalidInput("witnesses cosign batches: they need batching")
        self.integrator = Integrator(store, witnesses) if batching else None

    def server_close(self) -> None:
        super().server_close()
        if self.integrator is not None:
            self.integrator.close()


def serve_until_signalled(server: LoopbackServer, on_ready: Callable[[], None] = lambda: None) -> signal.Signals:
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
