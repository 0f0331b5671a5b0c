"""Plumbing shared by the three command lines (``wmark``, ``wmark-prover``,
``wmark-verifier``): one parser per program, subcommands contributed by
modules, user mistakes turned into one line and exit code 2.

Exit codes (docs/design.md section 6): 0 accepted / ok, 1 rejected (a valid run
whose answer is no), 2 usage or input error.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from types import ModuleType
from typing import Sequence

from wmark.errors import InvalidInput, WmarkError

EXIT_OK, EXIT_REJECTED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130
PASSPHRASE_ENV = "WMARK_PASSPHRASE"


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


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep hand-wrapped examples, and show every default."""


def add_command(subparsers: argparse._SubParsersAction, name: str, *, help: str, description: str,
                epilog: str = "", func) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help, description=description, epilog=epilog,
                                   formatter_class=_Formatter)
    parser.set_defaults(func=func)
    return parser


def run_cli(prog: str, description: str, modules: Sequence[ModuleType], argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=_Formatter)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in modules:
        module.register(subparsers)
    try:
        args = parser.parse_args(argv)
    except WmarkError as exc:  # a type= converter (parse_probability, ...) refusing a value
        parser.error(str(exc))
    try:
        return int(args.func(args))
    except WmarkError as exc:
        # An error's text may quote what a peer or a file said.
        print(f"{prog}: error: {untrusted(exc)}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; nothing half-written was left behind", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except BaseException as exc:
        if not is_library_failure(exc):
            raise
        # Input crafted to break a library (an SRS of zeros makes ezkl panic, a
        # number overflows numpy) is still the input's fault: exit 2, not 1
        # ("rejected"), and one line, not a traceback.
        print(f"{prog}: error: a library failed on this input ({type(exc).__name__}: {untrusted(exc, limit=300)})",
              file=sys.stderr)
        return EXIT_INVALID


def is_library_failure(exc: BaseException) -> bool:
    """A Rust library's panic (pyo3's PanicException derives from BaseException, so
    ``except Exception`` misses it) or an arithmetic overflow or stack exhaustion."""
    return isinstance(exc, (OverflowError, RecursionError)) or type(exc).__name__ == "PanicException"


def read_passphrase(*, confirm: bool, purpose: str) -> str:
    """From ``WMARK_PASSPHRASE`` or, in a terminal, a prompt (twice when creating)."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value is not None:
        if not value:
            raise InvalidInput(f"{PASSPHRASE_ENV} is set but empty")
        return value
    if not sys.stdin.isatty():
        raise InvalidInput(f"no passphrase for {purpose}: set {PASSPHRASE_ENV} or run in a terminal")
    first = getpass.getpass(f"Passphrase for {purpose}: ")
    if not first:
        raise InvalidInput("empty passphrase")
    if confirm and getpass.getpass("Repeat the passphrase: ") != first:
        raise InvalidInput("the two passphrases differ")
    return first


def load_marking_key(path: str):
    """The marking key at ``path``, asking for its passphrase only if it is sealed."""
    from wmark.protocol.keyfile import is_sealed
    from wmark.protocol.keyfile import load_marking_key as load

    passphrase = read_passphrase(confirm=False, purpose=str(path)) if is_sealed(path) else None
    return load(path, passphrase)
