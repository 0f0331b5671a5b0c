"""Numbers quoted in the README (and docs/) must match the committed result file they name.

Convention: a quoted number is followed, on the same line, by a marker comment
naming the result file and the value in it::

    test accuracy 91.62 % <!-- from benchmarks/results/fashion-embed.json: runs[row=WM].test_accuracy x100 -->

* the path is relative to the repository root and must lie under ``benchmarks/results/``;
* the value's address is dot-separated: a name is a key of an object, an
  integer an index into a list, and ``[key=value]`` picks the one object of a
  list whose ``key`` is ``value`` (``summary[row=FTAL].trigger_mean``);
  ``key`` names with spaces or dots are not addressable (name things so they are);
* an optional last word scales the value before comparing: ``x100`` (a
  fraction quoted as a percentage), ``/60`` (seconds quoted as minutes), ...
* the number nearest before the marker (``91.62``, ``-0.4``, ``1,234``) is
  compared with the value rounded to as many decimals as the number is quoted
  with, so ``91.6`` and ``92`` quote 0.91623 x100 and ``91.7`` does not.

Markdown renders the comment invisibly.  Written here, not taken from a
library: no maintained package checks prose numbers against JSON.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = "benchmarks/results/"
DOCUMENTS = ("README.md", "docs/design.md", "benchmarks/README.md")
MARKER = re.compile(r"<!--\s*from\s+(?P<file>\S+?):\s*(?P<path>(?:[^\s\[>]|\[[^\]]*\])+)(?:\s+(?P<scale>[x/][0-9.]+))?\s*-->")
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
SELECT = re.compile(r"^(?P<key>[^\[\]]+)?\[(?P<field>[^=\]]+)=(?P<value>[^\]]+)\]$")


@dataclass(frozen=True)
class Quote:
    document: str
    line: int
    text: str  # the number as written
    file: str
    path: str
    scale: str | None


def quotes_in(text: str, document: str) -> list[Quote]:
    """Every marker of ``text`` with the number nearest before it on its line."""
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        end = 0
        for marker in MARKER.finditer(line):
            before = line[end:marker.start()]
            numbers = NUMBER.findall(before)
            if not numbers:
                raise AssertionError(f"{document}:{lineno}: a result marker with no number before it")
            found.append(Quote(document, lineno, numbers[-1], marker["file"], marker["path"], marker["scale"]))
            end = marker.end()
    return found


def _step(node: Any, part: str, where: str) -> Any:
    select = SELECT.match(part)
    if select:
        if select["key"]:
            node = _step(node, select["key"], where)
        if not isinstance(node, list):
            raise AssertionError(f"{where}: [{select['field']}=...] needs a list")
        matches = [item for item in node if isinstance(item, dict) and str(item.get(select["field"])) == select["value"]]
        if len(matches) != 1:
            raise AssertionError(f"{where}: {len(matches)} items with {select['field']}={select['value']}")
        return matches[0]
    if isinstance(node, list):
        if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
            raise AssertionError(f"{where}: no item {part!r} in a list of {len(node)}")
        return node[int(part)]
    if not isinstance(node, dict) or part not in node:
        raise AssertionError(f"{where}: no key {part!r}")
    return node[part]


def resolve(data: Any, path: str, where: str) -> float:
    # Split on dots outside brackets, so a selected value may hold a dot (row=lr 0.05 needs no escaping).
    parts = re.findall(r"(?:[^.\[]|\[[^\]]*\])+", path)
    node = data
    for part in parts:
        node = _step(node, part, where)
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        raise AssertionError(f"{where}: {path} is {node!r}, not a number")
    return float(node)


def scaled(value: float, scale: str | None) -> float:
    if scale is None:
        return value
    factor = float(scale[1:])
    return value * factor if scale[0] == "x" else value / factor


def mismatch(quote: Quote, root: Path = REPO) -> str | None:
    """Why ``quote`` does not match its result file, or None when it does."""
    where = f"{quote.document}:{quote.line}"
    if not quote.file.startswith(RESULTS) or ".." in Path(quote.file).parts:
        return f"{where}: {quote.file} is not under {RESULTS}"
    source = root / quote.file
    if not source.is_file():
        return f"{where}: {quote.file} does not exist"
    try:
        value = scaled(resolve(json.loads(source.read_text()), quote.path, f"{where} {quote.file}"), quote.scale)
    except AssertionError as exc:
        return str(exc)
    written = quote.text.replace(",", "")
    decimals = len(written.split(".")[1]) if "." in written else 0
    expected = f"{round(value, decimals):.{decimals}f}"
    if float(expected) != float(written):
        return f"{where}: quotes {quote.text} but {quote.file} {quote.path} gives {expected}"
    return None


def test_readme_numbers_match_their_result_files():
    quotes = [q for doc in DOCUMENTS if (REPO / doc).is_file()
              for q in quotes_in((REPO / doc).read_text(), doc)]
    assert quotes, "no marked numbers found: the convention is unused or the marker pattern broke"
    problems = [m for m in (mismatch(q) for q in quotes) if m]
    assert not problems, "\n".join(problems)


# --- the checker itself: it must catch what it exists to catch ---

@pytest.fixture
def results(tmp_path):
    folder = tmp_path / "benchmarks" / "results"
    folder.mkdir(parents=True)
    (folder / "r.json").write_text(json.dumps({
        "runs": [{"row": "WM", "test_accuracy": 0.91623}, {"row": "FTAL, lr 0.05", "seconds": 125.0}],
        "summary": {"count": 1234, "flag": True}}))
    return tmp_path


def _check(root: Path, line: str) -> list[str | None]:
    return [mismatch(q, root) for q in quotes_in(line, "doc.md")]


@pytest.mark.parametrize("line", [
    "test 91.62 % <!-- from benchmarks/results/r.json: runs[row=WM].test_accuracy x100 -->",
    "test 91.6 % <!-- from benchmarks/results/r.json: runs.0.test_accuracy x100 -->",
    "0.9162 <!-- from benchmarks/results/r.json: runs[row=WM].test_accuracy -->",
    "took 2.1 min <!-- from benchmarks/results/r.json: runs[row=FTAL, lr 0.05].seconds /60 -->",
    "1,234 items <!-- from benchmarks/results/r.json: summary.count -->",
])
def test_matching_quotes_pass(results, line):
    assert _check(results, line) == [None]


@pytest.mark.parametrize("line, problem", [
    ("test 91.63 % <!-- from benchmarks/results/r.json: runs[row=WM].test_accuracy x100 -->", "gives 91.62"),
    ("test 91 % <!-- from benchmarks/results/r.json: runs[row=WM].test_accuracy x100 -->", "gives 92"),
    ("test 91.62 <!-- from benchmarks/results/r.json: runs[row=WM].test_accuracy -->", "gives 0.92"),
    ("x 1 <!-- from benchmarks/results/absent.json: a -->", "does not exist"),
    ("x 1 <!-- from README.md: a -->", "not under"),
    ("x 1 <!-- from benchmarks/results/../../README.md: a -->", "not under"),
    ("x 1 <!-- from benchmarks/results/r.json: runs[row=NO].seconds -->", "0 items"),
    ("x 1 <!-- from benchmarks/results/r.json: runs.5.seconds -->", "no item"),
    ("x 1 <!-- from benchmarks/results/r.json: summary.missing -->", "no key"),
    ("x 1 <!-- from benchmarks/results/r.json: summary.flag -->", "not a number"),
])
def test_mismatched_or_broken_quotes_are_caught(results, line, problem):
    [found] = _check(results, line)
    assert found is not None and problem in found, found


def test_the_number_nearest_before_each_marker_is_the_one_checked(results):
    line = ("k=20 gives 91.62 <!-- from benchmarks/results/r.json: runs.0.test_accuracy x100 --> and "
            "9 <!-- from benchmarks/results/r.json: summary.count -->")
    first, second = _check(results, line)
    assert first is None and second is not None and "quotes 9 " in second
    with pytest.raises(AssertionError, match="no number"):
        quotes_in("text <!-- from benchmarks/results/r.json: summary.count -->", "doc.md")
