"""``wmark-prover ledger``: what has been revealed, to whom, and what they concluded."""

from __future__ import annotations

import argparse

from wmark.console import EXIT_OK, add_command, add_json_argument, plural, untrusted, write_json_report
from wmark.protocol.keys import load_verification_key
from wmark.prover.ledger import NOTHING_SECRET, Ledger, LedgerEntry, LedgerSummary, Outcome, default_ledger_path

EPILOG = """\
examples:
  wmark-prover ledger --vk keys/vk.json         # the key's own ledger
  wmark-prover ledger --ledger answers.sqlite --json -      # JSON on standard output

One line per challenge answered: when, the verifier's key, k, how many items
it made public, revealed or refused, and the verdict the verifier reported;
then the fraction of the trigger set that is public. Reading the ledger needs
no passphrase."""


def register(subparsers) -> None:
    p = add_command(subparsers, "ledger",
                    description="List the challenges answered with a marking key and the trigger items they "
                                "made public.", epilog=EPILOG, func=run)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--ledger", metavar="DB", help="the ledger file")
    where.add_argument("--vk", metavar="FILE", help="the verification key whose own ledger to read "
                                                    "($XDG_DATA_HOME/wmark/ledgers/VK_DIGEST.sqlite)")
    add_json_argument(p)


REPORT_TYPE, REPORT_VERSION = "wmark/ledger-report", 1  # schema: wmark/schemas/ledger-report.json


def _verdict_text(entry: LedgerEntry) -> str:
    if entry.outcome is Outcome.REFUSED:
        return "-"
    if not entry.verdicts:
        return "none received"
    last = entry.verdicts[-1]
    more = f" (+{len(entry.verdicts) - 1} earlier)" if len(entry.verdicts) > 1 else ""
    # The verifier's claim as it signed it; a MISMATCH when its own results say otherwise.
    mismatch = f" MISMATCH: {untrusted(last.mismatch)}" if last.mismatch else ""
    return f"{'ACCEPTED' if last.accepted else 'REJECTED'} {last.matches}/{last.k}{more}{mismatch}"


def _to_json(ledger: Ledger, summary: LedgerSummary, entries: tuple[LedgerEntry, ...]) -> dict:
    return {
        "type": REPORT_TYPE, "version": REPORT_VERSION,
        "ledger": str(ledger.path),
        "vk_digest": summary.vk_digest.hex(),
        "n": summary.n,
        "revealed": summary.revealed,
        "revealed_fraction": float(summary.fraction),
        "secret": summary.secret,
        "revealed_indices": sorted(ledger.revealed_indices()),
        "challenges": [{
            "seq": e.seq, "received": e.received, "challenge_digest": e.challenge_digest.hex(),
            "verifier": e.verifier, "model": e.model.report_obj(), "k": e.k, "indices": list(e.indices),
            "new_indices": list(e.new_indices), "outcome": e.outcome.value, "reason": e.reason,
            "verdicts": [{"received": v.received, "accepted": v.accepted, "matches": v.matches, "k": v.k,
                          "mismatch": v.mismatch} for v in e.verdicts],
        } for e in entries],
        "zk_sessions": [{"received": z.received, "verifier": z.verifier, "k": z.k, "outcome": z.outcome,
                         "reason": z.reason} for z in ledger.zk_sessions()],
    }


def run(args: argparse.Namespace) -> int:
    ledger = Ledger.open_existing(args.ledger or default_ledger_path(load_verification_key(args.vk)[0].digest))
    summary, entries = ledger.summary(), ledger.entries()
    write_json_report(args, _to_json(ledger, summary, entries))
    print(f"ledger {untrusted(ledger.path)}: vk {summary.vk_digest.hex()[:16]}…, n = {summary.n} trigger items")
    for e in entries:
        print(f"{untrusted(e.received)}  verifier {untrusted(e.verifier[:23])}…  k={e.k:<4} {e.outcome.value:8}  "
              f"new {len(e.new_indices):<4} verdict {_verdict_text(e)}  on {untrusted(e.model.describe())}")
        if e.new_indices:
            print(f"    made public: items {', '.join(map(str, e.new_indices))}")
    for z in ledger.zk_sessions():
        print(f"{untrusted(z.received)}  verifier {untrusted(z.verifier[:23])}…  k={z.k:<4} zero-knowledge "
              f"{z.outcome} (nothing revealed){': ' + untrusted(z.reason) if z.reason else ''}")
    print(f"revealed in all: {summary.revealed} of {summary.n} trigger items ({float(summary.fraction):.1%}) "
          f"after {plural(summary.challenges, 'challenge')}; {summary.secret} still secret")
    if summary.secret == 0:
        print(NOTHING_SECRET)
    return EXIT_OK
