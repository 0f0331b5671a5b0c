"""``wmark-verifier registration``: check a registration offline, as a tlog-proof
against a witness policy, or as a JSON receipt against the log's ECDSA key."""

from __future__ import annotations

import argparse

from wmark.console import EXIT_OK, EXIT_REJECTED, add_command, add_json_argument, write_json_report
from wmark.errors import InvalidProof, InvalidSignature
from wmark.files import read_bounded
from wmark.protocol.beacon import InvalidBeacon
from wmark.protocol.checkpoint import MAX_PROOF_BYTES, TlogProof
from wmark.protocol.hazmat.identity import load_public_key
from wmark.protocol.keys import load_verification_key
from wmark.protocol.transparency import default_proof_path, receipt_path_for, verify_receipt, verify_tlog_proof
from wmark.verifier.cli._common import add_witness_policy_arguments, load_receipt, witness_policy_from_args
from wmark.verifier.reports import registration_report

EPILOG = """\
examples:
  wmark-verifier registration --vk keys/vk.json --log-vkey registry/log.vkey \\
      --witness w1/witness.vkey --witness w2/witness.vkey --quorum 2
  wmark-verifier registration --vk keys/vk.json --log-key registry/log-key.pub   # JSON receipt

With --log-vkey the tlog-proof (VK.tlog-proof beside the vk, or --proof) is
checked: the log's Ed25519 signature on its checkpoint, at least QUORUM
cosignatures from the given witnesses, and the entry's inclusion. With
--log-key the JSON receipt is checked against the log's own signature only.
Exit 0 when it proves the vk was registered (and prints when), 1 when it
does not (the message says why), 2 for unreadable input. No network."""


def register(subparsers) -> None:
    p = add_command(subparsers, "registration",
                    description="Check that a tlog-proof (or receipt) proves the verification key was "
                                "appended to the log, and print when.", epilog=EPILOG, func=run)
    p.add_argument("--vk", required=True, metavar="FILE", help="the owner-signed verification key")
    trust = p.add_mutually_exclusive_group(required=True)
    trust.add_argument("--log-vkey", metavar="VKEY", help="the log's checkpoint verifier key (log.vkey), file "
                                                          "or inline: check the tlog-proof")
    trust.add_argument("--log-key", metavar="PEM", help="the log's public key (log-key.pub): check the JSON receipt")
    add_witness_policy_arguments(p, log_vkey=False)
    p.add_argument("--proof", metavar="FILE", help="the tlog-proof; without it, VK.tlog-proof beside the vk")
    p.add_argument("--receipt", metavar="FILE", help="the JSON receipt; without it, the log's receipt beside the vk "
                                                     "(VK.receipt.json, or VK.receipt.<log key id>.json)")
    add_json_argument(p)


def run(args: argparse.Namespace) -> int:
    vk, _ = load_verification_key(args.vk)
    policy = witness_policy_from_args(args)
    if policy is None:
        return _receipt(args, vk)
    witnesses = policy.witnesses
    path = args.proof or default_proof_path(args.vk)
    proof = TlogProof.decode(read_bounded(path, max_bytes=MAX_PROOF_BYTES, what="tlog-proof"), what=str(path))
    try:
        info = verify_tlog_proof(proof, vk, policy)
    except (InvalidProof, InvalidSignature) as exc:
        print(f"{path}: does NOT prove the registration of {args.vk}: {exc}")
        write_json_report(args, registration_report("tlog-proof", str(path), vk, policy.log.encode(), None, str(exc)))
        return EXIT_REJECTED
    print(f"{path}: valid tlog-proof (quorum {policy.quorum} of {len(witnesses)} witness(es))")
    print(f"  vk          {vk.digest.hex()[:16]}…  owner {vk.owner.fingerprint}")
    print(f"  registered  {info.describe()}")
    print(f"  log vkey    {policy.log.encode()}")
    write_json_report(args, registration_report("tlog-proof", str(path), vk, policy.log.encode(), info, None))
    return EXIT_OK


def _receipt(args: argparse.Namespace, vk) -> int:
    log_key = load_public_key(args.log_key)
    path = args.receipt or receipt_path_for(args.vk, log_key.keyid)
    receipt = load_receipt(path)
    try:
        info = verify_receipt(receipt, vk, log_key)
    except InvalidBeacon:
        raise  # an edited receipt: invalid input (exit 2), not a registration that failed
    except (InvalidProof, InvalidSignature) as exc:
        print(f"{path}: does NOT prove the registration of {args.vk}: {exc}")
        write_json_report(args, registration_report("receipt", str(path), vk, log_key.fingerprint, None, str(exc)))
        return EXIT_REJECTED
    print(f"{path}: valid receipt")
    print(f"  vk          {vk.digest.hex()[:16]}…  owner {vk.owner.fingerprint}")
    print(f"  registered  {info.describe()}")
    print(f"  log key     {log_key.fingerprint}")
    if info.beta is not None:
        print(f"  beacon      beta {info.beta.hex()[:16]}… (VRF proof checked: it fixes a registry-bound key's labels)")
    write_json_report(args, registration_report("receipt", str(path), vk, log_key.fingerprint, info, None))
    return EXIT_OK
