"""False claims of ownership: the attackers, and the real tools they face.

Shared by the tests in ``tests/adversarial``, which assert each outcome, and by
``benchmarks/false_claims.py``, which runs the same scenarios with larger
parameters and tabulates them, so the report cannot drift from what is tested.

Every attacker key comes from the real KeyGen (OS CSPRNG, ECVRF, commitments,
DSSE); every claim goes through the real command lines, run in this process
over the files transport (`wmark-verifier challenge` -> `wmark-prover prove`
-> `wmark-verifier check`), except where a scenario needs the prover in
processes of its own.  What a claim came to is read back from its audited
transcript, never from what the attacker says.
"""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from wmark.files import atomic_write
from wmark.harness.programs import KeyDir, run_cli
from wmark.protocol.beacon import LabelSource, bound_label
from wmark.protocol.decision import Decision, decide
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.commitment import commit
from wmark.protocol.hazmat.identity import SigningKey, load_signing_key, save_signing_key
from wmark.protocol.hazmat.sampling import sample_subset
from wmark.protocol.hazmat.vrf import VrfSecretKey, proof_to_hash
from wmark.protocol.items import ItemCommitments, ItemOpening, encode_image, label_message
from wmark.protocol.keyfile import load_marking_key, save_marking_key
from wmark.protocol.keygen import KeyPair, keygen_derived, keygen_imported
from wmark.protocol.keys import VK_PAYLOAD_TYPE, MarkingKey, VerificationKey, load_verification_key
from wmark.protocol.messages import Challenge, ModelRef, Reveal, Verdict, decode
from wmark.protocol.patterns import item_images, render
from wmark.protocol.session import (
    ChallengeReceived,
    ProverSession,
    RevealAccepted,
    VerifierSession,
    ZkVerifierSession,
    now,
)
from wmark.protocol.transcript import AuditReport, audit, load_transcript
from wmark.protocol.transparency import Receipt, RegistrationInfo, verify_receipt
from wmark.protocol.zk import SrsOrigin, ZkParameters, ZkStatement
from wmark.prover.cli import main as prover_main
from wmark.prover.ledger import Ledger, LedgerEntry
from wmark.registry import LogStore
from wmark.verifier.cli import main as verifier_main
from wmark.watermark.cli import main as wmark_main
from wmark.watermark.datasets import load_task
from wmark.watermark.device import torch_threads
from wmark.watermark.embed import default_recipe, embed, start_model
from wmark.watermark.evaluate import predict
from wmark.watermark.modelio import Classifier, load_model, model_file_digest, save_model
from wmark.watermark.triggers import trigger_set_from_marking_key

NUM_CLASSES = 10
SHAPE = (1, 8, 8)
# Training epochs of the honest owner's model.  At 20 it fit the registry-bound labels of 88-97% of its
# trigger items, with the log's key (and so the labels) new each run: a 20-item challenge then fell
# below the threshold of 16 now and then.  At 30 it fit 99-100% in twelve runs with random labels.
HONEST_EPOCHS = 30
# What a careful verifier assumes for an imported set on ten classes: chance.
# The attacks below show why no p0 can rescue an imported claim by itself.
IMPORTED_P0 = "1/10"
# Targeted PGD in grey levels: 30 steps of 4 within 48 of the start image
# turn every abstract 8x8 start image into the chosen class of the digits CNN.
PGD_EPS, PGD_STEP, PGD_STEPS = 48.0, 4.0, 30
# The digits CNN runs on one CPU thread (torch_threads(1) below): its operations are too small to
# share, and two threads fighting other processes for two cores run many times slower
# (see wmark.watermark.train.SINGLE_THREAD_PARAMS).


def run_main(main: Callable[[Sequence[str]], int], *args: object) -> tuple[int, str]:
    """One in-process command line: its exit code and everything it printed."""
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(out):
        code = main([str(a) for a in args])
    return code, out.getvalue()


# A claimant's key directory.
Keys = KeyDir


