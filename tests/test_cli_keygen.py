"""`wmark keygen` and `wmark-verifier audit` on a verification key, in-process and as real processes."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.helpers import REPO
from wmark import console
from wmark.protocol import keyfile
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.identity import load_signing_key
from wmark.protocol.keys import load_verification_key
from wmark.verifier import cli as verifier_cli
from wmark.watermark import cli as wmark_cli

# The paper's trigger set, in the shared folder beside the repository (tests skip without it).
WATERMARKNN = REPO.parent / "shared" / "data" / "watermarknn-trigger-set"
PASSPHRASE = "tr0ub4dor&3"


@pytest.fixture(autouse=True)
def no_passphrase_in_env(monkeypatch):
    monkeypatch.delenv(console.PASSPHRASE_ENV, raising=False)


def wmark(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = wmark_cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def audit(capsys, path: Path) -> tuple[int, str, str]:
    capsys.readouterr()
    code = verifier_cli.main(["audit", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, prog: str, *fragments: str) -> None:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if f"{prog}: error:" in line]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], err


def assert_nothing_half_written(directory: Path) -> None:
    if not directory.exists():
        return
    names = {p.name for p in directory.iterdir()}
    assert "vk.json" not in names and "mk.wmk" not in names
    assert not [n for n in names if n.endswith(".tmp")], names


@pytest.fixture(scope="module")
def plaintext_keys(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "keys"
    assert wmark_cli.main(["keygen", "--out", str(out), "--n", "6", "--insecure-plaintext"]) == 0
    return out


def rewrite_payload(vk_path: Path, edit) -> bytes:
    """vk.json with its payload text edited and the owner's signature kept."""
    envelope = json.loads(vk_path.read_bytes())
    payload = base64.b64decode(envelope["payload"]).decode("utf-8")
    envelope["payload"] = base64.b64encode(edit(payload).encode("utf-8")).decode("ascii")
    return json.dumps(envelope, indent=2).encode()


# --- the happy path -------------------------------------------------------------------------

def test_keygen_then_audit(capsys, tmp_path):
    out = tmp_path / "k"
    code, stdout, _ = wmark(capsys, "keygen", "--out", str(out), "--n", "7", "--insecure-plaintext")
    assert code == 0
    assert "7 derived items, 10 classes, input 1x8x8, hash commitments" in stdout
    assert "PLAINTEXT" in stdout
    assert {p.name for p in out.iterdir()} == {"vk.json", "mk.wmk", "owner.pem", "owner.pub"}
    vk, _ = load_verification_key(out / "vk.json")
    mk = keyfile.load_marking_key(out / "mk.wmk", None)
    assert mk.vk_digest == vk.digest and mk.n == vk.n == 7
    assert vk.owner == load_signing_key(out / "owner.pem").public_key

    code, stdout, err = audit(capsys, out / "vk.json")
    assert code == 0, err
    assert "valid verification key, signed by its owner" in stdout
    assert "7 derived items, 10 classes, input 1x8x8" in stdout
    assert vk.digest.hex() in stdout and vk.owner.fingerprint in stdout
    assert vk.vrf_key.to_bytes().hex() in stdout


def test_owner_key_is_reused_and_can_be_given(capsys, tmp_path):
    assert wmark(capsys, "keygen", "--out", str(tmp_path / "a"), "--n", "2", "--insecure-plaintext")[0] == 0
    owner = tmp_path / "a" / "owner.pem"
    code, stdout, _ = wmark(capsys, "keygen", "--out", str(tmp_path / "b"), "--n", "2", "--insecure-plaintext",
                            "--owner-key", str(owner))
    assert code == 0 and "(new)" not in stdout
    a, _ = load_verification_key(tmp_path / "a" / "vk.json")
    b, _ = load_verification_key(tmp_path / "b" / "vk.json")
    assert a.owner == b.owner and a.digest != b.digest
    assert not (tmp_path / "b" / "owner.pem").exists()


