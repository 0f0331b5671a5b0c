"""The registry: appends, receipts checked offline, refused transplants, a
database edited behind the log's back, crashes mid-append, the HTTP front,
and several processes appending at once."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from log_worker import make_vk

from benchmarks.registry import descendants
from tests.support.witnessed import Running
from wmark.errors import DecodeError, InvalidInput, InvalidProof, InvalidSignature
from wmark.protocol.checkpoint import Policy
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.encoding import canonical_json
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.hazmat.merkle import leaf_hash
from wmark.protocol.hazmat.note import Verifier
from wmark.protocol.keys import VkRecord
from wmark.protocol.transparency import (
    LogEntry,
    Receipt,
    RegistrationInfo,
    TreeHead,
    earlier_registration,
    verify_receipt,
    verify_tree_head,
)
from wmark.registry import (
    DuplicateCommitment,
    EntryNotFound,
    LogClient,
    LogCorrupted,
    LogServer,
    LogStore,
    LogUnavailable,
)
from wmark.registry.recent import Recent
from wmark.registry.store import DB_NAME, KEY_NAME, _index_rows, _prefix
from wmark.registry.witness import Witness, WitnessServer
from wmark.verifier.cli import main as verifier_main
from wmark.watermark.cli import main as wmark_main

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "log_worker.py"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
OWNER_A, OWNER_B = SigningKey.generate(), SigningKey.generate()


def ticking_clock(step_ms: int = 1000):
    """A log clock that moves ``step_ms`` per reading, from 2026-01-01."""
    return iter(range(T0, T0 + 10**12, step_ms)).__next__


@pytest.fixture
def store(tmp_path):
    with LogStore.open(tmp_path / "log", clock=ticking_clock()) as s:
        yield s


def fill(store: LogStore, count: int, owner: SigningKey = OWNER_A, prefix: str = "vk"):
    """Register ``count`` fresh vks; return them with their receipts."""
    out = []
    for i in range(count):
        vk, signed = make_vk(owner, f"{prefix}-{i}".encode())
        out.append((vk, signed, store.register(vk)))
    return out


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _worker(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), *args], env=_env(), text=True, **popen)


# --- Appending and receipts.

def test_receipts_verify_offline_with_the_log_key_alone(store):
    registered = fill(store, 5)
    for i, (vk, _, receipt) in enumerate(registered):
        travelled = Receipt.from_json(receipt.to_json())
        assert travelled == receipt
        info = verify_receipt(travelled, vk, store.public_key)
        assert (info.index, info.tree_size, info.vk_digest) == (i, i + 1, vk.digest)
        assert info.log_keyid == store.public_key.keyid
        assert RegistrationInfo.from_obj(info.to_obj()) == info
    times = [verify_receipt(r, vk, store.public_key).time_ms for vk, _, r in registered]
    assert times == sorted(times) and times[0] > T0
    assert store.size == 5


def test_a_receipt_on_the_wire_is_its_object_as_compact_json(store):
    # The wire form splices in the entry's leaf encoding and the batch's shared parts.
    receipts = store.register_many([make_vk(OWNER_A, b"wire-%d" % i)[0] for i in range(3)])
    for receipt in receipts:
        assert receipt.checkpoint is not None and receipt.beacon is not None
        wire = receipt.to_json(indent=None)
        assert wire == (json.dumps(receipt.to_obj(), sort_keys=True, separators=(",", ":")) + "\n").encode()
        assert Receipt.from_json(wire) == receipt


def test_registering_a_vk_again_returns_its_first_entry(store):
    (vk, _, first), = fill(store, 1)
    fill(store, 2, prefix="later")
    again = store.register(vk)
    assert again.entry == first.entry and store.size == 3
    assert verify_receipt(again, vk, store.public_key).tree_size == 3


def test_an_append_failing_half_way_leaves_memory_and_disk_as_before(store, monkeypatch):
    fill(store, 3)
    with monkeypatch.context() as m:
        m.setattr(TreeHead, "sign", lambda self, key: (_ for _ in ()).throw(OSError("disk full")))
        with pytest.raises(OSError, match="disk full"):
            store.register(lost := make_vk(OWNER_A, b"lost")[0])
    assert store.size == 3
    (vk, _, receipt), = fill(store, 1, prefix="next")
    assert verify_receipt(receipt, vk, store.public_key).index == 3
    # The lost entry's commitments were forgotten with it: nobody holds them.
    assert store.register(make_vk(OWNER_B, b"not-a-thief", commitments=lost.commitments)[0]).entry.index == 4
    store.check()


def test_log_times_never_go_backwards(tmp_path):
    readings = iter([T0, T0 + 5000, T0 + 1000, T0 + 7000])
    with LogStore.open(tmp_path / "log", clock=readings.__next__) as s:
        times = [r.entry.time_ms for _, _, r in fill(s, 3)]
    assert times == [T0 + 5000, T0 + 5000, T0 + 7000]


@pytest.mark.parametrize("merged", [False, True], ids=["in-memory", "in-the-index"])
def test_a_transplanted_key_is_refused_and_lookup_finds_the_owner(store, merged):
    (vk_a, _, receipt_a), = fill(store, 1)
    if merged:
        assert store.merge_index(due_only=False) == 1
    thief, _ = make_vk(OWNER_B, b"thief", commitments=vk_a.commitments[1:] + vk_a.commitments[:1])
    with pytest.raises(DuplicateCommitment, match=r"3 of the 3 commitments .*\(item 0 is in entry 0"):
        store.register(thief)
    # The owner may re-use its own commitments (say, a re-signed vk).
    resigned, _ = make_vk(OWNER_A, b"resigned", commitments=vk_a.commitments, created="2026-02-01T00:00:00+00:00")
    assert store.register(resigned).entry.index == 1
    digest = vk_a.commitment_digests()[0]
    assert store.entries_with_commitment(digest) == [0, 1]
    assert store.entries_with_commitment(b"\0" * 32) == []
    assert store.entry(0) == receipt_a.entry
    store.check()


def _record(owner: SigningKey, *digests: bytes, tag: bytes = b"") -> VkRecord:
    """A checked vk as the log's checkers hand it over, with commitment digests of the test's choosing."""
    return VkRecord(hashlib.sha256(b"test/record/" + tag + b"".join(digests)).digest(), owner.public_key, digests)


def test_a_shared_index_prefix_is_confirmed_against_the_entries(store):
    d1, d2, d3 = (b"\xaa" * 8 + bytes([i]) * 24 for i in (1, 2, 3))  # one prefix, three digests
    store.register(_record(OWNER_A, d1))
    store.register(_record(OWNER_A, d2))
    assert store.merge_index(due_only=False) == 2
    # Entries 0 and 1 share d3's prefix, but neither holds d3.
    assert store.register(_record(OWNER_B, d3)).entry.index == 2
    # The owner's first entry under the prefix does not hold d2; its next one does.
    with pytest.raises(DuplicateCommitment, match="item 0 is in entry 1"):
        store.register(_record(OWNER_B, d2, tag=b"thief"))
    assert [store.entries_with_commitment(d) for d in (d1, d2, d3)] == [[0], [1], [2]]
    assert store.merge_index(due_only=False) == 1
    assert [store.entries_with_commitment(d) for d in (d1, d2, d3)] == [[0], [1], [2]]
    store.check()


def test_a_second_handle_sees_entries_not_merged_yet_and_so_does_a_reopened_log(tmp_path):
    d = tmp_path / "log"
    with LogStore.open(d) as first, LogStore.open(d, check=False) as second:
        (vk, _, _), = fill(first, 1)  # in the first handle's memory, not in the index
        thief, _ = make_vk(OWNER_B, b"thief", commitments=vk.commitments)
        with pytest.raises(DuplicateCommitment, match="item 0 is in entry 0"):
            second.register(thief)
        assert second.entries_with_commitment(vk.commitment_digests()[0]) == [0]
        fill(second, 2, prefix="second")
        assert first.merge_index(due_only=False) == 3
        # The second handle sees the watermark move: the index answers for all three now.
        with pytest.raises(DuplicateCommitment, match="item 0 is in entry 0"):
            second.register(thief)
        assert second.merge_index(due_only=False) == 0
        (late, _, _), = fill(second, 1, prefix="late")  # never merged: a crash would leave it so
    with LogStore.open(d) as reopened:
        with pytest.raises(DuplicateCommitment, match="item 0 is in entry 3"):
            reopened.register(make_vk(OWNER_B, b"thief2", commitments=late.commitments)[0])
        assert reopened.entries_with_commitment(late.commitment_digests()[1]) == [3]


def test_entries_join_the_index_once_enough_wait(store, monkeypatch):
    monkeypatch.setattr("wmark.registry.store.MERGE_ENTRIES", 2)

    def watermark() -> int:
        conn = sqlite3.connect(store.directory / DB_NAME)
        (value,) = conn.execute("SELECT value FROM meta WHERE name = 'indexed'").fetchone()
        conn.close()
        return value

    fill(store, 1)
    assert watermark() == 0 and store.merge_index() == 0
    fill(store, 1, prefix="second")  # two wait: this batch's transaction merges them
    assert watermark() == 2
    deferred = [make_vk(OWNER_A, b"deferred-%d" % i)[0] for i in range(6)]
    for vk in deferred[:2]:
        store.register_many([vk], defer_merge=True)
    assert watermark() == 2  # the caller merges, once its receipts are out
    assert store.merge_index() == 2 and watermark() == 4
    for vk in deferred[2:]:
        store.register_many([vk], defer_merge=True)
    assert watermark() == 8  # at twice as many, the batch merges anyway
    store.check()


def test_entries_beyond_the_tree_are_reported(store):
    fill(store, 2)
    with pytest.raises(EntryNotFound, match="entry 2 is beyond the tree of size 2"):
        store.entry(2)
    with pytest.raises(InvalidInput, match="leaf index 5 is beyond the tree of size 2"):
        store.inclusion_proof(5)
    with pytest.raises(EntryNotFound, match="no signed tree head of size 9"):
        store.tree_head(9)


def test_every_head_the_log_signed_is_consistent_with_the_latest(store):
    fill(store, 9)
    latest = verify_tree_head(store.tree_head(), store.public_key)
    for size in range(1, 10):
        old = verify_tree_head(store.tree_head(size), store.public_key)
        store.consistency_proof(size).verify(old, latest)
        for index in range(size):
            store.inclusion_proof(index, size).verify(store.entry(index), old)


# --- Receipts under attack.

@pytest.fixture
def receipt_case(store):
    """The receipt of entry 2, issued when the tree had 3 entries; the log has grown to 5 since."""
    registered = fill(store, 5)
    vk, _, receipt = registered[2]
    return store, vk, receipt


def test_a_receipt_for_another_log_or_key_is_refused(receipt_case):
    store, vk, receipt = receipt_case
    with pytest.raises(InvalidSignature, match="issued by log"):
        verify_receipt(receipt, vk, OWNER_B.public_key)
    other, _ = make_vk(OWNER_A, b"never registered")
    with pytest.raises(InvalidProof, match="registers verification key .* not this one"):
        verify_receipt(receipt, other, store.public_key)


def test_a_forged_tree_head_is_refused(receipt_case):
    store, vk, receipt = receipt_case
    forger = SigningKey.generate()
    forged = replace(receipt, tree_head=dsse.sign(receipt.tree_head.payload_type, receipt.tree_head.payload, forger))
    with pytest.raises(InvalidSignature, match="no signature by key"):
        verify_receipt(forged, vk, store.public_key)
    sig = receipt.tree_head.signatures[0]
    grafted = replace(receipt, tree_head=replace(receipt.tree_head, signatures=(
        replace(sig, sig=forged.tree_head.signatures[0].sig),)))
    with pytest.raises(InvalidSignature, match="does not verify"):
        verify_receipt(grafted, vk, store.public_key)


def test_a_proof_for_another_tree_size_is_refused(receipt_case):
    store, vk, receipt = receipt_case
    with pytest.raises(InvalidProof, match="its checkpoint .size 3. is not of the tree its head describes .size 5"):
        verify_receipt(replace(receipt, tree_head=store.tree_head(), inclusion_proof=store.inclusion_proof(2)),
                       vk, store.public_key)
    newer = replace(receipt, tree_head=store.tree_head(), checkpoint=store.checkpoint().encode())
    with pytest.raises(InvalidProof, match="proof is for a tree of size 3, but the tree head has size 5"):
        verify_receipt(newer, vk, store.public_key)
    relabelled = replace(newer, inclusion_proof=replace(receipt.inclusion_proof, tree_size=5))
    with pytest.raises(InvalidProof, match="too short"):
        verify_receipt(relabelled, vk, store.public_key)
    # The current proof for the newer head is what a receipt holder fetches instead.
    current = replace(newer, inclusion_proof=store.inclusion_proof(2))
    assert verify_receipt(current, vk, store.public_key).tree_size == 5


def test_a_truncated_proof_is_refused(receipt_case):
    store, vk, receipt = receipt_case
    proof = receipt.inclusion_proof
    truncated = replace(receipt, inclusion_proof=replace(proof, hashes=proof.hashes[:-1]))
    with pytest.raises(InvalidProof, match="too short"):
        verify_receipt(truncated, vk, store.public_key)


def test_an_entry_index_beyond_the_tree_is_refused(receipt_case):
    store, vk, receipt = receipt_case
    moved = replace(receipt, entry=replace(receipt.entry, index=7),
                    inclusion_proof=replace(receipt.inclusion_proof, index=7))
    with pytest.raises(InvalidProof, match="leaf index 7 is beyond the tree of size 3"):
        verify_receipt(moved, vk, store.public_key)


def test_an_edited_entry_is_refused(receipt_case):
    store, vk, receipt = receipt_case
    for change in ({"time_ms": receipt.entry.time_ms - 1}, {"index": 1}):
        with pytest.raises(InvalidProof):
            verify_receipt(replace(receipt, entry=replace(receipt.entry, **change)), vk, store.public_key)


@pytest.fixture(scope="module")
def receipt_file(tmp_path_factory):
    """One receipt for the bit-flip tests: each example only flips a bit of it."""
    with LogStore.open(tmp_path_factory.mktemp("flip"), clock=ticking_clock()) as s:
        vk, _, receipt = fill(s, 6)[3]
        return vk, s.public_key, receipt.to_json(), Policy(Verifier.decode(s.vkey))


@settings(max_examples=200, deadline=None)
@given(bit=st.integers(min_value=0))
def test_any_single_bit_flip_in_a_receipt_file_is_refused_or_changes_nothing(receipt_file, bit):
    vk, store_key, text, policy = receipt_file
    bit %= len(text) * 8
    flipped = bytearray(text)
    flipped[bit // 8] ^= 1 << (bit % 8)
    try:
        receipt = Receipt.from_json(bytes(flipped))
    except DecodeError:
        return
    original = Receipt.from_json(text)
    if receipt == original:
        return  # the flip only touched encoding slack (e.g. base64 padding bits) the decoder ignores
    # The checkpoint is signed by the log's note key, which only a policy names.
    with pytest.raises((InvalidProof, InvalidSignature, DecodeError)):
        verify_receipt(receipt, vk, store_key, policy)


@settings(max_examples=100, deadline=None)
@given(field=st.sampled_from(["payload", "sig"]), bit=st.integers(min_value=0))
def test_any_single_bit_flip_in_a_signed_tree_head_is_refused(receipt_file, field, bit):
    vk, store_key, text, _ = receipt_file
    receipt = Receipt.from_json(text)
    envelope = receipt.tree_head
    data = bytearray(envelope.payload if field == "payload" else envelope.signatures[0].sig)
    bit %= len(data) * 8
    data[bit // 8] ^= 1 << (bit % 8)
    if field == "payload":
        envelope = replace(envelope, payload=bytes(data))
    else:
        envelope = replace(envelope, signatures=(replace(envelope.signatures[0], sig=bytes(data)),))
    with pytest.raises(InvalidSignature):
        verify_receipt(replace(receipt, tree_head=envelope), vk, store_key)


# --- Disputes.

def _info(keyid: str, index: int, time_ms: int, digest: bytes = b"\1" * 32) -> RegistrationInfo:
    return RegistrationInfo(keyid, index, time_ms, index + 1, digest)


def test_the_earlier_registration_wins():
    log1, log2 = "a" * 64, "b" * 64
    first, second = _info(log1, 3, T0), _info(log1, 9, T0 + 10)
    assert earlier_registration(second, first) is first
    assert earlier_registration(_info(log2, 0, T0 + 5), second).time_ms == T0 + 5
    assert earlier_registration(first, replace(first, tree_size=50)) is first
    with pytest.raises(InvalidProof, match="equivocated"):
        earlier_registration(first, _info(log1, 3, T0, b"\2" * 32))
    with pytest.raises(InvalidProof, match="not monotonic"):
        earlier_registration(first, _info(log1, 9, T0 - 1))
    with pytest.raises(InvalidInput, match="cannot be ordered"):
        earlier_registration(first, _info(log2, 0, T0))


# --- A database edited behind the log's back.

def _edit(log_dir: Path, *statements: tuple[str, tuple]) -> None:
    conn = sqlite3.connect(log_dir / DB_NAME, isolation_level=None)
    for sql, params in statements:
        conn.execute(sql, params)
    conn.close()


@pytest.fixture
def filled_log(tmp_path):
    """Four entries, all in the commitment index (merged from memory at once)."""
    with LogStore.open(tmp_path / "log", clock=ticking_clock()) as s:
        fill(s, 4)
        assert s.merge_index(due_only=False) == 4
    return tmp_path / "log"


def _entry_bytes(log_dir: Path, index: int) -> bytes:
    conn = sqlite3.connect(log_dir / DB_NAME)
    (data,) = conn.execute("SELECT entry FROM entries WHERE idx = ?", (index,)).fetchone()
    conn.close()
    return data


def _redated(log_dir: Path, index: int) -> bytes:
    """Entry ``index`` re-dated by one millisecond, keeping the log's times in order."""
    entry = LogEntry.decode(_entry_bytes(log_dir, index))
    return canonical_json(replace(entry, time_ms=entry.time_ms + 1).to_obj())


