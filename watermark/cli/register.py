"""``wmark register``: fix a verification key in a transparency log before any dispute."""

from __future__ import annotations

import argparse
from pathlib import Path

from wmark.console import add_command, add_json_argument, add_output, plural, write_json_report
from wmark.errors import DecodeError, InvalidInput
from wmark.files import atomic_write, check_output_path, read_bounded
from wmark.protocol.checkpoint import Checkpoint, Policy
from wmark.protocol.hazmat.identity import PublicKey, load_public_key
from wmark.protocol.hazmat.note import Verifier, load_verifier
from wmark.protocol.keys import load_verification_key
from wmark.protocol.transparency import (
    MAX_RECEIPT_BYTES,
    Receipt,
    default_proof_path,
    default_receipt_path,
    format_time,
    verify_receipt,
    verify_tlog_proof,
)
from wmark.registry import LogClient, LogStore
from wmark.registry.client import DEFAULT_TIMEOUT_S

EPILOG = """\
examples:
  wmark register --vk keys/vk.json --log registry          # a log directory (created on first use)
  wmark register --vk keys/vk.json --log-url http://127.0.0.1:8470 --log-key log-key.pub

Writes the registration beside the vk twice: keys/vk.tlog-proof (c2sp.org/
tlog-proof: the cosigned checkpoint, the inclusion path and the entry, checked
offline against the log's log.vkey and a witness quorum) and keys/vk.receipt.json
(the entry, the log's signed tree head and the same checkpoint, checked with
log-key.pub). A further log's pair goes beside them, named by that log's key id
(keys/vk.<id>.tlog-proof, keys/vk.receipt.<id>.json): no log's registration
replaces another's. `wmark-verifier registration` checks either. Registering the same vk
again returns its first entry. The log refuses a vk that reuses commitments
another owner registered. The receipt proves when the vk was fixed, not who
made the trigger images."""


