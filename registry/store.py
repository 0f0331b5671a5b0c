"""The transparency log on disk: an RFC 9162 Merkle tree in SQLite (docs/design.md section 4b).

A log directory holds ``log.db``, the log's signing key ``log-key.pem``
(its public half ``log-key.pub`` is what verifiers hold) and its beacon's
VRF key ``log-vrf.key`` (:mod:`wmark.protocol.beacon`: every receipt carries
the VRF output on its vk digest, with the log's signed statement of the VRF
public key, also kept as ``log-beacon.json``).  The database runs
in WAL mode with ``synchronous=FULL``; every append is one ``BEGIN
IMMEDIATE`` transaction writing the entry, its commitment digests and the new
signed tree head, so concurrent processes serialise and a crash leaves the
whole entry or none of it.

Every append signs a tree head, so the database holds one signed head per
size: :meth:`LogStore.check` recomputes the tree from the stored entries and
names the first entry that no longer matches what the log signed.  Each
process keeps the tree's hashes in memory and catches up with rows other
processes appended at the start of every operation.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from wmark.errors import DecodeError, InvalidInput, InvalidSignature
from wmark.files import atomic_write, read_bounded
from wmark.protocol.beacon import Beacon, sign_beacon_key
from wmark.protocol.hazmat import dsse, merkle
from wmark.protocol.hazmat.encoding import parse_json
from wmark.protocol.hazmat.identity import PublicKey, SigningKey, load_or_create_signing_key, load_signing_key
from wmark.protocol.hazmat.merkle import MerkleTree
from wmark.protocol.hazmat.vrf import VrfSecretKey
from wmark.protocol.keys import VerificationKey
from wmark.protocol.transparency import (
    MAX_ENVELOPE_BYTES,
    ConsistencyProof,
    InclusionProof,
    LogEntry,
    Receipt,
    TreeHead,
    verify_tree_head,
)
from wmark.registry.errors import DuplicateCommitment, EntryNotFound, LogBusy, LogCorrupted

DB_NAME = "log.db"
KEY_NAME = "log-key.pem"
PUBLIC_KEY_NAME = "log-key.pub"
VRF_KEY_NAME = "log-vrf.key"
BEACON_KEY_NAME = "log-beacon.json"
SCHEMA_VERSION = 1
# How long an append waits for another process's append before giving up.
BUSY_TIMEOUT_S = 30.0
MAX_LOOKUP = 1000

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
    """CREATE TABLE IF NOT EXISTS entries (
        idx INTEGER PRIMARY KEY,
        leaf_hash BLOB NOT NULL,
        entry BLOB NOT NULL,
        vk_digest BLOB NOT NULL UNIQUE,
        owner TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS commitments (
        digest BLOB NOT NULL,
        idx INTEGER NOT NULL REFERENCES entries (idx),
        PRIMARY KEY (digest, idx)) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS tree_heads (size INTEGER PRIMARY KEY, envelope BLOB NOT NULL)",
)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class _SignedHead:
    stored: bytes
    envelope: dsse.Envelope
    head: TreeHead