def test_an_entry_edited_without_its_leaf_hash_is_named(filled_log):
    _edit(filled_log, ("UPDATE entries SET entry = ? WHERE idx = 1", (_redated(filled_log, 1),)))
    with pytest.raises(LogCorrupted, match="entry 1 no longer matches its stored leaf hash"):
        LogStore.open(filled_log)


def test_an_entry_edited_with_its_leaf_hash_is_named(filled_log):
    data = _redated(filled_log, 2)
    _edit(filled_log, ("UPDATE entries SET entry = ?, leaf_hash = ? WHERE idx = 2", (data, leaf_hash(data))))
    with pytest.raises(LogCorrupted, match="tree head of size 3: entry 2 was edited behind the log's back"):
        LogStore.open(filled_log)
    # Without the full check, the latest signed root alone still catches it.
    with pytest.raises(LogCorrupted, match="root recomputed from the stored leaves does not match"):
        LogStore.open(filled_log, check=False).size


def test_an_edit_under_a_running_log_is_caught_when_the_entry_is_served(filled_log):
    with LogStore.open(filled_log) as s:
        _edit(filled_log, ("UPDATE entries SET entry = ? WHERE idx = 0", (_redated(filled_log, 0),)))
        with pytest.raises(LogCorrupted, match="entry 0 no longer matches its leaf hash"):
            s.entry(0)


