"""Options shared by the owner's commands that load a key set (prove, serve, zkprove)."""

from __future__ import annotations

import argparse
from pathlib import Path

from wmark.console import load_marking_key
from wmark.errors import InvalidInput
from wmark.protocol.hazmat.identity import load_signing_key
from wmark.protocol.keys import load_verification_key
from wmark.prover.ledger import DEFAULT_BUDGET, default_ledger_path, parse_budget
from wmark.prover.owner import Prover, open_prover

OWNER_KEY_NAME = "owner.pem"


def add_prover_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mk", required=True, metavar="FILE", help="the marking key (mk.wmk)")
    parser.add_argument("--vk", required=True, metavar="FILE", help="its verification key (vk.json)")
    parser.add_argument("--owner-key", metavar="PEM",
                        help=f"the owner's signing key (default: {OWNER_KEY_NAME} beside the vk, else beside the mk)")
    parser.add_argument("--ledger", metavar="DB", help="the leakage ledger (default: MK.ledger.sqlite)")
    parser.add_argument("--budget", type=parse_budget, default=DEFAULT_BUDGET, metavar="FRACTION",
                        help="the largest fraction of the trigger set that may ever be revealed (1: allow k = n)")


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
    return open_prover(load_marking_key(args.mk), vk, owner, ledger=args.ledger or default_ledger_path(args.mk),
                       budget=args.budget, mk_name=str(args.mk), vk_name=str(args.vk))
