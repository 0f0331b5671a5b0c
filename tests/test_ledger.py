"""The leakage ledger (wmark.prover.ledger) and ``wmark-prover prove`` / ``ledger``.

The verifier here is a real VerifierSession; the model is left out (the
ledger never sees it), so everything runs in milliseconds per challenge.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tempfile
import threading
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.schemas import assert_valid_report
from wmark.errors import InvalidInput, LocalProtocolError, RemoteProtocolError
from wmark.files import atomic_write
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.identity import SigningKey, save_signing_key
from wmark.protocol.keyfile import save_marking_key
from wmark.protocol.keygen import KeyPair, keygen_derived
from wmark.protocol.messages import Challenge, ModelRef, Refusal
from wmark.protocol.session import ProverSession, Refused, RevealAccepted, VerifierSession
from wmark.prover.cli import main as prover_main
from wmark.prover.ledger import Ledger, Outcome, default_ledger_path, parse_budget

N = 20
MODEL = ModelRef(sha256=bytes(32))


@pytest.fixture(scope="module")
def owner() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def pair(owner) -> KeyPair:
    return keygen_derived(owner=owner, n=N, num_classes=10, input_shape=(1, 8, 8))


@pytest.fixture(scope="module")
def verifier() -> SigningKey:
    return SigningKey.generate()


def fresh_challenge(pair: KeyPair, verifier: SigningKey, k: int) -> tuple[VerifierSession, dsse.Envelope]:
    # lambda 3: small challenges (k = 1 at p0 = 1/10) the prover still answers; the ledger is what is tested.
    session = VerifierSession(pair.verification_key, verifier, MODEL, k, lam=3)
    return session, session.challenge()


def answer(ledger: Ledger, pair: KeyPair, owner: SigningKey, challenge: dsse.Envelope, budget=Fraction(1, 2)):
    session = ProverSession(pair.marking_key, pair.verification_key, owner)
    return session, ledger.respond(session, challenge, budget=budget)


def test_a_repeated_challenge_gets_the_identical_stored_response(tmp_path, pair, owner, verifier):
    ledger = Ledger.open(tmp_path / "l.sqlite", pair.verification_key)
    _, challenge = fresh_challenge(pair, verifier, 4)
    _, first = answer(ledger, pair, owner, challenge)
    session, again = answer(ledger, pair, owner, challenge, budget=Fraction(0))
    assert first.outcome is Outcome.REVEALED and not first.repeated and len(first.new_indices) == 4
    assert again.repeated and again.data == first.data and again.new_indices == ()
    assert ledger.summary().revealed == 4 and ledger.summary().challenges == 1
    assert session.state.value == "await-verdict"  # the repeat leaves the session where the first answer did

    _, big = fresh_challenge(pair, verifier, 15)
    _, refused = answer(ledger, pair, owner, big)
    _, refused_again = answer(ledger, pair, owner, big, budget=Fraction(1))
    assert refused.outcome is Outcome.REFUSED and refused_again.data == refused.data
    assert ledger.response_for(Challenge.digest_of(big)) == refused.data
    assert ledger.response_for(bytes(32)) is None


def test_a_budget_refusal_is_a_signed_refusal_the_verifier_accepts(tmp_path, pair, owner, verifier):
    ledger = Ledger.open(tmp_path / "l.sqlite", pair.verification_key)
    session, challenge = fresh_challenge(pair, verifier, 6)
    _, response = answer(ledger, pair, owner, challenge, budget=Fraction(1, 4))
    assert response.outcome is Outcome.REFUSED and response.new_indices == ()
    assert response.envelope.payload_type == Refusal.PAYLOAD_TYPE
    event = session.receive(response.envelope)
    assert isinstance(event, Refused)
    assert "6 more, 6 of 20 (30.0%), past the budget of 25.0%" in event.reason
    assert ledger.revealed_indices() == frozenset()
    [entry] = ledger.entries()
    assert entry.outcome is Outcome.REFUSED and entry.reason == event.reason and entry.k == 6


@settings(deadline=None, max_examples=15)
@given(st.lists(st.integers(min_value=1, max_value=N), min_size=1, max_size=8),
       st.sampled_from([Fraction(0), Fraction(1, 4), Fraction(1, 2), Fraction(3, 4), Fraction(1)]))
def test_a_greedy_verifier_is_refused_exactly_when_the_budget_would_be_exceeded(pair, owner, verifier, ks, budget):
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger.open(Path(tmp) / "l.sqlite", pair.verification_key)
        revealed: set[int] = set()
        for k in ks:
            session, challenge = fresh_challenge(pair, verifier, k)
            subset = set(session.subset)
            _, response = answer(ledger, pair, owner, challenge, budget=budget)
            over = bool(subset - revealed) and len(revealed | subset) > budget * N
            assert response.outcome is (Outcome.REFUSED if over else Outcome.REVEALED)
            event = session.receive(response.envelope)
            if over:
                assert isinstance(event, Refused)
            else:
                assert isinstance(event, RevealAccepted)
                assert {item.index for item in event.items} == subset  # never anything beyond S
                assert set(response.new_indices) == subset - revealed
                revealed |= subset
            assert response.revealed == len(revealed)
        assert ledger.revealed_indices() == revealed
        entries = ledger.entries()
        assert [e.k for e in entries] == ks
        assert set().union(*(e.new_indices for e in entries)) == revealed
        assert sum(len(e.new_indices) for e in entries) == len(revealed)  # each item counted once


def test_public_verification_needs_a_budget_of_one(tmp_path, pair, owner, verifier, capsys):
    ledger = Ledger.open(tmp_path / "l.sqlite", pair.verification_key)
    _, challenge = fresh_challenge(pair, verifier, N)
    _, refused = answer(ledger, pair, owner, challenge)
    assert refused.outcome is Outcome.REFUSED and "public verification (k = n = 20)" in refused.reason

    _, challenge = fresh_challenge(pair, verifier, N)
    _, public = answer(ledger, pair, owner, challenge, budget=Fraction(1))
    assert public.outcome is Outcome.REVEALED and public.revealed == N
    assert ledger.summary().secret == 0

    # Nothing is secret any more, so showing items again costs nothing, whatever the budget.
    _, challenge = fresh_challenge(pair, verifier, 3)
    _, again = answer(ledger, pair, owner, challenge, budget=Fraction(0))
    assert again.outcome is Outcome.REVEALED and again.new_indices == ()

    assert prover_main(["ledger", "--ledger", str(tmp_path / "l.sqlite")]) == 0
    assert "nothing is secret any more" in capsys.readouterr().out


def test_the_ledger_is_bound_to_its_verification_key(tmp_path, pair, owner, verifier):
    path = tmp_path / "l.sqlite"
    Ledger.open(path, pair.verification_key)
    other = keygen_derived(owner=owner, n=N, num_classes=10, input_shape=(1, 8, 8))
    with pytest.raises(InvalidInput, match="belongs to another verification key"):
        Ledger.open(path, other.verification_key)
    other_ledger = Ledger.open(tmp_path / "other.sqlite", other.verification_key)
    _, challenge = fresh_challenge(pair, verifier, 2)
    with pytest.raises(LocalProtocolError, match="another verification key"):
        answer(other_ledger, pair, owner, challenge)


def test_files_that_are_not_ledgers_are_refused(tmp_path, pair):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(InvalidInput, match="ledger unusable"):
        Ledger.open(garbage, pair.verification_key)
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(InvalidInput, match="not a wmark ledger"):
        Ledger.open(foreign, pair.verification_key)
    with pytest.raises(InvalidInput, match="no ledger here"):
        Ledger.open_existing(tmp_path / "absent.sqlite")
    with pytest.raises(InvalidInput, match="directory"):
        Ledger.open(tmp_path, pair.verification_key)


def test_an_invalid_challenge_is_recorded_nowhere(tmp_path, pair, owner, verifier):
    ledger = Ledger.open(tmp_path / "l.sqlite", pair.verification_key)
    _, challenge = fresh_challenge(pair, verifier, 3)
    forged = replace(challenge, payload=challenge.payload.replace(b'"k":3', b'"k":4'))
    with pytest.raises(RemoteProtocolError, match="invalid challenge"):
        answer(ledger, pair, owner, forged)
    assert ledger.summary().challenges == 0
    session, _ = answer(ledger, pair, owner, challenge)
    with pytest.raises(LocalProtocolError, match="already received"):
        ledger.respond(session, challenge)


def test_verdicts_are_kept_beside_the_reveal_they_judge(tmp_path, pair, owner, verifier):
    ledger = Ledger.open(tmp_path / "l.sqlite", pair.verification_key)
    verifier_session, challenge = fresh_challenge(pair, verifier, 3)
    prover_session, response = answer(ledger, pair, owner, challenge)
    event = verifier_session.receive(response.envelope)
    verdict = verifier_session.decide({item.index: item.label for item in event.items})
    received = prover_session.receive(verdict)
    assert ledger.record_verdict(received, pair.verification_key) is None
    ledger.record_verdict(received, pair.verification_key)  # the same verdict twice is one record
    [entry] = ledger.entries()
    # 3 of 3 at p0 = 1/10 pass lambda 3; the verdict recomputed agrees, so no mismatch
    assert [(v.accepted, v.matches, v.k, v.mismatch) for v in entry.verdicts] == [(True, 3, 3, None)]

    _, big = fresh_challenge(pair, verifier, N)
    answer(ledger, pair, owner, big)
    stray = replace(received, verdict=replace(received.verdict, challenge_digest=Challenge.digest_of(big)))
    with pytest.raises(LocalProtocolError, match="no reveal"):
        ledger.record_verdict(stray, pair.verification_key)


def test_concurrent_provers_never_overspend_the_budget(tmp_path, pair, owner, verifier):
    path = tmp_path / "l.sqlite"
    Ledger.open(path, pair.verification_key)
    results, errors = [], []

    def worker() -> None:
        ledger = Ledger.open(path, pair.verification_key)  # each its own connection, as separate processes
        try:
            for _ in range(5):
                session, challenge = fresh_challenge(pair, verifier, 3)
                _, response = answer(ledger, pair, owner, challenge)
                results.append((session, challenge, response))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ledger = Ledger.open(path, pair.verification_key)
    revealed = set()
    for session, challenge, response in results:
        assert ledger.response_for(Challenge.digest_of(challenge)) == response.data
        if response.outcome is Outcome.REVEALED:
            revealed |= set(session.subset)
    assert ledger.revealed_indices() == revealed
    assert len(revealed) <= N // 2
    assert ledger.summary().challenges == 20


@pytest.fixture
def key_files(tmp_path, pair, owner) -> Path:
    keys = tmp_path / "keys"
    save_signing_key(keys / "owner.pem", owner)
    save_marking_key(keys / "mk.wmk", pair.marking_key, None)
    atomic_write(keys / "vk.json", pair.signed_vk.to_json())
    return keys


def test_prove_answers_challenge_files_through_the_ledger(tmp_path, key_files, pair, verifier, capsys):
    def prove(k: int | None, out: str, *extra: str, challenge: Path | None = None) -> int:
        if challenge is None:
            challenge = tmp_path / f"challenge-{out}"
            atomic_write(challenge, fresh_challenge(pair, verifier, k)[1].to_json())
        return prover_main(["prove", "--mk", str(key_files / "mk.wmk"), "--vk", str(key_files / "vk.json"),
                            "--challenge", str(challenge), "--out", str(tmp_path / out), *extra])

    assert prove(5, "a.json") == 0
    assert "opened 5 of 20 items (5 new); 5 of 20 items (25.0%) revealed in all" in capsys.readouterr().out
    assert prove(None, "a-again.json", challenge=tmp_path / "challenge-a.json") == 0
    assert (tmp_path / "a-again.json").read_bytes() == (tmp_path / "a.json").read_bytes()
    assert prove(N, "b.json") == 1
    out = capsys.readouterr().out
    assert "REFUSED: public verification" in out
    refusal = dsse.Envelope.from_json((tmp_path / "b.json").read_bytes())
    dsse.verify(refusal, pair.verification_key.owner, payload_type=Refusal.PAYLOAD_TYPE)
    assert prove(N, "c.json", "--budget", "1") == 0
    assert "nothing is secret any more" in capsys.readouterr().out

    assert default_ledger_path(pair.verification_key.digest).is_file()
    assert not Path(f"{key_files / 'mk.wmk'}.ledger.sqlite").exists()
    assert prover_main(["ledger", "--vk", str(key_files / "vk.json"), "--json", "-"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)  # standard output carries the JSON alone ...
    assert "revealed in all" in captured.err  # ... and the text report goes to stderr
    assert_valid_report(report, "wmark/ledger-report")
    assert report["n"] == N and report["revealed"] == N and report["secret"] == 0
    assert [c["outcome"] for c in report["challenges"]] == ["revealed", "refused", "revealed"]
    assert report["challenges"][0]["verifier"] == verifier.public_key.fingerprint


def test_prove_refuses_bad_inputs_in_one_line(tmp_path, key_files, pair, verifier, capsys):
    challenge = tmp_path / "challenge.json"
    atomic_write(challenge, fresh_challenge(pair, verifier, 2)[1].to_json())
    base = ["prove", "--mk", str(key_files / "mk.wmk"), "--vk", str(key_files / "vk.json"),
            "--challenge", str(challenge), "--out", str(tmp_path / "r.json")]
    other_owner = tmp_path / "other.pem"
    save_signing_key(other_owner, SigningKey.generate())
    atomic_write(tmp_path / "garbage.json", b"{]")
    for extra, message in (
        (["--owner-key", str(other_owner)], "is not the one that signed"),
        (["--challenge", str(tmp_path / "garbage.json")], "not valid JSON"),
        (["--ledger", str(tmp_path)], "is a directory"),
    ):
        assert prover_main(base + extra) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        prover_main(base + ["--budget", "2"])
    assert "between 0 and 1" in capsys.readouterr().err
    assert parse_budget("1/2") == Fraction(1, 2)


# The schema version 1 ledgers were written with, by hand: version 2's tables as they
# were before verdicts were checked (no consistent, no note) and before ZK sessions.
V1_SCHEMA = """
CREATE TABLE binding (id INTEGER PRIMARY KEY CHECK (id = 1), vk_digest BLOB NOT NULL, n INTEGER NOT NULL,
    created TEXT NOT NULL);