@pytest.mark.parametrize("statements, message", [
    ([("DELETE FROM commitments WHERE idx = 3", ()), ("DELETE FROM entries WHERE idx = 3", ())],
     "a signed tree head covers 4 entries, but only 3 are stored: entries were deleted"),
    ([("DELETE FROM commitments WHERE idx = 1", ()), ("DELETE FROM entries WHERE idx = 1", ())],
     "entry 1 is missing"),
    ([("DELETE FROM commitments WHERE idx = 2", ())], "commitment index disagrees with entry 2"),
    ([("INSERT INTO commitments (prefix, idx) VALUES (?, 1)", (1,))],
     "commitment index disagrees with entry 1"),
    ([("UPDATE commitments SET idx = 0 WHERE idx = 2", ())], "commitment index disagrees with entry 0"),
    ([("INSERT INTO commitments (prefix, idx) VALUES (?, 99)", (1,))],
     "commitment index disagrees with entry 99"),
    ([("INSERT INTO commitments (prefix, idx) VALUES (?, 'x')", (1,))],
     "commitment index holds a malformed row"),
    ([("INSERT INTO commitments (prefix, idx) VALUES (?, 1)", (b"\1" * 8,))],
     "a commitment index row of entry 1 is malformed"),
    ([("UPDATE meta SET value = 5 WHERE name = 'indexed'", ())], "watermark is missing or beyond the 4 entries"),
    ([("DELETE FROM meta WHERE name = 'indexed'", ())], "watermark is missing"),
    ([("UPDATE tree_heads SET envelope = ? WHERE size = 4",
       (TreeHead(4, b"\0" * 32, T0).sign(OWNER_B).to_json(),))], "tree head of size 4"),
    ([("DELETE FROM tree_heads WHERE size = 4", ())], "latest signed tree head covers 3 entries, but 4"),
], ids=["last-entry-deleted", "middle-entry-deleted", "index-row-deleted", "index-row-added", "index-row-moved",
        "index-row-of-no-entry", "index-row-malformed", "index-prefix-malformed", "watermark-raised", "watermark-deleted", "head-replaced", "head-deleted"])