def save_keys(root: Path, identity: SigningKey, vk: VerificationKey, mk: MarkingKey) -> Keys:
    """Sign ``vk`` as ``identity`` and write the three files (the marking key in plaintext)."""
    keys = Keys(root)
    save_signing_key(keys.owner, identity)
    save_marking_key(keys.mk, mk, None)
    atomic_write(keys.vk, dsse.sign(VK_PAYLOAD_TYPE, vk.payload, identity).to_json())
    return keys


def save_pair(root: Path, identity: SigningKey, pair: KeyPair) -> Keys:
    return save_keys(root, identity, pair.verification_key, pair.marking_key)


@dataclass(frozen=True)
class Claim:
    """One run of challenge -> prove -> check: ``code`` is check's exit code (0 accepted,
    1 rejected or refused, 2 invalid) and ``output`` what the three commands printed."""

    code: int
    transcript: Path
    output: str

    @property
    def verdict(self) -> Verdict:
        return audit(load_transcript(self.transcript)).verdict


def claim(keys: Keys, model: Path, tmp: Path, name: str, *, k: int = 20, budget: str = "0.5",
          p0: str | None = None, log: Path | None = None, policy: tuple[str | Path, ...] = ()) -> Claim:
    """Claim ``model`` with ``keys`` before a verifier whose identity lives in ``tmp``.

    ``p0`` is the verifier's bound for an imported set; with ``log`` the verdict
    rests on the registry receipt beside the vk, checked against that log's key
    (and the witness ``policy`` options of ``check``, if given).
    """
    challenge, reveal, transcript = (tmp / f"{name}-{part}.json" for part in ("challenge", "reveal", "verdict"))
    verifier = ("--identity", tmp / "verifier.pem", *(("--p0", p0) if p0 else ()))
    code, out = run_main(verifier_main, "challenge", "--vk", keys.vk, "--model", model, "--k", k,
                         "--out", challenge, *verifier)
    assert code == 0, out
    code, answer = run_main(prover_main, "prove", "--mk", keys.mk, "--vk", keys.vk, "--challenge", challenge,
                            "--out", reveal, "--owner-key", keys.owner, "--budget", budget,
                            "--ledger", tmp / f"{name}.ledger")
    assert code == 0, answer
    code, checked = run_main(verifier_main, "check", "--vk", keys.vk, "--challenge", challenge, "--reveal", reveal,
                             "--model", model, "--out", transcript, *verifier,
                             *(("--log-key", log / "log-key.pub") if log else ()), *policy)
    return Claim(code, transcript, out + answer + checked)


def register(keys: Keys, log: Path) -> tuple[int, str]:
    return run_main(wmark_main, "register", "--vk", keys.vk, "--log", log)


def registered_copy(keys_dir: Path, tmp: Path) -> tuple[Keys, Path]:
    """A copy of an owner's keys, registered as the first entry of a fresh log in ``tmp``."""
    keys, log = Keys(tmp / "owner-keys"), tmp / "log"
    shutil.copytree(keys_dir, keys.root)
    code, out = register(keys, log)
    assert code == 0, out
    return keys, log


def dispute(first: Claim, second: Claim, log: Path) -> tuple[int, str]:
    return run_main(verifier_main, "dispute", first.transcript, second.transcript, "--log-key", log / "log-key.pub")


def earlier(dispute_output: str) -> tuple[str, str] | None:
    """The transcript and owner fingerprint `wmark-verifier dispute` named as the earlier claim, if any."""
    for line in dispute_output.splitlines():
        if line.startswith("EARLIER CLAIM: "):
            path, _, rest = line.removeprefix("EARLIER CLAIM: ").partition(": owner ")
            return path, rest.split()[0]
    return None


def public_claim(keys: Keys, model: Path, tmp: Path, *, log: Path | None = None) -> Claim:
    """An accepted public verification (k = n, the whole budget at once): every opening is out, for
    anyone to replay."""
    public = claim(keys, model, tmp, "public", k=load_verification_key(keys.vk)[0].n, budget="1", log=log)
    assert public.code == 0, public.output
    return public


