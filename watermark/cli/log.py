"""``wmark log``: run a transparency log for several parties, or check one."""

from __future__ import annotations

import argparse

from wmark.console import EXIT_OK, EXIT_REJECTED, add_command
from wmark.protocol.transparency import format_time
from wmark.registry import LogCorrupted, LogServer, LogStore, serve_until_signalled

EPILOG = """\
examples:
  wmark log serve --log registry --port 8470     # then: wmark register --log-url http://127.0.0.1:8470 ...
  wmark log check --log registry

serve listens on 127.0.0.1 only (put a TLS proxy in front to share it wider);
SIGTERM or Ctrl-C stops it after the append in progress. The log's public
key, which verifiers need, is LOG_DIR/log-key.pub.

check recomputes the Merkle tree from every stored entry and holds it against
every signed tree head: exit 0 when all match, 1 when the database was edited
behind the log's back (naming the entry)."""


def register(subparsers) -> None:
    p = add_command(subparsers, "log",
                    description="Run or audit the append-only Merkle log that fixes verification keys "
                                "in time (RFC 9162 hashing, SQLite storage).", epilog=EPILOG, func=run)
    actions = p.add_subparsers(dest="log_action", metavar="ACTION", required=True)
    serve = actions.add_parser("serve", help="share a log over HTTP on loopback", formatter_class=p.formatter_class,
                               description="Serve the log in LOG_DIR (created on first use) until SIGTERM.")
    check = actions.add_parser("check", help="verify a log's whole stored tree", formatter_class=p.formatter_class,
                               description="Recompute the tree from the stored entries and compare it with "
                                           "every signed tree head.")
    for action, func in ((serve, _serve), (check, _check)):
        action.add_argument("--log", required=True, metavar="DIR", help="the log directory")
        action.set_defaults(action=func)
    serve.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1; 0 picks a free one")
    serve.add_argument("--verbose", action="store_true", help="print every request")


def run(args: argparse.Namespace) -> int:
    return args.action(args)


def _serve(args: argparse.Namespace) -> int:
    with LogStore.open(args.log) as store:
        server = LogServer(store, args.port, verbose=args.verbose)
        print(f"wmark log: {store.directory}, {store.size} entries, key {store.public_key.fingerprint}", flush=True)
        print(f"wmark log: public key {store.public_key_path}", flush=True)
        print(f"wmark log: serving at {server.url}", flush=True)
        stopped_by = serve_until_signalled(server)
        print(f"wmark log: stopped by {stopped_by.name} with {store.size} entries", flush=True)
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    try:
        with LogStore.open(args.log, create=False, check=False) as store:
            head = store.check()
            fingerprint = store.public_key.fingerprint
    except LogCorrupted as exc:
        print(f"{args.log}: CORRUPTED: {exc}")
        return EXIT_REJECTED
    print(f"{args.log}: intact: every entry matches its leaf and every signed tree head the recomputed tree")
    print(f"  size     {head.size} entries, latest signed {format_time(head.time_ms)}")
    print(f"  root     {head.root.hex()}")
    print(f"  log key  {fingerprint}")
    return EXIT_OK
