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