def test_other_edits_are_named(filled_log, statements, message):
    _edit(filled_log, *statements)
    with pytest.raises(LogCorrupted, match=message):
        LogStore.open(filled_log)


def test_a_watermark_lowered_under_a_running_log_is_caught(filled_log):
    with LogStore.open(filled_log) as s:
        _edit(filled_log, ("UPDATE meta SET value = 1 WHERE name = 'indexed'", ()))
        with pytest.raises(LogCorrupted, match="the commitment index held 4 entries, now 1"):
            s.size


def test_a_replaced_key_or_a_foreign_database_is_refused(filled_log, tmp_path):
    key_file = filled_log / KEY_NAME
    key_file.write_bytes(SigningKey.generate().to_pem())
    with pytest.raises(LogCorrupted, match="not the key this log signs with"):
        LogStore.open(filled_log)
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / DB_NAME).write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(LogCorrupted, match="not a usable log database"):
        LogStore.open(tmp_path / "garbage")
    (tmp_path / "other").mkdir()
    sqlite3.connect(tmp_path / "other" / DB_NAME).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(LogCorrupted, match="not a wmark log"):
        LogStore.open(tmp_path / "other")
    with pytest.raises(InvalidInput, match="no log here"):
        LogStore.open(tmp_path / "absent", create=False)


# --- Crashes and concurrent processes.

# Killed while the 4th append sleeps in the log's clock (holding the write
# lock, nothing written yet), or a few milliseconds after it read the clock:
# while it inserts, signs the tree head, commits, or has just committed.
@pytest.mark.parametrize("clock_ms, kill_after_ms", [(300, 0), (0.5, 1), (0.5, 3), (0.5, 6)],
                         ids=["in-clock", "1ms-later", "3ms-later", "6ms-later"])
def test_a_kill_mid_append_leaves_the_whole_entry_or_none(tmp_path, clock_ms, kill_after_ms):
    log_dir = tmp_path / "log"
    with LogStore.open(log_dir) as s:
        fill(s, 2)
    worker = _worker("direct", str(log_dir), "1000", "crash", str(clock_ms), stdout=subprocess.PIPE)
    printed, clocks = 0, 0
    for line in worker.stdout:
        if line.strip() != "clock":
            printed += 1
        elif (clocks := clocks + 1) == 4:
            break  # the 4th append holds the write lock now
    time.sleep(kill_after_ms / 1000)
    worker.send_signal(signal.SIGKILL)
    printed += sum(line.strip() != "clock" for line in worker.stdout)
    worker.wait()
    with LogStore.open(log_dir) as s:  # recovers the database and checks the whole tree
        size = s.size
        head = verify_tree_head(s.tree_head(), s.public_key)
        for index in range(size):
            s.inclusion_proof(index).verify(s.entry(index), head)
        # The appends the worker saw return are all there, and the one it was
        # killed in is there whole or not at all (at "clock" it had written nothing).
        assert 2 + printed <= size <= 2 + printed + (kill_after_ms > 0)
        s.register(make_vk(OWNER_B, b"after the crash")[0])
        assert s.size == size + 1