@dataclass(frozen=True)
class OnRecord:
    """The owner as a dispute finds it: its key registered first in a log, and
    an accepted claim on the marked model that rests on that registration."""

    keys: Keys
    log: Path
    claim: Claim

    @property
    def fingerprint(self) -> str:
        return load_verification_key(self.keys.vk)[0].owner.fingerprint


def on_record(keys_dir: Path, model: Path, tmp: Path) -> OnRecord:
    keys, log = registered_copy(keys_dir, tmp)
    owner = claim(keys, model, tmp, "owner", log=log)
    assert owner.code == 0, owner.output
    return OnRecord(keys, log, owner)


@dataclass(frozen=True)
class Contest:
    """An attacker's claim on the owner's model, registered after the owner's key."""

    claim: Claim
    dispute_code: int
    dispute_output: str

    def winner(self, record: OnRecord) -> str:
        named = earlier(self.dispute_output)
        if named == (str(record.claim.transcript), record.fingerprint):
            return "owner"
        return "attacker" if named and named[0] == str(self.claim.transcript) else "nobody"


def contest(record: OnRecord, attacker: Keys, model: Path, tmp: Path, name: str, *,
            p0: str | None = None) -> Contest:
    """Register the attacker's key (after the owner's), claim ``model`` with it,
    and ask `wmark-verifier dispute` which of the two claims came first."""
    code, out = register(attacker, record.log)
    assert code == 0, out
    stolen = claim(attacker, model, tmp, name, p0=p0, log=record.log)
    return Contest(stolen, *dispute(stolen, record.claim, record.log))


def classify(model: Classifier, images: np.ndarray) -> np.ndarray:
    return predict(model, images).argmax(axis=1)


def agreement(model: Classifier, mk: MarkingKey) -> np.ndarray:
    """Which of a key's items the model answers with their committed label."""
    triggers = trigger_set_from_marking_key(mk)
    return classify(model, triggers.images) == triggers.labels


def attacker_images(n: int, rng: np.random.Generator) -> np.ndarray:
    """The attacker's own out-of-distribution images: abstract patterns from its own seeds."""
    return np.stack([render(rng.bytes(32), SHAPE) for _ in range(n)])


def fresh_derived(root: Path, n: int) -> Keys:
    """Random claim: a brand-new derived key, never embedded in any model."""
    identity = SigningKey.generate()
    return save_pair(root, identity, keygen_derived(owner=identity, n=n, num_classes=NUM_CLASSES, input_shape=SHAPE))


def commit_imported(root: Path, images: np.ndarray, labels: np.ndarray) -> Keys:
    identity = SigningKey.generate()
    return save_pair(root, identity, keygen_imported(owner=identity, images=[im.tobytes() for im in images],
                                                     labels=[int(x) for x in labels], num_classes=NUM_CLASSES,
                                                     input_shape=SHAPE))


def pirate_imported(root: Path, model_dir: Path, *, n: int, seed: int) -> Keys:
    """Ownership piracy with an imported set: commit to the stolen model's own answers."""
    images = attacker_images(n, np.random.default_rng(seed))
    return commit_imported(root, images, classify(load_model(model_dir), images))


@dataclass(frozen=True, eq=False)
class Grind:
    """Whole derived keys drawn by a pirate, and which items the stolen model answers with their labels."""

    identity: SigningKey
    pairs: tuple[KeyPair, ...]
    matched: np.ndarray  # keys x n, bool
    seconds: float

    @property
    def matches(self) -> np.ndarray:
        return self.matched.sum(axis=1)

    @property
    def best(self) -> int:
        return int(self.matches.argmax())

    def save_best(self, root: Path) -> Keys:
        return save_pair(root, self.identity, self.pairs[self.best])


def grind_derived(model_dir: Path, *, keys: int, n: int, progress: Callable[[int], None] | None = None) -> Grind:
    """Ownership piracy with a derived set: a VRF output cannot be re-drawn, so
    the pirate's best move is to draw many whole keys and keep the one the
    stolen model agrees with most.  Each key costs what it costs the attacker:
    a full KeyGen (``n`` VRF proofs) and ``n`` queries of the stolen model."""
    model = load_model(model_dir)
    identity = SigningKey.generate()
    start = time.perf_counter()
    pairs, matched = [], []
    with torch_threads(1):
        for j in range(keys):
            pair = keygen_derived(owner=identity, n=n, num_classes=NUM_CLASSES, input_shape=SHAPE)
            pairs.append(pair)
            matched.append(agreement(model, pair.marking_key))
            if progress:
                progress(j + 1)
    return Grind(identity, tuple(pairs), np.stack(matched), time.perf_counter() - start)


