"""Plumbing shared by the three command lines (``wmark``, ``wmark-prover``,
``wmark-verifier``): one parser per program, subcommands contributed by
modules, user mistakes turned into one line and exit code 2.

Exit codes (docs/design.md section 6): 0 accepted / ok, 1 rejected (a valid run
whose answer is no), 2 usage or input error.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import importlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from wmark.cluster import AUTO, LOCAL, LOCAL_CPUS
from wmark.errors import InvalidInput, WmarkError, is_library_failure
from wmark.files import atomic_write, check_output_path
from wmark.text import untrusted

if TYPE_CHECKING:
    from wmark.watermark.modelfiles import ModelFiles

EXIT_OK, EXIT_REJECTED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130
PASSPHRASE_ENV = "WMARK_PASSPHRASE"
# For a new key: scrypt slows guessing, it does not make "a" a secret (NIST SP 800-63B's minimum).
MIN_PASSPHRASE_CHARS = 8


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keep hand-wrapped examples; show a default once, and only where there is one
    (not for required options, flags, or help that already names its default)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (action.required or default in (None, [], ()) or default is argparse.SUPPRESS or isinstance(default, bool)
                or "default" in text or not action.option_strings or "%(default)" in text):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """A usage error is one line naming the option, and where to read more; exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INVALID, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


@dataclass(frozen=True)
class Command:
    """A subcommand as its program lists it: its name, its line in the
    program's help, and the module whose ``register(subparsers)`` adds its
    parser.  The module is imported only when the command runs, so a command
    that runs no model never imports torch (docs/design.md section 6)."""

    name: str
    module: str
    help: str
    # Options whose values are model directories: checked by run_cli before the
    # module (and with it torch) is imported, so an oversized model is refused
    # in well under a second (docs/design.md section 5).
    models: tuple[str, ...] = ()


def add_command(subparsers: argparse._SubParsersAction, name: str, *, description: str,
                epilog: str = "", func) -> argparse.ArgumentParser:
    # Options are spelled in full: run_cli checks model options before the command's parser
    # exists, by their exact spelling, and an abbreviation would slip past that check.
    parser = subparsers.add_parser(name, description=description, epilog=epilog, formatter_class=_Formatter,
                                   allow_abbrev=False)
    parser.set_defaults(func=func, outputs=())
    return parser


def add_force_argument(parser: argparse.ArgumentParser, help: str = "replace output files that already exist "
                                                                  "(never a marking or signing key)") -> None:
    """The one overwrite switch of every command (docs/design.md section 6)."""
    if "--force" not in parser._option_string_actions:
        parser.add_argument("--force", action="store_true", help=help)


def add_output(parser: argparse.ArgumentParser, option: str, *, what: str, help: str, required: bool = False,
               kind: str | None = None, metavar: str = "FILE", **extra: Any) -> None:
    """An output file option, checked by :func:`run_cli` before the command does any
    work (:func:`wmark.files.check_output_path`); ``kind``: the secret it is, if any."""
    action = parser.add_argument(option, required=required, metavar=metavar, help=help, **extra)
    parser.set_defaults(outputs=(*parser.get_default("outputs"), (action.dest, option, what, kind)))
    add_force_argument(parser)


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    """``--json FILE`` (``-``: standard output, the text report then goes to stderr)."""
    add_output(parser, "--json", what="JSON report", metavar="FILE",
               help="also write the result as JSON (schema in wmark/schemas/; '-' for standard output)")


def check_outputs(args: argparse.Namespace) -> None:
    """Every output path of the command, checked before any work or side effect."""
    for dest, option, what, kind in getattr(args, "outputs", ()):
        value = getattr(args, dest, None)
        if value is not None and not (dest == "json" and value == "-"):
            check_output_path(value, what=what, force=getattr(args, "force", False), option=option, kind=kind)


def write_json_report(args: argparse.Namespace, report: dict[str, Any]) -> None:
    """The command's result as JSON, where ``--json`` says; ``report`` carries its
    ``type`` and ``version`` (one schema each, wmark/schemas/)."""
    target = getattr(args, "json", None)
    if target is None:
        return
    assert isinstance(report.get("type"), str) and isinstance(report.get("version"), int)
    data = json.dumps(report, indent=2, sort_keys=True) + "\n"
    if target == "-":
        stdout = getattr(args, "json_stdout", None) or sys.stdout
        stdout.write(data)
        stdout.flush()
    else:
        atomic_write(target, data.encode("utf-8"))


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 challenge``, ``2 challenges``."""
    return f"{count} {word if count == 1 else (many or word + 's')}"


def int_in_range(low: int, high: int):
    """An argparse type: an integer in [low, high], refused with the range otherwise."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value
    parse.__name__ = "integer"
    return parse


def _version() -> str:
    import wmark  # lazy: its public API imports nothing until asked

    return wmark.__version__


