"""The HTTP/1.1 front shared by the log and the witness: h11 on one asyncio loop
(docs/design.md section 4b).

h11 parses and frames; this module only moves bytes and bounds them.  One
event loop, on the thread that calls :meth:`Front.serve_forever`, serves
every connection: a request's head and body are read (bounded in size and
time), handed to the subclass's :meth:`Front.respond`, and the answer
written in one send.  Work that blocks on the disk (the log's reads, the
witness's state file) runs on a small thread pool (:meth:`Front.blocking`);
an append waits for its batch as a future, holding no thread.  It replaces
http.server's thread per connection; at 64 clients the two cost the log the
same CPU per append, at one client this one costs more
(benchmarks/results/registry.md; docs/design.md section 4b).

Bodies need a Content-Length (no chunked encoding) and are refused unread
above the subclass's ``max_body_bytes``; a connection idle, or a body
arriving, for longer than ``IDLE_TIMEOUT_S`` is closed.  Stopping
(:meth:`Front.shutdown`) closes the listening socket and every idle
connection at once and lets the requests in progress finish, for at most
``STOP_GRACE_S``: a stopped server answers nothing more, not even on
kept-alive connections.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from typing import TypeVar

import h11

from wmark.errors import InvalidInput
from wmark.registry.errors import error_body

LOOPBACK = "127.0.0.1"
IDLE_TIMEOUT_S = 30.0
STOP_GRACE_S = 30.0
# What h11 buffers of a request head still incomplete (ours are a few hundred
# bytes); a head that arrives whole in one read of _READ_BYTES is parsed.
MAX_HEAD_BYTES = 16 * 1024
# Many clients connect at once when a batch of receipts returns.
BACKLOG = 128
JSON = "application/json"
_READ_BYTES = 64 * 1024
_T = TypeVar("_T")


class Refused(Exception):
    """A request refused at the HTTP level, before the log or witness is asked."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    body: bytes


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str

    @classmethod
    def refusal(cls, exc: Refused) -> Response:
        return cls(exc.status, error_body(exc.code, str(exc)), JSON)


class _Closing(Exception):
    """The request cannot be read to its end: answer ``response`` and close."""

    def __init__(self, response: Response) -> None:
        self.response = response