def register(subparsers) -> None:
    p = add_command(subparsers, "register",
                    description="Append the verification key to an RFC 9162 Merkle log and keep the "
                                "signed receipt beside it.", epilog=EPILOG, func=run)
    p.add_argument("--vk", required=True, metavar="FILE", help="the owner-signed verification key (vk.json)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--log", metavar="DIR", help="a log directory on this machine")
    where.add_argument("--log-url", metavar="URL", help="a log shared through `wmark log serve`")
    p.add_argument("--log-key", metavar="PEM",
                   help="the log's public key to check the receipt with; without it, a local log's own key, "
                        "or the key a --log-url log presents (printed for you to compare)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                   help="--log-url: seconds the log has for each whole answer (an append may wait on other appends)")
    p.add_argument("--log-vkey", metavar="VKEY",
                   help="the log's checkpoint verifier key to check the tlog-proof with (file or inline); without "
                        "it, a local log's own, or the one a --log-url log presents")
    add_output(p, "--receipt", what="receipt", help="where to write the receipt; without it, beside the vk as "
                                                    "VK.receipt.json (a further log's: VK.receipt.<log key id>.json)")
    add_output(p, "--proof", what="tlog-proof", help="where to write the tlog-proof; without it, beside the vk "
                                                     "as VK.tlog-proof (a further log's: VK.<log key id>.tlog-proof)")
    add_json_argument(p)


def run(args: argparse.Namespace) -> int:
    vk, signed_vk = load_verification_key(args.vk)
    pinned = load_public_key(args.log_key) if args.log_key else None
    pinned_vkey = load_verifier(args.log_vkey, what="log key") if args.log_vkey else None
    # Before the log is created or asked anything: the files' directory must take them.
    check_output_path(args.receipt or default_receipt_path(args.vk), what="receipt", force=True, option="--receipt")
    if args.log:
        # The quick check (latest signed root against the stored leaves) is
        # enough here; `wmark log check` re-reads every entry.
        with LogStore.open(args.log, check=False) as store:
            log_key = _agree(pinned, store.public_key)
            vkey = _agree_vkey(pinned_vkey, Verifier.decode(store.vkey))
            path, proof_path = _paths(args, log_key)
            receipt = store.register(vk)
        print(f"log         {store.directory} (public key {store.public_key_path})")
    else:
        with LogClient(args.log_url, timeout=args.timeout) as client:
            log_key = _agree(pinned, client.log_key())
            vkey = _agree_vkey(pinned_vkey, client.vkey())
            path, proof_path = _paths(args, log_key)
            receipt = client.register(signed_vk)
        print(f"log         {args.log_url}")
    # Witness quorums are the verifier's policy; here only the log's own signature is required.
    info = verify_receipt(receipt, vk, log_key, Policy(vkey))
    proof = receipt.tlog_proof()
    verify_tlog_proof(proof, vk, Policy(vkey))
    atomic_write(proof_path, proof.encode())
    atomic_write(path, receipt.to_json())
    note = "" if pinned or args.log else " (as the log presents it: compare it out of band, or pass --log-key)"
    print(f"log key     {log_key.fingerprint}{note}")
    print(f"registered  vk {vk.digest.hex()[:16]}… as {info.describe()}")
    print(f"checkpoint  {proof.checkpoint.text.decode().splitlines()[0]} size {info.tree_size}, "
          f"{plural(len(proof.checkpoint.signatures) - 1, 'cosignature')}")
    print(f"wrote       {proof_path}")
    print(f"wrote       {path}")
    checkpoint = Checkpoint.parse(proof.checkpoint.text)
    write_json_report(args, {
        "type": "wmark/register-report", "version": 1, "vk_digest": vk.digest.hex(),
        "log": str(store.directory) if args.log else args.log_url, "log_key": log_key.fingerprint,
        "log_key_pinned": pinned is not None or bool(args.log), "index": info.index, "time": format_time(info.time_ms),
        "time_ms": info.time_ms, "tree_size": info.tree_size,
        "checkpoint": {"origin": checkpoint.origin, "size": checkpoint.size, "root": checkpoint.root.hex(),
                       "cosignatures": len(proof.checkpoint.signatures) - 1},
        "receipt": str(path), "tlog_proof": str(proof_path)})
    return 0


def _paths(args: argparse.Namespace, log_key: PublicKey) -> tuple[Path, Path]:
    """Where this log's receipt and tlog-proof go, decided before anything is appended:
    as named (checked like every output), else beside the vk, where another log's
    registration is never replaced and this log's own is renewed."""
    receipt, proof = default_receipt_path(args.vk), default_proof_path(args.vk)
    if receipt.exists() and _receipt_log(receipt) != log_key.keyid:
        receipt, proof = default_receipt_path(args.vk, log_key.keyid), default_proof_path(args.vk, log_key.keyid)
    if args.receipt is None:
        check_output_path(receipt, what="receipt", force=True)
    if args.proof is None:
        check_output_path(proof, what="tlog-proof", force=True)
    return Path(args.receipt or receipt), Path(args.proof or proof)


def _receipt_log(path: Path) -> str | None:
    """The log key id of the receipt at ``path``; None for a file that is no receipt."""
    try:
        return Receipt.from_json(read_bounded(path, max_bytes=MAX_RECEIPT_BYTES, what="receipt"),
                                 what=str(path)).log_keyid
    except DecodeError:
        return None


def _agree_vkey(pinned: Verifier | None, presented: Verifier) -> Verifier:
    if pinned is not None and pinned != presented:
        raise InvalidInput(f"the log signs checkpoints with {presented.encode()[:60]}…, not with the given "
                           f"--log-vkey {pinned.encode()[:60]}…")
    return presented


def _agree(pinned: PublicKey | None, presented: PublicKey) -> PublicKey:
    """Refuse, before appending anything, a log that is not the one the user named."""
    if pinned is not None and pinned != presented:
        raise InvalidInput(f"the log signs with {presented.fingerprint[:23]}…, not with the given "
                           f"--log-key {pinned.fingerprint[:23]}…")
    return presented
