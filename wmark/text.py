"""Text that came from a peer or a file, made safe to print (docs/design.md section 4).

Lives below every layer, so the library (the server's log line, a client's
error) escapes what it quotes exactly as the commands do.
"""

from __future__ import annotations

import re

# What must never reach a terminal or a log line raw: C0 and C1 controls (ESC
# starts terminal commands, CR and LF forge lines), DEL, and the Unicode
# line separators, zero-width and bidirectional controls that make text read
# other than it is.  The backslash too, so an escape cannot be faked.
_UNSAFE = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
UNTRUSTED_LIMIT = 2048


def untrusted(text: object, *, limit: int = UNTRUSTED_LIMIT) -> str:
    """``text`` that came from a peer or a file (a refusal reason, an endpoint URL,
    a model name, a ledger row), safe to print: unsafe characters escaped as
    ``\\xNN`` / ``\\uNNNN``, and cut to ``limit`` characters.  Every such field
    goes through here before it reaches a terminal or a log."""
    value = str(text)
    cut = len(value) > limit
    value = _UNSAFE.sub(_escape, value[:limit])
    return value + ("…" if cut else "")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
