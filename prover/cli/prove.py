"""``wmark-prover prove``: answer a challenge file (the files transport)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from wmark.console import EXIT_OK, EXIT_REJECTED, add_command, load_marking_key, untrusted
from wmark.errors import InvalidInput
from wmark.files import atomic_write, read_bounded
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.identity import SigningKey, load_public_key, load_signing_key
from wmark.protocol.keys import MarkingKey, VerificationKey, load_verification_key
from wmark.protocol.messages import MAX_MESSAGE_BYTES
from wmark.protocol.session import ProverSession
from wmark.prover.ledger import (
    DEFAULT_BUDGET,
    NOTHING_SECRET,
    Ledger,
    Outcome,
    Response,
    VerifierPolicy,
    default_ledger_path,
    parse_budget,
)

OWNER_KEY_NAME = "owner.pem"

EPILOG = """\
example:
  wmark-prover prove --mk keys/mk.wmk --vk keys/vk.json --challenge challenge.json --out reveal.json

Opens exactly the trigger items the challenge samples, after recording them in
the leakage ledger (default: the key's own ledger in ~/.local/share/wmark/ledgers,
found by its vk digest, so a copied or moved mk.wmk keeps one budget). The
same challenge again gets the identical answer. A challenge that would make
more than --budget of the trigger set public is refused: a signed refusal is
written to --out and the exit code is 1. Public verification (k = n) needs
--budget 1. See what has been revealed with `wmark-prover ledger`."""


@dataclass(frozen=True, repr=False)
class Prover:
    """Everything that answers challenges for one key: loaded once, shared by ``prove`` and ``serve``."""

    mk: MarkingKey
    vk: VerificationKey
    owner: SigningKey
    ledger: Ledger
    budget: Fraction
    policy: VerifierPolicy = VerifierPolicy()

    def session(self) -> ProverSession:
        return ProverSession(self.mk, self.vk, self.owner)

    def answer(self, session: ProverSession, challenge: dsse.Envelope) -> Response:
        return self.ledger.respond(session, challenge, budget=self.budget, policy=self.policy)


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
                            "default: any verifier")
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
    if owner.public_key != vk.owner:
        raise InvalidInput(f"the owner key {owner.public_key.fingerprint} is not the one that signed {args.vk} "
                           f"({vk.owner.fingerprint})")
    mk = load_marking_key(args.mk)
    if mk.vk_digest != vk.digest:
        raise InvalidInput(f"{args.mk} is the marking key of another verification key than {args.vk}")
    ledger = Ledger.open(args.ledger or default_ledger_path(vk.digest), vk)
    # Before ledgers were found by the key's identity, they lived beside the marking key.
    legacy = Path(f"{args.mk}.ledger.sqlite")
    warn_if_elsewhere(ledger, [legacy] if legacy.is_file() else [])
    return Prover(mk, vk, owner, ledger, args.budget, policy_from_args(args))


def warn_if_elsewhere(ledger: Ledger, candidates: list[Path]) -> None:
    """A fresh ledger for a key that has answered through another: its budget would start from zero."""
    others = list(dict.fromkeys(p for p in [*ledger.others(), *candidates] if p.resolve() != ledger.path.resolve()))
    if ledger.created and others:
        print(f"warning: {untrusted(ledger.path)} is a new ledger, but this key has answered challenges through "
              f"{', '.join(untrusted(p) for p in others)}; items revealed there are not counted here. Pass "
              f"--ledger with the existing one to keep one budget", file=sys.stderr)


def describe(response: Response, budget: Fraction) -> str:
    """One line on what an answer gave away, for ``prove`` and the ``serve`` log."""
    total = (f"{response.revealed} of {response.n} items ({float(response.fraction):.1%}) revealed in all, "
             f"budget {float(budget):.0%}")
    if response.outcome is Outcome.REFUSED:
        return f"refused to open {response.k} of {response.n} items; {total}"
    again = ", a repeated challenge: the same answer as before" if response.repeated else ""
    return f"opened {response.k} of {response.n} items ({len(response.new_indices)} new{again}); {total}"


def register(subparsers) -> None:
    p = add_command(subparsers, "prove", help="answer a challenge file",
                    description="Open the trigger items a verifier's challenge samples, within the leakage "
                                "budget, and sign the answer.", epilog=EPILOG, func=run)
    add_prover_arguments(p)
    p.add_argument("--challenge", required=True, metavar="FILE", help="the verifier's challenge.json")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the reveal (or refusal)")


def run(args: argparse.Namespace) -> int:
    challenge = dsse.Envelope.from_json(read_bounded(args.challenge, max_bytes=MAX_MESSAGE_BYTES,
                                                     what="challenge"), what=args.challenge)
    if Path(args.out).is_dir():
        raise InvalidInput(f"{args.out}: is a directory; give a file name for the answer")
    prover = load_prover(args)
    response = prover.answer(prover.session(), challenge)
    atomic_write(args.out, response.data)
    print(f"challenge from verifier {response.verifier} on {untrusted(response.model.describe())}")
    print(describe(response, prover.budget))
    if response.outcome is Outcome.REFUSED:
        print(f"REFUSED: {untrusted(response.reason)}")
        print(f"wrote {args.out} (a signed refusal)")
        return EXIT_REJECTED
    if response.new_indices:
        print(f"newly public: items {', '.join(map(str, response.new_indices))}")
    if response.revealed == response.n:
        print(NOTHING_SECRET)
    print(f"wrote {args.out} (the signed reveal; send it to the verifier)")
    return EXIT_OK