def _assert_log_intact(log_dir: Path, expected: int) -> set[str]:
    """Check the whole log and every entry's inclusion proof; return the owners seen."""
    with LogStore.open(log_dir) as s:  # recomputes the root from all leaves
        assert s.size == expected
        head = verify_tree_head(s.tree_head(), s.public_key)
        owners = set()
        for index in range(expected):
            entry = s.entry(index)
            s.inclusion_proof(index).verify(entry, head)
            owners.add(entry.owner)
        assert len({s.entry(i).vk_digest for i in range(expected)}) == expected
    return owners


def test_processes_appending_directly_serialise(tmp_path):
    log_dir = tmp_path / "log"
    LogStore.open(log_dir).close()
    workers = [_worker("direct", str(log_dir), "25", f"w{i}", "0", stdout=subprocess.PIPE) for i in range(4)]
    indices = [int(x) for w in workers for x in w.communicate(timeout=120)[0].split() if x != "clock"]
    assert all(w.returncode == 0 for w in workers)
    assert sorted(indices) == list(range(100))
    assert len(_assert_log_intact(log_dir, 100)) == 4


# --- The HTTP front.

@pytest.fixture
def served(tmp_path):
    store = LogStore.open(tmp_path / "log", clock=ticking_clock())
    server = LogServer(store)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    with LogClient(server.url, timeout=10) as client:
        yield store, server, client
    server.shutdown()
    server.server_close()
    store.close()


def test_http_register_and_read_back(served):
    store, server, client = served
    log_key = client.log_key()
    assert log_key == store.public_key
    vks = [make_vk(OWNER_A, b"http-%d" % i) for i in range(4)]
    receipts = [client.register(signed) for _, signed in vks]
    for (vk, signed), receipt in zip(vks, receipts):
        assert verify_receipt(receipt, vk, log_key).index == receipt.entry.index
        assert client.entry(receipt.entry.index) == receipt.entry
    assert client.register(vks[0][1]).entry == receipts[0].entry
    head2 = verify_tree_head(client.tree_head(2), log_key)
    head4 = verify_tree_head(client.tree_head(), log_key)
    client.consistency_proof(2).verify(head2, head4)
    client.inclusion_proof(1, 2).verify(receipts[1].entry, head2)
    assert client.entries_with_commitment(vks[3][0].commitment_digests()[1]) == [3]


def test_http_errors_come_back_as_the_same_exceptions(served):
    store, server, client = served
    vk, signed = make_vk(OWNER_A, b"first")
    client.register(signed)
    _, transplant = make_vk(OWNER_B, b"thief", commitments=vk.commitments)
    with pytest.raises(DuplicateCommitment, match="item 0 is in entry 0"):
        client.register(transplant)
    with pytest.raises(EntryNotFound, match="entry 3 is beyond the tree of size 1"):
        client.entry(3)
    with pytest.raises(InvalidInput, match="0 < first <= second"):
        client.consistency_proof(0)
    broken = replace(signed, payload=signed.payload.replace(b'"num_classes":10', b'"num_classes":11'))
    with pytest.raises(InvalidSignature, match="altered after the owner signed it"):
        client.register(broken)


@pytest.mark.parametrize("method, path, kwargs, status, code", [
    ("POST", "/entries", {"content": b"{}"}, 400, "malformed"),
    ("POST", "/entries", {"content": iter([b"{}"])}, 411, "length-required"),
    ("GET", "/proof/inclusion?index=-1", {}, 400, "bad-query"),
    ("GET", "/proof/inclusion?size=1", {}, 400, "bad-query"),
    ("GET", "/proof/inclusion?index=0&index=1", {}, 400, "bad-query"),
    ("GET", "/tree-head?colour=red", {}, 400, "bad-query"),
    ("GET", "/entries/%C2%B2", {}, 400, "bad-query"),
    ("GET", "/entries?commitment=AAAA", {}, 400, "malformed"),
    ("GET", "/nowhere", {}, 404, "no-route"),
    ("DELETE", "/entries/0", {}, 501, "bad-request"),
])
def test_http_refusals_are_precise(served, method, path, kwargs, status, code):
    _, server, _ = served
    with httpx.Client(base_url=server.url, trust_env=False) as http:
        response = http.request(method, path, **kwargs)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_an_oversized_body_is_refused_unread(served):
    _, server, _ = served
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as sock:
        sock.sendall(b"POST /entries HTTP/1.1\r\nHost: log\r\nContent-Length: %d\r\n\r\n{" % 2**30)
        answer = sock.makefile("rb").read()  # the server answers at once and closes
    assert answer.startswith(b"HTTP/1.1 413 ") and b'"too-large"' in answer


def test_a_log_that_does_not_answer_is_reported(tmp_path):
    with LogStore.open(tmp_path / "log") as s:
        server = LogServer(s)
        url = server.url
        server.server_close()
    with LogClient(url, timeout=5) as client, pytest.raises(LogUnavailable, match="cannot reach the log"):
        client.tree_head()
    with pytest.raises(InvalidInput, match="not of the form"):
        LogClient("ftp://example.org/log")


