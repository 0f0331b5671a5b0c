"""Every subcommand against each class of bad argument: a missing or directory
input, an output that is a directory, sits under a file, cannot be written or
already exists, and numbers that are negative, zero or too large.

Each must end with exit 2, exactly one line on stderr (naming what is wrong),
no traceback, and nothing written (docs/design.md section 6).  In-process
(each program's main()), on a small world built once: a 30-item key, an
untrained digits model, one challenge, reveal and transcript, a local log.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.cli_world import PROGRAMS, build_cli_world, call
from wmark.files import IRREPLACEABLE
from wmark.harness import readme
from wmark.protocol.keyfile import SEALED_TYPE
from wmark.protocol.keys import MK_TYPE

UNWRITABLE = "/proc/wmark-cannot-write-here.json"  # not even root can create a file in /proc


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return build_cli_world(tmp_path_factory.mktemp("cli-errors"))


# Each command: its program, the argv of a run that gets past parsing (inputs
# real, outputs fresh), and its output options (FILE-valued).
def commands(w: Path) -> dict[str, tuple[str, list[str | Path], tuple[str, ...]]]:
    keys = w / "keys"
    vk, mk, model = keys / "vk.json", keys / "mk.wmk", w / "model"
    fresh = w / "fresh"  # never created: each case names its own file under it
    ident = ("--identity", w / "verifier.pem")
    return {
        "register": ("wmark", ["register", "--vk", vk, "--log", w / "registry", "--receipt", fresh / "r.json",
                               "--json", fresh / "reg.json"], ("--receipt", "--json")),
        "log": ("wmark", ["log", "check", "--log", w / "registry", "--json", fresh / "lc.json"], ("--json",)),
        "eval": ("wmark", ["eval", "--model", model, "--mk", mk, "--json", fresh / "e.json"], ("--json",)),
        "prove": ("wmark-prover", ["prove", "--mk", mk, "--vk", vk, "--challenge", w / "challenge.json",
                                   "--out", fresh / "reveal.json"], ("--out",)),
        "zkprove": ("wmark-prover", ["zkprove", "--mk", mk, "--vk", vk, "--model", model, "--challenge",
                                     w / "challenge.json", "--out", fresh / "zk.json", "--json", fresh / "zp.json"],
                    ("--out", "--json")),
        "ledger": ("wmark-prover", ["ledger", "--vk", vk, "--json", fresh / "l.json"], ("--json",)),
        "plan": ("wmark-verifier", ["plan", "--vk", vk, "--json", fresh / "p.json"], ("--json",)),
        "challenge": ("wmark-verifier", ["challenge", "--vk", vk, "--model", model, "--k", "15",
                                         "--out", fresh / "c.json", "--json", fresh / "cr.json", *ident],
                      ("--out", "--json")),
        "check": ("wmark-verifier", ["check", "--vk", vk, "--challenge", w / "challenge.json", "--reveal",
                                     w / "reveal.json", "--model", model, "--out", fresh / "v.json",
                                     "--json", fresh / "v-report.json", *ident], ("--out", "--json")),
        "run": ("wmark-verifier", ["run", "--connect", "127.0.0.1:9", "--vk", vk, "--model", model, "--k", "15",
                                   "--out", fresh / "v.json", "--json", fresh / "v-report.json", *ident],
                ("--out", "--json")),
        "audit": ("wmark-verifier", ["audit", w / "verdict.json", "--json", fresh / "a.json"], ("--json",)),
        "report": ("wmark-verifier", ["report", w / "verdict.json", "--out", fresh / "r.html"], ("--out",)),
        "registration": ("wmark-verifier", ["registration", "--vk", vk, "--log-key", w / "registry" / "log-key.pub",
                                            "--json", fresh / "g.json"], ("--json",)),
        "dispute": ("wmark-verifier", ["dispute", w / "verdict.json", w / "verdict.json", "--log-key",
                                       w / "registry" / "log-key.pub", "--json", fresh / "d.json"], ("--json",)),
        "zkchallenge": ("wmark-verifier", ["zkchallenge", "--vk", vk, "--model", model, "--k", "15",
                                           "--out", fresh / "z.json", "--json", fresh / "zr.json", *ident],
                        ("--out", "--srs-out", "--json")),
        "zkcheck": ("wmark-verifier", ["zkcheck", "--vk", vk, "--challenge", w / "challenge.json", "--reveal",
                                       w / "reveal.json", "--model", model, "--out", fresh / "zv.json",
                                       "--json", fresh / "zv-report.json", *ident], ("--out", "--json")),
    }


def with_option(argv: list[str | Path], option: str, value: str | Path) -> list[str | Path]:
    """``argv`` with ``option``'s value replaced (or the option added)."""
    argv = list(argv)
    if option in argv:
        argv[argv.index(option) + 1] = value
    else:
        argv += [option, value]
    return argv