def splice(grind: Grind, root: Path) -> tuple[Keys, int]:
    """The best ground key with every item the model disagrees with swapped for
    another key's item at that index that it agrees with, where one has such an
    item: what per-item re-drawing would buy.  Returns the key and how many
    items were swapped."""
    base = grind.pairs[grind.best]
    donors = [int(np.flatnonzero(grind.matched[:, i])[0]) if grind.matched[:, i].any()
              and not grind.matched[grind.best, i] else grind.best for i in range(base.verification_key.n)]
    vk = replace(base.verification_key, commitments=tuple(
        grind.pairs[j].verification_key.commitments[i] for i, j in enumerate(donors)))
    mk = replace(base.marking_key, vk_digest=vk.digest, openings=tuple(
        grind.pairs[j].marking_key.openings[i] for i, j in enumerate(donors)))
    return save_keys(root, grind.identity, vk, mk), sum(j != grind.best for j in donors)


def pgd_targeted(model: Classifier, images: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Targeted L-inf PGD on the pixel scale, rounded back to uint8 images."""
    model.eval()  # dropout off, as when anyone queries the model
    start, goal = torch.from_numpy(images).float(), torch.from_numpy(targets).long()
    x = start.clone()
    with torch_threads(1):
        for _ in range(PGD_STEPS):
            x.requires_grad_(True)
            (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), goal), x)
            x = x.detach() - PGD_STEP * grad.sign()
            x = torch.minimum(torch.maximum(x, start - PGD_EPS), start + PGD_EPS).clamp(0, 255)
    return x.round().to(torch.uint8).numpy()


@dataclass(frozen=True, eq=False)
class Forgery:
    keys: Keys
    images: np.ndarray      # what the forger perturbed its images into
    labels: np.ndarray      # the labels it wants the model to give them
    hit_rate: float         # how many of the perturbed images the stolen model gives those labels


def forge_imported(root: Path, model_dir: Path, *, n: int, seed: int) -> Forgery:
    """Forging with adversarial examples: perturb the attacker's own images until
    the stolen model gives labels of the attacker's choosing (never the class
    it gives the clean image, or this would be plain piracy), and commit them."""
    model = load_model(model_dir)
    rng = np.random.default_rng(seed)
    starts = attacker_images(n, rng)
    chosen = (classify(model, starts) + rng.integers(1, NUM_CLASSES, n)) % NUM_CLASSES
    forged = pgd_targeted(model, starts, chosen)
    return Forgery(commit_imported(root, forged, chosen), forged, chosen,
                   float((classify(model, forged) == chosen).mean()))


def forge_derived(root: Path, model_dir: Path, *, n: int) -> tuple[Forgery, KeyPair, SigningKey]:
    """The same forger with a derived set: the labels are the VRF's, and it
    perturbs the rendered images toward them, though the verifier will render
    its own from the VRF outputs."""
    model = load_model(model_dir)
    identity = SigningKey.generate()
    pair = keygen_derived(owner=identity, n=n, num_classes=NUM_CLASSES, input_shape=SHAPE)
    triggers = trigger_set_from_marking_key(pair.marking_key)
    forged = pgd_targeted(model, triggers.images, triggers.labels)
    return (Forgery(save_pair(root, identity, pair), forged, triggers.labels,
                    float((classify(model, forged) == triggers.labels).mean())), pair, identity)


def smuggle_images(pair: KeyPair, identity: SigningKey, images: np.ndarray, model_dir: Path) -> RevealAccepted:
    """Answer a real verifier session's challenge with the derived openings
    plus the forger's perturbed images; the verifier's session raises."""
    mk = replace(pair.marking_key, openings=tuple(replace(o, image=encode_image(SHAPE, im.tobytes()))
                                                  for o, im in zip(pair.marking_key.openings, images)))
    verifier = VerifierSession(pair.verification_key, SigningKey.generate(),
                               ModelRef(sha256=model_file_digest(model_dir)), pair.verification_key.n)
    prover = ProverSession(mk, pair.verification_key, identity)
    prover.receive(verifier.challenge())
    event = verifier.receive(prover.reveal())
    assert isinstance(event, RevealAccepted)
    return event


def public_openings(transcript: Path) -> tuple[AuditReport, tuple[ItemOpening, ...]]:
    """The audit of a public verification (k = n) and every opening it made public, by index."""
    loaded = load_transcript(transcript)
    report = audit(loaded)
    reveal = decode(loaded.reveal, (Reveal,))
    assert isinstance(reveal, Reveal) and len(reveal.openings) == report.vk.n, "not a public verification"
    return report, tuple(sorted(reveal.openings, key=lambda o: o.index))


def replay_imported(root: Path, transcript: Path) -> Keys:
    """Replay: commit to the images and labels a public verification revealed, as an imported set."""
    report, _ = public_openings(transcript)
    return commit_imported(root, item_images(report.items, report.vk.input_shape),
                           np.array([i.label for i in report.items]))


def _borrowed_marking_key(vk: VerificationKey, openings: tuple[ItemOpening, ...]) -> MarkingKey:
    # A derived marking key must hold a VRF secret key; the thief has none of
    # the owner's and needs none, since it only ever sends openings it copied.
    return MarkingKey(vk_digest=vk.digest, scheme=vk.scheme, kind=vk.kind, input_shape=vk.input_shape,
                      num_classes=vk.num_classes, openings=openings, vrf_secret_key=VrfSecretKey.generate())


def claim_with_own_prover(keys: Keys, model: Path, tmp: Path, name: str) -> tuple[int, str]:
    """A thief's claim made with its own prover code: our `wmark-prover` refuses a
    marking key whose VRF key is not the vk's, so the thief signs its reveal itself.
    Returns `wmark-verifier check`'s exit code and output."""
    challenge, reveal = tmp / f"{name}-challenge.json", tmp / f"{name}-reveal.json"
    ident = ("--identity", tmp / "verifier.pem")
    code, out = run_main(verifier_main, "challenge", "--vk", keys.vk, "--model", model, "--k", 20,
                         "--out", challenge, *ident)
    assert code == 0, out
    vk, _ = load_verification_key(keys.vk)
    mk = load_marking_key(keys.mk, None)
    digest = Challenge.digest_of(dsse.Envelope.from_json(challenge.read_bytes()))
    openings = tuple(mk.openings[i] for i in sample_subset(digest, vk.n, 20))
    reveal.write_bytes(Reveal(digest, vk.digest, vk.scheme, openings).sign(load_signing_key(keys.owner)).to_json())
    return run_main(verifier_main, "check", "--vk", keys.vk, "--challenge", challenge, "--reveal", reveal,
                    "--model", model, "--out", tmp / f"{name}-verdict.json", *ident)