class Front:
    """An HTTP/1.1 server on ``port`` of loopback (0: any free port), listening from
    construction on; subclasses answer requests in :meth:`respond`."""

    server_name = "wmark/1"
    max_body_bytes = 64 * 1024

    def __init__(self, port: int = 0, *, verbose: bool = False, reuse_port: bool = False) -> None:
        if not 0 <= port <= 65535:
            raise InvalidInput(f"port {port} is not between 0 and 65535")
        self.verbose = verbose
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:  # several worker processes listen on one port (registry/workers.py)
                self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            self._socket.bind((LOOPBACK, port))
            self._socket.listen(BACKLOG)
        except OSError as exc:
            self._socket.close()
            raise InvalidInput(f"cannot listen on {LOOPBACK}:{port}: {exc.strerror or exc}") from None
        self.server_port: int = self._socket.getsockname()[1]
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="wmark-http")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_asked = False
        self._started = threading.Lock()
        self._stopped = threading.Event()
        # Each connection's task, and whether it is between requests (closed at once on stop).
        self._connections: dict[asyncio.Task[None], bool] = {}

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server_port}"

    async def respond(self, request: Request) -> Response:
        raise NotImplementedError

    async def blocking(self, function: Callable[..., _T], *args: object) -> _T:
        """``function(*args)`` on the front's thread pool: work that waits on the disk."""
        assert self._loop is not None
        return await self._loop.run_in_executor(self._pool, function, *args)

    # --- Running and stopping.

    def serve_forever(self, poll_interval: float | None = None) -> None:
        """Serve on this thread until :meth:`shutdown` (``poll_interval``: socketserver's, unused)."""
        if not self._started.acquire(blocking=False):
            raise RuntimeError("serve_forever was already called")
        try:
            if not self._stop_asked:
                asyncio.run(self._serve())
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop serve_forever (from another thread) and wait until it returned."""
        self._stop_asked = True
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # the loop already ended
                pass
        if self._started.locked():
            self._stopped.wait()

    def server_close(self) -> None:
        self._socket.close()
        self._pool.shutdown(wait=False)

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        if self._stop_asked:  # shutdown() came between the check and the loop
            return
        server = await asyncio.start_server(self._accepted, sock=self._socket, limit=_READ_BYTES)
        try:
            await self._stop.wait()
        finally:
            server.close()
            for task, idle in list(self._connections.items()):
                if idle:
                    task.cancel()
            if self._connections:
                await asyncio.wait(list(self._connections), timeout=STOP_GRACE_S)
            for task in list(self._connections):
                task.cancel()

    # --- One connection.

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # Without it a response written after a short pause waits for the client's delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        try:
            while not self._stopping():
                self._connections[task] = True
                try:
                    request = await self._read(conn, reader, writer, task)
                except _Closing as closing:
                    await self._write(conn, writer, closing.response, None, close=True)
                    break
                if request is None:
                    break
                response = await self._answer(request)
                await self._write(conn, writer, response, request)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    break
                conn.start_next_cycle()
        except (ConnectionError, TimeoutError, h11.LocalProtocolError):
            pass  # the client left or stalled; what it asked for is done either way
        finally:
            self._connections.pop(task, None)
            writer.close()

    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    async def _answer(self, request: Request) -> Response:
        try:
            return await self.respond(request)
        except Refused as exc:
            return Response.refusal(exc)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            return Response(500, error_body("internal", f"internal error in the {self.server_name} server"), JSON)

    async def _next(self, conn: h11.Connection, reader: asyncio.StreamReader, timeout: float) -> object:
        """The connection's next h11 event, reading as needed for at most ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError
            conn.receive_data(await asyncio.wait_for(reader.read(_READ_BYTES), remaining))

    async def _read(self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    task: asyncio.Task[None]) -> Request | None:
        """The next request, whole; None once the client closed or stayed idle too long."""
        try:
            event = await self._next(conn, reader, IDLE_TIMEOUT_S)
        except TimeoutError:
            return None
        except h11.RemoteProtocolError as exc:
            raise _Closing(Response.refusal(Refused(exc.error_status_hint, "bad-request", str(exc)))) from None
        if not isinstance(event, h11.Request):
            return None  # ConnectionClosed
        self._connections[task] = False
        method, target = event.method.decode("ascii"), event.target.decode("ascii", "replace")
        headers = dict(event.headers)  # h11 gives names in lower case
        # A body this server does not read would be taken for the next request,
        # so every refusal here closes the connection.
        if b"transfer-encoding" in headers or (b"content-length" not in headers and method == "POST"):
            raise _Closing(Response.refusal(Refused(411, "length-required",
                                                    "send the body with a Content-Length (no chunked encoding)")))
        length = int(headers.get(b"content-length", b"0"))  # h11 accepts only decimal digits here
        if length > self.max_body_bytes:
            raise _Closing(Response.refusal(Refused(
                413, "too-large", f"request body of {length} bytes exceeds the limit of {self.max_body_bytes}")))
        if conn.they_are_waiting_for_100_continue:  # curl asks before sending a body over 1 KiB
            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")))
        body = bytearray()
        try:
            while not isinstance(event, h11.EndOfMessage):
                event = await self._next(conn, reader, IDLE_TIMEOUT_S)
                if isinstance(event, h11.Data):
                    body += event.data
        except (TimeoutError, h11.RemoteProtocolError):
            raise _Closing(Response.refusal(Refused(
                400, "bad-request", f"request body ended after {len(body)} of {length} bytes "
                                    f"(or took longer than {IDLE_TIMEOUT_S:.0f} s)"))) from None
        return Request(method, target, bytes(body))

    async def _write(self, conn: h11.Connection, writer: asyncio.StreamWriter, response: Response,
                     request: Request | None, *, close: bool = False) -> None:
        headers = [("Server", self.server_name), ("Content-Type", response.content_type),
                   ("Content-Length", str(len(response.body)))]
        if close or self._stopping():
            headers.append(("Connection", "close"))
        try:
            reason = HTTPStatus(response.status).phrase.encode("ascii")
        except ValueError:
            reason = b""
        # Head and body in one write: no wait on Nagle's algorithm between them.
        writer.write(conn.send(h11.Response(status_code=response.status, headers=headers, reason=reason))
                     + conn.send(h11.Data(data=response.body)) + conn.send(h11.EndOfMessage()))
        await writer.drain()
        if self.verbose:
            line = f"{request.method} {request.target[:200]}" if request is not None else "(unreadable request)"
            print(f"{LOOPBACK} - \"{line}\" {response.status} {len(response.body)}", file=sys.stderr, flush=True)

