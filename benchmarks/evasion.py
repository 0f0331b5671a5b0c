"""The evasive endpoint: a thief serves the stolen model behind an Open
Inference Protocol endpoint that tries to spot verification queries.

For each seed and each kind of key (derived triggers; the paper's own 100
images, imported, when ``--paper-images`` names them; margin queries), the
owner marks a model; the thief serves it as stolen, behind one of these
endpoints, each fitted on the thief's own data (the adversary split) only:

* ``plain``: answers every query honestly (the reference);
* ``msp``: flags an input whose maximum softmax probability is below the
  value that ``--fpr`` of the thief's own images fall below (Hendrycks and
  Gimpel 2017);
* ``pca``: flags an input whose reconstruction error under a principal-
  component model of the thief's images (a linear autoencoder with
  ``--components`` components, fitted with numpy's SVD) is above the value
  that ``--fpr`` of the thief's images exceed.

A flagged input is answered with the model's second most likely class.  The
verifier runs the real protocol (a VerifierSession against the owner's
ProverSession, in-process) and queries the endpoint over HTTP with
:class:`wmark.verifier.oracle.InferenceEndpoint`, the class behind
``wmark-verifier run --endpoint``, hiding the opened items among decoys from
:func:`wmark.verifier.verify.default_decoys`, at k = 20 and k = n.  Reported:
acceptance, matches, the share of the opened items and of the decoys the
endpoint flagged, and its false-positive rate and test accuracy as served on
the ordinary test split (what evasion costs the thief's honest customers).

Each seed and key kind is one job (keygen, marking, the three endpoints and
their verifications, on one thread), run one after another or as Ray tasks
(``--ray local`` keeps both cores busy).

``--models-from DIR`` takes each seed's derived-key and margin model, with the
owner's keys, from what ``margin.py --save-models DIR`` kept (the same recipes:
margin.py's "adi" model is marked with a derived key of the same 100 items),
instead of making a key and marking a model again; a folder whose manifest is
not the model this run would train (data set, subset, seed, architecture,
recipe, epochs) is refused before any job starts.  The imported kind is still
trained here.  Each row says where its model came from.

    python benchmarks/evasion.py --dataset fashion-mnist --paper-images DIR --ray local   # 3 seeds
    python benchmarks/evasion.py --dataset fashion-mnist --paper-images DIR --ray local --models-from MODELS
    python benchmarks/evasion.py --dataset fashion-mnist --seeds 1 --epochs 1 --subset 1000 --label 'smoke run'

Writes evasion-DATASET.json and .md to --out; the JSON also after every job (``"complete": false``),
so a run stopped part way keeps what it measured.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import _marked
import numpy as np
import torch
from _cli import load_for, provenance, provenance_markdown, training_parser

from wmark.cluster import Job, run_jobs, share
from wmark.errors import WmarkError
from wmark.files import atomic_write
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.keygen import KeyPair, keygen_derived, keygen_imported, keygen_margin
from wmark.protocol.messages import Verdict, decode
from wmark.protocol.session import ProverSession, RevealAccepted, VerifierSession
from wmark.verifier.oracle import InferenceEndpoint
from wmark.verifier.verify import decide_with_model, default_decoys, item_images
from wmark.watermark.datasets import TaskData
from wmark.watermark.device import pick_device
from wmark.watermark.embed import DEFAULT_ARCH, default_recipe, embed, start_model
from wmark.watermark.evaluate import predict
from wmark.watermark.margin import MarginOptions, embed_margin, margin_recipe, query_split
from wmark.watermark.modelio import Classifier
from wmark.watermark.train import Recipe
from wmark.watermark.triggers import Fit, import_images, trigger_set_from_marking_key

ITEMS = 100
PRIVATE_K = 20
DETECTORS = ("plain", "msp", "pca")
MAX_REQUEST_BYTES = 64 * 1024 * 1024
# The key kinds margin.py marks too, by its names for them (its "adi" model has a derived key).
MARGIN_SCHEME = {"derived": "adi", "margin": "margin"}


@dataclass(frozen=True)
class Detector:
    """Flags inputs as verification queries: ``score(images) > threshold``."""

    name: str
    threshold: float
    mean: np.ndarray | None = None
    basis: np.ndarray | None = None

    def scores(self, images: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """``logits``: the model's for ``images`` (computed once by the caller, who needs them too)."""
        if self.name == "msp":
            return -torch.softmax(torch.from_numpy(logits), dim=1).max(dim=1).values.numpy()  # low confidence = high
        if self.name == "pca":
            assert self.mean is not None and self.basis is not None
            x = images.reshape(len(images), -1).astype(np.float64) / 255.0 - self.mean
            return np.linalg.norm(x - (x @ self.basis.T) @ self.basis, axis=1)
        return np.full(len(images), -np.inf)

    def flags(self, images: np.ndarray, logits: np.ndarray) -> np.ndarray:
        return self.scores(images, logits) > self.threshold