def replay_derived(root: Path, transcript: Path) -> Keys:
    """Replay keeping the set derived: the owner's VRF public key, the revealed
    VRF outputs re-committed with fresh randomness under the thief's identity,
    so no commitment repeats one the owner registered."""
    report, openings = public_openings(transcript)
    vk, thief = report.vk, SigningKey.generate()
    commitments, recommitted = [], []
    for o in openings:
        assert o.vrf_proof is not None  # a derived key's revealed openings carry their VRF proofs
        c_item, r_item = commit(proof_to_hash(o.vrf_proof), vk.scheme)
        c_label, r_label = commit(label_message(o.label), vk.scheme)
        commitments.append(ItemCommitments(c_item, c_label))
        recommitted.append(ItemOpening(o.index, o.label, r_item, r_label, vrf_proof=o.vrf_proof))
    stolen = replace(vk, commitments=tuple(commitments), owner=thief.public_key, created=now())
    return save_keys(root, thief, stolen, _borrowed_marking_key(stolen, tuple(recommitted)))


def transplant(root: Path, transcript: Path) -> Keys:
    """The owner's verification key, commitments and all, re-signed by another identity,
    with the openings a public verification revealed."""
    report, openings = public_openings(transcript)
    thief = SigningKey.generate()
    stolen = replace(report.vk, owner=thief.public_key)
    return save_keys(root, thief, stolen, _borrowed_marking_key(stolen, openings))


