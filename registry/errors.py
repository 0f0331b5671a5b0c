"""The registry's own failures, and how each crosses the HTTP front.

The front answers every error with a status and a short code; the client
turns the code back into the same exception class, so a caller sees one
error whether it talks to a log directory or to a log over HTTP.
"""

from __future__ import annotations

import json

from wmark.errors import DecodeError, InvalidInput, InvalidSignature, WmarkError
from wmark.protocol.hazmat.encoding import parse_json

# An error answer is a code and a message of a few hundred characters.
MAX_ERROR_BYTES = 64 * 1024


class DuplicateCommitment(InvalidInput):
    """A verification key reuses commitments another owner registered (a transplanted key)."""


class EntryNotFound(InvalidInput):
    """An entry index or tree size the log does not have."""


class LogCorrupted(WmarkError):
    """The stored log no longer matches its own signed tree heads, or is not a log at all."""


class LogBusy(WmarkError):
    """The log could not take the request now (write lock held too long, or shutting down)."""


class LogUnavailable(WmarkError):
    """The log's HTTP front could not be reached or answered out of protocol."""


# Most specific first: the first class an exception is an instance of decides.
_WIRE: tuple[tuple[type[WmarkError], int, str], ...] = (
    (DuplicateCommitment, 409, "duplicate-commitment"),
    (EntryNotFound, 404, "not-found"),
    (LogBusy, 503, "busy"),
    (LogCorrupted, 500, "log-corrupted"),
    (InvalidSignature, 400, "invalid-signature"),
    (DecodeError, 400, "malformed"),
    (InvalidInput, 400, "invalid-input"),
    (WmarkError, 400, "refused"),
)


def from_wire(status: int, code: str, message: str) -> WmarkError:
    """The exception an error answer's status, code and message stand for."""
    for cls, _, known in _WIRE:
        if code == known:
            return cls(message)
    # HTTP-level refusals (bad route, oversized body) have codes of their own.
    return (InvalidInput if 400 <= status < 500 else LogUnavailable)(message)


def encode_error(exc: WmarkError) -> tuple[int, bytes]:
    """The status and JSON body the front answers ``exc`` with."""
    status, code = wire(exc)
    return status, error_body(code, str(exc))


def wire(exc: WmarkError) -> tuple[int, str]:
    """The status and code ``exc`` crosses the wire as."""
    return next((status, code) for cls, status, code in _WIRE if isinstance(exc, cls))


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode("utf-8")


def decode_error(status: int, body: bytes, *, source: str) -> WmarkError:
    """The exception for an error answer; ``source`` names the log in the message."""
    try:
        error = parse_json(body, what=source, max_bytes=MAX_ERROR_BYTES, max_depth=4)["error"]
        code, message = error["code"], error["message"]
        if not isinstance(code, str) or not isinstance(message, str):
            raise TypeError
    except (DecodeError, KeyError, TypeError):
        return LogUnavailable(f"{source}: answered HTTP {status} without a wmark error body")
    return from_wire(status, code, f"{source}: {message[:2000]}")
