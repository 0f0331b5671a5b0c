"""Plumbing shared by the three command lines (``wmark``, ``wmark-prover``,
``wmark-verifier``): one parser per program, subcommands contributed by
modules, user mistakes turned into one line and exit code 2.

Exit codes (docs/design.md section 6): 0 accepted / ok, 1 rejected (a valid run
whose answer is no), 2 usage or input error.
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from wmark.errors import InvalidInput, WmarkError

EXIT_OK, EXIT_REJECTED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130
PASSPHRASE_ENV = "WMARK_PASSPHRASE"


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep hand-wrapped examples, and show every default."""


@dataclass(frozen=True)
class Command:
    """A subcommand as its program lists it: its name, its line in the
    program's help, and the module whose ``register(subparsers)`` adds its
    parser.  The module is imported only when the command runs, so a command
    that runs no model never imports torch (docs/design.md section 6)."""

    name: str
    module: str
    help: str


def add_command(subparsers: argparse._SubParsersAction, name: str, *, description: str,
                epilog: str = "", func) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, description=description, epilog=epilog, formatter_class=_Formatter)
    parser.set_defaults(func=func)
    return parser


def run_cli(prog: str, description: str, commands: Sequence[Command], argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=_Formatter)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # The program takes no option but --help, so a command is its first argument.
    chosen = argv[0] if argv else None
    for command in commands:
        if command.name == chosen:
            importlib.import_module(command.module).register(subparsers)
        else:  # listed in the program's help, never run
            subparsers.add_parser(command.name, help=command.help)
    try:
        args = parser.parse_args(argv)
    except WmarkError as exc:  # a type= converter (parse_probability, ...) refusing a value
        parser.error(str(exc))
    try:
        return int(args.func(args))
    except WmarkError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; nothing half-written was left behind", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK


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


def add_circuit_arguments(parser: argparse._ActionsContainer) -> None:
    """Options of the commands that build a zero-knowledge circuit (prover and verifier alike).

    ``parser`` may be a parser or one of its argument groups (argparse's common base of the two)."""
    parser.add_argument("--workdir", metavar="DIR",
                        help="where temporary circuits and proving keys (hundreds of MB) go; deleted after use "
                             "(default: the system's temporary directory)")
    parser.add_argument("--memory-limit", type=_gigabytes, metavar="GB", dest="memory_limit",
                        help="refuse a model whose proof would need more memory (default: what is available now)")


def _gigabytes(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of gigabytes") from None
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"{text} GB is not a memory size")
    return int(value * 1e9)
