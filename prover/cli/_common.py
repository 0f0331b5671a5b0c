"""Options shared by the owner's commands that load a key set (prove, serve, zkprove)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wmark.console import load_marking_key, untrusted
from wmark.errors import InvalidInput
from wmark.protocol.hazmat.identity import load_public_key, load_signing_key
from wmark.protocol.keys import load_verification_key
from wmark.prover.ledger import DEFAULT_BUDGET, Ledger, VerifierPolicy, default_ledger_path, parse_budget
from wmark.prover.owner import Prover, open_prover

OWNER_KEY_NAME = "owner.pem"


def add_prover_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mk", required=True, metavar="FILE", help="the marking key (mk.wmk)")
    parser.add_argument("--vk", required=True, metavar="FILE", help="its verification key (vk.json)")
    parser.add_argument("--owner-key", metavar="PEM",
                        help=f"the owner's signing key (default: {OWNER_KEY_NAME} beside the vk, else beside the mk)")
    parser.add_argument("--ledger", metavar="DB", help="the leakage ledger (default: the key's own, "
                                                       "$XDG_DATA_HOME/wmark/ledgers/VK_DIGEST.sqlite, found by the "
                                                       "key's identity wherever mk.wmk is kept)")
    parser.add_argument("--budget", type=parse_budget, default=DEFAULT_BUDGET, metavar="FRACTION",
                        help="the largest fraction of the trigger set that may ever be revealed (1: allow k = n)")
    add_policy_arguments(parser)


def add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("budget policy (who may spend the leakage budget)")
    group.add_argument("--allow-verifier", metavar="PEM", action="append",
                       help="answer only challenges signed by this verifier's public key (repeatable); "
                            "without it, any verifier's")
    group.add_argument("--verifier-share", type=parse_budget, metavar="FRACTION",
                       help="the largest fraction of the trigger set one verifier key's challenges may make public")
    group.add_argument("--zk-per-hour", type=int, metavar="N",
                       help="zero-knowledge sessions one verifier key may start per hour")


def policy_from_args(args: argparse.Namespace) -> VerifierPolicy:
    if args.zk_per_hour is not None and args.zk_per_hour < 0:
        raise InvalidInput(f"--zk-per-hour {args.zk_per_hour} must be 0 or more")
    allowed = (frozenset(load_public_key(path).fingerprint for path in args.allow_verifier)
               if args.allow_verifier else None)
    return VerifierPolicy(allowed=allowed, share=args.verifier_share, zk_per_hour=args.zk_per_hour)


def owner_key_path(args: argparse.Namespace) -> Path:
    if args.owner_key:
        return Path(args.owner_key)
    candidates = [Path(args.vk).parent / OWNER_KEY_NAME, Path(args.mk).parent / OWNER_KEY_NAME]
    for path in candidates:
        if path.is_file():
            return path
    raise InvalidInput(f"no owner signing key at {' or '.join(map(str, dict.fromkeys(candidates)))}; "
                       f"name it with --owner-key")


def load_prover(args: argparse.Namespace) -> Prover:
    vk, _ = load_verification_key(args.vk)
    owner = load_signing_key(owner_key_path(args))
    prover = open_prover(load_marking_key(args.mk), vk, owner, ledger=args.ledger or default_ledger_path(vk.digest),
                         budget=args.budget, policy=policy_from_args(args), mk_name=str(args.mk),
                         vk_name=str(args.vk))
    # Before ledgers were found by the key's identity, they lived beside the marking key.
    legacy = Path(f"{args.mk}.ledger.sqlite")
    warn_if_elsewhere(prover.ledger, [legacy] if legacy.is_file() else [])
    return prover


def warn_if_elsewhere(ledger: Ledger, candidates: list[Path]) -> None:
    """A fresh ledger for a key that has answered through another: its budget would start from zero."""
    others = list(dict.fromkeys(p for p in [*ledger.others(), *candidates] if p.resolve() != ledger.path.resolve()))
    if ledger.created and others:
        print(f"warning: {untrusted(ledger.path)} is a new ledger, but this key has answered challenges through "
              f"{', '.join(untrusted(p) for p in others)}; items revealed there are not counted here. Pass "
              f"--ledger with the existing one to keep one budget", file=sys.stderr)
