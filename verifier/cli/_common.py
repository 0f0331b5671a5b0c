"""Options and output shared by the verifier's commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from wmark.console import untrusted
from wmark.errors import InvalidInput, InvalidSignature
from wmark.files import atomic_write, read_bounded
from wmark.protocol.decision import DEFAULT_LAMBDA, parse_probability
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.identity import SigningKey, load_or_create_signing_key, load_public_key
from wmark.protocol.keys import VerificationKey
from wmark.protocol.messages import MAX_MESSAGE_BYTES, Verdict
from wmark.protocol.transcript import Registration, Transcript
from wmark.protocol.transparency import MAX_RECEIPT_BYTES, Receipt, default_receipt_path
from wmark.verifier.dispute import LogTrust
from wmark.verifier.oracle import DEFAULT_TIMEOUT, ModelOracle, open_oracle

DEFAULT_IDENTITY = "verifier.pem"


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the suspect model (a directory, or an Open Inference Protocol endpoint)")
    group.add_argument("--model", metavar="DIR", help="model directory (model.json + model.safetensors)")
    group.add_argument("--endpoint", metavar="URL", help="KServe v2 / Open Inference Protocol base URL")
    group.add_argument("--model-name", metavar="NAME", help="the model's name at --endpoint")
    group.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per endpoint request")


def oracle_from_args(args: argparse.Namespace) -> ModelOracle:
    return open_oracle(model_dir=args.model, endpoint=args.endpoint, model_name=args.model_name,
                       timeout=args.timeout)


def add_identity_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--identity", metavar="PEM", default=DEFAULT_IDENTITY,
                        help="the verifier's P-256 signing key (created when absent)")


def verifier_identity(args: argparse.Namespace) -> SigningKey:
    key, created = load_or_create_signing_key(args.identity)
    if created:
        print(f"created verifier identity {args.identity} ({key.public_key.fingerprint})", file=sys.stderr)
    return key


def add_decision_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--p0", type=parse_probability, metavar="P",
                        help="imported trigger sets only: the chance an unmarked model gives a trigger image its "
                             "committed label (derived sets use 1/L, margin sets 1/(L-1))")
    parser.add_argument("--lambda", dest="lam", type=int, default=DEFAULT_LAMBDA, metavar="BITS",
                        help="accept only if an unmarked model would do as well with probability <= 2^-BITS")


def add_margin_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", metavar="PATH",
                        help="margin keys: the folder holding the key's data set (cifar10, ...), whose query split "
                             "the queries come from; digits is bundled")


def add_registration_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("registration (non-trivial ownership: the vk existed before the dispute)")
    group.add_argument("--log-key", metavar="PEM", help="public key of the registry log you trust (log-key.pub)")
    group.add_argument("--receipt", metavar="FILE", help="the vk's registration receipt (default with --log-key: "
                                                         "VK.receipt.json beside the vk)")


def add_deciding_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a command that queries the suspect model and signs a verdict (check, run)."""
    add_model_arguments(parser)
    add_identity_argument(parser)
    add_decision_arguments(parser)
    add_registration_arguments(parser)
    add_margin_arguments(parser)


def load_receipt(path: str | Path) -> Receipt:
    return Receipt.from_json(read_bounded(path, max_bytes=MAX_RECEIPT_BYTES, what="receipt"), what=str(path))


def registration_from_args(args: argparse.Namespace, vk: VerificationKey) -> Registration | None:
    """The receipt the user named, checked against ``vk``; None without --log-key."""
    if args.log_key is None:
        if args.receipt is not None:
            raise InvalidInput("--receipt needs --log-key: a receipt means nothing without the log's key")
        return None
    registration = Registration(load_receipt(args.receipt or default_receipt_path(args.vk)),
                                load_public_key(args.log_key))
    registration.verify(vk)
    return registration


def trusted_log(transcript: Transcript, log_keys: Sequence[str] | None) -> LogTrust | None:
    """Which log key checked the transcript's receipt; None without a receipt.

    A receipt proves a time only to someone who trusts the log that signed it
    (docs/design.md section 4b): with ``log_keys`` (PEM files) the receipt must
    come from one of them; without, the registration is unverified.
    """
    if transcript.registration is None:
        return None
    used = transcript.registration.log_key
    if not log_keys:
        return LogTrust(False, f"registration unverified: the receipt comes from log {used.fingerprint}, and no "
                               f"log key was named (--log-key) to trust")
    for path in log_keys:
        if load_public_key(path) == used:
            return LogTrust(True, f"the registration comes from the log you trust, {path} ({used.fingerprint})")
    raise InvalidSignature(f"the transcript's receipt comes from log {used.fingerprint}, not from the log "
                           f"key in {' or '.join(log_keys)}")


def read_envelope(path: str, *, what: str) -> dsse.Envelope:
    return dsse.Envelope.from_json(read_bounded(path, max_bytes=MAX_MESSAGE_BYTES, what=what), what=path)


def write_transcript(path: str, transcript: Transcript) -> None:
    if Path(path).is_dir():
        raise InvalidInput(f"{path}: is a directory; give a file name for the verdict")
    atomic_write(path, transcript.to_json())


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
