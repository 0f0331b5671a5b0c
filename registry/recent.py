"""The commitments of the log's newest entries, held in memory until they join the index
(docs/design.md section 4b).

The log's commitment index is a SQLite B-tree keyed by each digest's prefix,
a random number: every digest a batch inserts lands on a page of its own, so
a batch of 25 entries (2,500 digests) dirtied and rewrote nearly the whole
index at every commit, about 30% and 22% of the integrator's time (inserts,
commit; measured).  So, as a log-structured merge tree keeps its newest keys
in a memtable, the entries from the index's watermark on keep their digests
here, looked up beside the index, and join it in one sorted insert once
:data:`MERGE_ENTRIES` have gathered (:meth:`LogStore.merge_index`).

Nothing here needs to survive a crash: the entries themselves are durable,
and a process opening the log reads the entries past the watermark back in.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

# Entries held in memory before they join the index: each merge then inserts
# about 100 times as many rows at once, and a process opening the log reads
# at most this many entries back (about 0.2 ms each).
MERGE_ENTRIES = 1024
# A merge inserts its rows, in key order, this many per transaction, one slice
# after each batch: about 10 ms here.  All at once (about 110 ms for 1,024
# entries of 100 digests) stalled every append, and the checkers, having
# nothing left to check, sat idle (docs/design.md section 4b).
MERGE_SLICE_ROWS = 16384


class Recent:
    """The owner and commitment digests of entries ``start``, ``start + 1``, ... in order."""

    def __init__(self, start: int) -> None:
        self.start = start
        self._entries: list[tuple[str, tuple[bytes, ...]]] = []
        # Each digest's first entry here.  One owner holds each digest (the log
        # refuses it to a second), so the first entry also names its owner.
        # Entries dropped (merged) leave their digests behind, pointing before
        # ``start``, until they outnumber the rest (:meth:`drop_before`).
        self._first: dict[bytes, int] = {}
        self._stale = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def end(self) -> int:
        """The index after the last entry held."""
        return self.start + len(self._entries)

    def add(self, idx: int, owner: str, digests: Iterable[bytes]) -> None:
        if idx != self.end:
            raise ValueError(f"entry {idx} added after entry {self.end - 1}")
        held = tuple(digests)
        self._entries.append((owner, held))
        for digest in held:
            self._first.setdefault(digest, idx)

    def holders(self, digests: list[bytes]) -> Iterator[tuple[bytes, str, int]]:
        """Each of ``digests`` an entry held commits to, with the first such entry's owner and
        index; but not one that an entry dropped since (:meth:`drop_before`) held first, which
        the index answers for, that entry being merged."""
        for digest in self._first.keys() & digests:
            idx = self._first[digest]
            # Before start: a merged entry holds it first, which the index names.
            if idx >= self.start:
                yield digest, self._entries[idx - self.start][0], idx

    def holding(self, digest: bytes) -> Iterator[int]:
        """Every entry held that commits to ``digest``, oldest first."""
        if digest in self._first:
            for at, (_, held) in enumerate(self._entries):
                if digest in held:
                    yield self.start + at

    def truncate(self, end: int) -> None:
        """Forget the entries from ``end`` on (appended by a transaction that did not commit)."""
        if end < self.end:
            dropped = self._entries[max(0, end - self.start):]
            del self._entries[max(0, end - self.start):]
            for _, held in dropped:
                for digest in held:
                    # First at or after ``end``: no kept entry holds it (they all come before).
                    if self._first.get(digest, -1) >= end:
                        del self._first[digest]

    def drop_before(self, start: int) -> None:
        """Forget the entries before ``start`` (merged into the index), keeping the later ones."""
        if not self.start <= start <= self.end:
            raise ValueError(f"entries {self.start} to {self.end - 1} held, asked to keep those from {start}")
        dropped = self._entries[:start - self.start]
        del self._entries[:start - self.start]
        self.start = start
        # Deleting a dropped entry's digests would hide a kept entry holding the same
        # digest from holding(); finding those costs a pass over the kept ones, so it
        # is done once the stale digests outnumber the rest (amortised over the drops).
        self._stale += sum(len(held) for _, held in dropped)
        if self._stale > len(self._first) - self._stale:
            self._first, self._stale = {}, 0
            for at, (_, held) in enumerate(self._entries):
                for digest in held:
                    self._first.setdefault(digest, start + at)

    def entries(self) -> Iterator[tuple[int, str, tuple[bytes, ...]]]:
        """Each entry held, as its index, owner and digests."""
        for at, (owner, held) in enumerate(self._entries):
            yield self.start + at, owner, held
