"""The registry in C2SP formats: signed notes (Go's published vectors), checkpoints,
tiles, tlog-witness, tlog-proof, witness policies and quorums, batches, and
interop with an implementation we did not write (aics-tlog, tests only)."""

from __future__ import annotations

import base64
import sqlite3
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from log_worker import make_vk

from tests.support.witnessed import Running, witnessed_log
from wmark.errors import DecodeError, InvalidInput, InvalidProof, InvalidSignature
from wmark.protocol.checkpoint import Checkpoint, Policy, TlogProof
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.hazmat.merkle import MerkleTree, leaf_hash
from wmark.protocol.hazmat.note import COSIGNATURE_V1, ED25519, Note, Signer, Verifier
from wmark.protocol.tiles import TileReader, decode_bundle, encode_index, parse_bundle_path, parse_tile_path
from wmark.protocol.transparency import LogEntry, verify_receipt, verify_tlog_proof
from wmark.registry import DuplicateCommitment, LogStore
from wmark.registry.cosigning import WitnessClient
from wmark.registry.witness import Witness, WitnessServer
from wmark.verifier.cli import main as verifier_main
from wmark.watermark.cli import main as wmark_main

# golang.org/x/mod/sumdb/note, note_test.go: a published key pair and signed note.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = b"If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKv" \
                    "qfqdngotpRZb6KE6RyyBwJnAM=\n".encode("utf-8")
OWNER = SigningKey.generate()


# --- Signed notes against the Go reference vectors.

def test_the_go_signer_key_reproduces_the_published_note_byte_for_byte():
    signer = Signer.from_skey(GO_SKEY)
    assert signer.verifier.encode() == GO_VKEY
    assert Note(GO_TEXT, (signer.sign(GO_TEXT),)).encode() == GO_NOTE


def test_the_published_note_verifies_with_the_published_verifier_key_only():
    verifier = Verifier.decode(GO_VKEY)
    note = Note.decode(GO_NOTE)
    assert note.text == GO_TEXT and note.verified_by(verifier) is None
    with pytest.raises(InvalidSignature, match="does not verify"):
        Note.decode(GO_NOTE.replace(b"cryptography", b"cryptographY")).verified_by(verifier)
    with pytest.raises(InvalidSignature, match="not signed by"):
        note.verified_by(Signer.generate("PeterNeumann").verifier)  # same name, other key id: ignored
    with pytest.raises(InvalidSignature, match="ambiguous"):
        replace(note, signatures=note.signatures * 2).verified_by(verifier)


@pytest.mark.parametrize("vkey", [
    GO_VKEY[:-1], GO_VKEY.replace("c74f20a3", "c74f20a4"), "PeterNeumann+c74f20a3",
    "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",  # Go: wrong length
    "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # Go: unknown algorithm
    "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
])
def test_mangled_verifier_keys_are_refused(vkey):
    with pytest.raises(DecodeError):
        Verifier.decode(vkey)


@pytest.mark.parametrize("data", [
    GO_TEXT,  # no signatures
    GO_NOTE.replace(b"\xe2\x80\x94 ", b"- "),
    GO_NOTE.replace(b"problem,", b"problem,\x01"),
    GO_NOTE + b"\xe2\x80\x94 PeterNeumann !!!\n",
    b"\xff" + GO_NOTE,
])
def test_malformed_notes_are_refused(data):
    with pytest.raises(DecodeError):
        Note.decode(data)


def test_a_cosignature_signs_the_header_time_and_text_and_nothing_else():
    witness = Signer.generate("witness.example/w1", COSIGNATURE_V1)
    text = Checkpoint("example.com/log", 5, b"\7" * 32).text()
    sig = witness.sign(text, timestamp=1_700_000_000)
    assert Note(text, (sig,)).verified_by(witness.verifier) == 1_700_000_000
    shifted = replace(sig, signature=(1_700_000_001).to_bytes(8, "big") + sig.signature[8:])
    with pytest.raises(InvalidSignature):
        Note(text, (shifted,)).verified_by(witness.verifier)
    # A note key (0x01) with the same Ed25519 key has another key id: it cannot pass as a cosigner.
    assert Verifier(witness.name, ED25519, witness.verifier.public_key).key_id != witness.verifier.key_id


# --- Tiles.