class LogStore:
    """One process's handle on a log directory; safe to share between threads."""

    def __init__(self, directory: Path, conn: sqlite3.Connection, key: SigningKey,
                 clock: Callable[[], int], vrf_key: VrfSecretKey) -> None:
        self.directory = directory
        self._conn: sqlite3.Connection | None = conn
        self._key = key
        self._vrf_key = vrf_key
        self._beacon_statement = sign_beacon_key(vrf_key.public_key, key)
        self._clock = clock
        self._lock = threading.Lock()
        self._tree = MerkleTree()
        self._head: _SignedHead | None = None

    @classmethod
    def open(cls, directory: str | Path, *, create: bool = True, check: bool = True,
             clock: Callable[[], int] = _now_ms) -> "LogStore":
        """Open (or, with ``create``, start) the log in ``directory``.

        With ``check`` the whole stored tree is verified first (:meth:`check`);
        without, only the latest signed head is held against the stored leaves.
        """
        d = Path(directory)
        db = d / DB_NAME
        if d.exists() and not d.is_dir():
            raise InvalidInput(f"{d}: a log directory was expected, found a file")
        if not db.exists():
            if not create:
                raise InvalidInput(f"{d}: no log here ({DB_NAME} not found)")
            d.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(db, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise InvalidInput(f"{db}: cannot open the log database ({exc})") from None
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise LogCorrupted(f"{db}: cannot switch the database to WAL mode (it stays in {mode!r})")
            conn.execute("PRAGMA synchronous=FULL")
            key, vrf_key = _initialise(conn, d, clock)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise LogCorrupted(f"{db}: not a usable log database ({exc})") from None
        except BaseException:
            conn.close()
            raise
        store = cls(d, conn, key, clock, vrf_key)
        if not (d / BEACON_KEY_NAME).exists():
            atomic_write(d / BEACON_KEY_NAME, store._beacon_statement.to_json())
        if check:
            store.check()
        return store

    def __enter__(self) -> "LogStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database once the operation in progress, if any, has finished."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @property
    def public_key(self) -> PublicKey:
        return self._key.public_key

    @property
    def public_key_path(self) -> Path:
        return self.directory / PUBLIC_KEY_NAME

    @property
    def size(self) -> int:
        with self._transaction():
            return len(self._tree)

    def register(self, vk: VerificationKey) -> Receipt:
        """Append ``vk`` (whose owner signature the caller has checked) and return its receipt.

        Registering the same vk again returns a receipt for its first entry.
        A vk reusing any commitment another owner registered is refused.
        """
        with self._transaction(write=True) as conn:
            row = conn.execute("SELECT idx FROM entries WHERE vk_digest = ?", (vk.digest,)).fetchone()
            if row is not None:
                return self._receipt(self._read_entry(conn, row[0]))
            latest = self._latest.head
            entry = LogEntry.for_key(vk, index=latest.size, time_ms=max(self._clock(), latest.time_ms))
            self._refuse_transplant(conn, entry)
            data = entry.encode()
            leaf = merkle.leaf_hash(data)
            conn.execute("INSERT INTO entries (idx, leaf_hash, entry, vk_digest, owner) VALUES (?, ?, ?, ?, ?)",
                         (entry.index, leaf, data, entry.vk_digest, entry.owner))
            conn.executemany("INSERT OR IGNORE INTO commitments (digest, idx) VALUES (?, ?)",
                             [(d, entry.index) for d in entry.commitments])
            self._tree.append(leaf)
            head = TreeHead(len(self._tree), self._tree.root(), entry.time_ms)
            envelope = head.sign(self._key)
            stored = envelope.to_json()
            conn.execute("INSERT INTO tree_heads (size, envelope) VALUES (?, ?)", (head.size, stored))
            self._head = _SignedHead(stored, envelope, head)
            return self._receipt(entry)

    def tree_head(self, size: int | None = None) -> dsse.Envelope:
        """The latest signed tree head, or the one the log signed at ``size``."""
        with self._transaction() as conn:
            if size is None or size == len(self._tree):
                return self._latest.envelope
            row = conn.execute("SELECT envelope FROM tree_heads WHERE size = ?", (size,)).fetchone()
            if row is None:
                raise EntryNotFound(f"the log has no signed tree head of size {size} "
                                    f"(its size is {len(self._tree)})")
            return self._envelope(row[0], what=f"tree head of size {size}")

    def entry(self, index: int) -> LogEntry:
        with self._transaction() as conn:
            return self._read_entry(conn, index)

    def inclusion_proof(self, index: int, size: int | None = None) -> InclusionProof:
        with self._transaction():
            size = len(self._tree) if size is None else size
            return InclusionProof(index, size, tuple(self._tree.inclusion_proof(index, size)))

    def consistency_proof(self, first: int, second: int | None = None) -> ConsistencyProof:
        with self._transaction():
            second = len(self._tree) if second is None else second
            return ConsistencyProof(first, second, tuple(self._tree.consistency_proof(first, second)))

    def entries_with_commitment(self, digest: bytes, *, limit: int = MAX_LOOKUP) -> list[int]:
        """Indices of the entries whose vk commits to the item with ``digest``, oldest first."""
        with self._transaction() as conn:
            rows = conn.execute("SELECT idx FROM commitments WHERE digest = ? ORDER BY idx LIMIT ?",
                                (digest, limit)).fetchall()
        return [idx for (idx,) in rows]

    def check(self) -> TreeHead:
        """Recompute the whole tree from the stored entries and hold it against every
        signed tree head; raise :class:`LogCorrupted` naming the first thing that differs."""
        with self._transaction(sync=False) as conn:
            tree, indexed = self._check_entries(conn)
            stored = set(conn.execute("SELECT digest, idx FROM commitments"))
            if stored != indexed:
                first = min(idx for _, idx in stored ^ indexed)
                raise LogCorrupted(f"{self._db}: the commitment index disagrees with entry {first} "
                                   f"(edited behind the log's back)")
            self._check_heads(conn, tree)
            # Only the latest head's signature needs checking (_sync does it):
            # with every root matching, a forged earlier head changes nothing.
            self._tree, self._head = tree, None
            self._sync(conn)
            return self._latest.head

    @property
    def _db(self) -> Path:
        return self.directory / DB_NAME

    @property
    def _latest(self) -> _SignedHead:
        assert self._head is not None, "only called inside a transaction, after _sync"
        return self._head

    @contextmanager
    def _transaction(self, *, write: bool = False, sync: bool = True) -> Iterator[sqlite3.Connection]:
        """One consistent view of the log, held under this handle's lock, caught up
        with other processes' appends unless ``sync`` is false.

        A write transaction takes SQLite's write lock at once (BEGIN
        IMMEDIATE), so appends from all processes run one after the other.
        """
        with self._lock:
            conn = self._conn
            if conn is None:
                raise LogBusy(f"{self.directory}: the log is closed (shutting down)")
            committed: tuple[int, _SignedHead | None] | None = None
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    if sync:
                        self._sync(conn)
                    committed = len(self._tree), self._head
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    if committed is not None:
                        # Forget in memory what an append that did not commit added.
                        self._tree.truncate(committed[0])
                        self._head = committed[1]
                    raise
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise LogBusy(f"{self._db}: another process held the log's write lock for more than "
                                  f"{BUSY_TIMEOUT_S:.0f} s") from None
                raise LogCorrupted(f"{self._db}: {exc}") from None
            except sqlite3.DatabaseError as exc:
                raise LogCorrupted(f"{self._db}: {exc}") from None

    def _sync(self, conn: sqlite3.Connection) -> None:
        """Catch up with entries other processes appended, and check that the latest
        signed tree head still matches the stored leaves."""
        for idx, leaf in conn.execute("SELECT idx, leaf_hash FROM entries WHERE idx >= ? ORDER BY idx",
                                      (len(self._tree),)):
            if idx != len(self._tree):
                raise LogCorrupted(f"{self._db}: entry {len(self._tree)} is missing from the database")
            self._tree.append(self._blob(leaf, f"entry {idx}'s leaf hash", size=merkle.HASH_SIZE))
        (last,) = conn.execute("SELECT MAX(idx) FROM entries").fetchone()
        if (-1 if last is None else last) != len(self._tree) - 1:
            raise LogCorrupted(f"{self._db}: entries up to {len(self._tree) - 1} were read before, "
                               f"but the last entry is now {last}: entries were deleted")
        row = conn.execute("SELECT envelope FROM tree_heads ORDER BY size DESC LIMIT 1").fetchone()
        if row is None:
            raise LogCorrupted(f"{self._db}: the log has no signed tree head")
        if self._head is None or self._head.stored != row[0]:
            envelope = self._envelope(row[0], what="latest tree head")
            try:
                head = verify_tree_head(envelope, self.public_key, what="latest tree head")
            except (InvalidSignature, DecodeError) as exc:
                raise LogCorrupted(f"{self._db}: {exc}") from None
            self._head = _SignedHead(row[0], envelope, head)
        head = self._head.head
        if head.size != len(self._tree):
            raise LogCorrupted(f"{self._db}: the latest signed tree head covers {head.size} entries, "
                               f"but {len(self._tree)} are stored")
        if self._tree.root(head.size) != head.root:
            raise LogCorrupted(f"{self._db}: the root recomputed from the stored leaves does not match the "
                               f"latest signed tree head (size {head.size}): the database was edited "
                               f"behind the log's back; run `wmark log check` to find the entry")

    def _read_entry(self, conn: sqlite3.Connection, index: int) -> LogEntry:
        if not 0 <= index < len(self._tree):
            raise EntryNotFound(f"entry {index} is beyond the tree of size {len(self._tree)}")
        (data,) = conn.execute("SELECT entry FROM entries WHERE idx = ?", (index,)).fetchone()
        if merkle.leaf_hash(self._blob(data, f"entry {index}")) != self._tree.leaf(index):
            raise LogCorrupted(f"{self._db}: entry {index} no longer matches its leaf hash "
                               f"(edited behind the log's back)")
        return self._decode_entry(data, index)

    def _blob(self, value: object, what: str, *, size: int | None = None) -> bytes:
        """A BLOB read back from the database, which anyone with the file could have changed."""
        if not isinstance(value, bytes) or (size is not None and len(value) != size):
            raise LogCorrupted(f"{self._db}: {what} is malformed (edited behind the log's back)")
        return value

    def _envelope(self, stored: object, *, what: str) -> dsse.Envelope:
        try:
            return dsse.Envelope.from_json(self._blob(stored, what), what=what, max_bytes=MAX_ENVELOPE_BYTES)
        except DecodeError as exc:
            raise LogCorrupted(f"{self._db}: {exc} (edited behind the log's back)") from None

    def _decode_entry(self, data: bytes, index: int) -> LogEntry:
        try:
            entry = LogEntry.decode(data, what=f"entry {index}")
        except DecodeError as exc:
            raise LogCorrupted(f"{self._db}: entry {index} does not decode ({exc})") from None
        if entry.index != index:
            raise LogCorrupted(f"{self._db}: the entry stored at index {index} claims index {entry.index}")
        return entry

    def _receipt(self, entry: LogEntry) -> Receipt:
        latest = self._latest
        # The beacon is a function of the vk digest alone, so a repeated registration gets the same beta.
        return Receipt(self.public_key.keyid, entry, latest.envelope,
                       InclusionProof(entry.index, latest.head.size,
                                      tuple(self._tree.inclusion_proof(entry.index, latest.head.size))),
                       Beacon.evaluate(self._vrf_key, self._beacon_statement, entry.vk_digest))

    @staticmethod
    def _refuse_transplant(conn: sqlite3.Connection, entry: LogEntry) -> None:
        conflicts = []
        for item, digest in enumerate(entry.commitments):
            row = conn.execute("SELECT c.idx, e.owner FROM commitments c JOIN entries e ON e.idx = c.idx "
                               "WHERE c.digest = ? AND e.owner != ? ORDER BY c.idx LIMIT 1",
                               (digest, entry.owner)).fetchone()
            if row is not None:
                conflicts.append((item, *row))
        if conflicts:
            item, idx, other = conflicts[0]
            raise DuplicateCommitment(
                f"{len(conflicts)} of the {len(entry.commitments)} commitments of this verification key were already "
                f"registered by another owner (item {item} is in entry {idx}, owner {other[:23]}…): "
                f"a key cannot reuse another owner's commitments")

    def _check_entries(self, conn: sqlite3.Connection) -> tuple[MerkleTree, set[tuple[bytes, int]]]:
        tree, indexed, last_time = MerkleTree(), set(), 0
        for idx, leaf, data, vk_digest, owner in conn.execute(
                "SELECT idx, leaf_hash, entry, vk_digest, owner FROM entries ORDER BY idx"):
            if idx != len(tree):
                raise LogCorrupted(f"{self._db}: entry {len(tree)} is missing from the database")
            if merkle.leaf_hash(self._blob(data, f"entry {idx}")) != leaf:
                raise LogCorrupted(f"{self._db}: entry {idx} no longer matches its stored leaf hash "
                                   f"(edited behind the log's back)")
            entry = self._decode_entry(data, idx)
            if (entry.vk_digest, entry.owner) != (vk_digest, owner):
                raise LogCorrupted(f"{self._db}: entry {idx}'s vk digest or owner columns were edited")
            if entry.time_ms < last_time:
                raise LogCorrupted(f"{self._db}: entry {idx} is dated before entry {idx - 1}")
            tree.append(leaf)
            indexed.update((c, idx) for c in entry.commitments)
            last_time = entry.time_ms
        return tree, indexed

    def _check_heads(self, conn: sqlite3.Connection, tree: MerkleTree) -> None:
        # The log signs a head at every size, so the first head that stops
        # matching pins the altered entry down to the ones it added.
        matched = 0
        for size, stored in conn.execute("SELECT size, envelope FROM tree_heads ORDER BY size"):
            what = f"tree head of size {size}"
            payload = self._envelope(stored, what=what).payload
            try:
                head = TreeHead.from_obj(parse_json(payload, what=what, max_bytes=MAX_ENVELOPE_BYTES), what=what)
            except DecodeError as exc:
                raise LogCorrupted(f"{self._db}: {exc} (edited behind the log's back)") from None
            if head.size != size:
                raise LogCorrupted(f"{self._db}: the {what} claims size {head.size}")
            if size > len(tree):
                raise LogCorrupted(f"{self._db}: a signed tree head covers {size} entries, but only {len(tree)} "
                                   f"are stored: entries were deleted")
            if tree.root(size) != head.root:
                altered = f"entry {size - 1}" if matched == size - 1 else f"one of entries {matched}..{size - 1}"
                raise LogCorrupted(f"{self._db}: the root recomputed from the stored entries no longer matches "
                                   f"the signed {what}: {altered} was edited behind the log's back")
            matched = size


def _load_or_create_vrf_key(conn: sqlite3.Connection, directory: Path, meta: dict) -> VrfSecretKey:
    """The beacon's VRF key; a log made before beacons existed gets one on first open.

    Its public half is recorded in the metadata, so a replaced key file is
    noticed rather than silently changing every future beta.
    """
    path = directory / VRF_KEY_NAME
    recorded = meta.get("beacon_key")
    if recorded is None:
        key = VrfSecretKey.generate()
        atomic_write(path, key.to_bytes().hex().encode() + b"\n", mode=0o600)
        conn.execute("INSERT INTO meta (name, value) VALUES (?, ?)", ("beacon_key", key.public_key.to_bytes()))
        return key
    try:
        key = VrfSecretKey.from_bytes(bytes.fromhex(read_bounded(path, max_bytes=128, what="beacon key")
                                                    .decode("ascii").strip()))
    except (ValueError, UnicodeDecodeError, InvalidInput):
        raise LogCorrupted(f"{path}: missing, or not a beacon VRF key (64 hex digits)") from None
    if key.public_key.to_bytes() != recorded:
        raise LogCorrupted(f"{path}: not the beacon key this log publishes (the key file was replaced)")
    return key


def _initialise(conn: sqlite3.Connection, directory: Path,
                clock: Callable[[], int]) -> tuple[SigningKey, VrfSecretKey]:
    """Create the schema, keys and empty signed tree head on first use; check them after.

    Runs under SQLite's write lock, so two processes starting the same new log
    cannot each create a key.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "meta" not in tables:
            raise LogCorrupted(f"{directory / DB_NAME}: a SQLite database, but not a wmark log")
        for statement in _SCHEMA:
            conn.execute(statement)
        meta = dict(conn.execute("SELECT name, value FROM meta"))
        if not meta:
            # A key file without metadata is left by a crash during creation: reuse it.
            key, _ = load_or_create_signing_key(directory / KEY_NAME)
            conn.executemany("INSERT INTO meta (name, value) VALUES (?, ?)",
                             [("schema", SCHEMA_VERSION), ("public_key", key.public_key.to_der())])
            empty = TreeHead(0, merkle.EMPTY_ROOT, clock()).sign(key)
            conn.execute("INSERT INTO tree_heads (size, envelope) VALUES (0, ?)", (empty.to_json(),))
        else:
            if meta.get("schema") != SCHEMA_VERSION:
                raise LogCorrupted(f"{directory / DB_NAME}: log schema version {meta.get('schema')!r} "
                                   f"(this tool reads {SCHEMA_VERSION})")
            key = load_signing_key(directory / KEY_NAME)
            if key.public_key.to_der() != meta.get("public_key"):
                raise LogCorrupted(f"{directory / KEY_NAME}: not the key this log signs with "
                                   f"(the key file was replaced)")
        vrf_key = _load_or_create_vrf_key(conn, directory, meta)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return key, vrf_key
