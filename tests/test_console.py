"""wmark.console: untrusted text is escaped before it is printed, and errors
(which quote peers and files) print as one escaped line."""

from __future__ import annotations

import sys
import types

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wmark import console
from wmark.errors import InvalidInput


def test_control_characters_are_escaped():
    assert console.untrusted("ok\x1b[2J\r\nnext\u202e\\x") == "ok\\x1b[2J\\x0d\\x0anext\\u202e\\\\x"


def test_long_text_is_cut():
    assert console.untrusted("a" * 10, limit=4) == "aaaa…"


@given(st.text(max_size=200))
def test_nothing_unsafe_survives_and_safe_text_is_unchanged(text):
    shown = console.untrusted(text)
    assert not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f or c in "\u2028\u2029\u202e\u2066" for c in shown)
    if not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f or c == "\\" or 0x200b <= ord(c) <= 0x206f
               or c == "\ufeff" for c in text):
        assert shown == text


def _program(monkeypatch, fail) -> list[console.Command]:
    """A one-command program whose command runs ``fail``, its module importable by name."""
    module = types.ModuleType("wmark_test_command")

    def register(subparsers):
        console.add_command(subparsers, "go", description="", func=fail)

    module.register = register  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return [console.Command("go", module.__name__, "")]


def _raising(exc: BaseException):
    def fail(args):
        raise exc
    return fail


def test_an_error_quoting_a_peer_is_printed_escaped(capsys, monkeypatch):
    program = _program(monkeypatch, _raising(InvalidInput("peer said \x1b[2J\nACCEPTED")))
    assert console.run_cli("wmark-test", "", program, ["go"]) == console.EXIT_INVALID
    err = capsys.readouterr().err
    assert err == "wmark-test: error: peer said \\x1b[2J\\x0aACCEPTED\n"


class PanicException(BaseException):
    """What pyo3 raises when Rust code (ezkl) panics: a BaseException, by that name."""


def test_a_library_panic_or_overflow_is_one_line_and_exit_2(capsys, monkeypatch):
    for exc in (PanicException("called `Option::unwrap()` on a `None` value"), OverflowError("int too large")):
        assert console.run_cli("wmark-test", "", _program(monkeypatch, _raising(exc)), ["go"]) == console.EXIT_INVALID
        err = capsys.readouterr().err
        assert err.startswith("wmark-test: error: a library failed on this input") and err.count("\n") == 1, err


def test_a_bug_is_not_hidden(monkeypatch):
    with pytest.raises(ZeroDivisionError):
        console.run_cli("wmark-test", "", _program(monkeypatch, _raising(ZeroDivisionError())), ["go"])
