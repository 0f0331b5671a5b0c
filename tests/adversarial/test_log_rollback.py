"""Registry rollback and loss: whoever can touch log.db (a careless restore, an
operator hiding an entry) deletes the last entries with their heads, deletes
a head in the middle, or empties or deletes the database.  The log keeps its
latest signed head and head count beside the database, so it refuses to
start, append or report "intact" when the database is behind them
(docs/design.md section 4b)."""

from __future__ import annotations

import sqlite3

import pytest

from wmark.harness.claims import run_main
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.keygen import keygen_derived
from wmark.registry.errors import LogCorrupted
from wmark.registry.store import DB_NAME, LogStore
from wmark.watermark.cli import main as wmark_main

pytestmark = pytest.mark.adversarial


def _vk():
    owner = SigningKey.generate()
    return keygen_derived(owner=owner, n=4, num_classes=10, input_shape=(1, 8, 8)).verification_key


@pytest.fixture
def log(tmp_path):
    with LogStore.open(tmp_path / "log") as store:
        for _ in range(3):  # three batches: heads of sizes 0, 1, 2, 3
            store.register(_vk())
    return tmp_path / "log"


def _sql(log, *statements: str) -> None:
    conn = sqlite3.connect(log / DB_NAME)
    with conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


def _check(log) -> tuple[int, str]:
    return run_main(wmark_main, "log", "check", "--log", log)


def test_deleting_the_last_entry_and_its_head_is_caught(log):
    _sql(log, "DELETE FROM commitments WHERE idx = 2", "DELETE FROM entries WHERE idx = 2",
         "DELETE FROM tree_heads WHERE size = 3", "DELETE FROM checkpoints WHERE size = 3")
    code, out = _check(log)
    assert code == 1 and "CORRUPTED" in out and "entries were deleted" in out, out
    with pytest.raises(LogCorrupted, match="entries were deleted"):
        with LogStore.open(log, check=False) as store:
            store.register(_vk())  # would have reused index 2


def test_deleting_a_head_in_the_middle_is_caught(log):
    _sql(log, "DELETE FROM tree_heads WHERE size = 2")
    code, out = _check(log)
    assert code == 1 and "tree heads this log signed" in out and "deleted" in out, out


@pytest.mark.parametrize("damage", ["empty", "deleted"])
def test_an_emptied_or_deleted_database_is_not_started_again(log, damage):
    db = log / DB_NAME
    for suffix in ("-wal", "-shm"):
        (log / f"{DB_NAME}{suffix}").unlink(missing_ok=True)
    if damage == "empty":
        db.write_bytes(b"")
    else:
        db.unlink()
    with pytest.raises(LogCorrupted, match="refusing to start the log again"):
        LogStore.open(log)
    code, out = _check(log)
    assert code != 0 and "refusing to start the log again" in out, out
    assert not db.exists() or db.stat().st_size == 0


def test_a_running_log_catches_a_head_deleted_since_it_last_counted(log):
    # A running handle counts only the heads added since it last counted
    # (LogStore._count_heads); a second handle (another worker) appends two
    # batches and one of their heads is deleted before the first one looks.
    with LogStore.open(log) as running:
        running.register(_vk())  # counted the heads up to size 4
        with LogStore.open(log) as other:
            other.register(_vk())
            other.register(_vk())
        _sql(log, "DELETE FROM tree_heads WHERE size = 5")
        with pytest.raises(LogCorrupted, match="1 of the tree heads this log signed up to size 6 are missing"):
            running.register(_vk())


def test_handles_appending_in_turn_count_every_head(log):
    with LogStore.open(log) as first, LogStore.open(log) as second:
        for _ in range(3):
            first.register(_vk())
            second.register(_vk())
    code, out = _check(log)
    assert code == 0 and "intact" in out, out


def test_a_batch_that_did_not_commit_leaves_no_heads_counted(log, monkeypatch):
    # A batch fails after counting its own new head (a disk error, say); another
    # worker then commits heads up to the same size.  The failed batch's count
    # must be forgotten with it, or the first handle would see a head missing.
    with LogStore.open(log) as failing, LogStore.open(log) as other:
        count = failing._count_heads

        def count_then_fail(conn, size):
            heads = count(conn, size)
            if size == 6:
                raise sqlite3.OperationalError("disk I/O error")
            return heads

        monkeypatch.setattr(failing, "_count_heads", count_then_fail)
        with pytest.raises(LogCorrupted, match="disk I/O error"):
            failing.register_many([_vk(), _vk(), _vk()])
        monkeypatch.undo()
        other.register(_vk())
        other.register_many([_vk(), _vk()])  # heads of sizes 4 and 6
        failing.register(_vk())
