"""``wmark-verifier plan``: choose k before anything is revealed."""

from __future__ import annotations

import argparse

from wmark.console import add_command, add_json_argument, int_in_range, write_json_report
from wmark.errors import InvalidInput
from wmark.protocol.decision import DEFAULT_LAMBDA, MAX_K, lowest_passing_accuracy, threshold
from wmark.protocol.session import null_match_probability
from wmark.verifier.cli._common import add_decision_arguments, load_vk_for_decision
from wmark.verifier.reports import plan_report

EPILOG = """\
example:
  wmark-verifier plan --vk vk.json            # a table for several k
  wmark-verifier plan --vk vk.json --k 20

For each k: tau, the number of matches needed to accept, and the lowest trigger
accuracy with which a marked model still passes with 99% probability. A larger
k tolerates more watermark decay (e.g. after fine-tuning) but reveals more."""


def register(subparsers) -> None:
    p = add_command(subparsers, "plan",
                    description="Print the decision threshold for k and the lowest trigger accuracy that "
                                "still passes with 99% probability.", epilog=EPILOG, func=run)
    p.add_argument("--vk", required=True, metavar="FILE", help="the owner's verification key")
    p.add_argument("--k", type=int_in_range(1, MAX_K), action="append",
                   help="sample size (repeat for several; default: 10, 20, 30, 50, 100 and n, up to n)")
    add_decision_arguments(p)
    add_json_argument(p)


def run(args: argparse.Namespace) -> int:
    vk, _ = load_vk_for_decision(args)
    p0 = null_match_probability(vk, args.p0)
    lam = args.lam or DEFAULT_LAMBDA
    ks = args.k or sorted({k for k in (10, 20, 30, 50, 100, vk.n) if k <= vk.n})
    for k in ks:
        if not 1 <= k <= vk.n:
            raise InvalidInput(f"k={k} must be between 1 and n={vk.n}")
    print(f"n={vk.n} trigger items, p0={p0}, lambda={lam} (false accusation probability <= 2^-{lam})")
    print(f"{'k':>6} {'tau':>6}  {'lowest trigger accuracy passing w.p. 0.99':>42}  {'reveals':>8}")
    rows = [(k, threshold(k, p0, lam), lowest_passing_accuracy(k, p0, lam)) for k in ks]
    for k, tau, low in rows:
        need = "never passes: k too small" if low is None else f"{low:.3f}"
        print(f"{k:>6} {tau if tau is not None else '-':>6}  {need:>42}  {k / vk.n:>7.0%}")
    write_json_report(args, plan_report(vk, p0, lam, rows))
    return 0