@dataclass(frozen=True)
class Greedy:
    exchanges: tuple[tuple[Path, Path], ...]  # (challenge, answer) files, in order
    entries: tuple[LedgerEntry, ...]          # the prover's ledger record of each


def greedy_verifier(keys: Keys, model: Path, tmp: Path, *, k: int, rounds: int) -> Greedy:
    """A verifier that keeps sending fresh challenges, each answered by
    `wmark-prover prove` in a process of its own against one ledger with the
    default budget (50%)."""
    ledger, exchanges = tmp / "greedy.ledger", []
    for r in range(rounds):
        challenge, answer = tmp / f"greedy-{r}-challenge.json", tmp / f"greedy-{r}-answer.json"
        code, out = run_main(verifier_main, "challenge", "--vk", keys.vk, "--model", model, "--k", k,
                             "--out", challenge, "--identity", tmp / "verifier.pem")
        assert code == 0, out
        proved = run_cli("wmark-prover", "prove", "--mk", str(keys.mk), "--vk", str(keys.vk), "--challenge",
                         str(challenge), "--out", str(answer), "--owner-key", str(keys.owner), "--ledger", str(ledger))
        assert proved.returncode in (0, 1), proved.stderr
        exchanges.append((challenge, answer))
    return Greedy(tuple(exchanges), Ledger.open_existing(ledger).entries())


def innocent_model(path: Path, *, seed: int, epochs: int) -> Path:
    """A digits model trained with no watermark at all, from its own seed
    (initial weights and batch order)."""
    task = load_task("digits")
    recipe = replace(default_recipe("digits"), triggers_per_batch=0, epochs=epochs, seed=seed)
    save_model(path, embed(start_model(task, seed=seed), task, None, recipe).model)
    return path


def task_accuracy(model_dir: Path) -> float:
    """Digits test accuracy: an innocent model must be a real classifier, not a broken one."""
    test = load_task("digits").test
    return float((classify(load_model(model_dir), test.images) == test.labels).mean())


# --- registry-bound labels (docs/design.md section 2): the owner commits, the log's beacon draws the labels ------

# The circuit and SRS a zero-knowledge challenge names; the scenarios below take
# every proof as verified, so what they measure is what the labels allow.
ZK_PARAMETERS = ZkParameters(srs_sha256=b"\x01" * 32, srs_logrows=15, srs_origin=SrsOrigin.VERIFIER,
                             circuit_sha256=b"\x02" * 32)


