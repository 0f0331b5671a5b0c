"""``wmark log``: run a transparency log for several parties, witness one, export it, or check one."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from wmark.console import EXIT_OK, EXIT_REJECTED, add_command, add_json_argument, plural, write_json_report
from wmark.errors import InvalidInput
from wmark.files import atomic_write
from wmark.protocol import tiles
from wmark.protocol.hazmat.note import load_verifier
from wmark.protocol.transparency import format_time
from wmark.registry import LogCorrupted, LogServer, LogStore, serve_until_signalled
from wmark.registry.cosigning import WitnessSpec, witness_clients
from wmark.registry.witness import Witness, WitnessServer
from wmark.registry.workers import WorkerPool

EPILOG = """\
examples:
  wmark log serve --log registry --port 8470     # then: wmark register --log-url http://127.0.0.1:8470 ...
  wmark log serve --log registry --witness w1/witness.vkey=http://127.0.0.1:8471 --witness ...
  wmark log witness --dir w1 --log-vkey registry/log.vkey --port 8471
  wmark log export --log registry site/          # checkpoint and tiles for any static web server
  wmark log check --log registry

serve listens on 127.0.0.1 only (put a TLS proxy in front to share it wider);
SIGTERM or Ctrl-C stops it after the batch in progress. It serves the
C2SP checkpoint at /checkpoint and the tree as tlog-tiles under /tile/.
The keys verifiers need are LOG_DIR/log.vkey (checkpoints, tlog-proofs)
and LOG_DIR/log-key.pub (JSON receipts).

