"""The leakage ledger (docs/design.md section 4, "Leakage budget").

Every private verification opens a few trigger items, and an opened item is
public forever.  The ledger is the prover's durable memory of what it has
given away: each challenge (digest, verifier key, model, the subset asked
for), the exact envelope sent back, which items that made public and when,
and the verdict the verifier reported.  It enforces two rules:

* a repeated challenge gets the identical stored response, so replaying a
  challenge extracts nothing new;
* a challenge that would push the revealed fraction
  ``|revealed before ∪ S| / n`` past the budget is refused with a signed
  :class:`~wmark.protocol.messages.Refusal`.

It is SQLite in WAL mode with ``synchronous=FULL``.  :meth:`Ledger.respond`
decides and records inside one ``BEGIN IMMEDIATE`` transaction, so any
number of threads and processes sharing one file are serialised by SQLite
itself (two concurrent challenges cannot both squeeze under the budget), and
it returns the response only after the commit: a crash at any point never
leaves a reveal that went out unrecorded.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction
from pathlib import Path
from typing import Iterator

from wmark.errors import InvalidInput, LocalProtocolError, WmarkError
from wmark.protocol.beacon import bound_label
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.encoding import canonical_json, parse_json
from wmark.protocol.keys import VerificationKey
from wmark.protocol.messages import Challenge, ModelRef, Reveal, Verdict, decode
from wmark.protocol.session import (
    ChallengeReceived,
    ProverSession,
    ProverState,
    VerdictReceived,
    build_verdict,
    now,
    null_match_probability,
)

DEFAULT_BUDGET = Fraction(1, 2)
# "wmkl": marks the file as a wmark ledger, so another application's SQLite
# database is refused rather than written into.
APPLICATION_ID = 0x776D6B6C
SCHEMA_VERSION = 2
# How long a transaction waits for another process holding the write lock.
BUSY_TIMEOUT_S = 60.0
_BUDGET_SYNTAX = re.compile(r"[0-9]+(\.[0-9]+)?|\.[0-9]+|[0-9]+/[0-9]+")
NOTHING_SECRET = ("nothing is secret any more: every trigger item is public, so this key can no longer be "
                  "verified privately")

_SCHEMA = """
CREATE TABLE binding (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    vk_digest BLOB NOT NULL,
    n INTEGER NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE challenges (
    seq INTEGER PRIMARY KEY,
    digest BLOB NOT NULL UNIQUE,
    received TEXT NOT NULL,
    verifier TEXT NOT NULL,
    model TEXT NOT NULL,
    k INTEGER NOT NULL,
    indices TEXT NOT NULL,
    new_indices TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('revealed', 'refused')),
    reason TEXT,
    challenge BLOB NOT NULL,
    response BLOB NOT NULL
);
CREATE TABLE revealed (
    idx INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL REFERENCES challenges (seq),
    revealed TEXT NOT NULL
);
CREATE TABLE verdicts (
    digest BLOB PRIMARY KEY,
    seq INTEGER NOT NULL REFERENCES challenges (seq),
    received TEXT NOT NULL,
    accepted INTEGER NOT NULL,
    matches INTEGER NOT NULL,
    k INTEGER NOT NULL,
    envelope BLOB NOT NULL,
    consistent INTEGER NOT NULL DEFAULT 1,
    note TEXT
);
""" + "CREATE TABLE zk_sessions (" + """
    seq INTEGER PRIMARY KEY,
    digest BLOB NOT NULL,
    received TEXT NOT NULL,
    received_s REAL NOT NULL,
    verifier TEXT NOT NULL,
    model TEXT NOT NULL,
    k INTEGER NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('proving', 'refused')),
    reason TEXT
);
"""
# Version 1 ledgers had neither ZK sessions nor checked verdicts.
_MIGRATE_FROM_1 = """
ALTER TABLE verdicts ADD COLUMN consistent INTEGER NOT NULL DEFAULT 1;
ALTER TABLE verdicts ADD COLUMN note TEXT;
""" + _SCHEMA[_SCHEMA.index("CREATE TABLE zk_sessions"):]
ZK_WINDOW_S = 3600.0


class Outcome(str, Enum):
    REVEALED = "revealed"
    REFUSED = "refused"


def parse_budget(text: str | Fraction) -> Fraction:
    """A budget is a fraction of the trigger set in [0, 1], e.g. ``0.5`` or ``1/2``."""
    # Exponents are refused: Fraction("1e-999999999") would compute 10**999999999.
    if isinstance(text, Fraction):
        value = text
    elif len(text) <= 32 and _BUDGET_SYNTAX.fullmatch(text):
        try:
            value = Fraction(text)
        except ZeroDivisionError:
            raise InvalidInput(f"leakage budget {text!r} divides by zero") from None
    else:
        raise InvalidInput(f"leakage budget {text[:40]!r} is not a fraction like 0.5 or 1/2")
    if not 0 <= value <= 1:
        raise InvalidInput(f"leakage budget {text} must be between 0 and 1")
    return value


@dataclass(frozen=True)
class VerifierPolicy:
    """Who may spend the leakage budget, and how much each (docs/design.md section 4).

    ``allowed``: the verifier key fingerprints answered at all (None: any);
    ``share``: the largest fraction of the trigger set one verifier key's
    challenges may make public; ``zk_per_hour``: zero-knowledge sessions one
    verifier key may start per hour (each costs the owner tens of seconds of CPU).
    """

    allowed: frozenset[str] | None = None
    share: Fraction | None = None
    zk_per_hour: int | None = None

    def refuses(self, verifier: str) -> str | None:
        if self.allowed is not None and verifier not in self.allowed:
            return f"verifier key {verifier} is not one this prover answers (its allow-list)"
        return None


LEDGER_HOME_ENV = "WMARK_LEDGER_DIR"


def ledger_home() -> Path:
    """Where ledgers live by default: ``$WMARK_LEDGER_DIR``, else
    ``$XDG_DATA_HOME/wmark/ledgers`` (``~/.local/share/wmark/ledgers``)."""
    if os.environ.get(LEDGER_HOME_ENV):
        return Path(os.environ[LEDGER_HOME_ENV])
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data) / "wmark" / "ledgers"


def default_ledger_path(vk_digest: bytes) -> Path:
    """The ledger of the key with this vk digest, in :func:`ledger_home`.

    Found by the key's identity, not the marking key file's path: a copy of
    ``mk.wmk`` moved or copied anywhere still answers through the same ledger,
    so moving the key never resets its leakage budget (docs/design.md section 4).
    """
    return ledger_home() / f"{vk_digest.hex()}.sqlite"


def _seen_path(vk_digest: bytes) -> Path:
    return ledger_home() / f"{vk_digest.hex()}.seen"


def note_ledger_use(path: Path, vk_digest: bytes) -> list[Path]:
    """Remember that ``path`` holds a ledger of this key; the other ledgers of it
    remembered before that still exist and are not ``path``."""
    seen = _seen_path(vk_digest)
    here = str(path.resolve())
    try:
        known = [line for line in seen.read_text("utf-8").splitlines() if line]
    except (FileNotFoundError, UnicodeDecodeError):
        known = []
    if here not in known:
        seen.parent.mkdir(parents=True, exist_ok=True)
        # One short line appended with O_APPEND: concurrent provers cannot interleave it.
        with open(seen, "a", encoding="utf-8") as fh:
            fh.write(here + "\n")
    return [Path(p) for p in dict.fromkeys(known) if p != here and Path(p).is_file()]


@dataclass(frozen=True)
class Response:
    """The answer to one challenge, already committed to the ledger."""

    envelope: dsse.Envelope
    data: bytes  # the envelope JSON exactly as recorded: send or write these bytes
    outcome: Outcome
    repeated: bool
    verifier: str  # the challenger's key fingerprint
    model: ModelRef
    k: int
    new_indices: tuple[int, ...]  # made public by this response (none when it repeats an earlier one)
    revealed: int  # items revealed in all, this response included
    n: int
    reason: str | None

    @property
    def fraction(self) -> Fraction:
        return Fraction(self.revealed, self.n)


@dataclass(frozen=True)
class VerdictNote:
    received: str
    accepted: bool
    matches: int
    k: int
    mismatch: str | None = None  # why the verdict does not follow from its results, if it does not


@dataclass(frozen=True)
class ZkSessionEntry:
    """A zero-knowledge session as the ledger remembers it: it revealed nothing."""

    received: str
    verifier: str
    k: int
    outcome: str
    reason: str | None


def verdict_mismatch(verdict: Verdict, vk: VerificationKey, challenge: dsse.Envelope,
                     response: dsse.Envelope) -> str | None:
    """Why ``verdict`` does not follow from what the owner revealed, or None.

    The owner knows the items and labels it opened; whether the model answered
    them is the verifier's word, but the decision must follow from those
    answers (docs/design.md section 4), so it is recomputed here.
    """
    reveal = decode(response, (Reveal,))
    assert isinstance(reveal, Reveal)
    decided = decode(challenge, (Challenge,))
    assert isinstance(decided, Challenge)
    labels = _labels_checked(verdict, vk, reveal)
    if isinstance(labels, str):
        return labels
    if labels is None:
        if [r.index for r in verdict.results] != [o.index for o in reveal.openings]:
            return "its items are not those this owner revealed"
    elif [(r.index, r.label) for r in verdict.results] != labels:
        return "its items or labels are not those this owner revealed"
    if (vk.kind.seeded or vk.registry_bound) and verdict.p0 != null_match_probability(vk, None):
        return f"it assumes p0={verdict.p0}, but a {vk.kind.value} set has p0={null_match_probability(vk, None)}"
    if decided.lam is not None and (verdict.lam, verdict.p0) != (decided.lam, decided.p0):
        return (f"it was decided with lambda={verdict.lam}, p0={verdict.p0}, but the challenge fixed "
                f"lambda={decided.lam}, p0={decided.p0}")
    try:
        rebuilt = build_verdict(vk, verdict.challenge_digest, Reveal.digest_of(response), decided.model,
                                verdict.results, verdict.p0, verdict.lam, verdict.registration, verdict.decided)
    except WmarkError as exc:
        return f"its decision cannot be recomputed: {exc}"
    if rebuilt != verdict:
        return (f"it says {'ACCEPTED' if verdict.accepted else 'REJECTED'} with {verdict.matches} of {verdict.k} "
                f"matches, but its results give {rebuilt.matches} matches, "
                f"{'ACCEPTED' if rebuilt.accepted else 'REJECTED'}")
    return None


def _labels_checked(verdict: Verdict, vk: VerificationKey, reveal: Reveal) -> list[tuple[int, int]] | str | None:
    """The (index, label) pairs the verdict must judge, as the owner works them out;
    a reason when it cannot even name them; None when only the indices can be checked.

    A registry-bound key's labels are the committed ones shifted by the beacon
    output of its receipt (docs/design.md section 2), which the verdict carries:
    the owner shifts the labels it opened by that beta, so a verifier cannot
    rewrite labels to fit its model's answers.  Which receipt is the key's is
    checked by whoever audits the verdict against the log; the owner holds no
    log key here.  A margin key's shift also needs each item's true class, from
    the query split, which the owner does not hold here: indices only."""
    if not vk.registry_bound:
        return [(o.index, o.label) for o in reveal.openings]
    registration = verdict.registration
    if registration is None or registration.beta is None:
        return "it names no registration beacon, which a registry-bound key's labels come from"
    if not hmac.compare_digest(registration.vk_digest, vk.digest):
        return "its registration is for another verification key"
    if vk.margin is not None:
        return None
    return [(o.index, bound_label(registration.beta, o.index, o.label, vk.num_classes)) for o in reveal.openings]


@dataclass(frozen=True)
class LedgerEntry:
    """One challenge as the ledger remembers it."""

    seq: int
    received: str
    challenge_digest: bytes
    verifier: str
    model: ModelRef
    k: int
    indices: tuple[int, ...]
    new_indices: tuple[int, ...]
    outcome: Outcome
    reason: str | None
    verdicts: tuple[VerdictNote, ...]


@dataclass(frozen=True)
class LedgerSummary:
    vk_digest: bytes
    n: int
    revealed: int
    challenges: int

    @property
    def fraction(self) -> Fraction:
        return Fraction(self.revealed, self.n)

    @property
    def secret(self) -> int:
        """Trigger items never opened: what private verification can still rely on."""
        return self.n - self.revealed


def _indices(text: str) -> tuple[int, ...]:
    return tuple(json.loads(text))


def _refusal_reason(prior: int, new: int, n: int, k: int, budget: Fraction) -> str:
    if k == n:
        return (f"public verification (k = n = {n}) opens the whole trigger set, and this prover's leakage "
                f"budget is {float(budget):.0%} ({prior} of {n} items revealed so far); it needs a budget of 1")
    total = prior + new
    return (f"leakage budget exceeded: {prior} of {n} trigger items are revealed already, this challenge would "
            f"open {new} more, {total} of {n} ({total / n:.1%}), past the budget of {float(budget):.1%}")


class Ledger:
    """A ledger file bound to one verification key."""

    def __init__(self, path: Path, vk_digest: bytes, n: int, *, created: bool = False) -> None:
        self.path, self.vk_digest, self.n = path, vk_digest, n
        self.created = created  # made by this open: no challenge answered through it yet

    @classmethod
    def open(cls, path: str | os.PathLike[str], vk: VerificationKey) -> "Ledger":
        """The ledger at ``path`` for ``vk``, created when absent; refused if made for another key."""
        p = Path(path)
        if p.is_dir():
            raise InvalidInput(f"{p}: is a directory, not a ledger file")
        with _guarded(p):
            p.parent.mkdir(parents=True, exist_ok=True)
            conn = _connect(p)
            try:
                # WAL is a property of the file; setting it needs no transaction open.
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("BEGIN IMMEDIATE")
                created = _is_blank(conn)
                if created:
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute("INSERT INTO binding (id, vk_digest, n, created) VALUES (1, ?, ?, ?)",
                                 (vk.digest, vk.n, now()))
                else:
                    _migrate(conn, p)
                conn.execute("COMMIT")
            finally:
                conn.close()
        ledger = cls.open_existing(p)
        if ledger.vk_digest != vk.digest or ledger.n != vk.n:
            raise InvalidInput(f"{p}: this ledger belongs to another verification key (vk digest "
                               f"{ledger.vk_digest.hex()[:16]}…, this key is {vk.digest.hex()[:16]}…); "
                               f"give each key its own ledger")
        ledger.created = created
        return ledger

    def others(self) -> list[Path]:
        """Record this ledger as one of its key's; the other ledgers this key has
        answered through before (on this machine, as far as it was told), if any."""
        return note_ledger_use(self.path, self.vk_digest)

    @classmethod
    def open_existing(cls, path: str | os.PathLike[str]) -> "Ledger":
        """An existing ledger, for reading; never creates a file."""
        p = Path(path)
        if not p.is_file():
            raise InvalidInput(f"{p}: no ledger here (nothing has been answered with this ledger path)")
        with _guarded(p):
            conn = _connect(p)
            try:
                (app_id,) = conn.execute("PRAGMA application_id").fetchone()
                (version,) = conn.execute("PRAGMA user_version").fetchone()
                if app_id != APPLICATION_ID:
                    raise InvalidInput(f"{p}: not a wmark ledger")
                if version != SCHEMA_VERSION:
                    raise InvalidInput(f"{p}: ledger schema version {version}, this tool reads {SCHEMA_VERSION}")
                row = conn.execute("SELECT vk_digest, n FROM binding WHERE id = 1").fetchone()
            finally:
                conn.close()
        if row is None:
            raise InvalidInput(f"{p}: the ledger names no verification key")
        return cls(p, bytes(row[0]), int(row[1]))

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """A write takes the lock at once (``BEGIN IMMEDIATE``), so read-decide-write
        sequences of several processes never interleave; a read sees one snapshot."""
        with _guarded(self.path):
            conn = _connect(self.path)
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                conn.close()

    def respond(self, session: ProverSession, challenge: dsse.Envelope, *,
                budget: Fraction = DEFAULT_BUDGET, policy: VerifierPolicy = VerifierPolicy()) -> Response:
        """Receive ``challenge`` into ``session`` and return the committed answer to send.

        Raises :class:`RemoteProtocolError` for an invalid challenge (nothing
        is recorded then).
        """
        if session.state is not ProverState.AWAIT_CHALLENGE:
            raise LocalProtocolError(f"the session has already received a challenge ({session.state.value})")
        event = session.receive(challenge)
        assert isinstance(event, ChallengeReceived)
        return self.answer(session, event, challenge, budget=budget, policy=policy)

    def answer(self, session: ProverSession, event: ChallengeReceived, challenge: dsse.Envelope, *,
               budget: Fraction = DEFAULT_BUDGET, policy: VerifierPolicy = VerifierPolicy()) -> Response:
        """:meth:`respond` for a challenge ``session`` has received already (``event``)."""
        if event.challenge.zk is not None:
            raise LocalProtocolError("a zero-knowledge challenge is answered with proofs, which reveal no item: "
                                     "the ledger has nothing to record")
        if session.state is not ProverState.DECIDE:
            raise LocalProtocolError(f"the session is not deciding on a challenge ({session.state.value})")
        if session.vk.digest != self.vk_digest:
            raise LocalProtocolError("this ledger belongs to another verification key than the session's")
        with self._transaction(write=True) as conn:
            stored = conn.execute("SELECT response, outcome, reason FROM challenges WHERE digest = ?",
                                  (event.digest,)).fetchone()
            if stored is not None:
                return self._repeat(conn, session, event, *stored)
            prior = {idx for (idx,) in conn.execute("SELECT idx FROM revealed")}
            new = tuple(sorted(set(event.indices) - prior))
            # Items already public cost nothing to show again, so only a
            # challenge that opens new ones can break the budget.
            verifier = event.challenge.verifier.fingerprint
            # A challenge that can never be accepted (labels: docs/design.md section 4) is refused
            # first; then the owner's policy, then the verifier's share, then the whole budget.
            reason: str | None = event.problem
            if reason is None:
                reason = policy.refuses(verifier)
            if reason is None and new and policy.share is not None:
                (spent,) = conn.execute("SELECT count(*) FROM revealed JOIN challenges USING (seq) "
                                        "WHERE challenges.verifier = ?", (verifier,)).fetchone()
                if Fraction(spent + len(new), self.n) > policy.share:
                    reason = (f"this verifier's share of the leakage budget is exceeded: its challenges made "
                              f"{spent} of {self.n} items public, this one would add {len(new)}, past its share "
                              f"of {float(policy.share):.1%}")
            if reason is None and new and Fraction(len(prior) + len(new), self.n) > budget:
                reason = _refusal_reason(len(prior), len(new), self.n, event.challenge.k, budget)
            if reason is not None:
                outcome, new, envelope = Outcome.REFUSED, (), session.refuse(reason)
            else:
                outcome, envelope = Outcome.REVEALED, session.reveal()
            data = envelope.to_json()
            when = now()
            seq = conn.execute(
                "INSERT INTO challenges (digest, received, verifier, model, k, indices, new_indices, outcome, "
                "reason, challenge, response) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (event.digest, when, event.challenge.verifier.fingerprint,
                 canonical_json(event.challenge.model.to_obj()).decode(), event.challenge.k,
                 json.dumps(list(event.indices)), json.dumps(list(new)), outcome.value, reason,
                 challenge.to_json(), data)).lastrowid
            conn.executemany("INSERT INTO revealed (idx, seq, revealed) VALUES (?, ?, ?)",
                             [(i, seq, when) for i in new])
            return Response(envelope, data, outcome, False, event.challenge.verifier.fingerprint,
                            event.challenge.model, event.challenge.k, new, len(prior) + len(new), self.n, reason)

    def _repeat(self, conn: sqlite3.Connection, session: ProverSession, event: ChallengeReceived, data: bytes,
                outcome: str, reason: str | None) -> Response:
        # The session must still move on (to await a verdict, or to end) as
        # it would have the first time; what it signs now is identical by
        # construction (deterministic signatures), but the stored bytes are
        # what was sent and what the verifier may already hold, so they win.
        kind = Outcome(outcome)
        if kind is Outcome.REVEALED:
            session.reveal()
        else:
            session.refuse(reason or "")
        (revealed,) = conn.execute("SELECT count(*) FROM revealed").fetchone()
        data = bytes(data)
        return Response(dsse.Envelope.from_json(data, what="stored response"), data, kind, True,
                        event.challenge.verifier.fingerprint, event.challenge.model, event.challenge.k, (),
                        revealed, self.n, reason)

    def record_verdict(self, event: VerdictReceived, vk: VerificationKey) -> str | None:
        """Keep the verifier's signed verdict beside the reveal it judged, checked
        first against what the owner knows: the items and labels it revealed, and
        the decision those results imply.  A verdict that does not follow (an
        "ACCEPTED 20/20" whose results show no match) is kept, marked as a
        mismatch; the reason is returned (None when it is consistent)."""
        digest = Verdict.digest_of(event.envelope)
        with self._transaction(write=True) as conn:
            row = conn.execute("SELECT seq, challenge, response FROM challenges WHERE digest = ? AND "
                               "outcome = 'revealed'", (event.verdict.challenge_digest,)).fetchone()
            if row is None:
                raise LocalProtocolError("the ledger holds no reveal for the challenge this verdict judges")
            note = verdict_mismatch(event.verdict, vk, dsse.Envelope.from_json(bytes(row[1])),
                                    dsse.Envelope.from_json(bytes(row[2])))
            conn.execute("INSERT OR IGNORE INTO verdicts (digest, seq, received, accepted, matches, k, envelope, "
                         "consistent, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (digest, row[0], now(), int(event.verdict.accepted), event.verdict.matches,
                          event.verdict.k, event.envelope.to_json(), int(note is None), note))
        return note

    def admit_zk(self, event: ChallengeReceived, *, policy: VerifierPolicy = VerifierPolicy(),
                 clock: Callable[[], float] = time.time) -> str | None:
        """Record a zero-knowledge session before any proving starts; the reason to
        refuse it (allow-list, or the verifier's hourly rate), or None to go on.
        Proofs reveal no item, so they cost no budget, but each is recorded."""
        verifier = event.challenge.verifier.fingerprint
        with self._transaction(write=True) as conn:
            reason = policy.refuses(verifier)
            if reason is None and policy.zk_per_hour is not None:
                (recent,) = conn.execute("SELECT count(*) FROM zk_sessions WHERE verifier = ? AND outcome = "
                                         "'proving' AND received_s > ?", (verifier, clock() - ZK_WINDOW_S)).fetchone()
                if recent >= policy.zk_per_hour:
                    reason = (f"verifier key {verifier} has started {recent} zero-knowledge sessions in the last "
                              f"hour, this prover's limit (each costs it tens of seconds of CPU); retry later")
            conn.execute("INSERT INTO zk_sessions (digest, received, received_s, verifier, model, k, outcome, "
                         "reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (event.digest, now(), clock(), verifier,
                          canonical_json(event.challenge.model.to_obj()).decode(), event.challenge.k,
                          "refused" if reason else "proving", reason))
        return reason

    def zk_sessions(self) -> tuple[ZkSessionEntry, ...]:
        with self._transaction(write=False) as conn:
            rows = conn.execute("SELECT received, verifier, k, outcome, reason FROM zk_sessions ORDER BY seq").fetchall()
        return tuple(ZkSessionEntry(*row) for row in rows)

    def entries(self) -> tuple[LedgerEntry, ...]:
        with self._transaction(write=False) as conn:
            verdicts: dict[int, list[VerdictNote]] = {}
            for seq, received, accepted, matches, k, consistent, note in conn.execute(
                    "SELECT seq, received, accepted, matches, k, consistent, note FROM verdicts "
                    "ORDER BY received, digest"):
                verdicts.setdefault(seq, []).append(
                    VerdictNote(received, bool(accepted), matches, k, None if consistent else (note or "mismatch")))
            rows = conn.execute("SELECT seq, received, digest, verifier, model, k, indices, new_indices, outcome, "
                                "reason FROM challenges ORDER BY seq").fetchall()
        return tuple(
            LedgerEntry(seq, received, bytes(digest), verifier,
                        ModelRef.from_obj(parse_json(model.encode(), what="ledger model"), what="ledger model"),
                        k, _indices(indices), _indices(new), Outcome(outcome), reason,
                        tuple(verdicts.get(seq, ())))
            for seq, received, digest, verifier, model, k, indices, new, outcome, reason in rows
        )

    def revealed_indices(self) -> frozenset[int]:
        with self._transaction(write=False) as conn:
            return frozenset(idx for (idx,) in conn.execute("SELECT idx FROM revealed"))

    def response_for(self, challenge_digest: bytes) -> bytes | None:
        """The exact bytes answered to a challenge, if it was ever answered."""
        with self._transaction(write=False) as conn:
            row = conn.execute("SELECT response FROM challenges WHERE digest = ?", (challenge_digest,)).fetchone()
        return bytes(row[0]) if row is not None else None

    def summary(self) -> LedgerSummary:
        with self._transaction(write=False) as conn:
            (revealed,) = conn.execute("SELECT count(*) FROM revealed").fetchone()
            (challenges,) = conn.execute("SELECT count(*) FROM challenges").fetchone()
        return LedgerSummary(self.vk_digest, self.n, revealed, challenges)


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so the module
    # never opens a deferred transaction behind our back.
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring a wmark ledger of an older schema up to this one, inside the caller's transaction."""
    (app_id,) = conn.execute("PRAGMA application_id").fetchone()
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if app_id == APPLICATION_ID and version == 1:
        for statement in _MIGRATE_FROM_1.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _is_blank(conn: sqlite3.Connection) -> bool:
    (tables,) = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    (app_id,) = conn.execute("PRAGMA application_id").fetchone()
    return tables == 0 and app_id == 0


@contextmanager
def _guarded(path: Path) -> Iterator[None]:
    """SQLite's failures (locked past the timeout, disk full, not a database) as one-line errors."""
    try:
        yield
    except WmarkError:
        raise
    except sqlite3.Error as exc:
        raise InvalidInput(f"{path}: ledger unusable: {exc}") from None