def fit_detector(name: str, own: np.ndarray, own_logits: np.ndarray, fpr: float, components: int) -> Detector:
    """A detector whose threshold flags ``fpr`` of the thief's own images (``own_logits``: the model's for them)."""
    if name == "plain":
        return Detector(name, np.inf)
    mean = basis = None
    if name == "pca":
        x = own.reshape(len(own), -1).astype(np.float64) / 255.0
        mean = x.mean(axis=0)
        basis = np.linalg.svd(x - mean, full_matrices=False)[2][:components]
    unfitted = Detector(name, np.inf, mean, basis)
    return Detector(name, float(np.quantile(unfitted.scores(own, own_logits), 1 - fpr)), mean, basis)


def answers(detector: Detector, images: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The endpoint's classes for ``images`` given the model's ``logits`` for them
    (flagged ones: the second most likely) and the flags."""
    ranked = np.argsort(logits, axis=1)
    flagged = detector.flags(images, logits)
    return np.where(flagged, ranked[:, -2], ranked[:, -1]).astype(np.int64), flagged


class EvasiveServer:
    """An Open Inference Protocol v2 REST endpoint (``POST /v2/models/NAME/infer``) in a thread,
    answering class indices; written here (a dozen lines of http.server) rather than with KServe,
    to keep each job in one process.  Records every image it is asked about."""

    def __init__(self, model: Classifier, detector: Detector, name: str = "stolen") -> None:
        self.model, self.detector, self.name = model, detector, name
        self.flagged: list[bool] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                if self.path != f"/v2/models/{server.name}/infer" or not 0 < length <= MAX_REQUEST_BYTES:
                    self.send_error(404 if length else 400)
                    return
                request = json.loads(self.rfile.read(length))["inputs"][0]
                shape = [int(d) for d in request["shape"]]
                pixels = np.rint(np.asarray(request["data"], dtype=np.float64).reshape(shape) * 255.0)
                images = pixels.clip(0, 255).astype(np.uint8)
                with server.lock:
                    classes, flagged = answers(server.detector, images, predict(server.model, images))
                    server.flagged += flagged.tolist()
                body = json.dumps({"model_name": server.name, "outputs": [
                    {"name": "classes", "shape": [len(classes)], "datatype": "INT64", "data": classes.tolist()}]})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> EvasiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def make_key(task: TaskData, kind: str, owner: SigningKey, paper_images: Path | None) -> KeyPair:
    if kind == "derived":
        return keygen_derived(owner=owner, n=ITEMS, num_classes=task.num_classes, input_shape=task.input_shape)
    if kind == "margin":
        return keygen_margin(owner=owner, n=ITEMS, num_classes=task.num_classes, split=query_split(task))
    assert paper_images is not None
    imported = import_images(paper_images, task.input_shape, fit=Fit.RESIZE, labels_file=None,
                             num_classes=task.num_classes)
    if imported.labels is None:
        raise WmarkError(f"{paper_images}: no labels file (expected the paper's labels-cifar.txt)")
    return keygen_imported(owner=owner, images=imported.pixels, labels=imported.labels,
                           num_classes=task.num_classes, input_shape=task.input_shape)


def recipe_for(task: TaskData, kind: str, seed: int, epochs: int | None) -> Recipe:
    recipe = (margin_recipe if kind == "margin" else default_recipe)(task.name)
    return replace(recipe, seed=seed, **({"epochs": epochs} if epochs else {}))


def spec_for(task: TaskData, subset: int | None, kind: str, seed: int, epochs: int | None) -> _marked.Spec:
    """The model :func:`mark` would train, as a kept model's manifest must name it to be used instead."""
    return _marked.Spec.of(task.name, subset, seed, MARGIN_SCHEME[kind], DEFAULT_ARCH[task.name],
                           recipe_for(task, kind, seed, epochs), epochs)


def mark(task: TaskData, kind: str, pair: KeyPair, seed: int, epochs: int | None, device: torch.device) -> Classifier:
    items = trigger_set_from_marking_key(pair.marking_key, query_split(task) if kind == "margin" else None)
    recipe = recipe_for(task, kind, seed, epochs)
    model = start_model(task, seed=seed)
    if kind == "margin":
        return embed_margin(model, task, items, recipe, MarginOptions(), vk_digest=pair.verification_key.digest,
                            device=device).model.cpu()
    return embed(model, task, items, recipe, vk_digest=pair.verification_key.digest, device=device).model.cpu()


def verify_through(server: EvasiveServer, task: TaskData, kind: str, pair: KeyPair, owner: SigningKey, k: int,
                   decoys: np.ndarray) -> dict[str, Any]:
    """One verification over HTTP: the opened items, hidden among decoys, sent to the endpoint."""
    vk = pair.verification_key
    oracle = InferenceEndpoint(server.url, server.name)
    p0 = Fraction(1, task.num_classes) if kind == "imported" else None
    margin = query_split(task) if kind == "margin" else None
    session = VerifierSession(vk, SigningKey.generate(), oracle.model_ref, k, p0=p0, margin=margin)
    prover = ProverSession(pair.marking_key, vk, owner)
    prover.receive(session.challenge())
    event = session.receive(prover.reveal())
    assert isinstance(event, RevealAccepted)
    # What the endpoint makes of the opened items themselves, outside the shuffled batch.
    opened = item_images(event.items, vk.input_shape)
    item_flags = server.detector.flags(opened, predict(server.model, opened))
    envelope = decide_with_model(session, event, oracle, decoys=decoys)
    verdict = decode(envelope, (Verdict,))
    assert isinstance(verdict, Verdict)
    return {"k": k, "accepted": verdict.accepted, "matches": verdict.matches, "tau": verdict.tau,
            "items_flagged": float(item_flags.mean())}


@dataclass(frozen=True)
class Study:
    """What every job reads: the options that shape a row."""

    paper_images: Path | None
    epochs: int | None
    fpr: float
    components: int


def marked_model(task: TaskData, seed: int, kind: str, study: Study, device: torch.device,
                 kept: _marked.Loaded | None) -> tuple[SigningKey, KeyPair, Classifier, dict[str, Any]]:
    """The owner, key and marked model of a job, and where the model came from: made here (a fresh
    owner and key, the model marked with it), or ``kept`` by margin.py, whose training time is that
    run's and is reported under another name, so that nobody adds it to this run's."""
    if kept is not None:
        return kept.owner, kept.pair(), kept.model, {
            "model_from": f"loaded from {kept.folder} (trained by benchmarks/margin.py)",
            "train_seconds_in_margin_run": kept.train_seconds}
    owner = SigningKey.generate()
    pair = make_key(task, kind, owner, study.paper_images)
    start = time.perf_counter()
    model = mark(task, kind, pair, seed, study.epochs, device)
    return owner, pair, model, {"model_from": "trained here", "train_seconds": round(time.perf_counter() - start, 1)}


def run_key(task: TaskData, seed: int, kind: str, study: Study, device: torch.device,
            decoys: np.ndarray, kept: _marked.Loaded | None = None) -> list[dict[str, Any]]:
    """One job: the key of ``kind`` and the model marked with it, and one row per endpoint."""
    owner, pair, model, origin = marked_model(task, seed, kind, study, device, kept)
    items = trigger_set_from_marking_key(pair.marking_key, query_split(task) if kind == "margin" else None)
    # The model's logits for each input set, once: every endpoint below is this model behind a detector.
    own, test, decoy, item = (predict(model, x) for x in (task.adversary.images, task.test.images, decoys,
                                                            items.images))
    honest = float((test.argmax(1) == task.test.labels).mean())
    rows = []
    for name in DETECTORS:
        detector = fit_detector(name, task.adversary.images, own, study.fpr, study.components)
        served, flagged = answers(detector, task.test.images, test)
        row = {"seed": seed, "key": kind, "detector": name, **origin,
               "false_positive_rate": float(flagged.mean()),
               "served_test_accuracy": float((served == task.test.labels).mean()),
               "honest_test_accuracy": honest,
               "item_accuracy_served": float((answers(detector, items.images, item)[0] == items.labels).mean()),
               "decoys_flagged": float(detector.flags(decoys, decoy).mean())}
        with EvasiveServer(model, detector) as server:
            row["verifications"] = [verify_through(server, task, kind, pair, owner, k, decoys)
                                    for k in (PRIVATE_K, pair.verification_key.n)]
        rows.append(row)
    return rows


def print_row(row: dict[str, Any]) -> None:
    v = {r["k"]: r for r in row["verifications"]}
    print(f"  seed {row['seed']} {row['key']:<9} {row['detector']:<6} FPR {100 * row['false_positive_rate']:5.1f}%  "
          f"served test {100 * row['served_test_accuracy']:5.1f}%  items flagged {100 * v[PRIVATE_K]['items_flagged']:5.1f}%"
          f"  k={PRIVATE_K} {'accept' if v[PRIVATE_K]['accepted'] else 'reject'}"
          f"  k=n {'accept' if v[ITEMS]['accepted'] else 'reject'} ({v[ITEMS]['matches']}/{ITEMS})", flush=True)


def markdown(rows: list[dict[str, Any]], title: str) -> str:
    lines = [title, "", ("| key | endpoint | FPR on test (%) | served test acc. (%) | items flagged (%) | "
                         "decoys flagged (%) | k=20 accepted | k=n accepted | k=n matches (mean) |"),
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["key"], row["detector"]), []).append(row)
    for (kind, name), members in groups.items():
        def mean(f: Any, members: list[dict[str, Any]] = members) -> float:
            return statistics.fmean(f(r) for r in members)

        private = [next(v for v in r["verifications"] if v["k"] == PRIVATE_K) for r in members]
        public = [next(v for v in r["verifications"] if v["k"] != PRIVATE_K) for r in members]
        lines.append(f"| {kind} | {name} | {100 * mean(lambda r: r['false_positive_rate']):.1f} | "
                     f"{100 * mean(lambda r: r['served_test_accuracy']):.2f} | "
                     f"{100 * statistics.fmean(v['items_flagged'] for v in private):.1f} | "
                     f"{100 * mean(lambda r: r['decoys_flagged']):.1f} | "
                     f"{sum(v['accepted'] for v in private)}/{len(members)} | "
                     f"{sum(v['accepted'] for v in public)}/{len(members)} | "
                     f"{statistics.fmean(v['matches'] for v in public):.1f} |")
    return "\n".join(lines)


