"""Open a page in headless Chromium and watch what it does, over the DevTools
protocol on a pipe (``--remote-debugging-pipe``: no port, no extra package).

Every request the page makes, every console message and uncaught error, and
every failed load is recorded; the page is then screenshotted and printed to
PDF.  DNS is pointed at nothing (``--host-resolver-rules``) so that even a
request that slipped through could not leave the machine.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-headless-shell", "chromium-browser")


def find_chromium() -> str | None:
    return next((path for path in map(shutil.which, CANDIDATES) if path), None)


@dataclass
class PageRun:
    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    first_line: str = ""
    images: list[dict[str, Any]] = field(default_factory=list)
    screenshot: bytes = b""
    pdf: bytes = b""


class _Pipe:
    def __init__(self, to_browser: int, from_browser: int) -> None:
        self._out, self._in = to_browser, from_browser
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise EOFError("chromium closed the pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def call(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None,
             timeout: float = 30) -> dict[str, Any]:
        self._next_id += 1
        request: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            request["sessionId"] = session
        os.write(self._out, json.dumps(request).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._read_message(deadline))


_CHECK_PAGE = """(() => ({
  first: document.body.innerText.split('\\n')[0],
  images: Array.from(document.images).map(i => ({src: i.src.slice(0, 40), ok: i.complete && i.naturalWidth > 0,
                                                  alt: i.alt}))
}))()"""


def open_page(path: Path, *, chromium: str, width: int = 1280, timeout: float = 60) -> PageRun:
    """Load ``path`` in a fresh headless Chromium and report what happened."""
    profile = tempfile.mkdtemp(prefix="wmark-chromium-")
    to_browser_r, to_browser_w = os.pipe()
    from_browser_r, from_browser_w = os.pipe()

    def wire() -> None:
        """In the child: commands are read on fd 3, answers written on fd 4.  Both ends
        are first moved above 4, so that neither is overwritten by the other's dup2, and
        then made inheritable (a dup2 onto itself would leave close-on-exec set)."""
        read_end, write_end = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_r, from_browser_w))
        for source, target in ((read_end, 3), (write_end, 4)):
            os.dup2(source, target)
            os.set_inheritable(target, True)

    proc = subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
         "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}", "--remote-debugging-pipe",
         "about:blank"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=wire,  # noqa: PLW1509 (wire only dups)
        close_fds=False)  # close_fds would close 3 and 4 again after wire()
    os.close(to_browser_r)
    os.close(from_browser_w)
    pipe = _Pipe(to_browser_w, from_browser_r)
    run = PageRun()
    try:
        target = pipe.call("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
        session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            pipe.call(f"{domain}.enable", session=session)
        pipe.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": 900, "deviceScaleFactor": 1,
                                                         "mobile": False}, session=session)
        pipe.events.clear()
        pipe.call("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
        pipe.wait_for("Page.loadEventFired", timeout=timeout)
        checked = pipe.call("Runtime.evaluate", {"expression": _CHECK_PAGE, "returnByValue": True},
                            session=session)["result"]["value"]
        run.first_line, run.images = checked["first"], checked["images"]
        run.screenshot = base64.b64decode(pipe.call("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True}, session=session, timeout=timeout)["data"])
        run.pdf = base64.b64decode(pipe.call("Page.printToPDF", {}, session=session, timeout=timeout)["data"])
        for event in pipe.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Network.requestWillBeSent":
                run.requests.append(params["request"]["url"])
            elif method == "Network.loadingFailed":
                run.failed.append(f"{params.get('errorText')} {params.get('blockedReason', '')}")
            elif method == "Runtime.exceptionThrown":
                run.errors.append(json.dumps(params.get("exceptionDetails", {}))[:300])
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                run.errors.append(params["entry"].get("text", ""))
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                run.errors.append(json.dumps(params.get("args", []))[:300])
        try:
            pipe.call("Browser.close", timeout=10)
        except (EOFError, TimeoutError):
            pass
    finally:
        os.close(to_browser_w)
        os.close(from_browser_r)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
    return run
