"""``wmark-verifier audit``: re-check a verification key or a transcript offline."""

from __future__ import annotations

import argparse

from wmark.console import EXIT_OK, add_command, add_json_argument, untrusted, write_json_report
from wmark.errors import InvalidInput, InvalidOpening
from wmark.files import read_bounded
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.encoding import MAX_DOCUMENT_BYTES, parse_json
from wmark.protocol.keys import VK_PAYLOAD_TYPE, VerificationKey, verify_vk_envelope
from wmark.protocol.transcript import TRANSCRIPT_TYPE, AuditReport, Transcript
from wmark.verifier.cli._common import (
    add_margin_arguments,
    add_model_arguments,
    oracle_from_args,
    print_verdict,
    trusted_log,
)
from wmark.verifier.reports import audit_report
from wmark.verifier.transcripts import audit_transcript

EPILOG = """\
examples:
  wmark-verifier audit keys/vk.json                  # a verification key
  wmark-verifier audit verdict.json                  # a transcript: signatures, openings, subset, decision
  wmark-verifier audit verdict.json --model suspect/ # ... and re-query the model

Exit 0 when the object is valid (whatever the verdict says), 2 when it is not;
the message names what is wrong."""


def register(subparsers) -> None:
    p = add_command(subparsers, "audit",
                    description="Check a signed wmark object: a verification key (structure, version, owner "
                                "signature) or a verification transcript (every signature, commitment opening, "
                                "the subset derivation and the decision).", epilog=EPILOG, func=run)
    p.add_argument("file", help="a vk.json, or a verdict.json written by check/run")
    p.add_argument("--log-key", metavar="PEM", action="append", default=[],
                   help="a registry log you trust (repeat for several): the transcript's receipt must come from "
                        "one; without it, the registration is reported unverified")
    add_model_arguments(p)
    add_margin_arguments(p)
    p.add_argument("--srs", metavar="FILE", help="zero-knowledge transcripts: the SRS the challenge names, to "
                                                 "re-check the proofs against --model")
    add_json_argument(p)


def describe_vk(vk: VerificationKey) -> list[str]:
    lines = [
        f"owner key     {vk.owner.fingerprint}",
        f"vk digest     {vk.digest.hex()}",
        f"trigger set   {vk.n} {vk.kind.value} items, {vk.num_classes} classes, "
        f"input {'x'.join(map(str, vk.input_shape))}",
        f"commitments   {vk.scheme.value}",
        f"created       {untrusted(vk.created)} (as claimed by the owner; only a registry receipt proves a time)",
    ]
    if vk.vrf_key is not None:
        lines.append(f"VRF key       {vk.vrf_key.to_bytes().hex()}")
    if vk.margin is not None:
        lines.append(f"queries       from {untrusted(vk.margin.describe())}")
    return lines


def requery(report: AuditReport, args: argparse.Namespace) -> str:
    """Ask the model again; what it said, or raise when it now decides otherwise."""
    # Imported here: auditing a file without --model loads no numerical code.
    import numpy as np

    from wmark.protocol.patterns import item_images

    oracle = oracle_from_args(args)
    if oracle.model_ref != report.challenge.model:
        raise InvalidInput(f"the transcript is about {untrusted(report.challenge.model.describe())}, not "
                           f"{untrusted(oracle.model_ref.describe())}")
    answers = oracle.classify(item_images(report.items, report.vk.input_shape))
    recorded = np.array([r.predicted for r in report.verdict.results])
    matches = int(sum(int(a) == r.label for a, r in zip(answers, report.verdict.results)))
    if matches != report.verdict.matches:
        raise InvalidOpening(f"the model now gives {matches} matches, the verdict recorded {report.verdict.matches}")
    return (f"re-queried the model: {int((answers == recorded).sum())} of {len(recorded)} answers as recorded; "
            f"{matches} matches now")


def reverify_proofs(report: AuditReport, args: argparse.Namespace) -> str:
    from wmark.verifier.zk import reverify

    if not args.model or not args.srs:
        raise InvalidInput("a zero-knowledge transcript's proofs are re-checked against the model's weights and the "
                           "challenge's SRS: give --model DIR and --srs FILE")
    valid = reverify(report, args.model, args.srs)
    return f"re-checked the proofs against the model: {valid} of {len(report.zk_items)} verify, as recorded"


def recheck_model(report: AuditReport, args: argparse.Namespace) -> str:
    """Re-query the model, or for zero-knowledge re-check the proofs against it."""
    return (reverify_proofs if report.challenge.zk else requery)(report, args)


def run(args: argparse.Namespace) -> int:
    data = read_bounded(args.file, max_bytes=MAX_DOCUMENT_BYTES, what="signed object")
    obj = parse_json(data, what=args.file)
    if isinstance(obj, dict) and obj.get("type") == TRANSCRIPT_TYPE:
        transcript = Transcript.from_obj(obj, what=args.file)
        report = audit_transcript(transcript, args.data_root)
        trust = trusted_log(transcript, args.log_key)
        print(f"{args.file}: valid transcript: every signature, opening, the subset and the decision check out")
        for line in describe_vk(report.vk):
            print("  " + line)
        print_verdict(report.verdict, registration_note=trust.text if trust and not trust.trusted else None)
        recheck = recheck_model(report, args) if args.model or args.endpoint else None
        if recheck is not None:
            print(recheck)
        write_json_report(args, audit_report(args.file, report.vk, report.verdict,
                                             log_trust=trust.text if trust else None, recheck=recheck))
        return EXIT_OK
    envelope = dsse.Envelope.from_obj(obj, what=args.file)
    if envelope.payload_type == VK_PAYLOAD_TYPE:
        vk = verify_vk_envelope(envelope, what=args.file)
        print(f"{args.file}: valid verification key, signed by its owner")
        for line in describe_vk(vk):
            print("  " + line)
        write_json_report(args, audit_report(args.file, vk, None))
        return EXIT_OK
    raise InvalidInput(f"{args.file}: cannot audit payloadType {envelope.payload_type!r}")
