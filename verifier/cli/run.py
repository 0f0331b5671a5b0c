"""``wmark-verifier run``: a live verification session with ``wmark-prover serve``.

The same :class:`~wmark.protocol.session.VerifierSession` as the files transport,
over one TCP connection of length-prefixed frames (:mod:`wmark.protocol.framing`):
challenge out, reveal or refusal in, query the model ourselves, verdict out.
Every failure names its side: the prover (unreachable, silent, or breaking
the protocol), the suspect model, or the local user's options.

With ``--zk`` the same session asks for zero-knowledge proofs instead
(docs/design.md section 4c): the SRS the challenge pins follows it as raw frames,
and the answer is checked against the circuit built here from the model.
"""

from __future__ import annotations

import argparse
import sys

from wmark.console import add_command, add_json_argument, add_output, int_in_range, untrusted
from wmark.errors import InvalidInput, ModelOracleError, WmarkError
from wmark.files import check_output_path
from wmark.protocol.decision import DEFAULT_LAMBDA, MAX_K, hopeless, lowest_passing_accuracy, threshold
from wmark.protocol.framing import encode_frame
from wmark.protocol.hazmat import dsse
from wmark.protocol.keys import VerificationKey
from wmark.protocol.session import Refused, VerifierSession, ZkVerifierSession, null_match_probability
from wmark.protocol.transcript import Registration
from wmark.protocol.transparency import RegistrationInfo
from wmark.verifier.cli._common import (
    add_deciding_arguments,
    add_setup_arguments,
    checked_setup,
    finish,
    finish_zk,
    load_vk_for_decision,
    oracle_from_args,
    refusal_path,
    refuse_unwitnessed,
    registration_from_args,
    report_refusal,
    verifier_identity,
)
from wmark.verifier.client import ZK_SETUP_WAIT_S, ZK_WAIT_PER_PROOF_S, ProverConnection, proof_wait, send_challenge
from wmark.verifier.transcripts import query_split_for
from wmark.verifier.verify import decide_with_model, default_decoys
from wmark.verifier.zk import decide_with_proofs, open_verifier

EPILOG = """\
examples:
  wmark-verifier run --connect 127.0.0.1:7401 --vk vk.json --model suspect/ --k 20 --out verdict.json
  wmark-verifier run --connect owner.example:7401 --vk vk.json \\
      --endpoint http://10.0.0.5:8080 --model-name resnet --k 20 --out verdict.json
  wmark-verifier run --connect owner.example:7401 --vk vk.json --model suspect/ --k 10 --zk \\
      --out verdict.json

Sends a fresh signed challenge to `wmark-prover serve`, checks the openings it
gets back against vk, queries the model itself (trigger images shuffled among
ordinary inputs), signs the verdict, writes the whole transcript to --out
(`wmark-verifier audit` re-checks it) and sends the verdict to the owner.
An owner's signed refusal is kept in OUT with suffix .refusal.json.
--timeout bounds each model request and each message from the prover.
Exit 0 accepted, 1 rejected or refused by the owner, 2 invalid: the message
says whether the prover, the model or the local options are at fault.

--zk (a model whose weights you hold, a key made with keygen --zk): the owner
proves in zero knowledge that the model classifies each challenged trigger
image as its label, and no image is revealed. The circuit is built here from
--model; without --srs a fresh SRS is generated (OUT with suffix .srs, kept
for `audit --srs`) and sent to the owner after the challenge: proofs under it
convince you only. The owner's `serve` needs its own copy of the model
(--model there). Needs pip install '.[zk]'."""


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [::1]:7401
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:7401)")
    return host, int(port)


def register(subparsers) -> None:
    p = add_command(subparsers, "run",
                    description="Challenge the owner's prover over TCP, check its openings, query the suspect "
                                "model and sign the verdict.", epilog=EPILOG, func=run)
    p.add_argument("--connect", required=True, type=parse_address, metavar="HOST:PORT",
                   help="where `wmark-prover serve` listens")
    p.add_argument("--vk", required=True, metavar="FILE", help="the owner's verification key")
    p.add_argument("--k", type=int_in_range(1, MAX_K), required=True,
                   help="how many trigger items to open (k = n: public)")
    add_output(p, "--out", required=True, what="signed transcript", help="where to write the signed transcript")
    add_json_argument(p)
    add_deciding_arguments(p)
    zk = p.add_argument_group("zero-knowledge verification (a model you hold; pip install '.[zk]')")
    zk.add_argument("--zk", action="store_true", help="ask for zero-knowledge proofs instead of openings")
    zk.add_argument("--zk-timeout", type=float, metavar="SECONDS",
                    help=f"how long the owner may take to prove (default: {ZK_SETUP_WAIT_S:g} s + "
                         f"{ZK_WAIT_PER_PROOF_S:g} s per item)")
    add_setup_arguments(zk)


