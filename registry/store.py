"""The transparency log on disk: an RFC 9162 Merkle tree in SQLite (docs/design.md section 4b).

A log directory holds ``log.db``, the log's ECDSA signing key ``log-key.pem``
(its public half ``log-key.pub`` checks DSSE tree heads and receipts), its
Ed25519 note key ``log-note.key`` (its verifier key ``log.vkey`` checks C2SP
checkpoints and tlog-proofs) and its beacon's VRF key ``log-vrf.key``
(:mod:`wmark.protocol.beacon`: every receipt carries the VRF output on its vk
digest, with the log's signed statement of the VRF public key, also kept as
``log-beacon.json``).  The database runs in WAL mode with
``synchronous=FULL``; every batch of appends (:meth:`LogStore.register_many`)
is one ``BEGIN IMMEDIATE`` transaction writing the entries, one signed tree
head and one checkpoint, so concurrent processes serialise, a crash leaves
the whole batch or none of it, and a receipt is only ever built from a
committed batch.  The entries' commitment digests wait in memory
(:mod:`.recent`) and join the commitment index in sorted runs
(:meth:`LogStore.merge_index`); a new handle reads back the entries the
index does not hold yet.

Every batch signs a tree head: :meth:`LogStore.check` recomputes the tree
from the stored entries and names the first batch of entries that no longer
matches what the log signed.  Checkpoints are kept in one table and written
only by :meth:`LogStore._put_checkpoint` and :meth:`LogStore.add_cosignatures`.  Each
process keeps the tree's hashes in memory and catches up with rows other
processes appended at the start of every operation.
"""

from __future__ import annotations

import itertools
import sqlite3
import struct
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, NoReturn

from wmark.errors import DecodeError, InvalidInput, InvalidSignature, WmarkError
from wmark.files import atomic_write, read_bounded
from wmark.protocol import tiles
from wmark.protocol.beacon import Beacon, sign_beacon_key
from wmark.protocol.checkpoint import MAX_ENTRY_BYTES, Checkpoint
from wmark.protocol.hazmat import dsse, merkle
from wmark.protocol.hazmat.encoding import canonical_json, expect_header, parse_json
from wmark.protocol.hazmat.identity import PublicKey, SigningKey, load_or_create_signing_key, load_signing_key
from wmark.protocol.hazmat.merkle import MerkleTree
from wmark.protocol.hazmat.note import ED25519, Note, NoteSignature, Signer, check_name, load_or_create_signer
from wmark.protocol.hazmat.vrf import VrfSecretKey
from wmark.protocol.keys import VerificationKey, VkRecord
from wmark.protocol.transparency import (
    MAX_ENVELOPE_BYTES,
    ConsistencyProof,
    InclusionProof,
    LogEntry,
    Receipt,
    TreeHead,
    envelope_from_obj,
    envelope_to_obj,
    verify_tree_head,
)
from wmark.registry.errors import DuplicateCommitment, EntryNotFound, LogBusy, LogCorrupted
from wmark.registry.recent import MERGE_ENTRIES, MERGE_SLICE_ROWS, Recent

DB_NAME = "log.db"
KEY_NAME = "log-key.pem"
PUBLIC_KEY_NAME = "log-key.pub"
NOTE_KEY_NAME = "log-note.key"
VKEY_NAME = "log.vkey"
# The latest signed tree head and how many heads the log has signed, kept
# beside the database rather than in it: a log.db restored from a backup,
# truncated, emptied or deleted is then behind it, and refused
# (docs/design.md section 4b).
STATE_NAME = "latest-head.json"
STATE_TYPE = "wmark/log-state"
MAX_STATE_BYTES = 64 * 1024
VRF_KEY_NAME = "log-vrf.key"
BEACON_KEY_NAME = "log-beacon.json"
# Versions 1 (before checkpoints) and 2 (the commitment index keyed by whole
# digests) are upgraded in place on first open.
SCHEMA_VERSION = 3
# The most appends one batch integrates: bounds the transaction and the
# receipts' wait behind it.
MAX_BATCH = 1024
# SQLite's page cache per handle (its default is 2 MiB): the commitment index's
# pages, probed at random by every batch, stay in memory up to about 4 million
# digests (docs/design.md section 4b).
CACHE_KIB = 64 * 1024
# How long an append waits for another process's append before giving up.
BUSY_TIMEOUT_S = 30.0
MAX_LOOKUP = 1000
# How often check() reports how far it got (it reads every entry: minutes at a million).
CHECK_PROGRESS_ENTRIES = 10_000
# Bound parameters per commitment lookup (SQLite allows 32,766 since 3.32).
_LOOKUP_CHUNK = 10_000

if TYPE_CHECKING:
    import numpy as np

# The commitment index, keyed by each digest's first 8 bytes (an integer, as
# _prefix makes it) rather than the whole 32: a third the size, so a batch's
# inserts, each at a random place, dirty fewer pages; a prefix only names
# candidate entries, each confirmed against its stored commitments
# (docs/design.md section 4b).
_INDEX_SCHEMA = """CREATE TABLE IF NOT EXISTS commitments (
        prefix INTEGER NOT NULL,
        idx INTEGER NOT NULL REFERENCES entries (idx),
        PRIMARY KEY (prefix, idx)) WITHOUT ROWID"""
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
    """CREATE TABLE IF NOT EXISTS entries (
        idx INTEGER PRIMARY KEY,
        leaf_hash BLOB NOT NULL,
        entry BLOB NOT NULL,
        vk_digest BLOB NOT NULL UNIQUE,
        owner TEXT NOT NULL)""",
    _INDEX_SCHEMA,
    "CREATE TABLE IF NOT EXISTS tree_heads (size INTEGER PRIMARY KEY, envelope BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS checkpoints (size INTEGER PRIMARY KEY, note BLOB NOT NULL)",
)


