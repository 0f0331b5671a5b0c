"""A thief's own log: the thief replays a public verification's openings as an
imported key and registers it in a log it runs itself, with the clock set to
1970, so its receipt is "earlier" than anyone's.  That receipt is genuine for
that log; what must not happen is that `dispute` or `audit` lets it decide
anything when the user has not named that log as one they trust
(docs/design.md section 4b)."""

from __future__ import annotations

import pytest

from wmark.files import atomic_write
from wmark.harness.claims import IMPORTED_P0, claim, dispute, earlier, replay_imported, run_main
from wmark.protocol.keys import load_verification_key
from wmark.protocol.transparency import default_receipt_path
from wmark.registry.store import LogStore
from wmark.verifier.cli import main as verifier_main

pytestmark = pytest.mark.adversarial


@pytest.fixture(scope="module")
def contest(digits_world, public, tmp_path_factory):
    record, revealed = public
    tmp = tmp_path_factory.mktemp("own-log")
    thief = replay_imported(tmp / "thief", revealed.transcript)
    thief_log = tmp / "thief-log"
    with LogStore.open(thief_log, clock=lambda: 0) as store:  # the thief's clock: 1970-01-01
        receipt = store.register(load_verification_key(thief.vk)[0])
    atomic_write(default_receipt_path(thief.vk), receipt.to_json())
    stolen = claim(thief, digits_world.marked, tmp, "thief", p0=IMPORTED_P0, log=thief_log)
    assert stolen.code == 0, stolen.output
    assert stolen.verdict.registration.time_ms < record.claim.verdict.registration.time_ms
    return record, stolen, thief


def test_dispute_without_a_trusted_log_names_nobody(contest):
    record, stolen, _ = contest
    code, out = run_main(verifier_main, "dispute", stolen.transcript, record.claim.transcript)
    assert code == 2 and "registration unverified" in out, out
    assert earlier(out) is None, out


def test_dispute_against_the_honest_log_ignores_the_thiefs_receipt(contest):
    record, stolen, thief = contest
    code, out = dispute(stolen, record.claim, record.log)
    assert code == 0, out
    assert earlier(out) == (str(record.claim.transcript), record.fingerprint), out
    assert f"{stolen.transcript}: owner" in out and "registration unverified" in out, out


def test_dispute_trusting_only_the_thiefs_log_is_its_users_choice(contest, tmp_path):
    """Naming the thief's log is trusting it: then its receipt counts (the
    owner's, from a log not named, does not)."""
    record, stolen, thief = contest
    code, out = run_main(verifier_main, "dispute", stolen.transcript, record.claim.transcript,
                         "--log-key", stolen.transcript.parent / "thief-log" / "log-key.pub")
    assert code == 0 and earlier(out)[0] == str(stolen.transcript), out


def test_audit_reports_the_registration_unverified_without_a_log_key(contest):
    _, stolen, _ = contest
    code, out = run_main(verifier_main, "audit", stolen.transcript)
    assert code == 0 and "registration unverified" in out, out
    assert "registered entry" not in out, out