def deliver(prover: ProverConnection, verdict: dsse.Envelope) -> None:
    """Send the owner the verdict; the transcript is written already, so a failure only warns."""
    try:
        prover.send(encode_frame(verdict.to_json()), "verdict")
    except WmarkError as exc:
        print(f"warning: the verdict stands, but could not be delivered to the owner: {untrusted(exc)}",
              file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    # Where an owner's refusal would be kept is an output too: checked before any work.
    check_output_path(refusal_path(args.out), what="owner's refusal", force=args.force, option="--out")
    vk, vk_envelope = load_vk_for_decision(args)
    registration, registered = registration_from_args(args, vk)
    if (refused := refuse_unwitnessed(args, registration)) is not None:
        return refused
    if args.zk:
        return run_zk(args, vk, vk_envelope, registration, registered)
    if args.srs or args.srs_out or args.zk_timeout:
        raise InvalidInput("--srs, --srs-out and --zk-timeout go with --zk")
    oracle = oracle_from_args(args)
    session = VerifierSession(vk, verifier_identity(args), oracle.model_ref, args.k, p0=args.p0, lam=args.lam,
                              registration=registered, margin=query_split_for(vk, args.data_root))
    p0 = null_match_probability(vk, args.p0)
    lam = args.lam or DEFAULT_LAMBDA
    tau, low = threshold(args.k, p0, lam), lowest_passing_accuracy(args.k, p0, lam)
    if tau is None:  # refused before connecting: the prover would refuse it too, revealing nothing
        raise InvalidInput(f"{hopeless(args.k, p0, lam)} (see wmark-verifier plan)")
    print(f"opening {args.k} of {vk.n} trigger items on {untrusted(oracle.model_ref.describe())}: "
          + ("no number of matches is significant at this k; see `wmark-verifier plan`" if tau is None else
             f"accept at {tau} matches; a marked model passes w.p. 0.99 from trigger accuracy {low:.3f}"))
    # Loaded before connecting, so the prover is not kept waiting on our disk.
    decoys = default_decoys(vk.input_shape, dataset=vk.margin.dataset if vk.margin else None,
                            data_root=args.data_root)
    with ProverConnection(args.connect, timeout=args.timeout) as prover:
        # The prover ends a session without a word for a challenge it cannot answer at
        # all (another key's, or malformed); say what that most likely means.
        closed = (f"it may serve another verification key than {args.vk} (vk {vk.digest.hex()[:16]}…); the "
                  f"prover's own log names the reason")
        answer = send_challenge(prover, session.challenge(), vk, lambda: prover.receive("reveal", if_closed=closed))
        event = session.receive(answer)
        if isinstance(event, Refused):
            return report_refusal(event, keep=refusal_path(args.out))
        try:
            verdict = decide_with_model(session, event, oracle, decoys=decoys)
        except ModelOracleError as exc:
            raise ModelOracleError(f"the suspect model could not be queried (not the prover's fault): "
                                   f"{exc}") from None
        # The transcript is ours to keep whatever happens next, so it is
        # written before the verdict goes out over a connection that may fail.
        code = finish(session, verdict, vk_envelope, args.out, registration, args)
        deliver(prover, verdict)
        return code


def run_zk(args: argparse.Namespace, vk: VerificationKey, vk_envelope: dsse.Envelope,
           registration: Registration | None, registered: RegistrationInfo | None) -> int:
    if args.endpoint or not args.model:
        raise InvalidInput("--zk proves what the model's weights compute: give the suspect model's directory "
                           "with --model (an endpoint sees every image it is asked about)")
    srs_out = checked_setup(args, vk, otherwise="verify without --zk")
    if args.zk_timeout is not None and args.zk_timeout <= 0:
        raise InvalidInput(f"--zk-timeout {args.zk_timeout:g} must be positive")
    wait = args.zk_timeout or proof_wait(args.k)
    identity = verifier_identity(args)
    with open_verifier(args.model, vk, srs=args.srs, srs_out=srs_out, workdir=args.workdir,
                       memory_limit=args.memory_limit) as verifier:
        session = ZkVerifierSession(vk, identity, verifier.model_ref, args.k, zk=verifier.parameters, p0=args.p0,
                                    lam=args.lam, registration=registered)
        print(f"asking for zero-knowledge proofs of {args.k} of {vk.n} trigger items on "
              f"{verifier.model_ref.describe()} (SRS {verifier.srs.path}, {verifier.origin.value}); waiting up to "
              f"{wait:g} s for them")
        with ProverConnection(args.connect, timeout=args.timeout) as prover:
            answer = send_challenge(prover, session.challenge(), vk,
                                    lambda: prover.send_srs_then_receive(verifier.srs.path, wait))
            event = session.receive(answer)
            if isinstance(event, Refused):
                return report_refusal(event, keep=refusal_path(args.out))
            verdict = decide_with_proofs(session, event, verifier)
            code = finish_zk(session, verdict, vk_envelope, args.out, registration, args)
            deliver(prover, verdict)
            return code