def assert_refused(capsys, world: Path, program: str, argv: list[str | Path], *fragments: str) -> str:
    before = snapshot(world)
    code, out, err = call(capsys, program, argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (argv, code, out, err)
    assert "Traceback" not in err and len(lines) == 1, err
    assert re.match(rf"^{re.escape(program)}( \S+)?: error: ", lines[0]), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert snapshot(world) == before, "a refused command wrote or changed a file"
    assert not (world / "fresh").exists()
    return lines[0]


OUTPUT_CASES = {
    "directory": (lambda w: w / "a-directory", "is a directory"),
    "under a file": (lambda w: w / "existing.json" / "x.json", "is not a directory"),
    "unwritable": (lambda w: Path(UNWRITABLE), "cannot write in /proc"),
    "existing": (lambda w: w / "existing.json", "already exists; pass --force"),
}


@pytest.mark.parametrize("case", OUTPUT_CASES)
@pytest.mark.parametrize("name", sorted(commands(Path("/w"))))
def test_a_bad_output_is_refused_before_any_work(capsys, world, name, case):
    program, argv, outputs = commands(world)[name]
    make, message = OUTPUT_CASES[case]
    for option in outputs:
        target = make(world)
        line = assert_refused(capsys, world, program, with_option(argv, option, target), message)
        assert str(target) in line or option in line


def test_force_replaces_an_existing_output_but_never_a_key(capsys, world, tmp_path):
    program, argv, _ = commands(world)["plan"]
    target = tmp_path / "plan.json"
    target.write_text("old")
    assert call(capsys, program, [*with_option(argv, "--json", target), "--force"])[0] == 0
    assert '"wmark/plan-report"' in target.read_text()
    for key in ("mk.wmk", "owner.pem"):  # issue: `prove --out mk.wmk` overwrote the marking key
        program, argv, _ = commands(world)["prove"]
        assert_refused(capsys, world, program, [*with_option(argv, "--out", world / "keys" / key), "--force"],
                       "refusing to replace it", "even with --force")


def test_the_secret_markers_match_the_key_formats(world):
    """wmark.files recognises keys by bytes it cannot import from the protocol layer."""
    assert f'"type":"{MK_TYPE}"'.encode() in IRREPLACEABLE
    assert f'"type":"{SEALED_TYPE}"'.encode() in IRREPLACEABLE
    assert b"-----BEGIN PRIVATE KEY-----" in (world / "keys" / "owner.pem").read_bytes()


INPUTS = {  # command -> the input options (or positional index, as an int) that name a file
    "register": ("--vk",), "eval": ("--mk",), "prove": ("--mk", "--vk", "--challenge"),
    "ledger": ("--vk",), "plan": ("--vk",), "challenge": ("--vk",),
    "check": ("--vk", "--challenge", "--reveal", "--identity"), "audit": (1,), "report": (1,),
    "registration": ("--vk", "--log-key"), "dispute": (1,),
}


@pytest.mark.parametrize("kind", ["missing", "directory"])
@pytest.mark.parametrize("name", sorted(INPUTS))
def test_a_missing_or_directory_input_is_named(capsys, world, name, kind):
    program, argv, _ = commands(world)[name]
    for option in INPUTS[name]:
        bad = world / "no-such-file.json" if kind == "missing" else world / "a-directory"
        if isinstance(option, int):
            changed = list(argv)
            changed[option] = bad
        else:
            changed = with_option(argv, option, bad)
        line = assert_refused(capsys, world, program, changed)
        assert str(bad) in line or (isinstance(option, str) and option in line), line


NUMBERS = [  # program, command argv (before the option), option, values refused
    ("wmark-verifier", "plan", "--k", ("-1", "0", "10001", "x")),
    ("wmark-verifier", "plan", "--lambda", ("-3", "0", "257")),
    ("wmark-verifier", "challenge", "--k", ("-1", "0", "10001")),
    ("wmark-verifier", "run", "--k", ("-1", "0")),
    ("wmark-verifier", "zkchallenge", "--k", ("-1", "0")),
    ("wmark-prover", "prove", "--budget", ("-0.5", "2", "1e-999999999")),
    ("wmark", "keygen", "--n", ("-1", "0", "10000000")),
    ("wmark", "demo", "--k", ("-1", "0")),
]


@pytest.mark.parametrize("program, command, option, values", NUMBERS)
def test_a_number_out_of_range_is_refused(capsys, world, tmp_path, program, command, option, values):
    known = commands(world)
    argv = known[command][1] if command in known else {
        "keygen": ["keygen", "--out", world / "fresh" / "keys", "--insecure-plaintext"],
        "demo": ["demo", "--out", world / "fresh" / "demo"],
    }[command]
    for value in values:
        assert_refused(capsys, world, program, with_option(argv, option, value), option.lstrip("-"))


def test_the_same_transcript_twice_is_no_dispute(capsys, world):
    program, argv, _ = commands(world)["dispute"]
    assert_refused(capsys, world, program, argv[:argv.index("--json")], "given twice")


def test_check_without_the_challengers_identity_names_it(capsys, world):
    program, argv, _ = commands(world)["check"]
    assert_refused(capsys, world, program, with_option(argv, "--identity", world / "other.pem"),
                   "--identity", "other.pem")
    assert not (world / "other.pem").exists()


def test_a_p0_that_would_be_ignored_is_refused(capsys, world):
    program, argv, _ = commands(world)["plan"]
    assert_refused(capsys, world, program, [*argv, "--p0", "1/3"], "--p0 applies to imported trigger sets")


def test_embedding_no_triggers_with_a_key_is_refused(capsys, world):
    assert_refused(capsys, world, "wmark", ["embed", "--mk", world / "keys" / "mk.wmk", "--out",
                                            world / "fresh" / "m", "--triggers-per-batch", "0"],
                   "--no-watermark")


def test_a_short_passphrase_for_a_new_key_is_refused(capsys, world, monkeypatch):
    monkeypatch.setenv("WMARK_PASSPHRASE", "a")
    assert_refused(capsys, world, "wmark", ["keygen", "--out", world / "fresh" / "k", "--n", "10"],
                   "at least 8")


def test_every_subcommand_has_cases(capsys):
    """A new subcommand with an output or input file must join the tables above."""
    listed = {name for main in PROGRAMS.values() for name in readme.commands(main, [])}
    covered = set(commands(Path("/w"))) | set(INPUTS) | {command for _, command, _, _ in NUMBERS}
    # serve and serve-model take no file outputs (log: its check's --json, above); embed, attack and
    # import-model write model directories (tests/test_embed.py, tests/test_attacks.py,
    # tests/test_import_model.py); keygen and demo appear in NUMBERS.
    without_files = {"serve", "serve-model", "embed", "attack", "import-model"}
    assert listed - covered - without_files == set(), listed - covered - without_files


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_version(capsys, program):
    code, out, _ = call(capsys, program, ["--version"])
    assert code == 0 and re.fullmatch(rf"{program} \d+\.\d+\.\d+\S*\n", out)


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_help_shows_no_empty_or_repeated_defaults(capsys, program):
    main = PROGRAMS[program]
    for argv in [[name, *sub] for name in readme.commands(main, []) for sub in
                 ([[s] for s in readme.commands(main, [name])] or [[]])]:
        argv = [*argv, "--help"]
        name = " ".join(argv[:-1])
        code, text, _ = call(capsys, program, argv)
        assert code == 0, (program, name)
        flat = " ".join(text.split())
        assert "(default: None)" not in flat, (program, name)
        assert "(default: [])" not in flat, (program, name)
        for match in re.finditer(r"default[^()]*\(default: ", flat):
            pytest.fail(f"{program} {name}: a default shown twice: ...{flat[match.start() - 60:match.end() + 20]}")


def test_an_interrupted_keygen_leaves_no_owner_key(capsys, tmp_path, monkeypatch):
    import wmark.watermark.cli.keygen as keygen

    def interrupted(**_):
        raise KeyboardInterrupt

    monkeypatch.setattr(keygen, "keygen_derived", interrupted)
    code, _, err = call(capsys, "wmark", ["keygen", "--out", tmp_path / "keys", "--insecure-plaintext"])
    assert code == 130 and "interrupted" in err
    assert not (tmp_path / "keys").exists() or not any((tmp_path / "keys").iterdir())


def test_demo_into_a_file_is_refused(capsys, world):
    assert_refused(capsys, world, "wmark", ["demo", "--out", world / "existing.json"], "is not a directory")


def test_a_test_split_too_small_names_the_minimum():
    import numpy as np

    from wmark.errors import InvalidInput
    from wmark.watermark.datasets import LabelledImages, _with_held_out

    def images(n: int) -> LabelledImages:
        return LabelledImages(np.zeros((n, 1, 8, 8), np.uint8), np.arange(n, dtype=np.int64) % 2)

    with pytest.raises(InvalidInput, match=r"has 150 images; .* needs at least (\d+)") as refused:
        _with_held_out("imagefolder", 2, images(400), images(150))
    least = int(re.search(r"at least (\d+)", str(refused.value)).group(1))
    _with_held_out("imagefolder", 2, images(400), images(least))  # the minimum named is enough
    with pytest.raises(InvalidInput):
        _with_held_out("imagefolder", 2, images(400), images(least - 1))
