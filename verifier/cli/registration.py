"""``wmark-verifier registration``: check a registration receipt offline."""

from __future__ import annotations

import argparse

from wmark.console import EXIT_OK, EXIT_REJECTED, add_command, add_json_argument, write_json_report
from wmark.errors import InvalidProof, InvalidSignature
from wmark.protocol.hazmat.identity import load_public_key
from wmark.protocol.keys import load_verification_key
from wmark.protocol.transparency import receipt_path_for, verify_receipt
from wmark.verifier.cli._common import load_receipt
from wmark.verifier.reports import registration_report

EPILOG = """\
examples:
  wmark-verifier registration --vk keys/vk.json --log-key registry/log-key.pub
  wmark-verifier registration --vk vk.json --receipt vk.receipt.json --log-key log-key.pub

Exit 0 when the receipt proves the vk was registered (and prints when), 1 when
it does not (the message says why), 2 for unreadable input. Needs nothing but
the log's public key: no network, no access to the log."""


def register(subparsers) -> None:
    p = add_command(subparsers, "registration", help="check a vk's registration receipt offline",
                    description="Check that a receipt proves the verification key was appended to the "
                                "log of the given public key, and print when.", epilog=EPILOG, func=run)
    p.add_argument("--vk", required=True, metavar="FILE", help="the owner-signed verification key")
    p.add_argument("--receipt", metavar="FILE", help="the receipt; without it, the log's receipt beside the vk "
                                                     "(VK.receipt.json, or VK.receipt.<log key id>.json)")
    p.add_argument("--log-key", required=True, metavar="PEM", help="the log's public key (log-key.pub)")
    add_json_argument(p)


def run(args: argparse.Namespace) -> int:
    vk, _ = load_verification_key(args.vk)
    log_key = load_public_key(args.log_key)
    path = args.receipt or receipt_path_for(args.vk, log_key.keyid)
    receipt = load_receipt(path)
    try:
        info = verify_receipt(receipt, vk, log_key)
    except (InvalidProof, InvalidSignature) as exc:
        print(f"{path}: does NOT prove the registration of {args.vk}: {exc}")
        write_json_report(args, registration_report(str(path), vk, log_key.fingerprint, None, str(exc)))
        return EXIT_REJECTED
    print(f"{path}: valid receipt")
    print(f"  vk          {vk.digest.hex()[:16]}…  owner {vk.owner.fingerprint}")
    print(f"  registered  {info.describe()}")
    print(f"  log key     {log_key.fingerprint}")
    write_json_report(args, registration_report(str(path), vk, log_key.fingerprint, info, None))
    return EXIT_OK
