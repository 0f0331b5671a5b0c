"""``wmark-verifier audit``: re-check a signed object offline."""

from __future__ import annotations

import argparse

from protocol import dsse
from protocol.console import add_command
from protocol.errors import InvalidInput
from protocol.files import read_bounded
from protocol.keys import MAX_VK_BYTES, VK_PAYLOAD_TYPE, VerificationKey, verify_vk_envelope

EPILOG = """\
examples:
  wmark-verifier audit keys/vk.json

Exit 0 when the object is valid, 2 when it is not (the message names what is wrong)."""


def register(subparsers) -> None:
    p = add_command(subparsers, "audit", help="re-check a verification key offline",
                    description="Check the structure, version and owner signature of a signed wmark object "
                                "and print a summary.", epilog=EPILOG, func=run)
    p.add_argument("file", help="a vk.json")


def describe_vk(vk: VerificationKey) -> list[str]:
    lines = [
        f"owner key     {vk.owner.fingerprint}",
        f"vk digest     {vk.digest.hex()}",
        f"trigger set   {vk.n} {vk.kind.value} items, {vk.num_classes} classes, "
        f"input {'x'.join(map(str, vk.input_shape))}",
        f"commitments   {vk.scheme.value}",
        f"created       {vk.created} (as claimed by the owner; only a registry receipt proves a time)",
    ]
    if vk.vrf_key is not None:
        lines.append(f"VRF key       {vk.vrf_key.to_bytes().hex()}")
    return lines


def run(args: argparse.Namespace) -> int:
    data = read_bounded(args.file, max_bytes=MAX_VK_BYTES, what="signed object")
    envelope = dsse.Envelope.from_json(data, what=args.file)
    if envelope.payload_type == VK_PAYLOAD_TYPE:
        vk = verify_vk_envelope(envelope, what=args.file)
        print(f"{args.file}: valid verification key, signed by its owner")
        for line in describe_vk(vk):
            print("  " + line)
        return 0
    raise InvalidInput(f"{args.file}: cannot audit payloadType {envelope.payload_type!r}")
