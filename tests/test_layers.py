"""The import direction of docs/design.md section 1, checked on the source.

Layers, lowest first: wmark.errors, wmark.files, wmark.net, wmark.text and wmark.cluster; the primitives
(protocol/hazmat); the protocol; the watermarking code and the registry (which
may not import each other); the prover and the verifier (which may not import
each other); the commands (every ``cli`` package, ``__main__`` modules,
wmark.console, wmark.harness and the curated wmark/__init__.py), which may
import anything.  A module may import its own layer and those below, never
above.  Every import counts, at module level or inside a function.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The folders that hold the library, and the import name each one is (pyproject's package-dir).
PACKAGES = {"wmark": "wmark", "protocol": "wmark.protocol", "watermark": "wmark.watermark",
            "registry": "wmark.registry", "prover": "wmark.prover", "verifier": "wmark.verifier"}
COMMANDS = 5


@dataclass(frozen=True)
class Layer:
    rank: int
    group: str  # two packages of one rank may not import each other


def layer_of(module: str) -> Layer | None:
    """The layer of an import name inside wmark; None for anything outside it."""
    parts = module.split(".")
    if parts[0] != "wmark":
        return None
    if "cli" in parts[1:] or parts[-1] == "__main__" or module == "wmark" or parts[1] in ("console", "harness"):
        return Layer(COMMANDS, "commands")
    if parts[1] in ("errors", "files", "net", "text", "cluster"):
        return Layer(0, "base")
    if parts[1] == "protocol":
        return Layer(1, "hazmat") if parts[2:3] == ["hazmat"] else Layer(2, "protocol")
    if parts[1] in ("watermark", "registry"):
        return Layer(3, parts[1])
    if parts[1] in ("prover", "verifier"):
        return Layer(4, parts[1])
    raise AssertionError(f"{module}: no layer is defined for it; add it to docs/design.md section 1 and here")


def module_name(path: Path) -> str:
    folder, *rest = path.relative_to(REPO).with_suffix("").parts
    name = ".".join([PACKAGES[folder], *rest])
    return name.removesuffix(".__init__")


def library_files() -> list[Path]:
    return sorted(p for folder in PACKAGES for p in (REPO / folder).rglob("*.py"))


def imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) for every import in ``tree``; ``from a import b`` counts as
    ``a.b`` too, since b may be a module."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.append((node.lineno, "." * node.level + (node.module or "")))
                continue
            assert node.module is not None
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def violations(path: Path, source: str) -> list[str]:
    """Every import in ``source`` (the file at ``path``) against the direction, as file:line: reason."""
    importer = module_name(path)
    mine = layer_of(importer)
    assert mine is not None
    where = path.relative_to(REPO)
    found, seen = [], set()
    for line, name in imports(ast.parse(source, filename=str(path))):
        target = name if name.startswith(".") else _existing(name)
        if (line, target) in seen:  # ``from a import b`` where b is no module: a counted once
            continue
        seen.add((line, target))
        if target.startswith("."):
            found.append(f"{where}:{line}: relative import {target!r} (imports are absolute: from wmark.x import y)")
            continue
        if target.split(".")[0] in ("torch", "torchvision") and mine.group in ("base", "hazmat", "protocol",
                                                                              "registry"):
            found.append(f"{where}:{line}: {target} in {mine.group}, which never imports torch")
        theirs = layer_of(target)
        if theirs is None or mine.rank == COMMANDS:
            continue
        if theirs.rank > mine.rank:
            found.append(f"{where}:{line}: {importer} ({mine.group}, layer {mine.rank}) imports {target} "
                         f"({theirs.group}, layer {theirs.rank}), a higher layer")
        elif theirs.rank == mine.rank and theirs.group != mine.group:
            found.append(f"{where}:{line}: {importer} ({mine.group}) imports {target} ({theirs.group}): "
                         f"the two sides of layer {mine.rank} do not import each other")
    return found


def _existing(target: str) -> str:
    """``target``, or its package when ``target`` is a name defined in a module (``from a import name``)."""
    if not target.startswith("wmark."):
        return target
    parts = target.split(".")
    for end in range(len(parts), 1, -1):
        folder = {v: k for k, v in PACKAGES.items()}.get(".".join(parts[:2]), "wmark")
        prefix = parts[:end]
        inner = prefix[2:] if folder != "wmark" else prefix[1:]
        base = REPO / folder / Path(*inner) if inner else REPO / folder
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return ".".join(prefix)
    return target


def test_the_library_is_where_the_layers_say():
    assert len(library_files()) > 50
    for path in library_files():
        assert layer_of(module_name(path)) is not None, path


def test_no_module_imports_against_the_direction():
    found = [v for path in library_files() for v in violations(path, path.read_text())]
    assert not found, "imports against the layer direction (docs/design.md section 1):\n" + "\n".join(found)


@pytest.mark.parametrize("path, planted, expected", [
    ("watermark/triggers.py", "def f():\n    from wmark.verifier.verify import decide_with_model\n",
     "a higher layer"),
    ("registry/store.py", "from wmark.watermark.modelio import load_model\n", "do not import each other"),
    ("prover/ledger.py", "import wmark.verifier.oracle\n", "do not import each other"),
    ("protocol/keys.py", "from wmark.prover.cli import main\n", "a higher layer"),
    ("protocol/hazmat/vrf.py", "from wmark.protocol.keys import MAX_ITEMS\n", "a higher layer"),
    ("wmark/files.py", "from wmark.console import EXIT_OK\n", "a higher layer"),
    ("registry/http.py", "def f():\n    import torch\n", "never imports torch"),
    ("verifier/verify.py", "from .oracle import ModelOracle\n", "relative import"),
])
def test_a_planted_import_against_the_direction_is_named_by_file_and_line(path, planted, expected):
    source = (REPO / path).read_text() + "\n" + planted
    line = source.count("\n", 0, len(source) - len(planted)) + planted.count("\n")
    found = violations(REPO / path, source)
    assert len(found) == 1 and expected in found[0], found
    assert found[0].startswith(f"{path}:"), found
    assert int(found[0].split(":")[1]) in range(line - 1, line + 1), (found, line)


def test_commands_may_import_anything():
    assert violations(REPO / "prover/cli/serve.py", "import wmark.verifier.oracle\nimport torch\n") == []


def test_benchmarks_never_import_the_tests():
    found = [f"{p.relative_to(REPO)}:{line}: {target}" for p in sorted((REPO / "benchmarks").glob("*.py"))
             for line, target in imports(ast.parse(p.read_text())) if target.split(".")[0] == "tests"]
    assert not found, "benchmarks import the library, never tests/:\n" + "\n".join(found)