def kept_models(task: TaskData, args: Any) -> dict[tuple[int, str], _marked.Loaded]:
    """Every seed's derived-key and margin model from --models-from, checked against what this run
    would train (refused, before any job, unless all are there and match); none without the option."""
    if args.models_from is None:
        return {}
    return {(seed, kind): _marked.load(args.models_from, spec_for(task, args.subset, kind, seed, args.epochs))
            for seed in range(args.seeds) for kind in MARGIN_SCHEME}


def reuse_note(args: Any) -> str:
    return (f"Derived-key and margin models loaded from {args.models_from}, trained by benchmarks/margin.py: "
            "their training time is that run's (train_seconds_in_margin_run), not this one's.")


def main(argv: list[str] | None = None) -> int:
    parser = training_parser(__doc__, epochs_help="override the marking recipes' epochs (quick checks only)")
    parser.add_argument("--paper-images", type=Path, metavar="DIR",
                        help="the paper's trigger set (pics/1.jpg ... and labels-cifar.txt), imported grey and resized")
    parser.add_argument("--fpr", type=float, default=0.05, help="the detectors' target false-positive rate")
    parser.add_argument("--components", type=int, default=32, help="the PCA detector's components")
    parser.add_argument("--models-from", type=Path, metavar="DIR",
                        help="use the derived-key and margin models (and their keys) that margin.py --save-models "
                             "DIR kept, with the same --dataset, --subset, --seeds and --epochs, instead of "
                             "training them here")
    args = parser.parse_args(argv)
    if args.seeds < 1 or not 0 < args.fpr < 1 or args.components < 1:
        parser.error("--seeds and --components must be at least 1 and --fpr in (0, 1)")
    try:
        device = pick_device(args.device)
        task = load_for(args)
        decoys = default_decoys(task.input_shape, dataset=task.name, data_root=args.data_root)
        kept = kept_models(task, args)
    except WmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    origin = provenance(list(range(args.seeds)), device, args.label)
    print(f"{task.describe()}; {args.seeds} seeds; endpoints {', '.join(DETECTORS)}"
          + (f"; Ray at {args.ray}" if args.ray else ""), flush=True)
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"evasion-{task.name}"
    kinds = ["derived", "margin"] + (["imported"] if args.paper_images is not None else [])
    study = Study(args.paper_images, args.epochs, args.fpr, args.components)
    shared_task, shared_decoys = share(task, args.ray), share(decoys, args.ray)
    # One job per seed and key kind, each on one thread, in this process or as Ray tasks; those that
    # train first, the margin keys' first among them (their recipe trains about three times as long),
    # so the workers finish together.
    order = sorted(((seed, kind) for seed in range(args.seeds) for kind in kinds),
                   key=lambda j: (j in kept, j[1] != "margin"))
    jobs = [Job(f"seed {seed} {kind}", run_key, (shared_task, seed, kind, study, device, shared_decoys,
                                                 share(kept[seed, kind], args.ray) if (seed, kind) in kept else None))
            for seed, kind in order]
    done: dict[tuple[int, int], list[dict[str, Any]]] = {}

    def rows() -> list[dict[str, Any]]:
        return [row for key in sorted(done) for row in done[key]]  # seed by seed, kind by kind

    def report(complete: bool) -> dict[str, Any]:
        return {"provenance": origin, "dataset": task.name, "subset": args.subset, "items": ITEMS,
                "private_k": PRIVATE_K, "fpr_target": args.fpr, "components": args.components,
                "epochs_override": args.epochs,
                "models_from": None if args.models_from is None else str(args.models_from), "complete": complete,
                "seconds": round(time.perf_counter() - start, 1), "rows": rows()}

    def finished(index: int, job_rows: list[dict[str, Any]]) -> None:
        """Save each job's rows as it ends (``"complete": false``), so a run stopped part way keeps them."""
        seed, kind = order[index]
        done[seed, kinds.index(kind)] = job_rows
        for row in job_rows:
            print_row(row)
        atomic_write(stem.with_suffix(".json"), (json.dumps(report(False), indent=2) + "\n").encode())

    try:
        run_jobs(jobs, ray_address=args.ray, what="marked model", progress=None, on_result=finished)
    except WmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    title = (f"Evasive endpoints, {task.name}, {args.seeds} seeds, detectors fitted on the adversary split "
             f"({len(task.adversary)} images) at a target FPR of {args.fpr:g}")
    table = markdown(rows(), title)
    print()
    print(table)
    atomic_write(stem.with_suffix(".json"), (json.dumps(report(True), indent=2) + "\n").encode())
    atomic_write(stem.with_suffix(".md"), f"{table}\n\nRun time {seconds / 60:.1f} min."
                                          f"{' ' + reuse_note(args) if args.models_from else ''}\n\n"
                                          f"{provenance_markdown(origin)}\n".encode())
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
