"""The README's command reference is what the parsers print (wmark.harness.readme)."""

from __future__ import annotations

from pathlib import Path

from wmark.harness import readme

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_reference_matches_the_parsers(capsys):
    code = readme.main([str(README), "--check"])
    assert code == 0, capsys.readouterr().err + " (regenerate with: python -m wmark.harness.readme README.md)"


def test_a_drifted_reference_is_caught(tmp_path, capsys):
    drifted = tmp_path / "README.md"
    drifted.write_text(README.read_text().replace("the owner's verification key", "the owner's key", 1))
    assert readme.main([str(drifted), "--check"]) == 1
    assert "differs from the parsers" in capsys.readouterr().err
    assert readme.main([str(drifted)]) == 0 and drifted.read_text() == README.read_text()


def test_every_command_is_in_the_reference():
    text = README.read_text()
    for program, main in readme._programs().items():
        for name in readme.commands(main, []):
            assert f"#### `{program} {name}" in text, (program, name)
