"""The registry (docs/design.md section 4b): an append-only RFC 9162 Merkle log of
verification keys, stored in SQLite, with an HTTP front for shared use.

The log's objects and their offline checks (entries, signed tree heads,
proofs, receipts) live in :mod:`wmark.protocol.transparency`; this package stores
and serves them.
"""

from wmark.registry.client import LogClient
from wmark.registry.errors import DuplicateCommitment, EntryNotFound, LogBusy, LogCorrupted, LogUnavailable
from wmark.registry.http import LogServer, serve_until_signalled
from wmark.registry.store import LogStore

__all__ = [
    "DuplicateCommitment", "EntryNotFound", "LogBusy", "LogClient", "LogCorrupted", "LogServer",
    "LogStore", "LogUnavailable", "serve_until_signalled",
]