def test_tile_paths_follow_the_spec():
    assert encode_index(1234067) == "x001/x234/067" and encode_index(5) == "005"
    assert parse_tile_path("tile/1/x001/x234/067.p/8") == (1, 1234067, 8)
    assert parse_bundle_path("tile/entries/000") == (0, 256)
    for bad in ("tile/64/000", "tile/01/000", "tile/0/67", "tile/0/000.p/256", "tile/0/000.p/0",
                "tile/0/x000/067", "tile/entries/000.p/09"):
        if bad.endswith("x000/067"):
            continue
        assert parse_tile_path(bad) is None and parse_bundle_path(bad) is None, bad
    with pytest.raises(DecodeError):
        parse_tile_path("tile/0/x000/067")


@pytest.mark.parametrize("size", [1, 255, 256, 257, 513, 70000])
def test_tiles_rebuild_every_root_and_proof(size):
    from wmark.protocol.tiles import tile_from_tree

    tree = MerkleTree(leaf_hash(b"%d" % i) for i in range(size))

    def fetch(path: str) -> bytes:
        return tile_from_tree(tree, *parse_tile_path(path))

    reader = TileReader(fetch, size)
    assert reader.root() == tree.root()
    for index in {0, size // 3, size - 1}:
        assert reader.inclusion_proof(index) == tree.inclusion_proof(index)
    # A tile of the wrong length is refused; a wrong one yields another root.
    with pytest.raises(InvalidProof):
        TileReader(lambda p: fetch(p)[:-1], size).root()
    assert TileReader(lambda p: bytes(32) + fetch(p)[32:], size).root() != tree.root()


# --- A served log, witnesses, receipts.

def fill(store: LogStore, count: int, prefix: str = "vk"):
    return [(vk, store.register(vk)) for vk, _ in (make_vk(OWNER, f"{prefix}-{i}".encode()) for i in range(count))]


@pytest.fixture
def world(tmp_path):
    """A log served with two witnesses; the test may stop either."""
    with witnessed_log(tmp_path) as w:
        yield w.store, w.log, w.witnesses, w.witness_servers


def _register(url: str, seed: bytes):
    from wmark.registry import LogClient

    vk, signed = make_vk(OWNER, seed)
    with LogClient(url) as client:
        return vk, client.register(signed), signed


def test_curl_reads_verify_with_the_published_keys_alone(world):
    store, log, _, _ = world
    registered = [_register(log.server.url, b"curl-%d" % i)[:2] for i in range(3)]
    with httpx.Client(base_url=log.server.url, trust_env=False) as http:
        response = http.get("/checkpoint")
        assert response.headers["content-type"].startswith("text/plain")
        log_key = Verifier.decode((store.directory / "log.vkey").read_text())
        checkpoint, cosigned = Policy(log_key).verify(Note.decode(response.content))
        assert checkpoint.size == 3
        reader = TileReader(lambda path: http.get("/" + path).raise_for_status().content, checkpoint.size)
        assert reader.root() == checkpoint.root
        bundle = decode_bundle(http.get("/tile/entries/000.p/3").raise_for_status().content)
        for (vk, receipt), entry in zip(registered, bundle):
            assert entry == receipt.entry.encode()
            from wmark.protocol.hazmat.merkle import verify_inclusion
            verify_inclusion(leaf_hash(entry), receipt.entry.index, checkpoint.size,
                             reader.inclusion_proof(receipt.entry.index), checkpoint.root)
        assert http.get("/tile/0/001").status_code == 404
        assert http.get("/tile/0/000.p/4").status_code == 404


def _verify_cli(capsys, vk_path: Path, proof: Path, store: LogStore, witnesses, quorum: int) -> tuple[int, str]:
    args = ["registration", "--vk", str(vk_path), "--proof", str(proof),
            "--log-vkey", str(store.directory / "log.vkey"), "--quorum", str(quorum)]
    for w in witnesses:
        args += ["--witness", str(w.directory / "witness.vkey")]
    code = verifier_main(args)
    return code, capsys.readouterr().out


def test_two_witnesses_at_quorum_two_and_one_stopped(world, tmp_path, capsys):
    store, log, witnesses, witness_servers = world
    vk, receipt, signed = _register(log.server.url, b"quorum-1")
    note = receipt.note()
    assert {s.name for s in note.signatures} == {store.origin, "witness.test/w1", "witness.test/w2"}
    policy = Policy(Verifier.decode(store.vkey), tuple(w.verifier for w in witnesses), 2)
    assert verify_receipt(receipt, vk, store.public_key, policy).index == 0
    vk_path = tmp_path / "vk.json"
    vk_path.write_bytes(signed.to_json())
    proof = tmp_path / "vk.tlog-proof"
    proof.write_bytes(receipt.tlog_proof().encode())
    assert _verify_cli(capsys, vk_path, proof, store, witnesses, 2)[0] == 0

    witness_servers[1].stop()
    vk2, receipt2, signed2 = _register(log.server.url, b"quorum-2")
    assert {s.name for s in receipt2.note().signatures} == {store.origin, "witness.test/w1"}
    vk_path.write_bytes(signed2.to_json())
    proof.write_bytes(receipt2.tlog_proof().encode())
    code, out = _verify_cli(capsys, vk_path, proof, store, witnesses, 2)
    assert code == 1 and "cosigned by 1 of the 2 trusted witnesses, the policy requires 2" in out
    assert _verify_cli(capsys, vk_path, proof, store, witnesses, 1)[0] == 0
    # The stored checkpoint keeps the cosignature it got, and the next batch catches w1 up.
    assert len(store.checkpoint().signatures) == 2


def _add(witness: Witness, old: int, proof: list[bytes], note: Note):
    body = f"old {old}\n".encode() + b"".join(base64.b64encode(h) + b"\n" for h in proof) + b"\n" + note.encode()
    return witness.add_checkpoint(body)


def test_a_witness_answers_the_spec_status_codes_and_never_cosigns_a_rewritten_history(tmp_path):
    log = Signer.generate("example.test/log")
    witness = Witness(tmp_path / "w", [log.verifier])
    honest = MerkleTree(leaf_hash(b"%d" % i) for i in range(10))
    forked = MerkleTree(leaf_hash(b"%d" % i if i != 3 else b"rewritten") for i in range(12))

    def signed(tree: MerkleTree, size: int, by: Signer = log) -> Note:
        text = Checkpoint(by.name, size, tree.root(size)).text()
        return Note(text, (by.sign(text),))

    assert _add(witness, 0, [], signed(honest, 5)).status == 200
    answer = _add(witness, 0, [], signed(honest, 8))
    assert (answer.status, answer.body, answer.content_type) == (409, b"5\n", "text/x.tlog.size")
    assert _add(witness, 9, [], signed(honest, 8)).status == 400
    assert _add(witness, 5, [], signed(honest, 8, Signer.generate("other.test/log"))).status == 404
    stranger = Signer.generate("example.test/log")  # same origin, untrusted key
    assert _add(witness, 5, honest.consistency_proof(5, 8), signed(honest, 8, stranger)).status == 403
    assert _add(witness, 5, honest.consistency_proof(5, 8)[1:], signed(honest, 8)).status == 422
    # The rewritten history: its own (valid) proof from 5, the honest one, a same-size fork.
    assert _add(witness, 5, forked.consistency_proof(5, 12), signed(forked, 12)).status == 422
    assert _add(witness, 5, honest.consistency_proof(5, 8), signed(forked, 8)).status == 422
    assert _add(witness, 5, [], signed(forked, 5)).status == 409
    assert witness.state("example.test/log") == (5, honest.root(5))
    ok = _add(witness, 5, honest.consistency_proof(5, 8), signed(honest, 8))
    assert ok.status == 200
    line = ok.body.decode().strip("\n")
    from wmark.protocol.hazmat.note import NoteSignature
    assert Note(signed(honest, 8).text, (NoteSignature.parse_line(line, what="t"),)).verified_by(witness.verifier)
    # The state survives the process: a new witness on the directory refuses the old size.
    assert _add(Witness(tmp_path / "w", [log.verifier]), 5, [], signed(honest, 8)).body == b"8\n"
    assert _add(witness, 0, [], signed(honest, 8)).status == 409


def test_a_witness_server_refuses_over_http(tmp_path):
    log = Signer.generate("example.test/log")
    server = Running(WitnessServer(Witness(tmp_path / "w", [log.verifier])))
    try:
        with httpx.Client(base_url=server.server.url, trust_env=False) as http:
            assert http.post("/add-checkpoint", content=b"old x\n\nnope").status_code == 400
            assert http.get("/add-checkpoint").status_code == 405
            assert http.post("/other", content=b"").status_code == 404
    finally:
        server.stop()


# --- Offline proofs.

@pytest.fixture(scope="module")
def proof_case(tmp_path_factory):
    d = tmp_path_factory.mktemp("proof")
    with LogStore.open(d / "log") as store:
        vk, receipt = fill(store, 5)[2]
        return vk, receipt.tlog_proof().encode(), Policy(Verifier.decode(store.vkey))


def test_a_tlog_proof_verifies_with_the_log_vkey_and_names_the_entry(proof_case):
    vk, data, policy = proof_case
    info = verify_tlog_proof(TlogProof.decode(data), vk, policy)
    assert info.entry.index == 2 and info.checkpoint.size == 3
    assert data.startswith(b"c2sp.org/tlog-proof@v1\nextra ")
    other, _ = make_vk(OWNER, b"not registered")
    with pytest.raises(InvalidProof, match="not this one"):
        verify_tlog_proof(TlogProof.decode(data), other, policy)
    with pytest.raises(InvalidSignature, match="not signed by"):
        verify_tlog_proof(TlogProof.decode(data), vk, Policy(Signer.generate(policy.origin).verifier))
    witness = Signer.generate("w.test/w", COSIGNATURE_V1).verifier
    with pytest.raises(InvalidSignature, match="cosigned by 0 of the 1"):
        verify_tlog_proof(TlogProof.decode(data), vk, Policy(policy.log, (witness,), 1))


@settings(max_examples=200, deadline=None)
@given(bit=st.integers(min_value=0))
def test_any_single_bit_flip_in_a_tlog_proof_is_refused(proof_case, bit):
    vk, data, policy = proof_case
    bit %= len(data) * 8
    flipped = bytearray(data)
    flipped[bit // 8] ^= 1 << (bit % 8)
    try:
        proof = TlogProof.decode(bytes(flipped))
    except (DecodeError, UnicodeDecodeError):
        return
    if proof == TlogProof.decode(data):
        return  # base64 padding bits the decoder ignores
    with pytest.raises((InvalidProof, InvalidSignature, DecodeError)):
        verify_tlog_proof(proof, vk, policy)


def test_policies_that_cannot_hold_are_refused():
    log = Signer.generate("l.test/log").verifier
    w = Signer.generate("w.test/w", COSIGNATURE_V1).verifier
    with pytest.raises(DecodeError, match="listed twice"):
        Policy(log, (w, w), 1)
    with pytest.raises(DecodeError, match="cannot be met"):
        Policy(log, (w,), 2)
    with pytest.raises(DecodeError, match="not a cosignature"):
        Policy(log, (log,), 1)


# --- Batches and migration.

def test_a_batch_appends_once_refuses_alone_and_signs_one_head(tmp_path):
    other = SigningKey.generate()
    with LogStore.open(tmp_path / "log") as store:
        a, _ = make_vk(OWNER, b"a")
        b, _ = make_vk(OWNER, b"b")
        thief, _ = make_vk(other, b"t", commitments=a.commitments)
        results = store.register_many([a, b, a, thief])
        assert [r.entry.index for r in results[:3]] == [0, 1, 0]
        assert isinstance(results[3], DuplicateCommitment)
        assert store.size == 2 and store.checkpoint_sizes() == [0, 2]
        for vk, receipt in zip((a, b), results):
            assert verify_receipt(receipt, vk, store.public_key, Policy(Verifier.decode(store.vkey))).tree_size == 2
        with pytest.raises(InvalidInput):
            store.register_many([])


def _as_old_log(d: Path, schema: int, *statements: str) -> None:
    """The log at ``d`` made a log of ``schema`` (1 or 2), with the commitment index as those laid
    it out (every entry's whole digests) and ``statements`` run after."""
    conn = sqlite3.connect(d / "log.db")
    conn.execute("DROP TABLE commitments")
    conn.execute("CREATE TABLE commitments (digest BLOB NOT NULL, idx INTEGER NOT NULL REFERENCES entries (idx), "
                 "PRIMARY KEY (digest, idx)) WITHOUT ROWID")
    for idx, data in conn.execute("SELECT idx, entry FROM entries").fetchall():
        conn.executemany("INSERT INTO commitments (digest, idx) VALUES (?, ?)",
                         [(d, idx) for d in set(LogEntry.decode(data).commitments)])
    conn.execute("DELETE FROM meta WHERE name = 'indexed'")
    conn.execute("UPDATE meta SET value = ? WHERE name = 'schema'", (schema,))
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def test_a_version_2_log_gets_the_prefix_index_and_refuses_what_it_did(tmp_path):
    d = tmp_path / "log"
    with LogStore.open(d) as store:
        old = fill(store, 3)
    _as_old_log(d, 2)
    with LogStore.open(d) as store:  # check() holds the converted index against every entry
        assert store.entries_with_commitment(old[1][0].commitment_digests()[2]) == [1]
        thief, _ = make_vk(SigningKey.generate(), b"t", commitments=old[2][0].commitments)
        with pytest.raises(DuplicateCommitment, match="item 0 is in entry 2"):
            store.register(thief)
    conn = sqlite3.connect(d / "log.db")
    meta = dict(conn.execute("SELECT name, value FROM meta WHERE name IN ('schema', 'indexed')"))
    rows = conn.execute("SELECT count(*) FROM commitments").fetchone()[0]
    conn.close()
    assert meta == {"schema": 3, "indexed": 3} and rows == 3 * len(old[0][0].commitment_digests())


def test_a_version_1_log_is_upgraded_and_its_receipts_still_verify(tmp_path):
    d = tmp_path / "log"
    with LogStore.open(d) as store:
        old = fill(store, 4)
    # Make it exactly what the previous release left: no checkpoints, no note key, whole digests indexed.
    _as_old_log(d, 1, "DROP TABLE checkpoints", "DELETE FROM meta WHERE name IN ('origin', 'note_vkey')")
    (d / "log-note.key").unlink()
    (d / "log.vkey").unlink()
    with LogStore.open(d) as store:
        assert store.check().size == 4 and (d / "log.vkey").read_text().strip() == store.vkey
        for vk, receipt in old:
            receipt = replace(receipt, checkpoint=None)  # what the old release handed out
            assert verify_receipt(receipt, vk, store.public_key).index == receipt.entry.index
        vk, new = fill(store, 1, "after")[0]
        assert verify_receipt(new, vk, store.public_key, Policy(Verifier.decode(store.vkey))).tree_size == 5
    with LogStore.open(d) as store:  # and opens as version 2 from then on
        checkpoint, _ = Policy(Verifier.decode(store.vkey)).verify(store.checkpoint())
        assert checkpoint.size == 5 and store.checkpoint_sizes() == [4, 5]


def test_an_edited_checkpoint_is_named_by_check(tmp_path):
    d = tmp_path / "log"
    with LogStore.open(d) as store:
        fill(store, 3)
    conn = sqlite3.connect(d / "log.db")
    (note,) = conn.execute("SELECT note FROM checkpoints WHERE size = 2").fetchone()
    conn.execute("UPDATE checkpoints SET note = ? WHERE size = 2", (note.replace(b"\n2\n", b"\n1\n"),))
    conn.commit()
    conn.close()
    code = wmark_main(["log", "check", "--log", str(d)])
    assert code == 1


# --- Interop: aics-tlog (PyPI), an implementation we did not write, in tests only.

@pytest.fixture
def aics():
    # Skips only the interop tests: at module level it would skip every test above too.
    return pytest.importorskip("aics_tlog", reason="aics-tlog (interop tests) is not installed")


def test_aics_tlog_reads_our_export_and_checkpoints(tmp_path, aics):
    with LogStore.open(tmp_path / "log") as store:
        registered = fill(store, 300)
    export = ["log", "export", "--log", str(tmp_path / "log"), str(tmp_path / "site")]
    assert wmark_main(export) == 0
    site = tmp_path / "site"
    log_key = aics.parse_vkey((site / "log.vkey").read_text().strip())
    note = aics.parse_note((site / "checkpoint").read_bytes())
    result = aics.verify_checkpoint(note, log_key)
    assert result.ok and result.size == 300, result.error
    reader = aics.FileSystemTileReader(site)
    assert aics.tree_root_from_tiles(reader, 300) == result.root
    for vk, receipt in (registered[0], registered[257], registered[299]):
        index = receipt.entry.index
        assert aics.read_entry(reader, index, 300) == receipt.entry.encode()
        proof = aics.inclusion_proof_from_tiles(reader, index, 300)
        assert aics.verify_inclusion(leaf_hash(receipt.entry.encode()), index, 300, proof, result.root) \
            in (True, None)


def test_our_cosignatures_and_theirs_verify_both_ways(tmp_path, aics):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    log = Signer.generate("example.test/log")
    ours = Witness(tmp_path / "w", [log.verifier], name="witness.test/ours")
    text = Checkpoint(log.name, 7, b"\3" * 32).text()
    note = Note(text, (log.sign(text),))
    body = b"old 0\n\n" + note.encode()
    answer = ours.add_checkpoint(body)
    cosigned = Note.decode(note.encode() + answer.body)
    parsed = aics.parse_note(cosigned.encode())
    result = aics.verify_checkpoint(parsed, aics.parse_vkey(log.verifier.encode()),
                                    [aics.parse_vkey(ours.verifier.encode())], 1)
    assert result.ok and result.cosignature_count == 1, result.error
    theirs_key = Ed25519PrivateKey.generate()
    _, line = aics.sign_cosignature(theirs_key, "witness.test/theirs", 1_700_000_000, log.name, 7, b"\3" * 32)
    theirs = Verifier.decode(aics.format_vkey(aics.cosignature_vkey("witness.test/theirs", theirs_key.public_key())))
    both = Note(text, cosigned.signatures + (NoteSig(line),))
    assert Policy(log.verifier, (ours.verifier, theirs), 2).verify(both)[1]["witness.test/theirs"] == 1_700_000_000


def NoteSig(line):
    from wmark.protocol.hazmat.note import NoteSignature

    return NoteSignature(line.name, line.key_id, line.signature)


# --- The command lines end to end: two witness processes, a log process, register, verify.

def _process(*argv: str):
    import os
    import re
    import subprocess
    import sys

    code = "import sys; from wmark.watermark.cli import main; sys.exit(main(sys.argv[1:]))"
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    for line in proc.stdout:
        found = re.search(r"serving at (http://127\.0\.0\.1:\d+)", line)
        if found:
            return proc, found.group(1)
    raise AssertionError(f"{argv[:2]} did not start (exit {proc.wait()})")


def test_log_and_witness_command_lines_produce_a_proof_the_verifier_checks(tmp_path, capsys):
    import signal


    log_dir = tmp_path / "log"
    LogStore.open(log_dir, origin="wmark.test/e2e").close()
    procs = []
    try:
        witnesses = []
        for i in (1, 2):
            proc, url = _process("log", "witness", "--dir", str(tmp_path / f"w{i}"), "--log-vkey",
                                 str(log_dir / "log.vkey"), "--name", f"wmark.test/w{i}")
            procs.append(proc)
            witnesses.append((tmp_path / f"w{i}" / "witness.vkey", url))
        proc, url = _process("log", "serve", "--log", str(log_dir),
                             *[a for vkey, wurl in witnesses for a in ("--witness", f"{vkey}={wurl}")])
        procs.append(proc)
        vk, signed = make_vk(OWNER, b"e2e")
        vk_path = tmp_path / "keys" / "vk.json"
        vk_path.parent.mkdir()
        vk_path.write_bytes(signed.to_json())
        assert wmark_main(["register", "--vk", str(vk_path), "--log-url", url,
                                                     "--log-vkey", str(log_dir / "log.vkey")]) == 0
        assert "2 cosignatures" in capsys.readouterr().out
        base = ["registration", "--vk", str(vk_path), "--log-vkey", str(log_dir / "log.vkey")]
        ws = [a for vkey, _ in witnesses for a in ("--witness", str(vkey))]
        assert verifier_main(base + ws + ["--quorum", "2"]) == 0
        assert "valid tlog-proof" in capsys.readouterr().out
        # A proof made for another vk, or a policy naming a witness that never cosigned, is refused.
        stranger = Signer.generate("wmark.test/w3", COSIGNATURE_V1).verifier.encode()
        code = verifier_main(base + ws + ["--witness", stranger,
                                                                              "--quorum", "3"])
        assert code == 1 and "cosigned by 2 of the 3 trusted witnesses" in capsys.readouterr().out
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)


def test_a_restarted_log_catches_a_witness_up_from_its_409(world):
    store, log, witnesses, witness_servers = world
    _register(log.server.url, b"before-restart")
    fill(store, 3, "direct")  # appended while the witnesses were not asked
    fresh = WitnessClient(witnesses[0].verifier, witness_servers[0].server.url)  # believes the witness is at 0
    try:
        signature = fresh.cosign(store.checkpoint(), lambda a, b: store.consistency_proof(a, b).hashes)
    finally:
        fresh.close()
    assert signature is not None and witnesses[0].state(store.origin)[0] == 4
    assert Note(store.checkpoint().text, (signature,)).verified_by(witnesses[0].verifier) is not None
