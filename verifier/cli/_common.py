"""Options and output shared by the verifier's commands: the suspect model, the
verifier's identity, the decision, registration, and how a session ends (the
transcript written and the verdict or refusal reported)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from wmark.console import (
    EXIT_INVALID,
    EXIT_OK,
    EXIT_REJECTED,
    add_circuit_arguments,
    add_output,
    untrusted,
    write_json_report,
)
from wmark.errors import InvalidInput, InvalidProof, InvalidSignature
from wmark.files import atomic_write, check_output_path, read_bounded
from wmark.protocol.checkpoint import Policy
from wmark.protocol.decision import DEFAULT_LAMBDA, MAX_LAMBDA, check_lambda, hopeless, parse_probability
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.identity import SigningKey, load_or_create_signing_key, load_public_key
from wmark.protocol.hazmat.note import load_verifier
from wmark.protocol.keys import VerificationKey, load_verification_key
from wmark.protocol.messages import MAX_MESSAGE_BYTES, Verdict, decode
from wmark.protocol.session import AnyVerifierSession, Refused, ZkVerifierSession, null_match_probability
from wmark.protocol.transcript import Registration, Transcript
from wmark.protocol.transparency import (
    MAX_RECEIPT_BYTES,
    Receipt,
    RegistrationInfo,
    check_witnessed,
    receipt_path_for,
)
from wmark.protocol.zk import srs_beside
from wmark.verifier.dispute import LogTrust, log_trust
from wmark.verifier.oracle import DEFAULT_TIMEOUT, ModelOracle, open_oracle
from wmark.verifier.reports import verdict_report
from wmark.watermark.device import add_device_argument

DEFAULT_IDENTITY = "verifier.pem"


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the suspect model (a directory, or an Open Inference Protocol endpoint)")
    group.add_argument("--model", metavar="DIR", help="model directory (model.json + model.safetensors)")
    group.add_argument("--endpoint", metavar="URL", help="KServe v2 / Open Inference Protocol base URL")
    group.add_argument("--model-name", metavar="NAME", help="the model's name at --endpoint")
    group.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per endpoint request")
    add_device_argument(group)  # --model: where the verifier runs the model it holds


def oracle_from_args(args: argparse.Namespace) -> ModelOracle:
    return open_oracle(model_dir=args.model, endpoint=args.endpoint, model_name=args.model_name,
                       timeout=args.timeout, device=args.device)


def add_identity_argument(parser: argparse.ArgumentParser, *, resumes: bool = False) -> None:
    """``resumes``: the command continues a session, so the key must be the one that signed its challenge."""
    parser.add_argument("--identity", metavar="PEM", default=DEFAULT_IDENTITY,
                        help="the verifier's P-256 signing key that signed the challenge" if resumes else
                             "the verifier's P-256 signing key (created when absent)")


def verifier_identity(args: argparse.Namespace, *, create: bool = True) -> SigningKey:
    """The verifier's key; ``create``: make one when absent (only a command that starts a
    session may: resuming one needs the key that signed its challenge)."""
    if not create and not Path(args.identity).exists():
        raise InvalidInput(f"{args.identity}: no verifier identity here; give --identity the key that signed the "
                           f"challenge (wmark-verifier challenge created it)")
    key, created = load_or_create_signing_key(args.identity)
    if created:
        print(f"created verifier identity {args.identity} ({key.public_key.fingerprint})", file=sys.stderr)
    return key


def parse_lambda(text: str) -> int:
    """``--lambda``, checked when the command line is read, so an invalid one writes nothing."""
    try:
        return check_lambda(int(text), what="--lambda")
    except (ValueError, InvalidInput):
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer between 1 and {MAX_LAMBDA}") from None


def add_decision_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--p0", type=parse_probability, metavar="P",
                        help="imported trigger sets with committed labels only: the chance an unmarked model gives "
                             "a trigger image its committed label (derived and registry-bound sets use 1/L, margin "
                             "sets 1/(L-1)); a challenge that binds p0 is decided with its own")
    parser.add_argument("--lambda", dest="lam", type=parse_lambda, default=None, metavar="BITS",
                        help=f"accept only if an unmarked model would do as well with probability <= 2^-BITS "
                             f"(1..{MAX_LAMBDA}, default {DEFAULT_LAMBDA}; a challenge that binds lambda is "
                             f"decided with its own)")


def load_vk_for_decision(args: argparse.Namespace) -> tuple[VerificationKey, dsse.Envelope]:
    """The vk of --vk, refusing a --p0 it would ignore (derived and margin sets fix their own)."""
    vk, envelope = load_verification_key(args.vk)
    if getattr(args, "p0", None) is not None and vk.kind.seeded:
        raise InvalidInput(f"--p0 applies to imported trigger sets only; {args.vk} is a {vk.kind.value} set, whose "
                           f"p0 is {null_match_probability(vk, None)} by construction (leave out --p0)")
    return vk, envelope


def add_margin_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", metavar="PATH",
                        help="margin keys: the folder holding the key's data set (cifar10, ...), whose query split "
                             "the queries come from; digits is bundled, fashion-mnist defaults to "
                             "/usr/share/datasets/fashion-mnist")


def add_registration_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("registration (non-trivial ownership: the vk existed before the dispute)")
    group.add_argument("--log-key", metavar="PEM", help="public key of the registry log you trust (log-key.pub)")
    group.add_argument("--receipt", metavar="FILE", help="the vk's registration receipt (default with --log-key: "
                                                         "the log's receipt beside the vk, as wmark register "
                                                         "wrote it)")
    add_witness_policy_arguments(group, log_vkey=True)


def add_witness_policy_arguments(group, *, log_vkey: bool) -> None:
    """--log-vkey (unless the command adds its own), --witness and --quorum: whom a receipt's checkpoint must be
    signed and cosigned by (docs/design.md section 4b)."""
    if log_vkey:
        group.add_argument("--log-vkey", metavar="VKEY",
                           help="the log's checkpoint verifier key (log.vkey), file or inline: require the "
                                "receipt's checkpoint to carry its signature and the witness quorum")
    group.add_argument("--witness", action="append", default=[], metavar="VKEY",
                       help="a trusted witness's verifier key, file or inline (repeat for several)")
    group.add_argument("--quorum", type=int, default=None,
                       help="how many of the witnesses must have cosigned (default: all of them)")


def witness_policy_from_args(args: argparse.Namespace) -> Policy | None:
    """The policy --log-vkey, --witness and --quorum name; None without --log-vkey."""
    if args.log_vkey is None:
        if args.witness or args.quorum is not None:
            raise InvalidInput("--witness and --quorum need --log-vkey: a witness policy is about the log's "
                               "checkpoints")
        return None
    witnesses = tuple(load_verifier(w, what="witness key") for w in args.witness)
    return Policy(load_verifier(args.log_vkey, what="log key"), witnesses,
                  len(witnesses) if args.quorum is None else args.quorum)


def unwitnessed(receipt: Receipt, policy: Policy) -> str | None:
    """Why ``receipt``'s checkpoint fails ``policy`` (no log signature, too few cosignatures), or None;
    for a receipt verified already (:func:`~wmark.protocol.transparency.check_witnessed`)."""
    try:
        check_witnessed(receipt, policy)
    except (InvalidSignature, InvalidProof) as exc:
        return str(exc)
    return None


def refuse_unwitnessed(args: argparse.Namespace, registration: Registration | None) -> int | None:
    """check and run: with a witness policy, EXIT_REJECTED (the reason said) unless the receipt meets it;
    checked before any work, so nothing is queried or written for a receipt the policy refuses."""
    policy = witness_policy_from_args(args)
    if policy is None:
        return None
    if registration is None:
        raise InvalidInput("--log-vkey, --witness and --quorum check a registry receipt: give --log-key too")
    reason = unwitnessed(registration.receipt, policy)
    if reason is None:
        return None
    print(f"REFUSED: the registry receipt does not meet the witness policy (quorum {policy.quorum} of "
          f"{len(policy.witnesses)}): {untrusted(reason)}", file=sys.stderr)
    return EXIT_REJECTED


def add_deciding_arguments(parser: argparse.ArgumentParser, *, resumes: bool = False) -> None:
    """The options of a command that queries the suspect model and signs a verdict (check, run)."""
    add_model_arguments(parser)
    add_identity_argument(parser, resumes=resumes)
    add_decision_arguments(parser)
    add_registration_arguments(parser)
    add_margin_arguments(parser)


def load_receipt(path: str | Path) -> Receipt:
    return Receipt.from_json(read_bounded(path, max_bytes=MAX_RECEIPT_BYTES, what="receipt"), what=str(path))


def registration_from_args(args: argparse.Namespace, vk: VerificationKey,
                           ) -> tuple[Registration, RegistrationInfo] | tuple[None, None]:
    """The receipt the user named and what it proves, checked against ``vk`` once
    (the witness policy is :func:`refuse_unwitnessed`'s); None, None without --log-key."""
    if args.log_key is None:
        if args.receipt is not None:
            raise InvalidInput("--receipt needs --log-key: a receipt means nothing without the log's key")
        return None, None
    log_key = load_public_key(args.log_key)
    registration = Registration(load_receipt(args.receipt or receipt_path_for(args.vk, log_key.keyid)), log_key)
    return registration, registration.verify(vk)


def trusted_log(transcript: Transcript, log_keys: Sequence[str] | None) -> LogTrust | None:
    """Which log key checked the transcript's receipt; None without a receipt.

    The rule is :func:`wmark.verifier.dispute.log_trust`, the one dispute uses:
    without ``log_keys`` (PEM files) the registration is unverified; with them,
    a receipt from any other log is refused, as the user asked for those logs.
    """
    if transcript.registration is None:
        return None
    used = transcript.registration.log_key
    named = [(path, load_public_key(path)) for path in log_keys or ()]
    trust = log_trust(used.keyid, [key for _, key in named])
    if trust.trusted:
        path = next(path for path, key in named if key.keyid == used.keyid)
        return LogTrust(True, f"the registration comes from the log you trust, {path} ({used.fingerprint})")
    if named:
        raise InvalidSignature(f"the transcript's receipt comes from log {used.fingerprint}, not from the log "
                               f"key in {' or '.join(log_keys or ())}")
    return trust


def read_envelope(path: str, *, what: str) -> dsse.Envelope:
    return dsse.Envelope.from_json(read_bounded(path, max_bytes=MAX_MESSAGE_BYTES, what=what), what=path)


def write_transcript(path: str, transcript: Transcript) -> None:
    atomic_write(path, transcript.to_json())  # checked by wmark.console.check_outputs before any work


def print_verdict(verdict: Verdict, *, out=None, registration_note: str | None = None) -> None:
    """``registration_note``: what to say instead of the verdict's registration, when
    the reader has not named the log that vouches for it."""
    out = sys.stdout if out is None else out  # looked up now, so redirect_stdout and capture apply
    tau = "none (k too small for this lambda)" if verdict.tau is None else str(verdict.tau)
    print(f"{'ACCEPTED' if verdict.accepted else 'REJECTED'}: {verdict.matches} of {verdict.k} "
          f"{'hidden' if verdict.zk else 'revealed'} trigger items answered with their committed label "
          f"(threshold {tau}, p0={verdict.p0}, lambda={verdict.lam})", file=out)
    print(f"  p-value   {verdict.p_value} (2^-{verdict.neg_log2_p}): the chance that a model not marked with "
          f"this key does as well", file=out)
    print(f"  model     {untrusted(verdict.model.describe())}", file=out)
    if registration_note is not None:
        print(f"  {registration_note}", file=out)
    elif verdict.registration is not None:
        print(f"  registered {verdict.registration.describe()}", file=out)
    for caveat in verdict.caveats:
        print(f"  caveat    {untrusted(caveat)}", file=out)


def finish(session: AnyVerifierSession, verdict_envelope, vk_envelope, out: str,
           registration: Registration | None, args: argparse.Namespace) -> int:
    """Write the transcript and report (``--json`` too); shared by the file and live transports."""
    assert session.challenge_envelope is not None and session.reveal_envelope is not None
    write_transcript(out, Transcript(vk_envelope, session.challenge_envelope, session.reveal_envelope,
                                     verdict_envelope, registration))
    verdict = decode(verdict_envelope, (Verdict,))
    assert isinstance(verdict, Verdict)
    print_verdict(verdict)
    print(f"wrote {out} (signed transcript; anyone can re-check it: wmark-verifier audit {out})")
    write_json_report(args, verdict_report(verdict, out))
    return EXIT_OK if verdict.accepted else EXIT_REJECTED


def report_refusal(event: Refused, *, keep: Path | None = None) -> int:
    """Report the owner's refusal; ``keep``: where to save it, when it exists nowhere else
    (a live session's: the files transport's is the owner's answer file already)."""
    print(f"REFUSED by the owner: {untrusted(event.reason)}", file=sys.stderr)
    if keep is not None:
        atomic_write(keep, event.envelope.to_json())
        print(f"wrote {keep} (the owner's signed refusal)", file=sys.stderr)
    return EXIT_REJECTED


def refusal_path(out: str) -> Path:
    """Where a live session keeps the owner's signed refusal: OUT with suffix .refusal.json."""
    return Path(out).with_suffix(".refusal.json")


def finish_zk(session: ZkVerifierSession, verdict_envelope, vk_envelope, out: str,
              registration: Registration | None, args: argparse.Namespace) -> int:
    """:func:`finish`, listing the proofs not counted; shared by the file and live transports."""
    code = finish(session, verdict_envelope, vk_envelope, out, registration, args)
    decided = decode(verdict_envelope, (Verdict,))
    assert isinstance(decided, Verdict) and decided.zk is not None
    for failure in decided.zk.failures:
        print(f"  item {failure.index}: proof not counted: {untrusted(failure.reason)}")
    if decided.zk.failures and not decided.accepted:
        # Invalid proofs are the owner's input error, not a model that failed a fair test.
        print(f"wmark-verifier: error: {len(decided.zk.failures)} of {decided.k} proofs are invalid (listed above); "
              f"the rejection is recorded in {out}", file=sys.stderr)
        return EXIT_INVALID
    return code


def add_setup_arguments(parser) -> None:
    """The SRS and circuit options of the commands that issue a zero-knowledge challenge."""
    parser.add_argument("--srs", metavar="FILE", help="a public ceremony SRS to use instead of generating one")
    add_output(parser, "--srs-out", what="generated SRS", help="where to write the generated SRS (default: OUT "
                                                               "with suffix .srs)")
    add_circuit_arguments(parser)


def checked_setup(args: argparse.Namespace, vk: VerificationKey, *, otherwise: str) -> Path | None:
    """Refuse a zero-knowledge challenge the key or options cannot make; where a
    generated SRS goes (None: --srs names one).  ``otherwise``: what to do instead."""
    if vk.zk is None:
        raise InvalidInput(f"{args.vk}: has no zero-knowledge commitments (the owner made it without "
                           f"wmark keygen --zk); {otherwise}")
    if not 1 <= args.k <= vk.n:
        raise InvalidInput(f"k={args.k} must be between 1 and n={vk.n}")
    problem = hopeless(args.k, null_match_probability(vk, getattr(args, "p0", None)),
                       getattr(args, "lam", None) or DEFAULT_LAMBDA)
    if problem is not None:  # before the circuit and SRS are built, and before anything is written
        raise InvalidInput(f"{problem} (see wmark-verifier plan)")
    if args.srs and args.srs_out:
        raise InvalidInput("--srs uses an existing SRS; --srs-out names where a generated one goes: not both")
    if args.srs:
        return None
    srs_out = Path(args.srs_out or srs_beside(args.out))
    check_output_path(srs_out, what="generated SRS", force=args.force, option="--srs-out")
    return srs_out