def _serve(log_dir: Path, workers: int = 1, *extra: str) -> tuple[subprocess.Popen, str]:
    code = "import sys; from wmark.watermark.cli import main; sys.exit(main(sys.argv[1:]))"
    server = subprocess.Popen([sys.executable, "-c", code, "log", "serve", "--log", str(log_dir), "--port", "0",
                               "--workers", str(workers), *extra],
                              env=_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in server.stdout:
        found = re.search(r"serving at (http://127\.0\.0\.1:\d+)", line)
        if found:
            return server, found.group(1)
    raise AssertionError(f"server did not start (exit {server.wait()})")


def _stop(server: subprocess.Popen) -> str:
    server.send_signal(signal.SIGTERM)
    out = server.communicate(timeout=30)[0]
    assert server.returncode == 0, out
    return out


def _append_concurrently(tmp_path: Path, processes: int, each: int, workers: int = 1) -> float:
    log_dir = tmp_path / "log"
    server, url = _serve(log_dir, workers)
    try:
        started = time.perf_counter()
        workers = [_worker("http", url, str(each), f"p{i}", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                   for i in range(processes)]
        results = [w.communicate(timeout=600) for w in workers]
        elapsed = time.perf_counter() - started
    finally:
        out = _stop(server)
    assert all(w.returncode == 0 for w in workers), [err[-2000:] for _, err in results]
    assert f"stopped by SIGTERM with {processes * each} entries" in out
    indices = sorted(int(x) for stdout, _ in results for x in stdout.split())
    assert indices == list(range(processes * each))
    assert len(_assert_log_intact(log_dir, processes * each)) == processes
    return processes * each / elapsed


def _listening(url: str) -> bool:
    address = urlsplit(url)
    try:
        socket.create_connection((address.hostname, address.port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize("workers, witnessed, checkers", [(1, False, 0), (2, False, 0), (2, True, 0), (2, False, 1)])
def test_sigkill_of_a_batching_log_loses_and_duplicates_no_receipt(tmp_path, capsys, workers, witnessed, checkers):
    """Receipts return only after their batch committed: after SIGKILL of the log
    mid-run every receipt a client got names its own entry, once, and the log checks clean;
    with several workers, killing the log's process takes all of them down (and, with
    witnesses, the cosigning lock a killed worker held is released with it), and
    with checkers, those too."""
    log_dir = tmp_path / "log"
    specs: list[str] = []
    witness_servers: list[Running] = []
    if witnessed:
        with LogStore.open(log_dir) as s:
            log_key = Verifier.decode(s.vkey)
        for i in (1, 2):
            witness = Witness(tmp_path / f"w{i}", [log_key], name=f"test.local/w{i}")
            witness_servers.append(Running(WitnessServer(witness)))
            specs += ["--witness", f"{witness.verifier.encode()}={witness_servers[-1].server.url}"]
    server, url = _serve(log_dir, workers, *specs, "--checkers", str(checkers))
    processes = descendants(server.pid)
    assert len(processes) >= workers * (1 + checkers) - (workers == 1)
    clients = [_worker("http-digest", url, "60", f"k{i}", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
               for i in range(8)]
    got: list[tuple[int, str]] = []
    lock = threading.Lock()

    def read(worker: subprocess.Popen) -> None:
        for line in worker.stdout:
            index, digest = line.split()
            with lock:
                got.append((int(index), digest))

    readers = [threading.Thread(target=read, args=(w,)) for w in clients]
    for r in readers:
        r.start()
    deadline = time.monotonic() + 120
    while len(got) < 80 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.send_signal(signal.SIGKILL)
    server.wait()
    deadline = time.monotonic() + 30
    while _listening(url) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _listening(url), "a worker outlived the log's process"
    while any(Path(f"/proc/{pid}").exists() for pid in processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{pid}/stat").exists() and ") Z " not in Path(f"/proc/{pid}/stat").read_text()
                   for pid in processes), "a worker or checker outlived the log's process"
    for w in clients:
        w.wait(timeout=120)
    for r in readers:
        r.join()
    assert 80 <= len(got) < 8 * 60, "the kill came mid-run"
    assert len({index for index, _ in got}) == len(got), "an index was handed out twice"
    assert _cli("wmark", "log", "check", "--log", str(log_dir)) == 0
    assert "intact" in capsys.readouterr().out
    if witnessed:  # a restarted log goes on having its batches cosigned
        server, url = _serve(log_dir, workers, *specs)
        try:
            after = _worker("http", url, "5", "after", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            assert after.communicate(timeout=120) and after.returncode == 0
        finally:
            _stop(server)
        for r in witness_servers:
            r.stop()
        with LogStore.open(log_dir) as s:
            Policy(log_key, tuple(Verifier.decode((tmp_path / f"w{i}" / "witness.vkey").read_text())
                                  for i in (1, 2)), 2).verify(s.checkpoint())
    with LogStore.open(log_dir) as s:
        assert s.size >= len(got)
        for index, digest in got:
            assert s.entry(index).vk_digest.hex() == digest
        assert len({s.entry(i).vk_digest for i in range(s.size)}) == s.size


def test_eight_processes_append_through_http(tmp_path):
    rate = _append_concurrently(tmp_path, 8, 50)
    print(f"\n8 processes x 50 appends over HTTP: {rate:.0f} appends/s")


def test_two_server_workers_share_one_log(tmp_path):
    # Each worker batches its own connections; all batches land in one
    # consistent log (every index once, `log check` clean: _append_concurrently).
    rate = _append_concurrently(tmp_path, 8, 40, workers=2)
    print(f"\n8 processes x 40 appends over HTTP, 2 server workers: {rate:.0f} appends/s")


def test_two_server_workers_collect_both_witnesses_cosignatures_on_every_checkpoint(tmp_path):
    """Each worker has its own batches cosigned; the log's cosigning lock keeps the
    witnesses seeing checkpoints in tree order, so neither refuses one as older than
    what it cosigned, and every checkpoint of every batch carries both cosignatures."""
    log_dir = tmp_path / "log"
    with LogStore.open(log_dir) as s:
        log_key = Verifier.decode(s.vkey)
    witnesses = [Witness(tmp_path / f"w{i}", [log_key], name=f"test.local/w{i}") for i in (1, 2)]
    servers = [Running(WitnessServer(w)) for w in witnesses]
    try:
        specs = [a for w, r in zip(witnesses, servers) for a in ("--witness", f"{w.verifier.encode()}={r.server.url}")]
        server, url = _serve(log_dir, 2, *specs)
        try:
            clients = [_worker("http", url, "30", f"c{i}", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                       for i in range(8)]
            results = [c.communicate(timeout=600) for c in clients]
        finally:
            out = _stop(server)
    finally:
        for r in servers:
            r.stop()
    assert all(c.returncode == 0 for c in clients), [err[-2000:] for _, err in results]
    assert "did not cosign" not in out, out[-2000:]
    assert sorted(int(x) for stdout, _ in results for x in stdout.split()) == list(range(240))
    policy = Policy(log_key, tuple(w.verifier for w in witnesses), 2)
    with LogStore.open(log_dir) as s:
        sizes = s.checkpoint_sizes()[1:]
        assert sizes[-1] == 240 and len(sizes) > 2, sizes
        for size in sizes:
            assert policy.verify(s.checkpoint(size))[0].size == size


def test_server_workers_refuse_bad_counts(tmp_path, capsys):
    log_dir = tmp_path / "log"
    assert _cli("wmark", "log", "serve", "--log", str(log_dir), "--workers", "0") == 2
    assert "--workers must be between 1 and" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_eight_processes_append_a_thousand_each_through_http(tmp_path):
    rate = _append_concurrently(tmp_path, 8, 1000)
    print(f"\n8 processes x 1000 appends over HTTP: {rate:.0f} appends/s")


# --- Command lines.

def _cli(prog: str, *argv: str) -> int:
    return {"wmark": wmark_main, "wmark-verifier": verifier_main}[prog](list(map(str, argv)))


def test_register_and_check_a_registration_from_the_command_line(tmp_path, capsys):
    vk_path, log_dir = tmp_path / "keys" / "vk.json", tmp_path / "log"
    vk_path.parent.mkdir()
    _, signed = make_vk(OWNER_A, b"cli")
    vk_path.write_bytes(signed.to_json())
    assert _cli("wmark", "register", "--vk", vk_path, "--log", log_dir) == 0
    receipt_path = tmp_path / "keys" / "vk.receipt.json"
    assert "as entry 0 of log" in capsys.readouterr().out and receipt_path.exists()
    log_pub = log_dir / "log-key.pub"
    assert _cli("wmark-verifier", "registration", "--vk", vk_path, "--log-key", log_pub) == 0
    assert "registered  entry 0 of log" in capsys.readouterr().out

    assert _cli("wmark-verifier", "registration", "--vk", vk_path, "--log-key", vk_path.parent / "x") == 2
    other_log = tmp_path / "other-log-key.pem"
    other_log.write_bytes(SigningKey.generate().to_pem())
    assert _cli("wmark-verifier", "registration", "--vk", vk_path, "--log-key", other_log) == 1
    assert "does NOT prove the registration" in capsys.readouterr().out

    receipt = Receipt.from_json(receipt_path.read_bytes())
    tampered = replace(receipt, entry=replace(receipt.entry, time_ms=receipt.entry.time_ms - 1))
    receipt_path.write_bytes(tampered.to_json())
    assert _cli("wmark-verifier", "registration", "--vk", vk_path, "--log-key", log_pub) == 1
    receipt_path.write_bytes(receipt.to_json()[:-40])
    assert _cli("wmark-verifier", "registration", "--vk", vk_path, "--log-key", log_pub) == 2
    assert "not valid JSON" in capsys.readouterr().err

    assert _cli("wmark", "log", "check", "--log", log_dir) == 0
    _edit(log_dir, ("UPDATE entries SET entry = ? WHERE idx = 0", (_redated(log_dir, 0),)))
    assert _cli("wmark", "log", "check", "--log", log_dir) == 1
    assert "CORRUPTED" in capsys.readouterr().out


def test_log_check_reports_its_progress_on_stderr(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("wmark.registry.store.CHECK_PROGRESS_ENTRIES", 2)
    with LogStore.open(tmp_path / "log") as store:
        store.register_many([_record(OWNER_A, bytes([i]) * 32) for i in range(5)])
    assert _cli("wmark", "log", "check", "--log", tmp_path / "log") == 0
    out, err = capsys.readouterr()
    assert re.findall(r"(\d+) of (\d+) entries checked", err) == [("2", "5"), ("4", "5")]
    assert "intact" in out and "entries checked" not in out


def test_register_through_a_served_log_and_stop_it_cleanly(tmp_path, capsys):
    vk_path, log_dir = tmp_path / "vk.json", tmp_path / "log"
    vk, signed = make_vk(OWNER_B, b"served")
    vk_path.write_bytes(signed.to_json())
    server, url = _serve(log_dir)
    try:
        assert _cli("wmark", "register", "--vk", vk_path, "--log-url", url,
                    "--log-key", log_dir / "log-key.pub") == 0
        assert _cli("wmark", "register", "--vk", vk_path, "--log-url", url,
                    "--log-key", tmp_path / "vk.json") == 2  # not a PEM key
        wrong = tmp_path / "wrong.pem"
        wrong.write_bytes(SigningKey.generate().to_pem())
        assert _cli("wmark", "register", "--vk", vk_path, "--log-url", url, "--log-key", wrong) == 2
        assert "not with the given --log-key" in capsys.readouterr().err
    finally:
        out = _stop(server)
    assert "stopped by SIGTERM with 1 entry" in out
    receipt = Receipt.from_json((tmp_path / "vk.receipt.json").read_bytes())
    with LogStore.open(log_dir) as s:
        assert verify_receipt(receipt, vk, s.public_key).index == 0


# --- The index's rows, as a merge inserts them.

_DIGESTS = st.builds(lambda prefix, tail: prefix.to_bytes(8, "big", signed=True) + bytes([tail]) * 24,
                     st.sampled_from([-2**63, -1, 0, 1, 2**63 - 1]) | st.integers(-2**63, 2**63 - 1),
                     st.integers(0, 2))


@settings(max_examples=200)
@given(st.lists(st.lists(_DIGESTS, min_size=1, max_size=6), min_size=1, max_size=8))
def test_a_merge_inserts_each_entrys_distinct_prefixes_in_key_order(entries):
    recent = Recent(7)
    for i, digests in enumerate(entries):
        recent.add(7 + i, "owner", digests)
    expected = sorted({(_prefix(d), 7 + i) for i, digests in enumerate(entries) for d in digests})
    assert list(_index_rows(recent)) == expected


# --- Merges in slices (docs/design.md section 4b).

def _watermark(log_dir: Path) -> int:
    conn = sqlite3.connect(log_dir / DB_NAME)
    (value,) = conn.execute("SELECT value FROM meta WHERE name = 'indexed'").fetchone()
    conn.close()
    return value


def _index(log_dir: Path) -> set[tuple[int, int]]:
    conn = sqlite3.connect(log_dir / DB_NAME)
    rows = set(conn.execute("SELECT prefix, idx FROM commitments"))
    conn.close()
    return rows


@pytest.fixture
def sliced(monkeypatch):
    """Merges due at 4 entries, 3 index rows per slice: a merge of 4 entries of 3 items takes 4 slices."""
    monkeypatch.setattr("wmark.registry.store.MERGE_ENTRIES", 4)
    monkeypatch.setattr("wmark.registry.store.MERGE_SLICE_ROWS", 3)


def _deferred(store: LogStore, count: int, prefix: bytes = b"sliced") -> list:
    vks = [make_vk(OWNER_A, prefix + b"-%d" % i)[0] for i in range(count)]
    for vk in vks:
        store.register_many([vk], defer_merge=True)
    return vks


def test_a_merge_goes_in_slices_and_lookups_stay_right_throughout(store, sliced):
    vks = _deferred(store, 4)
    rows = {(_prefix(d), i) for i, vk in enumerate(vks) for d in vk.commitment_digests()}
    slices = 0
    while _watermark(store.directory) == 0 and slices < 10:
        assert store.merge_index() == (4 if len(_index(store.directory)) == len(rows) else 0)
        slices += 1
        assert _index(store.directory) <= rows
        # Half merged, each digest still names its one entry, and a thief is refused.
        for i, vk in enumerate(vks):
            assert [store.entries_with_commitment(d) for d in vk.commitment_digests()] == [[i]] * 3
        # Deferred: a plain register would merge everything in its own transaction.
        refused, = store.register_many([make_vk(OWNER_B, b"thief", commitments=vks[2].commitments)[0]],
                                       defer_merge=True)
        assert isinstance(refused, DuplicateCommitment) and "item 0 is in entry 2" in str(refused)
        store.check()
    assert slices == 4 and _index(store.directory) == rows
    assert store.merge_index() == 0  # nothing due
    store.check()


def test_a_merge_cut_short_is_read_back_and_finished(tmp_path, sliced):
    d = tmp_path / "log"
    with LogStore.open(d) as s:
        vks = _deferred(s, 4)
        s.merge_index()
        s.merge_index()  # two of four slices in: the process stops here
    partial = _index(d)
    assert partial and _watermark(d) == 0
    with LogStore.open(d) as s:  # the full check accepts the rows of a merge cut short
        assert [s.entries_with_commitment(vk.commitment_digests()[0]) for vk in vks] == [[0], [1], [2], [3]]
        for _ in range(10):
            s.merge_index()
        assert _index(d) > partial
        s.check()


class _FailingCommit:
    """The log's connection, whose next COMMIT fails (as a full disk would fail it)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, *args):
        if sql == "COMMIT":
            raise sqlite3.OperationalError("disk I/O error")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self._conn, name)


def test_a_slice_that_did_not_commit_goes_in_again(store, sliced, monkeypatch):
    vks = _deferred(store, 4)
    store.merge_index()
    with monkeypatch.context() as m:  # the second slice's rows go in, then its commit fails
        m.setattr(store, "_conn", _FailingCommit(store._conn))
        with pytest.raises(LogCorrupted, match="disk I/O error"):
            store.merge_index()
    for _ in range(10):
        store.merge_index()
    # Had the failed slice counted as inserted, its rows would be missing below the watermark.
    assert _index(store.directory) == {(_prefix(d), i) for i, vk in enumerate(vks) for d in vk.commitment_digests()}
    store.check()


def test_a_merge_another_handle_finished_is_dropped(tmp_path, sliced):
    d = tmp_path / "log"
    with LogStore.open(d) as first, LogStore.open(d, check=False) as second:
        _deferred(first, 4)
        first.merge_index()  # under way in the first handle
        assert second.merge_index(due_only=False) == 4 and _watermark(d) == 4
        _deferred(second, 2, prefix=b"later")
        assert first.merge_index() == 0 and first._merging is None
        assert _watermark(d) == 4  # nothing moved back
        first.check()


def test_a_row_past_the_watermark_that_is_not_its_entrys_is_refused(tmp_path):
    d = tmp_path / "log"
    with LogStore.open(d) as s:
        fill(s, 2)  # in memory only: no index rows, watermark 0
    _edit(d, ("INSERT INTO commitments (prefix, idx) VALUES (?, 1)", (12345,)))
    with pytest.raises(LogCorrupted, match="commitment index disagrees with entry 1"):
        LogStore.open(d)


def test_a_lowered_watermark_reads_the_entries_back_and_lookups_agree(filled_log):
    # Indistinguishable from a merge cut short before its last slice, and as harmless.
    _edit(filled_log, ("UPDATE meta SET value = 2 WHERE name = 'indexed'", ()))
    with LogStore.open(filled_log) as s:
        assert [s.entries_with_commitment(d) for d in s.entry(3).commitments] == [[3]] * 3
        with pytest.raises(DuplicateCommitment, match="item 0 is in entry 3"):
            s.register(_record(OWNER_B, s.entry(3).commitments[0]))


_DIGEST_POOL = [bytes([i]) * 32 for i in range(6)]
# add (owner, digests) | drop up to k entries | truncate the last k
_RECENT_OPS = st.lists(st.one_of(
    st.tuples(st.just("add"), st.sampled_from("ab"), st.lists(st.sampled_from(_DIGEST_POOL), min_size=1, max_size=3)),
    st.tuples(st.just("drop"), st.integers(0, 3)),
    st.tuples(st.just("truncate"), st.integers(0, 2))), max_size=30)


@settings(max_examples=300)
@given(_RECENT_OPS)
def test_the_memtable_answers_as_its_entries_do_through_drops(ops):
    recent, held, dropped = Recent(5), [], set()  # held: (idx, owner, digests) kept
    for op in ops:
        if op[0] == "add":
            recent.add(recent.end, op[1], op[2])
            held.append((recent.end - 1, op[1], tuple(op[2])))
        elif op[0] == "drop":
            k = min(op[1], len(held))
            dropped |= {d for _, _, ds in held[:k] for d in ds}
            recent.drop_before(recent.start + k)
            held = held[k:]
        else:
            k = min(op[1], len(held))
            recent.truncate(recent.end - k)
            held = held[:len(held) - k]
        assert (recent.start, recent.end) == ((held[0][0], held[-1][0] + 1) if held else (recent.start,) * 2)
        for d in _DIGEST_POOL:
            holding = [i for i, _, ds in held if d in ds]
            assert list(recent.holding(d)) == holding
        answered = {d: (owner, idx) for d, owner, idx in recent.holders(_DIGEST_POOL)}
        for d in _DIGEST_POOL:
            first = next(((owner, i) for i, owner, ds in held if d in ds), None)
            if d in answered:
                assert answered[d] == first  # never a dropped entry's, never a later one
            elif first is not None:
                assert d in dropped  # left to the index, whose merged entry held it first


def test_dropping_entries_not_held_is_refused():
    recent = Recent(3)
    recent.add(3, "a", [b"\1" * 32])
    for start in (2, 5):
        with pytest.raises(ValueError, match="asked to keep those from"):
            recent.drop_before(start)
