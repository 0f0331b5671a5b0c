"""wmark.console: untrusted text is escaped before it is printed, and errors
(which quote peers and files) print as one escaped line."""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

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


def _program(monkeypatch, fail, models: tuple[str, ...] = ()) -> list[console.Command]:
    """A one-command program whose command runs ``fail``, its module importable by name;
    with ``models``, the command takes those options (model directories)."""
    module = types.ModuleType("wmark_test_command")

    def register(subparsers):
        parser = console.add_command(subparsers, "go", description="", func=fail)
        for option in models:
            parser.add_argument(option)

    module.register = register  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return [console.Command("go", module.__name__, "", models=models)]


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


@pytest.fixture
def model_dir(tmp_path) -> Path:
    from wmark.watermark.modelio import ModelConfig, Preprocessing, new_model, save_model

    save_model(tmp_path / "model", new_model(ModelConfig("small_cnn", 10, (1, 8, 8), Preprocessing((0.3,), (0.4,)))))
    return tmp_path / "model"


def test_a_model_option_is_inspected_once_and_its_files_handed_to_the_command(monkeypatch, model_dir):
    from wmark.watermark import modelfiles, modelio

    inspected: list[Path] = []
    real = modelfiles.inspect_files

    def counted(path):
        inspected.append(Path(path))
        return real(path)

    monkeypatch.setattr(modelfiles, "inspect_files", counted)
    monkeypatch.setattr(modelio, "inspect_files", counted)
    loaded = []
    program = _program(monkeypatch, lambda args: loaded.append(modelio.load_model(console.checked_model(
        args, args.model))) or 0, models=("--model",))
    assert console.run_cli("wmark-test", "", program, ["go", f"--model={model_dir}"]) == console.EXIT_OK
    assert inspected == [model_dir] and loaded[0].config.arch == "small_cnn"
    # What run_cli did not check is handed back as the path, and loaded from it.
    assert console.checked_model(argparse.Namespace(checked_models={}), "elsewhere") == "elsewhere"


def test_a_model_option_is_not_taken_abbreviated(monkeypatch, model_dir, capsys):
    """run_cli checks model options by their exact spelling before the command's
    parser exists; an abbreviation would reach the command unchecked."""
    ran = []
    program = _program(monkeypatch, lambda args: ran.append(args) or 0, models=("--model",))
    with pytest.raises(SystemExit) as usage_error:
        console.run_cli("wmark-test", "", program, ["go", "--mod", str(model_dir)])
    assert usage_error.value.code == console.EXIT_INVALID
    assert "unrecognized arguments: --mod" in capsys.readouterr().err and not ran
    assert console.run_cli("wmark-test", "", program, ["go", "--model", str(model_dir)]) == console.EXIT_OK
