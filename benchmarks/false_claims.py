"""False claims of ownership against a watermarked digits model.

Runs every false-claim scenario of tests/adversarial/, with the very code the
tests run (wmark/harness/claims.py), at larger sizes than the default test run:

* random claim: fresh derived keys never embedded, at k = 20 and k = n;
* ownership piracy: an imported key committing to the stolen model's own
  answers, and a pirate grinding --keys whole derived keys for the one the
  model agrees with most, then splicing in items of other keys;
* forging with adversarial examples (targeted PGD), imported and derived;
* replay of a public verification's openings, imported and derived;
* a transplanted key (the owner's commitments re-signed);
* a greedy verifier against the leakage budget;
* false accusation: --innocent models trained without any watermark, from
  seeds of their own with the full recipe, challenged at k = 20 and k = n;
* registry-bound labels (docs/design.md section 2), each beside the same
  claim under committed labels: (a) a ZK owner Poseidon-committing ordinary
  digits with their true classes, (b) the same as an imported set without
  --p0, (c) imported piracy, forging and replay, (d) --regrind re-registrations
  for a lucky beta, (e) a receipt with one bit of beta or of its proof edited,
  (f) a log returning another entry's beta (``--registry-only`` runs just these).

The owner's key (n = 100 derived items) is embedded in a fresh digits model,
registered first in a fresh log, and the owner's own claim rests on it.  Keys
come from the OS CSPRNG, so matches and p-values vary from run to run; the
models and the attackers' own images are seeded.

    python benchmarks/false_claims.py              # about 5 minutes on 2 idle cores
    python benchmarks/false_claims.py --keys 2000 --innocent 5

Prints the table and writes false_claims.json and false_claims.md to --out
(default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from wmark.errors import RemoteProtocolError, WmarkError
from wmark.files import atomic_write
from wmark.harness.claims import (
    IMPORTED_P0,
    NUM_CLASSES,
    SHAPE,
    Claim,
    Contest,
    Keys,
    OnRecord,
    agreement,
    attacker_images,
    bound_replay,
    claim,
    claim_with_own_prover,
    classify,
    commit_bound,
    contest,
    embed_after_registration,
    forge_derived,
    forge_imported,
    fresh_derived,
    greedy_verifier,
    grind_derived,
    innocent_model,
    natural_images,
    on_record,
    pirate_imported,
    public_claim,
    register,
    registered,
    regrind,
    replay_derived,
    replay_imported,
    save_pair,
    smuggle_images,
    splice,
    task_accuracy,
    transplant,
    zk_claim,
)
from wmark.protocol.beacon import Beacon, LabelSource
from wmark.protocol.decision import DEFAULT_LAMBDA, format_probability, tail, threshold
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.keyfile import load_marking_key
from wmark.protocol.keygen import keygen_derived
from wmark.protocol.session import CAVEAT_IMPORTED, CAVEAT_UNREGISTERED
from wmark.protocol.transparency import verify_receipt
from wmark.prover.ledger import Outcome
from wmark.registry import LogStore
from wmark.watermark.datasets import load_task
from wmark.watermark.embed import default_recipe, embed, start_model
from wmark.watermark.modelio import load_model, save_model
from wmark.watermark.triggers import trigger_set_from_marking_key

N = 100
K = 20


@dataclass
class Row:
    """One line of the table."""

    scenario: str
    protocol_alone: str
    decided_by: str
    outcome: str
    matches: str = "-"
    p_value: str = "-"


def error_line(output: str) -> str:
    return next((line.split("error: ", 1)[1] for line in output.splitlines() if "error: " in line), output.strip())


CAVEATS = ((CAVEAT_IMPORTED, "imported set, rests on registration time"),
           (CAVEAT_UNREGISTERED, "no receipt, ownership unproven"))


def says(result: Claim) -> tuple[str, str, str]:
    """What a claim came to by the protocol alone: text (with the caveats of an
    acceptance), matches / k (tau), p-value."""
    if result.code == 2:
        return f"invalid: {error_line(result.output)}", "-", "-"
    v = result.verdict
    notes = [name for caveat, name in CAVEATS if caveat in v.caveats] if v.accepted else []
    text = ("ACCEPTED" if v.accepted else "REJECTED") + (f" (caveat: {'; '.join(notes)})" if notes else "")
    return text, f"{v.matches}/{v.k} (tau {v.tau})", v.p_value


def contested(scenario: str, record: OnRecord, result: Contest) -> Row:
    text, matches, p = says(result.claim)
    mine, theirs = record.claim.verdict.registration, result.claim.verdict.registration
    winner = result.winner(record)
    return Row(scenario, text,
               f"registration: attacker's entry {theirs.index} after the owner's entry {mine.index}; "
               f"`dispute` names the {winner}",
               "claim fails (owner wins the dispute)" if winner == "owner" else f"CLAIM NOT DEFEATED ({winner})",
               matches, p)


def rejected_or_not(result: Claim) -> str:
    return "rejected" if result.code == 1 else f"NOT REJECTED (exit {result.code})"


def build_world(tmp: Path) -> tuple[OnRecord, Path, Keys]:
    owner = SigningKey.generate()
    pair = keygen_derived(owner=owner, n=N, num_classes=NUM_CLASSES, input_shape=SHAPE)
    keys = save_pair(tmp / "keys", owner, pair)
    task = load_task("digits")
    marked = embed(start_model(task), task, trigger_set_from_marking_key(pair.marking_key), default_recipe("digits"),
                   vk_digest=pair.verification_key.digest)
    print(f"marked model: test accuracy {marked.evaluation.test.accuracy:.4f}, trigger accuracy "
          f"{marked.evaluation.triggers.accuracy:.2f}", flush=True)
    save_model(tmp / "marked", marked.model)
    return on_record(keys.root, tmp / "marked", tmp / "owner"), tmp / "marked", keys


def random_claims(model: Path, tmp: Path, count: int) -> tuple[list[Row], list[dict]]:
    rows, runs = [], []
    for k in (K, N):
        results = [claim(fresh_derived(tmp / f"random-{k}-{i}", n=N), model, tmp, f"random-{k}-{i}", k=k, budget="1")
                   for i in range(count)]
        runs += [{"k": k, "code": r.code, "matches": r.verdict.matches, "p_value": r.verdict.p_value} for r in results]
        worst = max(results, key=lambda r: r.verdict.matches)
        text, matches, p = says(worst)
        rows.append(Row(f"random claim: {count} fresh derived keys, k = {k} (the best shown)", text,
                        "decision rule", "all rejected" if all(r.code == 1 for r in results) else "NOT ALL REJECTED",
                        matches, p))
    return rows, runs


def derived_piracy(model: Path, tmp: Path, keys: int, n: int) -> tuple[list[Row], dict]:
    def progress(done: int) -> None:
        if done % 100 == 0:
            print(f"  ground {done} of {keys} keys", flush=True)

    grind = grind_derived(model, keys=keys, n=n, progress=progress)
    best = claim(grind.save_best(tmp / "best"), model, tmp, "best", k=n, budget="1")
    tau = threshold(n, Fraction(1, NUM_CLASSES))
    assert tau is not None
    bound = keys * tail(tau, n, Fraction(1, NUM_CLASSES))
    text, matches, p = says(best)
    rows = [Row(f"piracy, derived: best of {keys} whole keys (n = k = {n}) ground against the stolen model", text,
                f"decision rule: P[any of {keys} keys reaches tau] <= {format_probability(bound)}",
                rejected_or_not(best), matches, p)]
    spliced, swapped = splice(grind, tmp / "spliced")
    would = int(agreement(load_model(model), load_marking_key(spliced.mk, None)).sum())
    redrawn = claim(spliced, model, tmp, "spliced", k=n, budget="1")
    rows.append(Row(f"piracy, derived: the best key with {swapped} items swapped for other keys' items the model "
                    f"agrees with ({would}/{n} would match)", says(redrawn)[0], "VRF check of every opening",
                    "reveal refused, no verdict" if redrawn.code == 2 else f"NOT REFUSED (exit {redrawn.code})"))
    observed = Counter(grind.matches.tolist())
    p0 = 1 / NUM_CLASSES
    cost = {"keys": keys, "n": n, "seconds": round(grind.seconds, 1),
            "ms_per_key": round(1000 * grind.seconds / keys, 1),
            # Under H0 a key's matches are Binomial(n, 1/L), whatever the model answers.
            "matches_histogram": {str(m): {"observed": observed.get(m, 0),
                                           "expected": round(keys * math.comb(n, m) * p0**m * (1 - p0)**(n - m), 1)}
                                  for m in range(max(observed) + 1)},
            "best_matches": int(grind.matches.max()), "best_p_value": best.verdict.p_value, "tau": tau,
            "bound_any_key_reaches_tau": format_probability(bound), "spliced_items": swapped}
    return rows, cost


def forging(record: OnRecord, model: Path, tmp: Path) -> list[Row]:
    forgery = forge_imported(tmp / "forger", model, n=N, seed=2)
    rows = [contested(f"forging, imported: PGD toward chosen labels ({forgery.hit_rate:.0%} of {N} images hit)",
                      record, contest(record, forgery.keys, model, tmp, "forger", p0=IMPORTED_P0))]
    derived, pair, identity = forge_derived(tmp / "forger-derived", model, n=K)
    result = claim(derived.keys, model, tmp, "forger-derived", k=K, budget="1")
    try:
        smuggle_images(pair, identity, derived.images, model)
        smuggled = "PERTURBED IMAGES ACCEPTED"
    except RemoteProtocolError as exc:
        smuggled = f"a reveal carrying them is refused ({str(exc).split(': ', 1)[1]})"
    text, matches, p = says(result)
    rows.append(Row(f"forging, derived: PGD on the VRF's images toward the VRF's labels ({derived.hit_rate:.0%} hit)",
                    text, f"the verifier renders the images from the VRF outputs; {smuggled}",
                    rejected_or_not(result), matches, p))
    return rows


def replays(record: OnRecord, model: Path, tmp: Path) -> list[Row]:
    public = public_claim(record.keys, model, tmp, log=record.log)
    rows = [contested("replay, imported: the openings of a public verification, committed by a thief", record,
                      contest(record, replay_imported(tmp / "replay", public.transcript), model, tmp, "replay",
                              p0=IMPORTED_P0))]
    code, out = claim_with_own_prover(replay_derived(tmp / "replay-derived", public.transcript), model, tmp,
                                      "replay-derived")
    rows.append(Row("replay, derived: the same under the owner's VRF key, re-committed and re-signed",
                    f"invalid: {error_line(out)}" if code == 2 else f"NOT REFUSED (exit {code})",
                    "VRF input names the owner's key: the proofs do not verify for another signer",
                    "reveal refused, no verdict" if code == 2 else "NOT DEFEATED"))
    thief = transplant(tmp / "transplant", public.transcript)
    code, out = register(thief, record.log)
    refused = (f"registry refuses it ({error_line(out).split(' (item')[0]})" if code == 2
               else f"REGISTRY ACCEPTS IT (exit {code})")
    alone_code, alone_out = claim_with_own_prover(thief, model, tmp, "transplant")
    rows.append(Row("transplanted key: the owner's commitments re-signed by a thief holding the public openings",
                    f"invalid: {error_line(alone_out)}" if alone_code == 2 else f"NOT REFUSED (exit {alone_code})",
                    f"registration: {refused}; the VRF check refuses the reveal",
                    "claim fails" if alone_code == 2 and code == 2 else "NOT DEFEATED"))
    return rows


def greedy(keys: Keys, model: Path, tmp: Path, rounds: int) -> Row:
    run = greedy_verifier(keys, model, tmp, k=K, rounds=rounds)
    revealed = {i for e in run.entries if e.outcome is Outcome.REVEALED for i in e.new_indices}
    refusals = sum(e.outcome is Outcome.REFUSED for e in run.entries)
    return Row(f"greedy verifier: {rounds} fresh challenges of k = {K}, `wmark-prover prove` per challenge",
               f"{rounds - refusals} answered, {refusals} refused (signed refusal)",
               "leakage ledger, budget 50%",
               f"{len(revealed)}/{N} items public, never past the budget" if len(revealed) <= N // 2
               else f"BUDGET EXCEEDED: {len(revealed)}/{N}")


def innocents(keys: Keys, tmp: Path, count: int, epochs: int) -> tuple[list[Row], list[dict]]:
    rows, runs = [], []
    for seed in range(1, count + 1):
        model = innocent_model(tmp / f"innocent-{seed}", seed=seed, epochs=epochs)
        accuracy = task_accuracy(model)
        entry = {"seed": seed, "epochs": epochs, "test_accuracy": accuracy}
        for k in (K, N):
            result = claim(keys, model, tmp, f"innocent-{seed}-{k}", k=k, budget="1")
            text, matches, p = says(result)
            entry[f"k{k}"] = {"code": result.code, "matches": result.verdict.matches, "p_value": p}
            rows.append(Row(f"innocent model, seed {seed} ({accuracy:.1%} test accuracy), owner's key, k = {k}",
                            text, "decision rule", rejected_or_not(result), matches, p))
        runs.append(entry)
        print(f"  innocent model {seed}: {entry}", flush=True)
    return rows, runs


def _zk_rows(model: Path, innocents: list[Path], tmp: Path) -> list[Row]:
    from wmark.protocol.hazmat.identity import load_signing_key
    from wmark.protocol.items import TriggerKind
    from wmark.watermark.zkcircuit import InputCommitter

    images, labels = natural_images(N, seed=0)
    rows = []
    for source in (LabelSource.REGISTRY, LabelSource.COMMITTED):
        keys, pair = commit_bound(tmp / f"zk-{source.value}", images, labels, label_source=source,
                                  zk=InputCommitter(TriggerKind.IMPORTED, SHAPE))
        registration = registered(keys, tmp / f"zk-log-{source.value}") if source is LabelSource.REGISTRY else None
        identity = load_signing_key(keys.owner)
        for i, m in enumerate(innocents):
            d = zk_claim(pair, identity, m, images, registration, k=N,
                         p0=None if registration else IMPORTED_P0)
            rows.append(Row(f"(a) cheating ZK owner: {N} ordinary digits with true classes, {source.value} labels, "
                            f"innocent model {i}, k = n", "ACCEPTED" if d.accepted else "REJECTED", "decision rule",
                            "rejected" if not d.accepted else "FALSE ACCUSATION", f"{d.matches}/{d.k} (tau {d.tau})",
                            d.p_value_text))
        if registration is not None:
            marked = embed_after_registration(keys, registration.beta, tmp / "zk-honest")
            d = zk_claim(pair, identity, marked, images, registration, k=N)
            rows.append(Row("(a) the same key, embedded after registration (honest owner), k = n",
                            "ACCEPTED" if d.accepted else "REJECTED", "decision rule",
                            "accepted" if d.accepted else "OWNER NOT ACCEPTED", f"{d.matches}/{d.k} (tau {d.tau})",
                            d.p_value_text))
    return rows


def _claim_row(scenario: str, result: Claim, *, expect: int = 1) -> Row:
    text, matches, p = says(result)
    outcome = {0: "accepted", 1: "rejected"}.get(result.code, f"exit {result.code}")
    return Row(scenario, text, "decision rule", outcome if result.code == expect else f"UNEXPECTED: {outcome}",
               matches, p)


def registry_bound(marked: Path, innocents: list[Path], tmp: Path, attempts: int) -> tuple[list[Row], dict]:
    """The scenarios of tests/adversarial/test_registry_labels.py and tests/test_beacon.py, as rows."""
    rows = _zk_rows(marked, innocents, tmp)
    images, labels = natural_images(N, seed=0)
    keys, _ = commit_bound(tmp / "nat", images, labels)
    registration = registered(keys, tmp / "nat-log")
    for i, m in enumerate(innocents):
        rows.append(_claim_row(f"(b) imported: {N} ordinary digits with true classes, registry-bound, no --p0, "
                               f"innocent model {i}, k = {K}", claim(keys, m, tmp, f"nat-{i}", k=K,
                                                                   log=tmp / "nat-log")))
    old, _ = commit_bound(tmp / "nat-old", images, labels, label_source=LabelSource.COMMITTED)
    rows.append(_claim_row(f"(b) the same, committed labels (the scheme before), --p0 {IMPORTED_P0}, innocent model 0",
                           claim(old, innocents[0], tmp, "nat-old", k=K, p0=IMPORTED_P0), expect=0))
    owner_model = embed_after_registration(keys, registration.beta, tmp / "nat-marked")
    rows.append(_claim_row(f"(b) the same registry-bound key embedded after registration, k = {K}",
                           claim(keys, owner_model, tmp, "nat-honest", k=K, log=tmp / "nat-log"), expect=0))
    pirate_images = attacker_images(N, np.random.default_rng(1))
    pirate, _ = commit_bound(tmp / "b-pirate", pirate_images, classify(load_model(marked), pirate_images))
    registered(pirate, tmp / "b-pirate-log")
    rows.append(_claim_row("(c) piracy, imported, registry-bound: the stolen model's answers, then registered",
                           claim(pirate, marked, tmp, "b-pirate", k=K, log=tmp / "b-pirate-log")))
    forgery = forge_imported(tmp / "b-forgery", marked, n=N, seed=2)
    forger, _ = commit_bound(tmp / "b-forger", forgery.images, forgery.labels)
    registered(forger, tmp / "b-forger-log")
    rows.append(_claim_row(f"(c) forging, imported, registry-bound: PGD toward chosen labels "
                           f"({forgery.hit_rate:.0%} hit), then registered",
                           claim(forger, marked, tmp, "b-forger", k=K, log=tmp / "b-forger-log")))
    public = claim(keys, owner_model, tmp, "nat-public", k=N, budget="1", log=tmp / "nat-log")
    thief = bound_replay(tmp / "b-thief", public.transcript)
    registered(thief, tmp / "b-thief-log")
    rows.append(_claim_row("(c) replay, imported, registry-bound: a public verification's images and checked "
                           "labels, re-committed and registered", claim(thief, owner_model, tmp, "b-replay", k=K,
                                                                          log=tmp / "b-thief-log")))
    n = 20
    started = time.perf_counter()
    grind = regrind(innocents[0], tmp / "regrind-log", tmp, attempts=attempts, n=n)
    per_attempt_s = (time.perf_counter() - started) / attempts
    p0 = Fraction(1, NUM_CLASSES)
    tau = threshold(n, p0)
    success = tail(tau, n, p0)
    cost = {"attempts": attempts, "n": n, "tau": tau, "best": int(grind.matches.max()),
            "accepted": grind.accepted, "success_per_registration": format_probability(success),
            "expected_registrations": f"{float(1 / success):.3e}", "seconds_per_registration": round(per_attempt_s, 4)}
    rows.append(Row(f"(d) re-registering {attempts} times for a lucky beta ({n} ordinary digits, k = n)",
                    f"REJECTED every time (best {cost['best']}/{n}, tau {tau})", "decision rule",
                    f"success needs ~{cost['expected_registrations']} public registrations "
                    f"(p = {cost['success_per_registration']} each)", f"{cost['best']}/{n}", "-"))
    rows += _tampered_rows(tmp)
    return rows, cost


def _tampered_rows(tmp: Path) -> list[Row]:
    owner = SigningKey.generate()
    vk = keygen_derived(owner=owner, n=5, num_classes=NUM_CLASSES, input_shape=SHAPE,
                        label_source=LabelSource.REGISTRY).verification_key
    other = keygen_derived(owner=owner, n=5, num_classes=NUM_CLASSES, input_shape=SHAPE).verification_key
    with LogStore.open(tmp / "tamper-log") as store:
        receipt, stolen, key = store.register(vk), store.register(other).beacon, store.public_key
    b = receipt.beacon
    flip = lambda data, i: data[:i] + bytes([data[i] ^ 1]) + data[i + 1:]
    cases = [("(e) receipt with one bit of beta changed", Beacon(b.key_statement, flip(b.beta, 0), b.proof)),
             ("(e) receipt with one bit of the VRF proof changed", Beacon(b.key_statement, b.beta, flip(b.proof, 40))),
             ("(f) a log returning another entry's beta", stolen)]
    rows = []
    for scenario, beacon in cases:
        try:
            verify_receipt(replace(receipt, beacon=beacon), vk, key)
            rows.append(Row(scenario, "ACCEPTED", "receipt check", "NOT CAUGHT"))
        except WmarkError as exc:  # the named error is the result
            rows.append(Row(scenario, f"invalid: {exc}", "receipt check (offline, log key only)", "refused, exit 2"))
    return rows


def markdown(rows: list[Row]) -> str:
    lines = ["| scenario | the protocol alone | what decides it | outcome | matches / k | p-value |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r.scenario} | {r.protocol_alone} | {r.decided_by} | {r.outcome} | {r.matches} | {r.p_value} |"
              for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=1000, help="whole derived keys the pirate grinds")
    parser.add_argument("--grind-n", type=int, default=20, help="items per ground key (the verifier opens all)")
    parser.add_argument("--random", type=int, default=5, help="fresh keys per k for the random claim")
    parser.add_argument("--innocent", type=int, default=5, help="innocent models (seeds 1..N)")
    parser.add_argument("--epochs", type=int, default=default_recipe("digits").epochs,
                        help="training epochs of each innocent model")
    parser.add_argument("--greedy-rounds", type=int, default=5, help="challenges the greedy verifier sends")
    parser.add_argument("--regrind", type=int, default=200, help="re-registrations of the grinding owner (d)")
    parser.add_argument("--registry-only", action="store_true",
                        help="run only the registry-bound scenarios (a)-(f), against --innocent models")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    if min(args.keys, args.grind_n, args.random, args.innocent, args.epochs, args.greedy_rounds) < 1:
        parser.error("every count must be at least 1")

    command = shlex.join(["python", "benchmarks/false_claims.py", *(argv if argv is not None else sys.argv[1:])])
    start = time.perf_counter()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="false-claims-") as name:
        tmp = Path(name)
        record, model, keys = build_world(tmp)
        random_runs, grind, innocent_runs = [], {}, []
        if args.registry_only:
            innocent_models = [innocent_model(tmp / f"bound-innocent-{s}", seed=s, epochs=args.epochs)
                               for s in range(1, args.innocent + 1)]
            print("registry-bound labels", flush=True)
            bound_rows, regrind_cost = registry_bound(model, innocent_models, tmp, args.regrind)
            rows += bound_rows
        else:
            rows, random_runs, grind, innocent_runs, regrind_cost = _all(args, tmp, record, model, keys)
    seconds = time.perf_counter() - start
    _write(args, command, seconds, rows, random_runs, grind, innocent_runs, regrind_cost)
    return 0


def _all(args, tmp: Path, record: OnRecord, model: Path, keys: Keys):
    rows: list[Row] = []
    print("random claims", flush=True)
    random_rows, random_runs = random_claims(model, tmp, args.random)
    rows += random_rows
    print("piracy", flush=True)
    rows.append(contested("piracy, imported: the stolen model's own answers on the attacker's images", record,
                          contest(record, pirate_imported(tmp / "pirate", model, n=N, seed=1), model, tmp,
                                  "pirate", p0=IMPORTED_P0)))
    piracy_rows, grind = derived_piracy(model, tmp, args.keys, args.grind_n)
    rows += piracy_rows
    print("forging", flush=True)
    rows += forging(record, model, tmp)
    print("replay and transplant", flush=True)
    rows += replays(record, model, tmp)
    print("greedy verifier", flush=True)
    rows.append(greedy(keys, model, tmp, args.greedy_rounds))
    print("innocent models", flush=True)
    innocent_rows, innocent_runs = innocents(keys, tmp, args.innocent, args.epochs)
    rows += innocent_rows
    print("registry-bound labels", flush=True)
    innocent_models = [tmp / f"innocent-{seed}" for seed in range(1, args.innocent + 1)]
    bound_rows, regrind_cost = registry_bound(model, innocent_models, tmp, args.regrind)
    rows += bound_rows
    return rows, random_runs, grind, innocent_runs, regrind_cost


def _write(args, command: str, seconds: float, rows: list[Row], random_runs, grind, innocent_runs,
           regrind_cost) -> None:
    import datetime
    import subprocess

    table = markdown(rows)
    print()
    print(table)
    print(f"\n{command}: {seconds:.0f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "command": command, "seconds": round(seconds, 1), "n": N, "k": K, "lambda": DEFAULT_LAMBDA,
        "parameters": vars(args) | {"out": str(args.out)},
        "rows": [asdict(r) for r in rows], "random_claims": random_runs, "grind": grind, "innocent": innocent_runs,
        "regrind": regrind_cost,
        "torch": torch.__version__, "platform": platform.platform(), "threads": torch.get_num_threads(),
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], check=False, capture_output=True, text=True).stdout.strip(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seeds": {"natural_images": 0, "pirate_images": 1, "forger": 2, "innocent_models": "1..--innocent",
                  "keys": "OS CSPRNG (vary per run)"},
    }
    atomic_write(args.out / "false_claims.json", (json.dumps(report, indent=2) + "\n").encode())
    atomic_write(args.out / "false_claims.md", (
        f"# False claims of ownership (digits, n = {N}, lambda = {DEFAULT_LAMBDA})\n\n{table}\n\n"
        + (f"The pirate's {grind['keys']} derived keys of {grind['n']} items cost {grind['ms_per_key']} ms each "
        f"(KeyGen and {grind['n']} queries of the stolen model). Keys per number of matches, observed "
        f"(expected under H0, Binomial({grind['n']}, 1/{NUM_CLASSES})): "
        + ", ".join(f"{m}: {h['observed']} ({h['expected']})" for m, h in grind["matches_histogram"].items())
        + ".\n\n" if grind else "")
        + f"`{command}`: {seconds:.0f} s on {platform.machine()} ({torch.get_num_threads()} threads)\n").encode())
    print(f"wrote {args.out / 'false_claims.json'} and {args.out / 'false_claims.md'}")


if __name__ == "__main__":
    sys.exit(main())
