"""Registry throughput: appends/s over HTTP on loopback, and time to the first cosigned receipt.

Each run starts a fresh log in its own process (``wmark log serve`` as a
library call) and drives it from this process with 1, 8 and 64 concurrent
clients: keep-alive connections driven by one asyncio loop, each posting
pre-built requests of pre-signed verification keys, the next as soon as its
previous receipt arrived, until ``--appends`` in total were registered.
Three server modes are measured in the same run:

* ``unbatched``: every request its own transaction and signed head, as the
  log worked before batches (the baseline);
* ``batched``: requests integrated in batches (one transaction, one head,
  one checkpoint per batch);
* ``batched+2w``: the same with two witnesses (in the server's process)
  cosigning every batch before its receipts return;
* ``batched+1c``: batched, with one checker process checking the posted vks
  and evaluating their beacons (``wmark log serve --checkers 1``), so the
  server's own process only frames HTTP and integrates;
* ``batched-2proc``: ``wmark log serve --workers 2``, two batching server
  processes on one port (no witnesses);
* ``batched+2w-2proc``: the same with two witnesses (in a helper process the
  server started) cosigning every batch of either worker.

After the timed window every receipt is checked, and that check is timed
and reported on its own: a tlog-proof of its vk's entry in a checkpoint the
log signed (and, with witnesses, both witnesses cosigned); a receipt that
does not verify fails the run.  Then every receipt is counted by index (none
lost, none twice), the log is checked whole, and a sample of the JSON
receipts is verified in full (tree head signature and beacon proof too).
The machine is shared: the load average before and after each run is kept,
and every row is run ``--repeat`` times (3), in rounds over all rows, and
reported as its median run with the slowest and fastest beside it: on this
2-core machine one mode's rate moved by a third between runs minutes apart.

    python benchmarks/registry.py                    # about 15 minutes
    python benchmarks/registry.py --appends 300 --clients 1,8 --repeat 1
    python benchmarks/registry.py --prefill 0,20000,100000 --modes batched,batched+1c \
        --clients 64 --out benchmarks/results/registry-prefill.json

``--prefill N,M`` runs every mode on logs that hold N and M entries already
(integrated before the server starts, not timed, in batches of
``--prefill-batch``, 8, so that they hold as many tree heads as a log grown
under load), and on a fresh log too if 0 is among them, the baseline of the
others (x fresh): an append's cost
grows with the log, since its items' commitments join an index keyed by
digest prefixes, random numbers, whose pages outgrow the cache
(docs/design.md section 4b), so a fresh log is the best case.

Prints a table and writes benchmarks/results/registry.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from wmark.errors import WmarkError
from wmark.files import atomic_write
from wmark.protocol.checkpoint import Checkpoint, Policy
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.commitment import Commitment, Scheme
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.hazmat.note import Note, Verifier
from wmark.protocol.items import ItemCommitments, TriggerKind
from wmark.protocol.keys import VK_PAYLOAD_TYPE, VerificationKey, VkRecord
from wmark.protocol.transparency import Receipt, verify_receipt, verify_tlog_proof
from wmark.registry.store import MAX_BATCH

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "registry.json"
# A log grown under load holds one tree head per batch: 64 clients with one checker gave batches of
# about 8 (409 batches for 3,000 appends, benchmarks/results/registry.json), so a prefill does the same.
PREFILL_BATCH = 8
MODES = ("unbatched", "batched", "batched+1c", "batched+2w", "batched-2proc", "batched+2w-2proc")
WORKERS = 2  # processes of the batched-2proc mode
WITNESSED = ("batched+2w", "batched+2w-2proc")
ITEMS = 100  # a typical trigger set


def signed_vks(count: int, owner: SigningKey) -> list[tuple[VerificationKey, bytes]]:
    """``count`` distinct owner-signed vks of ITEMS hash commitments (seeded: seed i -> vk i)."""
    out = []
    for i in range(count):
        commitments = tuple(
            ItemCommitments(Commitment(Scheme.HASH, hashlib.sha256(b"bench/item/%d/%d" % (i, j)).digest()),
                            Commitment(Scheme.HASH, hashlib.sha256(b"bench/label/%d/%d" % (i, j)).digest()))
            for j in range(ITEMS))
        vk = VerificationKey(scheme=Scheme.HASH, kind=TriggerKind.IMPORTED, input_shape=(1, 8, 8), num_classes=10,
                             commitments=commitments, owner=owner.public_key, vrf_key=None,
                             created="2026-01-01T00:00:00+00:00")
        out.append((vk, dsse.sign(VK_PAYLOAD_TYPE, vk.payload, owner).to_json()))
    return out


def prefill(directory: Path, count: int, owner: SigningKey, batch: int = PREFILL_BATCH) -> None:
    """Fill the log at ``directory`` (created if absent) up to ``count`` entries of ITEMS commitments
    each, none of them the measured vks' (seeded: bench/prefill/...); integrated directly in batches
    of ``batch``, as the untimed setup."""
    from wmark.registry import LogStore

    with LogStore.open(directory) as store:
        for at in range(store.size, count, batch):
            records = [VkRecord(hashlib.sha256(b"bench/prefill/vk/%d" % i).digest(), owner.public_key,
                                tuple(hashlib.sha256(b"bench/prefill/item/%d/%d" % (i, j)).digest()
                                      for j in range(ITEMS)))
                       for i in range(at, min(count, at + batch))]
            for result in store.register_many(records):
                if isinstance(result, WmarkError):
                    raise RuntimeError(f"prefill: {result}")


# --- The server process.

def serve(mode: str, directory: Path) -> None:
    from wmark.registry import LogServer, LogStore, serve_until_signalled
    from wmark.registry.cosigning import WitnessClient, WitnessSpec
    from wmark.registry.witness import Witness, WitnessServer
    from wmark.registry.workers import WorkerPool

    if mode == "witnesses":  # the two witnesses of batched+2w-2proc, in a process of their own
        log_key = Verifier.decode((directory / "log" / "log.vkey").read_text())
        servers = [WitnessServer(Witness(directory / f"w{i}", [log_key], name=f"bench.local/w{i}")) for i in (1, 2)]
        threading.Thread(target=servers[1].serve_forever, daemon=True).start()
        serve_until_signalled(servers[0], lambda: print(" ".join(s.url for s in servers), flush=True))
        return
    if mode.endswith("-2proc"):
        LogStore.open(directory / "log").close()
        witnesses: list[WitnessSpec] = []
        helper = None
        if mode == "batched+2w-2proc":
            # Not threads of this process: it forks the workers, and a fork must not copy running threads' locks.
            helper, urls = _start("witnesses", directory)
            witnesses = [(Verifier.decode((directory / f"w{i}" / "witness.vkey").read_text()), url)
                         for i, url in zip((1, 2), urls.split())]
        try:
            pool = WorkerPool(directory / "log", WORKERS, witnesses=tuple(witnesses))
            pool.serve_until_signalled(lambda: print(pool.url, flush=True))
        finally:
            if helper is not None:
                helper.terminate()
                helper.wait(30)
        return
    with LogStore.open(directory / "log") as store:
        clients: list[WitnessClient] = []
        if mode == "batched+2w":
            log_key = Verifier.decode(store.vkey)
            for i in (1, 2):
                witness = Witness(directory / f"w{i}", [log_key], name=f"bench.local/w{i}")
                server = WitnessServer(witness)
                threading.Thread(target=server.serve_forever, daemon=True).start()
                clients.append(WitnessClient(witness.verifier, server.url))
        log = LogServer(store, witnesses=tuple(clients), batching=mode != "unbatched",
                        checkers=1 if mode == "batched+1c" else 0)
        print(log.url, flush=True)
        serve_until_signalled(log)


# --- The client side.

def _start(mode: str, directory: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, __file__, "--serve", mode, str(directory)], stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()  # the witnesses' helper prints two URLs
    if not url.startswith("http://"):
        proc.kill()
        raise RuntimeError(f"the {mode} server did not start")
    return proc, url


def _processes() -> dict[int, tuple[int, int]]:
    """Every live process: its parent's pid and the user + system clock ticks it has used."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # a process that ended meanwhile
            continue
        table[int(stat.parent.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return table


def descendants(pid: int, table: dict[int, tuple[int, int]] | None = None) -> set[int]:
    """The live processes below ``pid``: its workers, witnesses and checkers."""
    table = _processes() if table is None else table
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, (parent, _) in table.items() if parent in frontier} - found
        found |= frontier
    return found


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time the process ``pid`` and its live descendants have used so far."""
    table = _processes()
    return sum(table[p][1] for p in {pid} | descendants(pid, table) if p in table) / os.sysconf("SC_CLK_TCK")


def _request(host: str, body: bytes) -> bytes:
    """One complete POST /entries, built before the timed window."""
    return (b"POST /entries HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (host.encode("ascii"), len(body))) + body


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response with a Content-Length (all our log sends).

    Written here rather than with an HTTP library: the clients share the
    machine's two cores with the server they measure, and http.client in
    threads cost about 1 ms of CPU per append (measured), a third of the
    server's own; this reads our server's answers and refuses anything else.
    """
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status, _ = (lines[0] + " ").split(" ", 2)
    if version != "HTTP/1.1" or not status.isdigit():
        raise RuntimeError(f"not an HTTP/1.1 response: {lines[0][:80]!r}")
    lengths = [line.split(":", 1)[1].strip() for line in lines[1:] if line.lower().startswith("content-length:")]
    if len(lengths) != 1 or not lengths[0].isdigit():
        raise RuntimeError("a response without one Content-Length")
    return int(status), await reader.readexactly(int(lengths[0]))


def _drive(url: str, vks: list[tuple[VerificationKey, bytes]], clients: int) -> tuple[float, float, list[bytes]]:
    """Post every signed vk over ``clients`` concurrent keep-alive connections, driven
    by one asyncio loop in this process; (seconds, client CPU seconds, receipts).

    Each connection sends its next vk as soon as its previous receipt arrived,
    as a registrant does; the receipts are checked after the timed window
    (:func:`_verify_all`), each one, and that check is timed on its own.
    """
    address = urlsplit(url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    requests = [_request(f"{host}:{port}", body) for _, body in vks]
    receipts: list[bytes | None] = [None] * len(requests)
    pending = iter(range(len(requests)))

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i in pending:  # one shared iterator: each index goes to exactly one connection
                writer.write(requests[i])
                status, content = await _response(reader)
                if status != 200:
                    raise RuntimeError(f"append {i}: HTTP {status}: {content[:200].decode('utf-8', 'replace')}")
                receipts[i] = content
        finally:
            writer.close()

    async def run() -> None:
        await asyncio.gather(*(client() for _ in range(clients)))

    started, cpu = time.perf_counter(), time.process_time()
    asyncio.run(run())
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    missing = [i for i, r in enumerate(receipts) if r is None]
    if missing:
        raise RuntimeError(f"{len(missing)} append(s) got no receipt (first: {missing[0]})")
    return elapsed, cpu, [r for r in receipts if r is not None]


def _verify_all(vks: list[tuple[VerificationKey, bytes]], receipts: list[bytes], policy: Policy) -> list[Receipt]:
    """Check every receipt as its registrant would: a tlog-proof of its own vk's entry in a
    checkpoint the log signed and ``policy``'s quorum of witnesses cosigned (verify_tlog_proof)."""
    parsed = []
    for i, ((vk, _), data) in enumerate(zip(vks, receipts)):
        receipt = Receipt.from_json(data, what=f"receipt {i}")
        try:
            verify_tlog_proof(receipt.tlog_proof(), vk, policy)
        except WmarkError as exc:
            raise RuntimeError(f"receipt {i} does not verify: {exc}") from None
        parsed.append(receipt)
    return parsed


@dataclass(frozen=True)
class _MemoPolicy(Policy):
    """A Policy that checks each distinct checkpoint's signatures once: a batch's receipts
    share one checkpoint, and a registrant who has checked those bytes need not again.
    Everything else verify_tlog_proof checks (the entry, its inclusion) is per receipt."""

    _seen: dict[tuple[bytes, str], tuple[Checkpoint, dict[str, int]]] = dataclass_field(
        default_factory=dict, compare=False, hash=False, repr=False)

    def verify(self, note: Note, *, what: str = "checkpoint") -> tuple[Checkpoint, dict[str, int]]:
        key = (note.encode(), what)
        if key not in self._seen:
            self._seen[key] = super().verify(note, what=what)
        return self._seen[key]


def _policy(mode: str, directory: Path) -> Policy:
    """What the clients require of every receipt: the log's checkpoint signature, and both
    witnesses' cosignatures in the witnessed modes (keys read from the files the server wrote)."""
    witnesses = tuple(Verifier.decode((directory / f"w{i}" / "witness.vkey").read_text())
                      for i in (1, 2)) if mode in WITNESSED else ()
    return Policy(Verifier.decode((directory / "log" / "log.vkey").read_text()), witnesses, len(witnesses))


def _check(mode: str, directory: Path, vks, parsed: list[Receipt], first: int = 0) -> int:
    """Every vk has one distinct index from ``first`` on; a sample verifies offline. Returns the
    batch count (the prefill's excluded)."""
    from wmark.registry import LogStore

    receipts = parsed
    indices = sorted(r.entry.index for r in parsed)
    if indices != list(range(first, first + len(receipts))):
        raise RuntimeError(f"{mode}: receipts are not one per index {first}..{first + len(receipts) - 1}")
    with LogStore.open(directory / "log", create=False) as store:
        store.check()
        policy = _policy(mode, directory)
        for (vk, _), receipt in list(zip(vks, parsed))[:: max(1, len(parsed) // 20)]:
            verify_receipt(receipt, vk, store.public_key, policy)
        return len([size for size in store.checkpoint_sizes() if size > first])


def first_cosigned_receipt_ms(vks, repeat: int = 5) -> list[float]:
    """Latency of one registration, alone, on a log with two witnesses (fresh log, fresh witnesses)."""
    times = []
    with tempfile.TemporaryDirectory(prefix="wmark-bench-first-") as tmp:
        proc, url = _start("batched+2w", Path(tmp))
        try:
            with httpx.Client(base_url=url, timeout=60, trust_env=False) as http:
                for _, body in vks[:repeat]:
                    started = time.perf_counter()
                    response = http.post("/entries", content=body, headers={"Content-Type": "application/json"})
                    times.append((time.perf_counter() - started) * 1000)
                    note = Receipt.from_json(response.raise_for_status().content).note()
                    assert note is not None and len(note.signatures) == 3, "two cosignatures expected"
        finally:
            proc.terminate()
            proc.wait(30)
    return times


def _run(mode: str, n: int, vks: list[tuple[VerificationKey, bytes]], prefilled: int,
         filled: Path | None) -> dict:
    """One timed run of ``mode`` with ``n`` clients on a fresh log, or on a copy of the log ``filled``."""
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="wmark-bench-") as tmp:
        if filled is not None:
            shutil.copytree(filled, Path(tmp) / "log")
        proc, url = _start(mode, Path(tmp))
        try:
            server_cpu = _cpu_seconds(proc.pid)
            elapsed, client_cpu, raw = _drive(url, vks, n)
            server_cpu = _cpu_seconds(proc.pid) - server_cpu
        finally:
            proc.terminate()
            proc.wait(60)
        policy = _policy(mode, Path(tmp))
        checked, check_cpu = time.perf_counter(), time.process_time()
        receipts = _verify_all(vks, raw, _MemoPolicy(policy.log, policy.witnesses, policy.quorum))
        check_s, check_cpu = time.perf_counter() - checked, time.process_time() - check_cpu
        batches = _check(mode, Path(tmp), vks, receipts, prefilled)
    return {"appends": len(receipts), "seconds": elapsed, "appends_per_second": len(receipts) / elapsed,
            "batches": batches,
            # CPU per append does not depend on the other tenants' load the way
            # appends/s does (the server's includes its in-process witnesses).
            "server_cpu_ms_per_append": 1000 * server_cpu / len(receipts),
            "client_cpu_ms_per_append": 1000 * client_cpu / len(receipts),
            # Every receipt checked after the timed window, by this process alone.
            "receipt_check_ms_per_append": 1000 * check_cpu / len(receipts),
            "receipt_check_seconds": check_s,
            "load_before": load_before, "load_after": os.getloadavg()[0]}


def _summary(mode: str, n: int, prefilled: int, done: list[dict]) -> dict:
    """One row of the table: the median run of each figure, the slowest and fastest rate, every run kept."""
    row: dict = {"mode": mode, "clients": n, "prefill": prefilled, "repeats": len(done)}
    for name in done[0]:
        row[name] = statistics.median(run[name] for run in done)
    rates = [run["appends_per_second"] for run in done]
    row["appends_per_second_min"], row["appends_per_second_max"] = min(rates), max(rates)
    # What the CPU alone allows when server and clients share this machine's
    # cores and nothing else runs: a bound derived from the two medians above.
    row["cpu_bound_appends_per_second"] = (1000 * (os.cpu_count() or 1)
                                           / (row["server_cpu_ms_per_append"] + row["client_cpu_ms_per_append"]))
    row["runs"] = done
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--appends", type=int, default=3000,
                        help="registrations per run (default: %(default)s, enough for the commitment index to "
                             "merge its memtable twice, as a running log does every 1,024 appends)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each mode and client count, reported as their median, slowest and fastest "
                             "(default: %(default)s)")
    parser.add_argument("--clients", default="1,8,64", help="concurrent clients, comma-separated")
    parser.add_argument("--modes", default=",".join(MODES), help="server modes, comma-separated")
    parser.add_argument("--prefill", default="0", metavar="N[,N...]",
                        help="entries already in the log when each run starts, comma-separated: every mode runs on "
                             "a log of each size (default: %(default)s, a fresh log); a fresh log's rows are the "
                             "baseline of the others' x fresh")
    parser.add_argument("--prefill-batch", type=int, default=PREFILL_BATCH, metavar="N",
                        help="entries per batch while prefilling, each batch one tree head as under load "
                             "(default: %(default)s, what 64 clients gave)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file (.md beside it)")
    parser.add_argument("--serve", nargs=2, metavar=("MODE", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve[0], Path(args.serve[1]))
        return 0
    try:
        clients = [int(c) for c in args.clients.split(",")]
        sizes = sorted({int(size) for size in args.prefill.split(",")})
    except ValueError:
        parser.error("--clients and --prefill take whole numbers, comma-separated")
    modes = args.modes.split(",")
    if (args.appends < 1 or args.repeat < 1 or sizes[0] < 0 or any(c < 1 for c in clients)
            or not set(modes) <= set(MODES) or not 1 <= args.prefill_batch <= MAX_BATCH):
        parser.error(f"--appends, --repeat and --clients must be >= 1, --prefill >= 0, --prefill-batch 1 to "
                     f"{MAX_BATCH}, --modes among "
                     + ",".join(MODES))

    started = time.perf_counter()
    owner = SigningKey.generate()
    vks = signed_vks(args.appends, owner)
    # Filled once, each size from the one below it, and copied into every run: filling takes minutes at 100,000.
    fills = tempfile.TemporaryDirectory(prefix="wmark-bench-prefill-")
    filled: dict[int, Path | None] = {0: None}
    below: Path | None = None
    for size in (size for size in sizes if size):
        filled[size] = Path(fills.name) / str(size)
        if below is not None:
            shutil.copytree(below, filled[size])
        prefill(filled[size], size, owner, args.prefill_batch)
        below = filled[size]
    runs: dict[tuple[int, str, int], list[dict]] = {(size, mode, n): [] for size in sizes for mode in modes
                                                    for n in clients}
    # Round after round over every (log size, mode, clients), not each repeated at once: the
    # shared machine's speed drifts over minutes, and drift then touches all rows alike.
    for round_ in range(1, args.repeat + 1):
        for size, mode, n in runs:
            run = _run(mode, n, vks, size, filled[size])
            runs[size, mode, n].append(run)
            print(f"{mode:<11} {n:>3} clients  {run['appends_per_second']:8.1f} appends/s  "
                  f"({run['appends']} in {run['seconds']:.1f} s, {run['batches']} batches, server CPU "
                  f"{run['server_cpu_ms_per_append']:.2f} ms/append, log of {size}, load {run['load_before']:.1f}; "
                  f"round {round_} of {args.repeat})", flush=True)
    rows = [_summary(mode, n, size, done) for (size, mode, n), done in runs.items()]
    fills.cleanup()
    first = first_cosigned_receipt_ms(vks)
    baseline = {(r["prefill"], r["clients"]): r["appends_per_second"] for r in rows if r["mode"] == "unbatched"}
    fresh = {(r["mode"], r["clients"]): r["appends_per_second"] for r in rows if r["prefill"] == 0}
    for r in rows:
        r["x_unbatched"] = (r["appends_per_second"] / baseline[r["prefill"], r["clients"]]
                            if (r["prefill"], r["clients"]) in baseline else None)
        r["x_fresh"] = (r["appends_per_second"] / fresh[r["mode"], r["clients"]]
                        if r["prefill"] and (r["mode"], r["clients"]) in fresh else None)

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout)
    result = {
        "benchmark": "registry",
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "commit": commit + ("-dirty" if dirty else ""),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "note": "shared machine: see load_before/load_after per run"},
        "prefill_batch": args.prefill_batch,
        "seeds": "vk i commits to sha256(bench/item/i/j), j < 100; one fresh owner key per run",
        "method": "clients are keep-alive connections driven by one asyncio loop, posting pre-built requests of "
                  "pre-signed vks, each its next as soon as its receipt arrived; every receipt is checked after the "
                  "timed window (verify_tlog_proof against the log key and the witness quorum), timed separately "
                  "(receipt_check_ms_per_append); the server is a separate process; baselines in the same run: "
                  "unbatched on a log of the same size (x_unbatched), the same mode on a fresh log (x_fresh); each "
                  "row the median of --repeat runs taken in rounds over all rows (runs: each one); CPU per append "
                  "from /proc (server, its workers and witnesses) and process_time (clients)",
        "results": rows,
        "first_cosigned_receipt_ms": first,
        "elapsed_seconds": time.perf_counter() - started,
    }
    atomic_write(args.out, (json.dumps(result, indent=2) + "\n").encode("utf-8"))
    lines = [f"# Registry throughput ({result['date']}, commit {result['commit'][:12]})", "",
             f"`{result['command']}` on {result['machine']['platform']}, {result['machine']['cpus']} CPUs "
             f"(shared; load average per run below); each run on a fresh log, or on a copy of one that holds "
             f"the entries in the log column already.", "",
             f"Each row is the median of {args.repeat} runs of {args.appends} appends (slowest and fastest beside it), "
             f"the runs taken in rounds over all rows.", "",
             "| log | mode | clients | appends/s | slowest-fastest | x unbatched | x fresh | batches "
             "| server CPU ms/append | client CPU ms/append | receipt check ms/append | CPU-bound appends/s "
             "| load before/after |",
             "|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        ratio = f"{r['x_unbatched']:.2f}" if r["x_unbatched"] else "-"
        vs_fresh = f"{r['x_fresh']:.2f}" if r["x_fresh"] else "-"
        lines.append(f"| {r['prefill']} | {r['mode']} | {r['clients']} | {r['appends_per_second']:.1f} | "
                     f"{r['appends_per_second_min']:.0f}-{r['appends_per_second_max']:.0f} | {ratio} | {vs_fresh} | "
                     f"{r['batches']:.0f} | "
                     f"{r['server_cpu_ms_per_append']:.2f} | {r['client_cpu_ms_per_append']:.2f} | "
                     f"{r['receipt_check_ms_per_append']:.2f} | {r['cpu_bound_appends_per_second']:.0f} | {r['load_before']:.1f} / {r['load_after']:.1f} |")
    lines += ["", "Time to a cosigned receipt (one registration alone, two witnesses): "
              + ", ".join(f"{t:.1f}" for t in first) + " ms", "",
              f"CPU-bound appends/s = {os.cpu_count()} cores x 1000 / (server + client CPU ms per append): what "
              f"the measured CPU cost allows with every core busy on this benchmark alone (a derived bound, not a "
              f"measured rate; on a shared machine the CPU figures themselves rise with the load). Client CPU is the "
              f"timed window's; every receipt is then checked (tlog-proof under the witness policy) after it, "
              f"at the receipt-check cost shown, which a registrant pays on its own machine."]
    atomic_write(args.out.with_suffix(".md"), ("\n".join(lines) + "\n").encode("utf-8"))
    print("\n".join(lines[6:]))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')} ({result['elapsed_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