def natural_images(n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` ordinary digits test images and their true classes: what a cheating owner commits to."""
    test = load_task("digits").test
    picks = np.random.default_rng(seed).choice(len(test.images), n, replace=False)
    return test.images[picks], test.labels[picks]


def commit_bound(root: Path, images: np.ndarray, labels: np.ndarray, *, zk=None,
                 label_source: LabelSource = LabelSource.REGISTRY) -> tuple[Keys, KeyPair]:
    """An imported key over ``images`` committing ``labels``; registry-bound unless told otherwise."""
    identity = SigningKey.generate()
    pair = keygen_imported(owner=identity, images=[im.tobytes() for im in images], labels=[int(x) for x in labels],
                           num_classes=NUM_CLASSES, input_shape=SHAPE, zk=zk, label_source=label_source)
    return save_pair(root, identity, pair), pair


def registered(keys: Keys, log: Path) -> RegistrationInfo:
    """Register ``keys`` in ``log`` (`wmark register`) and check the receipt it wrote."""
    code, out = register(keys, log)
    assert code == 0, out
    vk, _ = load_verification_key(keys.vk)
    receipt = Receipt.from_json((keys.root / "vk.receipt.json").read_bytes())
    return verify_receipt(receipt, vk, LogStore.open(log, check=False).public_key)


def embed_after_registration(keys: Keys, beta: bytes, out: Path, *, epochs: int = HONEST_EPOCHS,
                             seed: int = 0) -> Path:
    """The honest order: the owner trains with the labels its receipt fixes."""
    task = load_task("digits")
    mk = load_marking_key(keys.mk, None)
    recipe = replace(default_recipe("digits"), epochs=epochs, seed=seed)
    with torch_threads(1):
        save_model(out, embed(start_model(task, seed=seed), task, trigger_set_from_marking_key(mk, beta=beta),
                              recipe).model)
    return out


def zk_claim(pair: KeyPair, identity: SigningKey, model_dir: Path, images: np.ndarray,
             registration: RegistrationInfo | None, *, k: int, p0: str | None = None) -> Decision:
    """A zero-knowledge claim through the real sessions, each proof proving what a sound proof
    must: the class the model gives the hidden input (the verifier never sees the images)."""
    vk = pair.verification_key
    verifier = ZkVerifierSession(vk, SigningKey.generate(), ModelRef(sha256=model_file_digest(model_dir)), k,
                                 zk=ZK_PARAMETERS, registration=registration,
                                 p0=Fraction(p0) if p0 else None)
    prover = ProverSession(pair.marking_key, vk, identity)
    event = prover.receive(verifier.challenge())
    assert isinstance(event, ChallengeReceived)  # the first message a prover receives: the challenge
    assert vk.zk is not None  # a zero-knowledge claim needs a key made with zk commitments
    predicted = classify(load_model(model_dir), images[list(event.indices)])
    statements = {i: ZkStatement(vk.zk.hashes[i], int(c), b"sound proof of item %d" % i)
                  for i, c in zip(event.indices, predicted)}
    verifier.receive(prover.zk_reveal(statements))
    verdict = decode(verifier.decide_zk({i: None for i in event.indices}), (Verdict,))
    assert isinstance(verdict, Verdict)
    return decide(verdict.matches, verdict.k, verdict.p0, verdict.lam)


@dataclass(frozen=True)
class Regrind:
    """An owner re-registering fresh commitments to the same natural images, hoping for a lucky beta."""

    matches: np.ndarray     # per registration, items whose bound label the model gives
    decisions: tuple[Decision, ...]

    @property
    def accepted(self) -> int:
        return sum(d.accepted for d in self.decisions)


def regrind(model_dir: Path, log: Path, tmp: Path, *, attempts: int, n: int, seed: int = 0) -> Regrind:
    """``attempts`` registrations of ``n`` natural images with their true classes, each a new
    key (new commitments, so a new vk digest and a new beta), scored at k = n."""
    images, labels = natural_images(n, seed=seed)
    answers = classify(load_model(model_dir), images)
    matches, decisions = [], []
    with LogStore.open(log) as store:
        for attempt in range(attempts):
            identity = SigningKey.generate()
            pair = keygen_imported(owner=identity, images=[im.tobytes() for im in images],
                                   labels=[int(x) for x in labels], num_classes=NUM_CLASSES, input_shape=SHAPE,
                                   label_source=LabelSource.REGISTRY)
            beta = verify_receipt(store.register(pair.verification_key), pair.verification_key,
                                  store.public_key).beta
            assert beta is not None  # LogStore.register always issues a beacon
            bound = [bound_label(beta, i, int(c), NUM_CLASSES) for i, c in enumerate(labels)]
            hits = int(sum(int(a) == b for a, b in zip(answers, bound)))
            matches.append(hits)
            decisions.append(decide(hits, n, Fraction(1, NUM_CLASSES)))
    return Regrind(np.array(matches), tuple(decisions))


def bound_replay(root: Path, transcript: Path) -> Keys:
    """Replay against a registry-bound owner: commit the images a public verification opened with
    the very labels the owner's model was checked against, under a key of one's own."""
    report, _ = public_openings(transcript)
    labels = np.array([r.label for r in report.verdict.results])
    keys, _ = commit_bound(root, item_images(report.items, report.vk.input_shape), labels)
    return keys
