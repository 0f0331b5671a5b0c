"""The README's command reference, generated from the programs' own parsers.

    python -m wmark.harness.readme README.md          # rewrite the generated section
    python -m wmark.harness.readme README.md --check  # exit 1 if it has drifted

Every command's ``--help`` is captured in-process at a fixed width and placed
between the markers below, so the reference cannot drift from the parsers
(tests/test_readme.py runs ``--check``).  The list of commands is read from
each program's own ``--help``, so a new command appears without editing this.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

BEGIN = "<!-- BEGIN generated command reference: python -m wmark.harness.readme README.md -->"
END = "<!-- END generated command reference -->"
WIDTH = "100"
# The subcommands in a help text: the "positional arguments:" block's lines of four
# spaces, a name, and (two or more spaces on) its help.
_POSITIONALS = re.compile(r"^positional arguments:\n((?:  .*\n)+)", re.M)
_LISTED = re.compile(r"^    (\w[\w-]*)(?:\s{2,}|$)", re.M)


def _programs() -> dict[str, Callable[[list[str]], int]]:
    from wmark.prover.cli import main as prover_main
    from wmark.verifier.cli import main as verifier_main
    from wmark.watermark.cli import main as wmark_main

    return {"wmark": wmark_main, "wmark-prover": prover_main, "wmark-verifier": verifier_main}


@contextlib.contextmanager
def _fixed_width() -> Iterator[None]:
    """argparse wraps at the terminal's width: fix it, so the text is the same everywhere."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def help_text(main: Callable[[list[str]], int], argv: list[str]) -> str:
    """What ``PROGRAM *argv --help`` prints."""
    out = io.StringIO()
    with _fixed_width(), contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main([*argv, "--help"])
    return out.getvalue().rstrip() + "\n"


def commands(main: Callable[[list[str]], int], argv: list[str]) -> list[str]:
    """The subcommands listed in ``PROGRAM *argv --help``, in order."""
    block = _POSITIONALS.search(help_text(main, argv))
    return _LISTED.findall(block.group(1)) if block else []


def reference() -> str:
    """The generated section, markers included."""
    parts = [BEGIN, ""]
    for program, main in _programs().items():
        parts += [f"<details><summary><code>{program}</code>: every command's <code>--help</code></summary>", ""]
        for name in commands(main, []):
            subs = commands(main, [name])
            for argv in ([[name, sub] for sub in subs] if subs else [[name]]):
                parts += [f"#### `{program} {' '.join(argv)}`", "", "```text", help_text(main, argv).rstrip(),
                          "```", ""]
        parts += ["</details>", ""]
    parts.append(END)
    return "\n".join(parts)


def replaced(text: str, section: str) -> str:
    """``text`` with its generated section replaced by ``section``."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"the README must hold the markers {BEGIN!r} and {END!r} once each, in that order")
    return text[:text.index(BEGIN)] + section + text[text.index(END) + len(END):]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("readme", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 when the README differs from the parsers")
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    try:
        updated = replaced(text, reference())
    except ValueError as exc:
        print(f"{args.readme}: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if updated != text:
            print(f"{args.readme}: the command reference differs from the parsers; run "
                  f"python -m wmark.harness.readme {args.readme}", file=sys.stderr)
            return 1
        return 0
    if updated != text:
        from wmark.files import atomic_write

        atomic_write(args.readme, updated.encode("utf-8"))
        print(f"wrote {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