# The owner and commitment digests of each entry an index row named, read once per operation.
_Held = dict[int, tuple[str, frozenset[bytes]]]
_PREFIX = struct.Struct(">q")
_PREFIX_OF_DIGEST = struct.Struct(f">q{merkle.HASH_SIZE - 8}x")


def _prefix(digest: bytes) -> int:
    """A commitment digest's key in the index: its first 8 bytes, as SQLite's signed 64-bit integer."""
    return _PREFIX.unpack_from(digest)[0]


def _prefixes(digests: list[bytes]) -> list[int]:
    """:func:`_prefix` of each digest, in one pass of C over them all."""
    blob = b"".join(digests)
    if len(blob) != merkle.HASH_SIZE * len(digests):
        raise ValueError("a commitment digest that is not 32 bytes long")
    return [prefix for (prefix,) in _PREFIX_OF_DIGEST.iter_unpack(blob)]


_INSERT_INDEX_ROWS = "INSERT OR IGNORE INTO commitments (prefix, idx) VALUES (?, ?)"


def _index_rows(recent: Recent) -> Iterator[tuple[int, int]]:
    """The index rows of ``recent``'s entries, (prefix, idx) once each, in key order: the
    inserts then walk the B-tree forwards instead of at random."""
    return _Merging.of(recent).rows(0, None)