def run_cli(prog: str, description: str, commands: Sequence[Command], argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _Parser(prog=prog, description=description, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"{prog} {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # The program takes no option but --help, so a command is its first argument.
    chosen = argv[0] if argv else None
    checked: dict[str, ModelFiles] = {}
    for command in commands:
        if command.name == chosen:
            try:
                checked = precheck_models(argv[1:], command.models)
            except WmarkError as exc:
                print(f"{prog}: error: {untrusted(exc)}", file=sys.stderr)
                return EXIT_INVALID
            importlib.import_module(command.module).register(subparsers)
        else:  # listed in the program's help, never run
            subparsers.add_parser(command.name, help=command.help)
    try:
        args = parser.parse_args(argv)
    except WmarkError as exc:  # a type= converter (parse_probability, ...) refusing a value
        parser.error(str(exc))
    args.checked_models = checked
    try:
        check_outputs(args)
        if getattr(args, "json", None) == "-":
            # Standard output carries the JSON alone; the text report goes to stderr.
            args.json_stdout = sys.stdout
            with contextlib.redirect_stdout(sys.stderr):
                return int(args.func(args))
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


def precheck_models(argv: Sequence[str], options: Sequence[str]) -> dict[str, ModelFiles]:
    """Run the torch-free checks of every model directory that ``argv`` names with
    one of ``options`` (``--model DIR`` or ``--model=DIR``, as often as given); what
    they found, by the directory as spelled in ``argv`` (see :func:`checked_model`).

    The exact spelling is all there is: the commands' parsers take no abbreviations
    (:func:`add_command`)."""
    checked: dict[str, ModelFiles] = {}
    if not options:
        return checked
    from wmark.watermark.modelfiles import inspect_files  # torch-free

    for i, arg in enumerate(argv):
        if arg == "--":
            break
        for option in options:
            if arg == option and i + 1 < len(argv):
                checked[argv[i + 1]] = inspect_files(argv[i + 1])
            elif arg.startswith(option + "="):
                checked[arg[len(option) + 1:]] = inspect_files(arg[len(option) + 1:])
    return checked


def checked_model(args: argparse.Namespace, model_dir: str) -> ModelFiles | str:
    """``model_dir`` as :func:`run_cli` found it before the command ran (its
    :class:`ModelFiles`, which the model loaders take instead of a path, so its
    config and safetensors header are not read and parsed again), or the path
    itself when it was not checked there.  Never for digesting a model: a digest
    reads the files as they are now."""
    return getattr(args, "checked_models", {}).get(model_dir, model_dir)


def read_passphrase(*, confirm: bool, purpose: str) -> str:
    """From ``WMARK_PASSPHRASE`` or, in a terminal, a prompt (twice when creating)."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value is not None:
        if not value:
            raise InvalidInput(f"{PASSPHRASE_ENV} is set but empty")
        return _long_enough(value, confirm, f"the passphrase in {PASSPHRASE_ENV}")
    if not sys.stdin.isatty():
        raise InvalidInput(f"no passphrase for {purpose}: set {PASSPHRASE_ENV} or run in a terminal")
    first = getpass.getpass(f"Passphrase for {purpose}: ")
    if not first:
        raise InvalidInput("empty passphrase")
    _long_enough(first, confirm, "the passphrase")
    if confirm and getpass.getpass("Repeat the passphrase: ") != first:
        raise InvalidInput("the two passphrases differ")
    return first


def _long_enough(passphrase: str, new: bool, what: str) -> str:
    """A new key's passphrase has at least MIN_PASSPHRASE_CHARS characters (an old key's is what it is)."""
    if new and len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise InvalidInput(f"{what} has {len(passphrase)} characters; a new key needs at least "
                           f"{MIN_PASSPHRASE_CHARS}")
    return passphrase


def load_marking_key(path: str):
    """The marking key at ``path``, asking for its passphrase only if it is sealed."""
    from wmark.protocol.keyfile import is_sealed
    from wmark.protocol.keyfile import load_marking_key as load

    passphrase = read_passphrase(confirm=False, purpose=str(path)) if is_sealed(path) else None
    return load(path, passphrase)


def add_circuit_arguments(parser: argparse._ActionsContainer) -> None:
    """Options of the commands that build a zero-knowledge circuit (prover and verifier alike).

    ``parser`` may be a parser or one of its argument groups (argparse's common base of the two)."""
    parser.add_argument("--workdir", metavar="DIR",
                        help="where temporary circuits and proving keys (hundreds of MB) go; deleted after use "
                             "(default: the system's temporary directory)")
    parser.add_argument("--memory-limit", type=_gigabytes, metavar="GB", dest="memory_limit",
                        help="refuse a model whose proof would need more memory (default: what is available now)")


def add_ray_argument(parser: argparse._ActionsContainer, doing: str) -> None:
    """``--ray ADDRESS`` (:mod:`wmark.cluster`), ``doing`` saying what becomes Ray tasks."""
    parser.add_argument("--ray", metavar="ADDRESS",
                        help=f"{doing}: '{LOCAL}' (a {LOCAL_CPUS}-CPU instance here), '{AUTO}' (the cluster this "
                             f"machine is in) or a cluster address; needs .[cluster]")


def _gigabytes(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of gigabytes") from None
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"{text} GB is not a memory size")
    return int(value * 1e9)