CREATE TABLE challenges (seq INTEGER PRIMARY KEY, digest BLOB NOT NULL UNIQUE, received TEXT NOT NULL,
    verifier TEXT NOT NULL, model TEXT NOT NULL, k INTEGER NOT NULL, indices TEXT NOT NULL,
    new_indices TEXT NOT NULL, outcome TEXT NOT NULL CHECK (outcome IN ('revealed', 'refused')), reason TEXT,
    challenge BLOB NOT NULL, response BLOB NOT NULL);
CREATE TABLE revealed (idx INTEGER PRIMARY KEY, seq INTEGER NOT NULL REFERENCES challenges (seq),
    revealed TEXT NOT NULL);
CREATE TABLE verdicts (digest BLOB PRIMARY KEY, seq INTEGER NOT NULL REFERENCES challenges (seq),
    received TEXT NOT NULL, accepted INTEGER NOT NULL, matches INTEGER NOT NULL, k INTEGER NOT NULL,
    envelope BLOB NOT NULL);
"""
_V1_COPY = {"binding": "id, vk_digest, n, created",
            "challenges": "seq, digest, received, verifier, model, k, indices, new_indices, outcome, reason, "
                          "challenge, response",
            "revealed": "idx, seq, revealed",
            "verdicts": "digest, seq, received, accepted, matches, k, envelope"}
_KILLED_MID_MIGRATION = """
import os, signal, sys
from wmark.prover import ledger
from wmark.protocol.keys import load_verification_key
migrate = ledger._migrate
def killed(conn, path):
    migrate(conn, path)  # every statement run inside the transaction, none committed
    os.kill(os.getpid(), signal.SIGKILL)