check recomputes the Merkle tree from every stored entry and holds it against
every signed tree head and checkpoint: exit 0 when all match, 1 when the
database was edited behind the log's back (naming the entry); it reads every
entry, and says on stderr how far it got every 10,000."""


def register(subparsers) -> None:
    p = add_command(subparsers, "log",
                    description="Run or audit the append-only Merkle log that fixes verification keys "
                                "in time (RFC 9162 hashing, C2SP checkpoints and tiles, SQLite storage).",
                    epilog=EPILOG, func=run)
    actions = p.add_subparsers(dest="log_action", metavar="ACTION", required=True)
    fmt = p.formatter_class
    serve = actions.add_parser("serve", help="share a log over HTTP on loopback", formatter_class=fmt,
                               description="Serve the log in LOG_DIR (created on first use) until SIGTERM.")
    check = actions.add_parser("check", help="verify a log's whole stored tree", formatter_class=fmt,
                               description="Recompute the tree from the stored entries and compare it with "
                                           "every signed tree head and checkpoint.")
    export = actions.add_parser("export", help="write the checkpoint and tiles for a static web server",
                                formatter_class=fmt, description="Write OUT/checkpoint, OUT/tile/... and "
                                                                 "OUT/log.vkey as tlog-tiles lays them out.")
    witness = actions.add_parser("witness", help="run a tlog-witness that cosigns consistent checkpoints",
                                 formatter_class=fmt, description="Serve POST /add-checkpoint (c2sp.org/"
                                 "tlog-witness) for the given logs until SIGTERM.")
    for action, func in ((serve, _serve), (check, _check), (export, _export)):
        action.add_argument("--log", required=True, metavar="DIR", help="the log directory")
        action.set_defaults(action=func)
    export.add_argument("out", metavar="OUT", help="the directory to write (created if absent)")
    check.set_defaults(outputs=())
    add_json_argument(check)
    serve.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1; 0 picks a free one")
    serve.add_argument("--verbose", action="store_true", help="print every request")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="server processes sharing the port (Linux; default 1): each verifies and batches "
                            "appends on its own core")
    serve.add_argument("--checkers", type=int, default=0, metavar="N",
                       help="processes beside each server process that check posted vks' owner signatures and "
                            "evaluate their beacons (default 0: the server does it): the server's process then "
                            "only serves HTTP and integrates batches (for --checkers 1 against 0 on two cores see "
                            "benchmarks/results/registry.md, mode batched+1c)")
    serve.add_argument("--origin", help="a new log's checkpoint origin (default: wmark.local/log/KEYID)")
    serve.add_argument("--witness", action="append", default=[], metavar="VKEY=URL",
                       help="a witness to collect cosignatures from after each batch (repeat for several): "
                            "its verifier key (file or inline) and its URL")
    witness.add_argument("--dir", required=True, help="the witness's directory (key and state)")
    witness.add_argument("--log-vkey", action="append", required=True, metavar="VKEY",
                         help="a log to witness: its verifier key, file or inline (repeat for several)")
    witness.add_argument("--name", help="a new witness's key name (default: wmark.local/witness/ID)")
    witness.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1; 0 picks a free one")
    witness.add_argument("--verbose", action="store_true", help="print every request")
    witness.set_defaults(action=_witness)


def run(args: argparse.Namespace) -> int:
    return args.action(args)


def _witness_spec(spec: str) -> WitnessSpec:
    vkey, sep, url = spec.partition("=")
    if not sep or not url.startswith(("http://", "https://")):
        raise InvalidInput(f"--witness {spec[:80]!r}: expected VKEY=http://HOST:PORT")
    return load_verifier(vkey, what="witness key"), url


def _serve(args: argparse.Namespace) -> int:
    witnesses = tuple(_witness_spec(spec) for spec in args.witness)
    if args.workers != 1:
        return _serve_workers(args, witnesses)
    with LogStore.open(args.log, origin=args.origin) as store:
        server = LogServer(store, args.port, verbose=args.verbose, witnesses=witness_clients(witnesses),
                           checkers=args.checkers)
        print(f"wmark log: {store.directory}, {plural(store.size, 'entry', 'entries')}, origin {store.origin}",
              flush=True)
        print(f"wmark log: verifier key {store.vkey} ({store.directory / 'log.vkey'})", flush=True)
        print(f"wmark log: public key {store.public_key_path} ({store.public_key.fingerprint})", flush=True)
        ready = f"wmark log: {plural(len(witnesses), 'witness', 'witnesses')}; serving at {server.url}"
        stopped_by = serve_until_signalled(server, lambda: print(ready, flush=True))
        print(f"wmark log: stopped by {stopped_by.name} with {plural(store.size, 'entry', 'entries')}", flush=True)
    return EXIT_OK


def _serve_workers(args: argparse.Namespace, witnesses: tuple[WitnessSpec, ...]) -> int:
    with LogStore.open(args.log, origin=args.origin) as store:
        print(f"wmark log: {store.directory}, {plural(store.size, 'entry', 'entries')}, origin {store.origin}",
              flush=True)
        print(f"wmark log: verifier key {store.vkey} ({store.directory / 'log.vkey'})", flush=True)
        print(f"wmark log: public key {store.public_key_path} ({store.public_key.fingerprint})", flush=True)
    # Opened and checked above, closed before the workers fork.
    pool = WorkerPool(args.log, args.workers, args.port, verbose=args.verbose, witnesses=witnesses,
                      checkers=args.checkers)
    stopped_by = pool.serve_until_signalled(
        lambda: print(f"wmark log: {args.workers} workers, {plural(len(witnesses), 'witness', 'witnesses')}; "
                      f"serving at {pool.url}", flush=True))
    with LogStore.open(args.log, create=False, check=False) as store:
        print(f"wmark log: stopped by {stopped_by.name} with {plural(store.size, 'entry', 'entries')}", flush=True)
    return EXIT_OK


def _witness(args: argparse.Namespace) -> int:
    logs = [load_verifier(v, what="log key") for v in args.log_vkey]
    witness = Witness(args.dir, logs, name=args.name)
    server = WitnessServer(witness, args.port, verbose=args.verbose)
    print(f"wmark witness: verifier key {witness.verifier.encode()} ({Path(args.dir) / 'witness.vkey'})",
          flush=True)
    stopped_by = serve_until_signalled(
        server, lambda: print(f"wmark witness: {plural(len(logs), 'log')}; serving at {server.url}", flush=True))
    print(f"wmark witness: stopped by {stopped_by.name}", flush=True)
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    out = Path(args.out)
    with LogStore.open(args.log, create=False) as store:
        note, size = store.checkpoint(), store.size
        written = 0
        # Every full tile and bundle, and the partial ones of every checkpoint
        # whose full tile does not exist yet (tlog-tiles "Partial Tiles").
        wanted: set[tuple[int, int, int]] = set()
        for checkpoint_size in store.checkpoint_sizes() + [size]:
            level = 0
            while checkpoint_size >> (tiles.TILE_HEIGHT * level):
                for index in range(((checkpoint_size >> (tiles.TILE_HEIGHT * level)) + tiles.TILE_WIDTH - 1)
                                   // tiles.TILE_WIDTH):
                    width = tiles.width_at(checkpoint_size, level, index)
                    if tiles.width_at(size, level, index) == tiles.TILE_WIDTH:
                        width = tiles.TILE_WIDTH
                    wanted.add((level, index, width))
                level += 1
        for level, index, width in sorted(wanted):
            target = out / tiles.tile_path(level, index, width)
            if not target.exists():
                atomic_write(target, store.tile(level, index, width))
                written += 1
            if level == 0:
                target = out / tiles.bundle_path(index, width)
                if not target.exists():
                    atomic_write(target, store.entry_bundle(index, width))
                    written += 1
        atomic_write(out / "log.vkey", store.vkey.encode("ascii") + b"\n")
        atomic_write(out / "checkpoint", note.encode())
    print(f"{out}: checkpoint of size {size} and {written} new tile(s) and bundle(s) written")
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    try:
        with LogStore.open(args.log, create=False, check=False) as store:
            started = time.monotonic()
            head = store.check(lambda checked, stored: print(
                f"wmark log check: {checked:,} of {stored:,} entries checked, {time.monotonic() - started:.0f} s",
                file=sys.stderr, flush=True))
            fingerprint, vkey = store.public_key.fingerprint, store.vkey
    except LogCorrupted as exc:
        print(f"{args.log}: CORRUPTED: {exc}")
        write_json_report(args, _check_report(args.log, None, str(exc)))
        return EXIT_REJECTED
    print(f"{args.log}: intact: every entry matches its leaf, and every signed tree head and checkpoint "
          f"the recomputed tree")
    print(f"  size     {plural(head.size, 'entry', 'entries')}, latest signed {format_time(head.time_ms)}")
    print(f"  root     {head.root.hex()}")
    print(f"  log key  {fingerprint}")
    print(f"  vkey     {vkey}")
    write_json_report(args, _check_report(args.log, {"size": head.size, "time": format_time(head.time_ms),
                                                     "time_ms": head.time_ms, "root": head.root.hex(),
                                                     "log_key": fingerprint, "vkey": vkey}, None))
    return EXIT_OK


def _check_report(log: str, head: dict[str, object] | None, corruption: str | None) -> dict[str, object]:
    """``log check --json``: the verdict on the stored tree, and its latest signed head when intact."""
    return {"type": "wmark/log-check-report", "version": 1, "log": log, "intact": corruption is None,
            "corruption": corruption, "head": head}