@dataclass
class _Merging:
    """A merge under way: the index rows of entries ``start`` to ``end - 1``, in key
    order, as two arrays (prefixes, entry indices); those from ``at`` on are still to
    be inserted (:meth:`LogStore.merge_index`)."""

    start: int
    end: int
    keys: np.ndarray
    entries: np.ndarray
    at: int = 0

    @classmethod
    def of(cls, recent: Recent) -> "_Merging":
        # With numpy: sorting the set of (_prefix(d), idx) tuples in Python took longer
        # than the insert itself (py-spy).  Imported here, not at import: most commands never merge.
        import numpy as np

        held = [digests for _, _, digests in recent.entries()]
        blob = b"".join([b"".join(digests) for digests in held])
        counts = [len(digests) for digests in held]
        if len(blob) != merkle.HASH_SIZE * sum(counts):
            raise ValueError("a commitment digest that is not 32 bytes long")
        # _prefix of each digest, read straight from the joined digests (its first 8 bytes, big-endian).
        keys = np.frombuffer(blob, dtype=">i8")[::merkle.HASH_SIZE // 8].astype(np.int64)
        entries = np.repeat(np.arange(recent.start, recent.end, dtype=np.int64), counts)
        # Stable: equal prefixes keep the entries' order, which is ascending already.
        order = np.argsort(keys, kind="stable")
        keys, entries = keys[order], entries[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = (keys[1:] != keys[:-1]) | (entries[1:] != entries[:-1])
        return cls(recent.start, recent.end, keys[first], entries[first])

    def rows(self, start: int, stop: int | None) -> Iterator[tuple[int, int]]:
        return zip(self.keys[start:stop].tolist(), self.entries[start:stop].tolist())


def default_origin(key: SigningKey) -> str:
    """A log's checkpoint origin when none is given: unique per log key."""
    return f"wmark.local/log/{key.public_key.keyid[:16]}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class _SignedHead:
    stored: bytes
    envelope: dsse.Envelope
    head: TreeHead


class LogStore:
    """One process's handle on a log directory; safe to share between threads."""

    def __init__(self, directory: Path, conn: sqlite3.Connection, key: SigningKey, note_key: Signer,
                 clock: Callable[[], int], vrf_key: VrfSecretKey) -> None:
        self.directory = directory
        self._conn: sqlite3.Connection | None = conn
        self._key = key
        self._note_key = note_key
        self._checkpoint: bytes | None = None
        self._vrf_key = vrf_key
        self._beacon_statement = sign_beacon_key(vrf_key.public_key, key)
        self._clock = clock
        self._lock = threading.Lock()
        self._tree = MerkleTree()
        # The entries from the index's watermark on, whose digests are not in it yet (registry/recent.py).
        self._recent = Recent(0)
        self._head: _SignedHead | None = None
        # The state file's bytes last read, and what they said once checked.
        self._state: tuple[bytes, tuple[TreeHead, int]] | None = None
        # (size, n): n tree heads of sizes up to size were stored when this handle last counted.
        self._heads_counted: tuple[int, int] | None = None
        # The merge into the commitment index under way, if any (merge_index).
        self._merging: _Merging | None = None

    @classmethod
    def open(cls, directory: str | Path, *, create: bool = True, check: bool = True,
             clock: Callable[[], int] = _now_ms, origin: str | None = None) -> "LogStore":
        """Open (or, with ``create``, start) the log in ``directory``.

        ``origin`` names a new log's checkpoints (default :func:`default_origin`);
        an existing log keeps its own and refuses a different one.

        With ``check`` the whole stored tree is verified first (:meth:`check`);
        without, only the latest signed head is held against the stored leaves.
        """
        d = Path(directory)
        db = d / DB_NAME
        if d.exists() and not d.is_dir():
            raise InvalidInput(f"{d}: a log directory was expected, found a file")
        if (d / STATE_NAME).exists() and (not db.exists() or db.stat().st_size == 0):
            # The log existed: starting it again at entry 0 under the same key
            # would hand out indices (and times) it has signed for others.
            raise LogCorrupted(f"{db}: {'missing' if not db.exists() else 'empty'}, but this log has signed "
                               f"tree heads ({d / STATE_NAME}); restore the database, refusing to start the log "
                               f"again from entry 0")
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
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            key, note_key, vrf_key = _initialise(conn, d, clock, origin)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise LogCorrupted(f"{db}: not a usable log database ({exc})") from None
        except BaseException:
            conn.close()
            raise
        store = cls(d, conn, key, note_key, clock, vrf_key)
        try:
            if not (d / BEACON_KEY_NAME).exists():
                atomic_write(d / BEACON_KEY_NAME, store._beacon_statement.to_json())
            if check:
                store.check()
            if not (d / STATE_NAME).exists():  # a new log, or one from before the state was kept
                with store._transaction() as c:
                    state = (store._latest, store._count_heads(c, store._latest.head.size))
                store._save_state(*state)
        except BaseException:
            store.close()
            raise
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
    def origin(self) -> str:
        return self._note_key.name

    @property
    def vkey(self) -> str:
        """The verifier key of the log's checkpoints (``log.vkey``)."""
        return self._note_key.verifier.encode()

    @property
    def size(self) -> int:
        with self._transaction():
            return len(self._tree)

    def beacon_key(self) -> tuple[bytes, dsse.Envelope]:
        """The beacon's VRF secret key (bytes) and the signed statement naming its public half,
        for the processes that evaluate beacons on this log's behalf (registry/checkers.py)."""
        return self._vrf_key.to_bytes(), self._beacon_statement

    def register(self, vk: VerificationKey | VkRecord) -> Receipt:
        """Append ``vk`` (whose owner signature the caller has checked) and return its receipt.

        Registering the same vk again returns a receipt for its first entry.
        A vk reusing any commitment another owner registered is refused.
        """
        (result,) = self.register_many([vk])
        if isinstance(result, WmarkError):
            raise result
        return result

    def register_many(self, vks: list[VerificationKey | VkRecord], beacons: list[Beacon | None] | None = None,
                      *, defer_merge: bool = False) -> list[Receipt | WmarkError]:
        """Integrate a batch: one transaction, one signed tree head, one checkpoint.

        Each vk gets its receipt, or the error that refused it alone (a
        transplant, an entry too large); the others are appended regardless.
        Receipts exist only once the transaction committed (synchronous=FULL:
        on disk), because a failed commit raises before any is returned.
        ``beacons[i]``, where given, is vk i's beacon, evaluated already with
        this log's :meth:`beacon_key` (by registry/checkers.py).

        Once :data:`MERGE_ENTRIES` entries wait outside the commitment index, the
        batch's transaction merges them in; with ``defer_merge`` only at twice as
        many, the caller merging them after its receipts are out (:meth:`merge_index`).
        """
        if not 0 < len(vks) <= MAX_BATCH:
            raise InvalidInput(f"a batch holds 1 to {MAX_BATCH} verification keys, got {len(vks)}")
        if beacons is not None and len(beacons) != len(vks):
            raise InvalidInput(f"{len(beacons)} beacons for {len(vks)} verification keys")
        with self._transaction(write=True) as conn:
            latest = self._latest.head
            time_ms = max(self._clock(), latest.time_ms)
            batch = _Batch(self._registered(conn, vks), self._holders(conn, vks))
            results: list[LogEntry | WmarkError] = []
            for vk in vks:
                try:
                    results.append(self._append(conn, batch, vk, time_ms))
                except (DuplicateCommitment, InvalidInput) as exc:
                    results.append(exc)
            # One statement per table for the whole batch.
            conn.executemany("INSERT INTO entries (idx, leaf_hash, entry, vk_digest, owner) VALUES (?, ?, ?, ?, ?)",
                             batch.entry_rows)
            if len(self._recent) >= (2 if defer_merge else 1) * MERGE_ENTRIES:
                self._merge(conn)
            if len(self._tree) > latest.size:
                head = TreeHead(len(self._tree), self._tree.root(), time_ms)
                envelope = head.sign(self._key)
                stored = envelope.to_json()
                conn.execute("INSERT INTO tree_heads (size, envelope) VALUES (?, ?)", (head.size, stored))
                self._head = _SignedHead(stored, envelope, head)
                self._put_checkpoint(conn, head)
            given = beacons if beacons is not None else [None] * len(vks)
            receipts = [r if isinstance(r, WmarkError) else self._receipt(r, b) for r, b in zip(results, given)]
            state = (self._latest, self._count_heads(conn, self._latest.head.size))
        # After the commit: the state never runs ahead of the database.
        self._save_state(*state)
        return receipts

    def merge_index(self, *, due_only: bool = True) -> int:
        """Merge the entries waiting outside the commitment index into it; how many joined it.

        Without ``due_only``, all of them in one transaction.  With it (the
        integrator, after every batch), nothing until :data:`MERGE_ENTRIES` wait;
        then their rows, in key order, :data:`MERGE_SLICE_ROWS` per call and
        transaction, and the last slice moves the watermark.  Until then the
        rows already in belong to entries the memtable still answers for
        (docs/design.md section 4b).
        """
        with self._lock:
            # The integrator asks after every batch: no write transaction unless one is due.
            if due_only and self._merging is None and len(self._recent) < MERGE_ENTRIES:
                return 0
        with self._transaction(write=True) as conn:
            if not due_only:
                self._merging = None
                return self._merge(conn) if len(self._recent) else 0
            merging = self._merging
            # Superseded once the watermark passed its end: another process, or a batch, merged them.
            if merging is None or merging.end <= self._recent.start:
                if len(self._recent) < MERGE_ENTRIES:
                    self._merging = None
                    return 0
                merging = _Merging.of(self._recent)
            at = merging.at + MERGE_SLICE_ROWS
            conn.executemany(_INSERT_INDEX_ROWS, merging.rows(merging.at, at))
            done = at >= len(merging.keys)
            if done:  # past the watermark (this transaction's _sync left recent.start at it)
                conn.execute("UPDATE meta SET value = ? WHERE name = 'indexed'", (merging.end,))
        # Committed: only now does the merge move on (a slice that did not commit goes in again).
        merging.at = at
        self._merging = None if done else merging
        return merging.end - merging.start if done else 0

    def _merge(self, conn: sqlite3.Connection) -> int:
        """All the waiting entries into the index, in this transaction."""
        recent = self._recent
        conn.executemany(_INSERT_INDEX_ROWS, _index_rows(recent))
        conn.execute("UPDATE meta SET value = ? WHERE name = 'indexed'", (recent.end,))
        # The next transaction's _sync sees the watermark move and drops them from the memtable.
        return len(recent)

    def _save_state(self, latest: _SignedHead, heads: int) -> None:
        data = canonical_json({"type": STATE_TYPE, "version": 1, "tree_head": envelope_to_obj(latest.envelope),
                               "heads": heads})
        atomic_write(self.directory / STATE_NAME, data)
        # This process signed it: the next read of these bytes needs no signature check.
        self._state = data, (latest.head, heads)

    def _load_state(self) -> tuple[TreeHead, int] | None:
        """The head and head count last saved beside the database, checked against the log's key."""
        path = self.directory / STATE_NAME
        if not path.exists():
            return None
        what = str(path)
        data = read_bounded(path, max_bytes=MAX_STATE_BYTES, what="log state")
        # Every operation reads the state; its signature is checked again only when its bytes changed.
        if self._state is not None and self._state[0] == data:
            return self._state[1]
        try:
            obj = expect_header(parse_json(data, what=what), type_=STATE_TYPE, version=1, what=what)
            head = verify_tree_head(envelope_from_obj(obj.get("tree_head"), what=what), self.public_key, what=what)
            heads = obj.get("heads")
            if not isinstance(heads, int) or isinstance(heads, bool) or heads < 1:
                raise DecodeError(f"{what}: 'heads' must be a positive count")
        except (DecodeError, InvalidSignature, InvalidInput) as exc:
            raise LogCorrupted(f"{exc}") from None
        self._state = data, (head, heads)
        return head, heads

    def _check_state(self, conn: sqlite3.Connection) -> None:
        """Refuse a database behind the latest head saved beside it: rolled back, truncated, a head deleted."""
        state = self._load_state()
        if state is None:
            return
        saved, heads = state
        if len(self._tree) < saved.size:
            raise LogCorrupted(f"{self._db}: holds {len(self._tree)} entries, but this log signed a tree of "
                               f"{saved.size} ({STATE_NAME}): entries were deleted or an old copy restored; "
                               f"refusing to go on (new entries would reuse their indices)")
        if self._tree.root(saved.size) != saved.root:
            raise LogCorrupted(f"{self._db}: its first {saved.size} entries are not those of the tree this log "
                               f"signed ({STATE_NAME})")
        stored = self._count_heads(conn, saved.size)
        if stored < heads:
            raise LogCorrupted(f"{self._db}: {heads - stored} of the tree heads this log signed up to size "
                               f"{saved.size} are missing ({STATE_NAME}): they were deleted")

    def _count_heads(self, conn: sqlite3.Connection, size: int) -> int:
        """How many tree heads of sizes up to ``size`` are stored.

        Counted in full once per handle, then only over the sizes added since:
        a full count reads every stored head, and every transaction asks (at
        12,500 heads a checkpoint read took 0.44 ms with it, 0.15 ms without).
        So a head deleted below the sizes this handle counted already is found
        when the log is next opened or checked, not by the running log
        (docs/design.md section 4b).
        """
        counted = self._heads_counted
        if counted is None or size < counted[0]:
            (heads,) = conn.execute("SELECT count(*) FROM tree_heads WHERE size <= ?", (size,)).fetchone()
        else:
            (added,) = conn.execute("SELECT count(*) FROM tree_heads WHERE size > ? AND size <= ?",
                                    (counted[0], size)).fetchone()
            heads = counted[1] + added
        self._heads_counted = size, heads
        return int(heads)

    @staticmethod
    def _registered(conn: sqlite3.Connection, vks: list[VerificationKey | VkRecord]) -> dict[bytes, int | LogEntry]:
        """The entry index of every vk of the batch already in the log (one query)."""
        digests = list({vk.digest for vk in vks})
        marks = ",".join("?" * len(digests))
        return dict(conn.execute(f"SELECT vk_digest, idx FROM entries WHERE vk_digest IN ({marks})", digests))

    def _holders(self, conn: sqlite3.Connection, vks: list[VerificationKey | VkRecord]) -> dict[bytes, dict[str, int]]:
        """For each commitment digest of the batch some entry holds already: its owner and
        first entry.  The log refuses a digest to a second owner, so the first
        entry holding a digest names its only owner.

        The index names, for each prefix, the first entry under it; that entry's
        own commitments confirm it holds the digest (almost always) or, for a
        prefix two digests share, the later entries under it are tried in turn."""
        digests = list({d for vk in vks for d in vk.commitment_digests()})
        prefixes = _prefixes(digests)
        wanted: dict[int, list[bytes]] = {}  # built only once the index holds a prefix
        holders: dict[bytes, dict[str, int]] = {}
        held: _Held = {}
        for at in range(0, len(prefixes), _LOOKUP_CHUNK):
            chunk = prefixes[at:at + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            # Rows of a merge under way may be among them: each prefix's are those of the oldest
            # entries under it (key order, then entry order), so the first that holds a digest is
            # its first holder still.
            rows = conn.execute(f"SELECT prefix, MIN(idx) FROM commitments WHERE prefix IN ({marks}) "
                                f"GROUP BY prefix", chunk).fetchall()
            if rows and not wanted:
                for prefix, digest in zip(prefixes, digests):
                    wanted.setdefault(prefix, []).append(digest)
            for prefix, first in rows:
                for digest in wanted[prefix]:
                    found = self._first_holder(conn, held, digest, prefix, first)
                    if found is not None:
                        holders[digest] = {found[0]: found[1]}
        # The entries not in the index yet, all after those in it.
        for digest, owner, idx in self._recent.holders(digests):
            holders.setdefault(digest, {owner: idx})
        return holders

    def _first_holder(self, conn: sqlite3.Connection, held: _Held, digest: bytes, prefix: int,
                      first: int) -> tuple[str, int] | None:
        """The owner and index of the first entry indexed under ``prefix`` that holds ``digest``."""
        owner, commitments = self._entry_of(conn, held, first)
        if digest in commitments:
            return owner, first
        for (idx,) in conn.execute("SELECT idx FROM commitments WHERE prefix = ? AND idx > ? ORDER BY idx",
                                   (prefix, first)).fetchall():
            owner, commitments = self._entry_of(conn, held, idx)
            if digest in commitments:
                return owner, idx
        return None

    def _entry_of(self, conn: sqlite3.Connection, held: _Held, idx: int) -> tuple[str, frozenset[bytes]]:
        """The owner and commitment digests of the entry an index row names."""
        if idx not in held:
            if not 0 <= idx < len(self._tree):
                self._index_disagrees(idx)
            entry = self._read_entry(conn, idx)
            held[idx] = entry.owner, frozenset(entry.commitments)
        return held[idx]

    def _append(self, conn: sqlite3.Connection, batch: _Batch, vk: VerificationKey | VkRecord, time_ms: int) -> LogEntry:
        known = batch.registered.get(vk.digest)
        if isinstance(known, LogEntry):  # registered earlier in this batch
            return known
        if known is not None:
            return self._read_entry(conn, known)
        entry = LogEntry.for_key(vk, index=len(self._tree), time_ms=time_ms)
        data = entry.encode()
        if len(data) > MAX_ENTRY_BYTES:
            raise InvalidInput(f"the log entry of this verification key would be {len(data)} bytes; tlog-tiles "
                               f"entry bundles hold at most {MAX_ENTRY_BYTES} (about 1,400 items)")
        _refuse_transplant(batch.holders, entry)
        leaf = merkle.leaf_hash(data)
        batch.entry_rows.append((entry.index, leaf, data, entry.vk_digest, entry.owner))
        self._recent.add(entry.index, entry.owner, entry.commitments)
        for d in entry.commitments:
            owners = batch.holders.get(d)
            if owners is None:
                batch.holders[d] = {entry.owner: entry.index}
            elif entry.owner not in owners:
                owners[entry.owner] = entry.index
        batch.registered[vk.digest] = entry
        self._tree.append(leaf)
        return entry

    def _put_checkpoint(self, conn: sqlite3.Connection, head: TreeHead) -> None:
        """Sign the checkpoint of ``head`` (same size and root) and keep it."""
        text = Checkpoint(self.origin, head.size, head.root).text()
        note = Note(text, (self._note_key.sign(text),)).encode()
        conn.execute("INSERT OR REPLACE INTO checkpoints (size, note) VALUES (?, ?)", (head.size, note))
        self._checkpoint = note

    def checkpoint(self, size: int | None = None) -> Note:
        """The latest checkpoint (with the cosignatures collected so far), or the one of ``size``."""
        with self._transaction() as conn:
            if size is None:
                size = len(self._tree)
            row = conn.execute("SELECT note FROM checkpoints WHERE size = ?", (size,)).fetchone()
            if row is None:
                raise EntryNotFound(f"the log has no checkpoint of size {size} (its size is {len(self._tree)})")
            return self._note(row[0], size)

    def checkpoint_sizes(self) -> list[int]:
        with self._transaction() as conn:
            return [size for (size,) in conn.execute("SELECT size FROM checkpoints ORDER BY size")]

    def add_cosignatures(self, size: int, signatures: tuple[NoteSignature, ...]) -> Note:
        """Keep witnesses' cosignatures (checked by the caller) on the checkpoint of ``size``."""
        with self._transaction(write=True) as conn:
            row = conn.execute("SELECT note FROM checkpoints WHERE size = ?", (size,)).fetchone()
            if row is None:
                raise EntryNotFound(f"the log has no checkpoint of size {size}")
            note = self._note(row[0], size).with_signatures(signatures)
            conn.execute("UPDATE checkpoints SET note = ? WHERE size = ?", (note.encode(), size))
            if size == len(self._tree):
                self._checkpoint = note.encode()
            return note

    def _note(self, stored: object, size: int) -> Note:
        data = self._blob(stored, f"checkpoint of size {size}")
        try:
            note = Note.decode(data, what=f"checkpoint of size {size}")
            note.verified_by(self._note_key.verifier)
            checkpoint = Checkpoint.parse(note.text)
        except (DecodeError, InvalidSignature) as exc:
            raise LogCorrupted(f"{self._db}: {exc} (edited behind the log's back)") from None
        if (checkpoint.origin, checkpoint.size) != (self.origin, size) or (
                size <= len(self._tree) and checkpoint.root != self._tree.root(size)):
            raise LogCorrupted(f"{self._db}: the checkpoint of size {size} does not match the stored tree")
        return note

    def tile(self, level: int, index: int, width: int) -> bytes:
        """``tile/L/N[.p/W]`` of tlog-tiles, from the current tree."""
        with self._transaction():
            try:
                return tiles.tile_from_tree(self._tree, level, index, width)
            except InvalidInput as exc:
                raise EntryNotFound(str(exc)) from None

    def entry_bundle(self, index: int, width: int) -> bytes:
        """``tile/entries/N[.p/W]``: the stored entries, each checked against its leaf."""
        with self._transaction() as conn:
            first = index * tiles.TILE_WIDTH
            if not 1 <= width <= tiles.width_at(len(self._tree), 0, index):
                raise EntryNotFound(f"{tiles.bundle_path(index, width)} is not in the tree of size {len(self._tree)}")
            rows = conn.execute("SELECT idx, entry FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx",
                                (first, first + width)).fetchall()
            entries = []
            for idx, data in rows:
                data = self._blob(data, f"entry {idx}")
                if merkle.leaf_hash(data) != self._tree.leaf(idx):
                    raise LogCorrupted(f"{self._db}: entry {idx} no longer matches its leaf hash "
                                       f"(edited behind the log's back)")
                entries.append(data)
            if len(entries) != width:
                raise LogCorrupted(f"{self._db}: entries {first}..{first + width - 1} are not all stored")
            return tiles.encode_bundle(entries)

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
        found: list[int] = []
        with self._transaction() as conn:
            held: _Held = {}
            # Each candidate the prefix names is confirmed by its entry (docs/design.md section 4b).
            # Rows from the watermark on (a merge under way) are the memtable's to answer.
            for (idx,) in conn.execute("SELECT idx FROM commitments WHERE prefix = ? AND idx < ? ORDER BY idx",
                                       (_prefix(digest), self._recent.start)).fetchall():
                if len(found) == limit:
                    break
                if digest in self._entry_of(conn, held, idx)[1]:
                    found.append(idx)
            found.extend(itertools.islice(self._recent.holding(digest), max(0, limit - len(found))))
        return found

    def check(self, progress: Callable[[int, int], object] | None = None) -> TreeHead:
        """Recompute the whole tree from the stored entries and hold it against every
        signed tree head; raise :class:`LogCorrupted` naming the first thing that differs.
        ``progress(checked, stored)`` is called every :data:`CHECK_PROGRESS_ENTRIES` entries."""
        with self._transaction(sync=False) as conn:
            tree = self._check_entries(conn, progress)
            self._check_heads(conn, tree)
            # Only the latest head's signature needs checking (_sync does it):
            # with every root matching, a forged earlier head changes nothing.
            self._tree, self._head = tree, None
            for size, note in conn.execute("SELECT size, note FROM checkpoints ORDER BY size"):
                if size > len(tree):
                    raise LogCorrupted(f"{self._db}: a checkpoint covers {size} entries, but only {len(tree)} "
                                       f"are stored: entries were deleted")
                self._note(note, size)
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
            committed: tuple[int, _SignedHead | None, tuple[int, int] | None] | None = None
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    if sync:
                        self._sync(conn)
                    committed = len(self._tree), self._head, self._heads_counted
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    if committed is not None:
                        # Forget in memory what an append that did not commit added.
                        self._tree.truncate(committed[0])
                        self._recent.truncate(committed[0])
                        self._head, self._heads_counted = committed[1], committed[2]
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
        self._sync_recent(conn)
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
            self._checkpoint = None
        head = self._head.head
        if head.size != len(self._tree):
            raise LogCorrupted(f"{self._db}: the latest signed tree head covers {head.size} entries, "
                               f"but {len(self._tree)} are stored")
        if self._tree.root(head.size) != head.root:
            raise LogCorrupted(f"{self._db}: the root recomputed from the stored leaves does not match the "
                               f"latest signed tree head (size {head.size}): the database was edited "
                               f"behind the log's back; run `wmark log check` to find the entry")
        if self._checkpoint is None:
            row = conn.execute("SELECT note FROM checkpoints WHERE size = ?", (head.size,)).fetchone()
            if row is None:
                raise LogCorrupted(f"{self._db}: no checkpoint for the latest signed tree head (size {head.size})")
            self._checkpoint = self._note(row[0], head.size).encode()
        self._check_state(conn)

    def _watermark(self, conn: sqlite3.Connection, size: int) -> int:
        """How many entries the commitment index holds (the first that many, of ``size``)."""
        row = conn.execute("SELECT value FROM meta WHERE name = 'indexed'").fetchone()
        if row is None or type(row[0]) is not int or not 0 <= row[0] <= size:
            raise LogCorrupted(f"{self._db}: the commitment index's watermark is missing or beyond the "
                               f"{size} entries (edited behind the log's back)")
        return row[0]

    def _sync_recent(self, conn: sqlite3.Connection) -> None:
        """Hold in memory the digests of every entry from the index's watermark on: those other
        processes appended, or all of them in a new handle (registry/recent.py)."""
        watermark, recent = self._watermark(conn, len(self._tree)), self._recent
        if watermark < recent.start:
            raise LogCorrupted(f"{self._db}: the commitment index held {recent.start} entries, now "
                               f"{watermark} (edited behind the log's back)")
        if len(self._tree) - watermark > 2 * MERGE_ENTRIES + MAX_BATCH:
            raise LogCorrupted(f"{self._db}: {len(self._tree) - watermark} entries are missing from the "
                               f"commitment index, more than merging leaves (edited behind the log's back)")
        if recent.start < watermark <= recent.end:  # merged, here or by another process
            recent.drop_before(watermark)
        elif watermark > recent.end:  # merged past what this handle held: read back any entry past it
            self._recent = recent = Recent(watermark)
        for idx in range(recent.end, len(self._tree)):
            entry = self._read_entry(conn, idx)
            recent.add(idx, entry.owner, entry.commitments)

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

    def _receipt(self, entry: LogEntry, beacon: Beacon | None = None) -> Receipt:
        latest = self._latest
        # The beacon is a function of the vk digest alone, so a repeated registration gets the same beta.
        return Receipt(self.public_key.keyid, entry, latest.envelope,
                       InclusionProof(entry.index, latest.head.size,
                                      tuple(self._tree.inclusion_proof(entry.index, latest.head.size))),
                       checkpoint=self._checkpoint,
                       beacon=beacon or Beacon.evaluate(self._vrf_key, self._beacon_statement, entry.vk_digest))

    def _check_entries(self, conn: sqlite3.Connection,
                       progress: Callable[[int, int], object] | None = None) -> MerkleTree:
        """The tree of the stored entries, each checked, and with it the commitment index.

        The index is walked beside the entries in index order, one entry's rows at
        a time (SQLite sorts them on disk), so the check's memory does not grow
        with the log: holding both as sets took 3.6 GB and twice the time at 100,000 entries.
        """
        tree, last_time = MerkleTree(), 0
        # Only its type here: _sync, after the heads, holds it against the entries.
        watermark = self._watermark(conn, 2 ** 63)
        # Counted only for a caller that reports progress: opening a log checks it without.
        stored = conn.execute("SELECT count(*) FROM entries").fetchone()[0] if progress is not None else 0
        index_rows = conn.execute("SELECT idx, prefix FROM commitments ORDER BY idx, prefix")
        pending = self._index_row(next(index_rows, None))
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
            indexed: list[int] = []
            # Rows before idx belong to no entry: taken here, the comparison below refuses them.
            while pending is not None and pending[0] <= idx:
                indexed.append(pending[1])
                pending = self._index_row(next(index_rows, None))
            # INSERT OR IGNORE kept one row per distinct prefix of the entry's digests; an entry
            # past the watermark has those of a merge under way (or cut short), or none yet.
            prefixes = sorted(set(_prefixes(list(entry.commitments))))
            if (indexed != prefixes) if idx < watermark else not set(indexed) <= set(prefixes):
                self._index_disagrees(idx)
            last_time = entry.time_ms
            if progress is not None and len(tree) % CHECK_PROGRESS_ENTRIES == 0:
                progress(len(tree), stored)
        if pending is not None:  # rows of entries the log does not hold
            self._index_disagrees(pending[0])
        return tree

    def _index_row(self, row: tuple[object, object] | None) -> tuple[int, int] | None:
        if row is None:
            return None
        idx, prefix = row
        if type(idx) is not int:
            raise LogCorrupted(f"{self._db}: the commitment index holds a malformed row "
                               f"(edited behind the log's back)")
        if type(prefix) is not int:
            raise LogCorrupted(f"{self._db}: a commitment index row of entry {idx} is malformed "
                               f"(edited behind the log's back)")
        return idx, prefix

    def _index_disagrees(self, idx: int) -> NoReturn:
        raise LogCorrupted(f"{self._db}: the commitment index disagrees with entry {idx} "
                           f"(edited behind the log's back)")

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


@dataclass
class _Batch:
    """What :meth:`LogStore.register_many` has read and staged so far: the batch's
    vks already registered (index in the log, or entry staged in this batch), the
    owners holding each of its commitment digests, and the rows to insert."""

    registered: dict[bytes, int | LogEntry]
    holders: dict[bytes, dict[str, int]]
    entry_rows: list[tuple[int, bytes, bytes, bytes, str]] = field(default_factory=list)


def _refuse_transplant(holders: dict[bytes, dict[str, int]], entry: LogEntry) -> None:
    """Refuse ``entry`` if another owner's earlier entry holds any of its commitments."""
    first: dict[bytes, tuple[int, str]] = {}
    # Only the digests some entry holds already: almost none, for a new vk.
    for digest in [d for d in entry.commitments if d in holders]:
        others = [(idx, owner) for owner, idx in holders[digest].items() if owner != entry.owner]
        if others:
            first[digest] = min(others)
    if not first:
        return
    conflicts = [(item, *first[d]) for item, d in enumerate(entry.commitments) if d in first]
    if conflicts:
        item, idx, other = conflicts[0]
        raise DuplicateCommitment(
            f"{len(conflicts)} of the {len(entry.commitments)} commitments of this verification key were already "
            f"registered by another owner (item {item} is in entry {idx}, owner {other[:23]}…): "
            f"a key cannot reuse another owner's commitments")


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


def _initialise(conn: sqlite3.Connection, directory: Path, clock: Callable[[], int],
                origin: str | None) -> tuple[SigningKey, Signer, VrfSecretKey]:
    """Create the schema, keys, empty signed tree head and checkpoint on first use;
    upgrade a log of version 1 (no checkpoints yet) or 2 (the index of whole
    digests) in place; check them after.

    Runs under SQLite's write lock, so two processes starting the same new log
    cannot each create a key.
    """
    if origin is not None:
        check_name(origin, what="log origin")
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
                             [("schema", 1), ("public_key", key.public_key.to_der())])
            empty = TreeHead(0, merkle.EMPTY_ROOT, clock()).sign(key)
            conn.execute("INSERT INTO tree_heads (size, envelope) VALUES (0, ?)", (empty.to_json(),))
            meta = {"schema": 1, "public_key": key.public_key.to_der()}
        if meta.get("schema") not in range(1, SCHEMA_VERSION + 1):
            raise LogCorrupted(f"{directory / DB_NAME}: log schema version {meta.get('schema')!r} "
                               f"(this tool reads 1 to {SCHEMA_VERSION})")
        key = load_signing_key(directory / KEY_NAME)
        if key.public_key.to_der() != meta.get("public_key"):
            raise LogCorrupted(f"{directory / KEY_NAME}: not the key this log signs with "
                               f"(the key file was replaced)")
        if meta.get("schema") == 1:
            note_key = _upgrade(conn, directory, key, origin or default_origin(key))
        else:
            name = meta.get("origin")
            if not isinstance(name, str):
                raise LogCorrupted(f"{directory / DB_NAME}: the log's origin is missing")
            note_key = load_or_create_signer(directory / NOTE_KEY_NAME, directory / VKEY_NAME, name, ED25519)
            if note_key.verifier.encode() != meta.get("note_vkey"):
                raise LogCorrupted(f"{directory / NOTE_KEY_NAME}: not the note key this log signs checkpoints "
                                   f"with (the key file was replaced)")
        if origin is not None and origin != note_key.name:
            raise InvalidInput(f"{directory}: this log's origin is {note_key.name!r}, not {origin!r}")
        if meta.get("schema") != SCHEMA_VERSION:
            _upgrade_index(conn, directory)
        vrf_key = _load_or_create_vrf_key(conn, directory, meta)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return key, note_key, vrf_key


def _upgrade(conn: sqlite3.Connection, directory: Path, key: SigningKey, origin: str) -> Signer:
    """Version 1 -> 2: a note key, the origin, and a checkpoint of the latest signed head.

    The latest head's signature is checked first, so the upgrade signs a
    checkpoint only over a root the log itself signed; `check` compares it
    with the stored entries afterwards as for any checkpoint.
    """
    note_key = load_or_create_signer(directory / NOTE_KEY_NAME, directory / VKEY_NAME, origin, ED25519)
    row = conn.execute("SELECT envelope FROM tree_heads ORDER BY size DESC LIMIT 1").fetchone()
    if row is None or not isinstance(row[0], bytes):
        raise LogCorrupted(f"{directory / DB_NAME}: the log has no signed tree head")
    try:
        envelope = dsse.Envelope.from_json(row[0], what="latest tree head", max_bytes=MAX_ENVELOPE_BYTES)
        head = verify_tree_head(envelope, key.public_key, what="latest tree head")
    except (DecodeError, InvalidSignature) as exc:
        raise LogCorrupted(f"{directory / DB_NAME}: {exc}") from None
    text = Checkpoint(note_key.name, head.size, head.root).text()
    conn.execute("INSERT OR REPLACE INTO checkpoints (size, note) VALUES (?, ?)",
                 (head.size, Note(text, (note_key.sign(text),)).encode()))
    conn.executemany("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                     [("schema", 2), ("origin", note_key.name),
                      ("note_vkey", note_key.verifier.encode())])
    return note_key


def _upgrade_index(conn: sqlite3.Connection, directory: Path) -> None:
    """Version 2 -> 3: the commitment index keyed by each digest's 8-byte prefix (_INDEX_SCHEMA).

    A new log, created at version 1 and upgraded through 2, has the new index already."""
    columns = [row[1] for row in conn.execute("PRAGMA table_info(commitments)")]
    if columns == ["digest", "idx"]:
        conn.execute("ALTER TABLE commitments RENAME TO commitments_v2")
        conn.execute(_INDEX_SCHEMA)

        def rows() -> Iterator[tuple[int, int]]:
            # In the old key's order: the inserts walk the new B-tree forwards, in two runs.
            for digest, idx in conn.execute("SELECT digest, idx FROM commitments_v2 ORDER BY digest, idx"):
                if not isinstance(digest, bytes) or len(digest) != merkle.HASH_SIZE or type(idx) is not int:
                    raise LogCorrupted(f"{directory / DB_NAME}: the commitment index holds a malformed row "
                                       f"(edited behind the log's back)")
                yield _prefix(digest), idx

        conn.executemany("INSERT OR IGNORE INTO commitments (prefix, idx) VALUES (?, ?)", rows())
        conn.execute("DROP TABLE commitments_v2")
        # Every entry a version 2 log holds is in its index.
        (count,) = conn.execute("SELECT count(*) FROM entries").fetchone()
        conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", ("indexed", count))
    elif columns == ["prefix", "idx"]:  # a new log: none yet
        conn.execute("INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)", ("indexed", 0))
    else:
        raise LogCorrupted(f"{directory / DB_NAME}: the commitment index has columns {columns}, "
                           f"not those of schema version {SCHEMA_VERSION}")
    conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", ("schema", SCHEMA_VERSION))