ledger._migrate = killed
ledger.Ledger.open(sys.argv[1], load_verification_key(sys.argv[2])[0])
"""


def _as_version_1(source: Path, target: Path) -> None:
    """``source``'s records written into a ledger of schema version 1, as the old code laid it out."""
    conn = sqlite3.connect(target, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA application_id = {0x776D6B6C}")  # "wmkl"
        conn.execute("PRAGMA user_version = 1")
        conn.executescript(V1_SCHEMA)
        conn.execute("ATTACH DATABASE ? AS v2", (str(source),))
        for table, columns in _V1_COPY.items():
            conn.execute(f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM v2.{table}")
        conn.execute("DETACH DATABASE v2")
    finally:
        conn.close()


def _state(ledger: Ledger) -> tuple:
    return ledger.summary(), ledger.entries(), ledger.revealed_indices(), ledger.zk_sessions()


def _version_of(path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        (zk,) = conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'zk_sessions'").fetchone()
    finally:
        conn.close()
    return version, zk


def test_a_version_1_ledger_is_migrated_keeping_budget_and_history_even_across_a_crash(tmp_path, pair, owner,
                                                                                      verifier):
    current = Ledger.open(tmp_path / "v2.sqlite", pair.verification_key)
    verifier_session, challenge = fresh_challenge(pair, verifier, 6)
    prover_session, response = answer(current, pair, owner, challenge)
    event = verifier_session.receive(response.envelope)
    current.record_verdict(prover_session.receive(verifier_session.decide(
        {item.index: item.label for item in event.items})), pair.verification_key)
    _, refused = fresh_challenge(pair, verifier, 7)
    assert answer(current, pair, owner, refused, budget=Fraction(1, 4))[1].outcome is Outcome.REFUSED
    expected = _state(current)

    old = tmp_path / "v1.sqlite"
    _as_version_1(current.path, old)
    assert _version_of(old) == (1, 0)
    # Killed inside the migration's transaction: the file is still the version 1 ledger it was.
    vk_file = tmp_path / "vk.json"
    atomic_write(vk_file, pair.signed_vk.to_json())
    killed = subprocess.run([sys.executable, "-c", _KILLED_MID_MIGRATION, str(old), str(vk_file)],
                            capture_output=True, text=True, check=False, timeout=120)
    assert killed.returncode == -9, killed.stderr
    assert _version_of(old) == (1, 0)

    migrated = Ledger.open(old, pair.verification_key)
    assert _version_of(old) == (2, 1)
    assert _state(migrated) == expected
    # The budget carried over: 5 items fit a budget of 5/20 on a fresh ledger, not after the 6 revealed.
    _, more = fresh_challenge(pair, verifier, 5)
    assert answer(Ledger.open(tmp_path / "fresh.sqlite", pair.verification_key), pair, owner, more,
                  budget=Fraction(5, 20))[1].outcome is Outcome.REVEALED
    over = answer(migrated, pair, owner, more, budget=Fraction(5, 20))[1]
    assert over.outcome is Outcome.REFUSED and over.revealed == 6, over
    # A repeated challenge still gets the very bytes answered before the migration.
    assert answer(migrated, pair, owner, challenge)[1].data == response.data