def test_pedersen_scheme(capsys, tmp_path):
    out = tmp_path / "k"
    code, stdout, _ = wmark(capsys, "keygen", "--out", str(out), "--n", "5", "--scheme", "pedersen",
                            "--input-shape", "3x32x32", "--num-classes", "100", "--insecure-plaintext")
    assert code == 0 and "pedersen commitments" in stdout
    code, stdout, _ = audit(capsys, out / "vk.json")
    assert code == 0 and "commitments   pedersen" in stdout
    assert "5 derived items, 100 classes, input 3x32x32" in stdout
    vk, _ = load_verification_key(out / "vk.json")
    assert all(len(c.item.value) == 33 for c in vk.commitments)


def test_imported_folder(capsys, tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(1, 4):
        Image.fromarray(np.full((20, 20, 3), 40 * i, dtype=np.uint8)).save(images / f"{i}.png")
    (images / "labels.txt").write_text("3\n1\n4\n")
    out = tmp_path / "k"
    code, stdout, _ = wmark(capsys, "keygen", "--out", str(out), "--kind", "imported", "--images", str(images),
                            "--input-shape", "3x8x8", "--insecure-plaintext")
    assert code == 0 and "read 3 images" in stdout and "labels.txt" in stdout
    mk = keyfile.load_marking_key(out / "mk.wmk", None)
    assert [o.label for o in mk.openings] == [3, 1, 4]
    code, stdout, _ = audit(capsys, out / "vk.json")
    assert code == 0 and "3 imported items" in stdout and "VRF key" not in stdout


@pytest.mark.skipif(not WATERMARKNN.is_dir(), reason="no WatermarkNN trigger set in ../shared/data")
def test_the_papers_trigger_set(capsys, tmp_path):
    out = tmp_path / "k"
    code, stdout, _ = wmark(capsys, "keygen", "--out", str(out), "--kind", "imported", "--images", str(WATERMARKNN),
                            "--input-shape", "3x32x32", "--fit", "center-crop", "--insecure-plaintext")
    assert code == 0 and "read 100 images" in stdout and "labels-cifar.txt" in stdout
    expected = [int(float(x)) for x in (WATERMARKNN / "labels-cifar.txt").read_text().split()]
    assert [o.label for o in keyfile.load_marking_key(out / "mk.wmk", None).openings] == expected
    code, stdout, _ = audit(capsys, out / "vk.json")
    assert code == 0 and "100 imported items, 10 classes, input 3x32x32" in stdout


# --- a verification key that was edited, cut or is something else -------------------------------

@pytest.mark.parametrize("index,field", [(0, "item"), (0, "label"), (3, "item"), (5, "label")])
@pytest.mark.parametrize("position", [0, 20, -1])
def test_audit_refuses_a_changed_commitment(capsys, tmp_path, plaintext_keys, index, field, position):
    vk_path = plaintext_keys / "vk.json"
    original = json.loads(base64.b64decode(json.loads(vk_path.read_bytes())["payload"]))
    value = original["commitments"][index][field]
    position %= len(value)
    changed = value[:position] + ("A" if value[position] != "A" else "Q") + value[position + 1:]

    def edit(payload: str) -> str:
        assert payload.count(value) == 1
        return payload.replace(value, changed)

    forged = tmp_path / "vk.json"
    forged.write_bytes(rewrite_payload(vk_path, edit))
    code, stdout, err = audit(capsys, forged)
    assert code == 2
    assert "valid" not in stdout
    assert_one_line_error(err, "wmark-verifier", "signature does not verify")


@pytest.mark.parametrize("cut", [0, 1, 50, 300, -2])
def test_audit_refuses_a_truncated_vk(capsys, tmp_path, plaintext_keys, cut):
    raw = (plaintext_keys / "vk.json").read_bytes()
    truncated = tmp_path / "vk.json"
    truncated.write_bytes(raw[:cut % len(raw)])
    code, stdout, err = audit(capsys, truncated)
    assert code == 2 and stdout == ""
    assert_one_line_error(err, "wmark-verifier", str(truncated))


def test_audit_refuses_missing_and_foreign_files(capsys, tmp_path, plaintext_keys):
    code, _, err = audit(capsys, tmp_path / "absent.json")
    assert code == 2
    assert_one_line_error(err, "wmark-verifier", "not found")
    other = tmp_path / "other.json"
    owner = load_signing_key(plaintext_keys / "owner.pem")
    other.write_bytes(dsse.sign("application/vnd.example+json", b"{}", owner).to_json())
    code, _, err = audit(capsys, other)
    assert code == 2
    assert_one_line_error(err, "wmark-verifier", "application/vnd.example+json")


# --- passphrases ----------------------------------------------------------------------------

def _mk_reader() -> console.Command:
    """A command that loads a marking key the way the owner's commands do (console.load_marking_key)."""
    module = types.ModuleType("wmark_test_mk_reader")

    def run(args):
        mk = console.load_marking_key(args.key)
        print(f"marking key with {mk.n} items")
        return 0

    def register(subparsers):
        p = console.add_command(subparsers, "read-mk", description="", func=run)
        p.add_argument("key")

    module.register = register
    sys.modules[module.__name__] = module  # run_cli imports a command's module by name
    return console.Command("read-mk", module.__name__, "read a marking key")


def read_mk(capsys, path: Path) -> tuple[int, str, str]:
    capsys.readouterr()
    code = console.run_cli("wmark", "test", [_mk_reader()], ["read-mk", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_encrypted_key_round_trips_and_a_wrong_passphrase_is_one_line(capsys, tmp_path, monkeypatch):
    out = tmp_path / "k"
    monkeypatch.setenv(console.PASSPHRASE_ENV, PASSPHRASE)
    code, stdout, _ = wmark(capsys, "keygen", "--out", str(out), "--n", "3")
    assert code == 0 and "scrypt + AES-256-GCM" in stdout
    mk_path = out / "mk.wmk"
    assert keyfile.is_sealed(mk_path)
    assert b"openings" not in mk_path.read_bytes()
    vk, _ = load_verification_key(out / "vk.json")
    assert keyfile.load_marking_key(mk_path, PASSPHRASE).vk_digest == vk.digest

    code, stdout, err = read_mk(capsys, mk_path)
    assert code == 0 and "marking key with 3 items" in stdout

    monkeypatch.setenv(console.PASSPHRASE_ENV, PASSPHRASE + "!")
    code, stdout, err = read_mk(capsys, mk_path)
    assert code == 2 and stdout == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("wmark: error: ") and "wrong passphrase" in err

    monkeypatch.delenv(console.PASSPHRASE_ENV)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, _, err = read_mk(capsys, mk_path)
    assert code == 2
    assert_one_line_error(err, "wmark", "no passphrase", console.PASSPHRASE_ENV)


def test_keygen_without_passphrase_or_terminal_refuses(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    out = tmp_path / "k"
    code, _, err = wmark(capsys, "keygen", "--out", str(out), "--n", "3")
    assert code == 2
    assert_one_line_error(err, "wmark", "no passphrase", console.PASSPHRASE_ENV)
    assert_nothing_half_written(out)


def test_empty_passphrase_in_env_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv(console.PASSPHRASE_ENV, "")
    code, _, err = wmark(capsys, "keygen", "--out", str(tmp_path / "k"), "--n", "3")
    assert code == 2
    assert_one_line_error(err, "wmark", "empty")
    assert_nothing_half_written(tmp_path / "k")


# --- refusals and their aftermath ------------------------------------------------------------

def test_refuses_to_overwrite_a_key_pair_without_force(capsys, tmp_path):
    out = tmp_path / "k"
    assert wmark(capsys, "keygen", "--out", str(out), "--n", "2", "--insecure-plaintext")[0] == 0
    before = {name: (out / name).read_bytes() for name in ("vk.json", "mk.wmk")}
    code, _, err = wmark(capsys, "keygen", "--out", str(out), "--n", "2", "--insecure-plaintext")
    assert code == 2
    assert_one_line_error(err, "wmark", "already holds a key pair", "--force")
    assert {name: (out / name).read_bytes() for name in before} == before

    (out / "vk.json").unlink()  # a lone secret key is protected too
    code, _, err = wmark(capsys, "keygen", "--out", str(out), "--n", "2", "--insecure-plaintext")
    assert code == 2 and (out / "mk.wmk").read_bytes() == before["mk.wmk"]

    code, _, _ = wmark(capsys, "keygen", "--out", str(out), "--n", "2", "--insecure-plaintext", "--force")
    assert code == 0
    assert (out / "mk.wmk").read_bytes() != before["mk.wmk"]
    vk, _ = load_verification_key(out / "vk.json")
    assert keyfile.load_marking_key(out / "mk.wmk", None).vk_digest == vk.digest


@pytest.mark.parametrize("shape", ["8x8", "1x8x8x8", "0x8x8", "axbxc", "-1x8x8", "1x8x", "3 x32x32"])
def test_bad_input_shape_is_a_usage_error(capsys, tmp_path, shape):
    with pytest.raises(SystemExit) as exc:
        wmark_cli.main(["keygen", "--out", str(tmp_path / "k"), f"--input-shape={shape}", "--insecure-plaintext"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "is not a shape like 1x8x8" in err and "Traceback" not in err
    assert not (tmp_path / "k").exists()


@pytest.mark.parametrize("argv,fragment", [
    (["--kind", "imported"], "--kind imported needs --images"),
    (["--images", "somewhere"], "only apply to --kind imported"),
    (["--n", "0"], "trigger set size n=0"),
    (["--n", "10001"], "trigger set size"),
    (["--num-classes", "1"], "label count L=1"),
    (["--input-shape", "5x8x8"], "input_shape"),
    (["--input-shape", "1x8x1000"], "input_shape"),
    (["--kind", "imported", "--images", "/nonexistent/wmark-images"], "image folder not found"),
    (["--owner-key", "/nonexistent/owner.pem"], "not found"),
])
def test_failing_runs_exit_2_and_leave_no_key_behind(capsys, tmp_path, argv, fragment):
    out = tmp_path / "k"
    code, _, err = wmark(capsys, "keygen", "--out", str(out), "--insecure-plaintext", *argv)
    assert code == 2
    assert_one_line_error(err, "wmark", fragment)
    assert_nothing_half_written(out)


def test_failing_imported_run_names_the_bad_file_and_leaves_nothing(capsys, tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(images / "1.png")
    (images / "2.png").write_bytes(b"this is not a png")
    out = tmp_path / "k"
    code, _, err = wmark(capsys, "keygen", "--out", str(out), "--kind", "imported", "--images", str(images),
                         "--insecure-plaintext")
    assert code == 2
    assert_one_line_error(err, "wmark", "2.png", "not a readable image")
    assert_nothing_half_written(out)


def test_out_that_is_a_file_is_refused(capsys, tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    code, _, err = wmark(capsys, "keygen", "--out", str(target), "--insecure-plaintext")
    assert code == 2
    assert_one_line_error(err, "wmark", "not a directory")
    assert target.read_text() == "x"


# --- the installed commands as real processes --------------------------------------------------

def command(name: str, module: str) -> list[str]:
    script = Path(sys.executable).parent / name
    return [str(script)] if script.exists() else [sys.executable, "-m", module]


def test_installed_commands_as_subprocesses(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != console.PASSPHRASE_ENV}

    def run(argv: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(argv, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=120)

    done = run(command("wmark", "wmark.watermark") + ["keygen", "--out", "k", "--n", "4", "--insecure-plaintext"])
    assert done.returncode == 0, done.stderr
    assert "4 derived items" in done.stdout

    done = run(command("wmark-verifier", "wmark.verifier") + ["audit", "k/vk.json"])
    assert done.returncode == 0, done.stderr
    assert "k/vk.json: valid verification key, signed by its owner" in done.stdout
    vk, _ = load_verification_key(tmp_path / "k" / "vk.json")
    assert vk.digest.hex() in done.stdout

    (tmp_path / "forged.json").write_bytes(rewrite_payload(
        tmp_path / "k" / "vk.json", lambda p: p.replace('"num_classes":10', '"num_classes":11')))
    done = run(command("wmark-verifier", "wmark.verifier") + ["audit", "forged.json"])
    assert done.returncode == 2 and done.stdout == ""
    assert_one_line_error(done.stderr, "wmark-verifier", "signature does not verify")

    done = run(command("wmark", "wmark.watermark") + ["keygen", "--out", "sealed", "--n", "2"])  # no passphrase, no TTY
    assert done.returncode == 2
    assert_one_line_error(done.stderr, "wmark", "no passphrase")
    assert_nothing_half_written(tmp_path / "sealed")

    done = run(command("wmark", "wmark.watermark") + ["keygen", "--out", "x", "--input-shape", "8x8"])
    assert done.returncode == 2  # a usage error is one line, naming the option and where to read more
    assert_one_line_error(done.stderr, "wmark keygen", "--input-shape", "see wmark keygen --help")
