"""Margin queries (Kim et al. 2023): the query sampler, margin keys through the
real protocol, the ascent step and the query loss, and the command lines
(wmark.protocol.margin, wmark.protocol.keygen, wmark.protocol.session, wmark.watermark.margin)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from wmark import console
from wmark.errors import DecodeError, InvalidInput, LocalProtocolError, RemoteProtocolError
from wmark.protocol.decision import decide
from wmark.protocol.hazmat.encoding import canonical_json
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.hazmat.vrf import proof_to_hash
from wmark.protocol.items import TriggerKind
from wmark.protocol.keygen import keygen_derived, keygen_margin
from wmark.protocol.keys import MarkingKey, VerificationKey, verify_vk_envelope
from wmark.protocol.margin import MarginItems, QuerySplit, query_label, query_position, stratum
from wmark.protocol.messages import ModelRef, Reveal, Verdict, decode
from wmark.protocol.patterns import item_images
from wmark.protocol.session import ProverSession, RevealAccepted, VerifierSession
from wmark.protocol.transcript import Transcript, audit
from wmark.prover import cli as prover_cli
from wmark.verifier import cli as verifier_cli
from wmark.watermark import cli as wmark_cli
from wmark.watermark.attacks.verification import OwnerKeys, verify_privately
from wmark.watermark.datasets import load_task
from wmark.watermark.embed import embed, start_model
from wmark.watermark.margin import MarginLoss, MarginOptions, ascend, embed_margin, margin_recipe, query_split
from wmark.watermark.modelio import load_model
from wmark.watermark.triggers import TriggerSet, trigger_set_from_marking_key

SETTINGS = settings(deadline=None, max_examples=200)
P_MIN = 0.001
OWNER = SigningKey.generate()


def seeds(count: int) -> list[bytes]:
    """Stand-ins for VRF outputs: a SHA-256 counter."""
    return [hashlib.sha256(b"wmark-test/margin" + i.to_bytes(8, "big")).digest() for i in range(count)]


@pytest.fixture(scope="module")
def digits():
    return load_task("digits")


@pytest.fixture(scope="module")
def split(digits) -> QuerySplit:
    return query_split(digits)


@pytest.fixture(scope="module")
def pair(split):
    return keygen_margin(owner=OWNER, n=40, num_classes=10, split=split)


# --- the sampler ------------------------------------------------------------------------------------------------

@SETTINGS
@given(st.binary(min_size=32, max_size=32), st.integers(3, 1000), st.data())
def test_a_query_label_is_a_function_of_the_seed_and_never_the_true_class(seed, num_classes, data):
    true = data.draw(st.integers(0, num_classes - 1))
    label = query_label(seed, true, num_classes)
    assert label == query_label(seed, true, num_classes)
    assert 0 <= label < num_classes and label != true


@SETTINGS
@given(st.integers(1, 500), st.data())
def test_strata_cut_the_split_into_n_disjoint_nonempty_runs(size, data):
    n = data.draw(st.integers(1, size))
    positions = [p for i in range(n) for p in stratum(i, n, size)]
    assert positions == list(range(size))
    assert all(len(stratum(i, n, size)) in (size // n, -(-size // n)) for i in range(n))


@SETTINGS
@given(st.binary(min_size=32, max_size=32), st.integers(1, 500), st.data())
def test_a_query_position_is_a_function_of_the_seed_within_its_stratum(seed, size, data):
    n = data.draw(st.integers(1, size))
    index = data.draw(st.integers(0, n - 1))
    position = query_position(seed, index, n, size)
    assert position == query_position(seed, index, n, size)
    assert position in stratum(index, n, size)


@pytest.mark.parametrize("true", [0, 4, 9])
def test_query_labels_are_uniform_over_the_other_classes(true):
    counts = np.bincount([query_label(s, true, 10) for s in seeds(9000)], minlength=10)
    assert counts[true] == 0
    assert chisquare(np.delete(counts, true)).pvalue > P_MIN


def test_query_positions_are_uniform_within_a_stratum():
    # 100 images, 25 items: strata of 4.
    counts = np.bincount([query_position(s, 7, 25, 100) for s in seeds(4000)], minlength=100)
    assert set(np.flatnonzero(counts)) <= set(stratum(7, 25, 100))
    assert chisquare(counts[list(stratum(7, 25, 100))]).pvalue > P_MIN


def test_items_of_a_key_take_distinct_images_with_wrong_labels(pair, split, digits):
    queries = trigger_set_from_marking_key(pair.marking_key, split)
    items = MarginItems(split, pair.marking_key.n, 10)
    positions = [items.item(proof_to_hash(o.vrf_proof), o.index)[0] for o in pair.marking_key.openings]
    assert len(set(positions)) == len(positions)
    assert np.array_equal(queries.images, digits.query.images[positions])
    assert (queries.labels != digits.query.labels[positions]).all()


@pytest.mark.parametrize("n, num_classes, labels, fragment", [
    (5, 10, (0, 1, 2, 3), "need a split of at least 5"),
    (2, 2, (0, 1, 0, 1), "at least 3 classes"),
    (2, 3, (0, 1, 3, 1), "labels up to 3"),
])
def test_margin_items_refuse_what_cannot_work(n, num_classes, labels, fragment):
    split = QuerySplit("toy", "query", (1, 1, 1), bytes(len(labels)), labels)
    with pytest.raises(InvalidInput, match=fragment):
        MarginItems(split, n, num_classes)


def test_the_split_digest_covers_images_and_labels(split):
    pixels = bytearray(split.pixels)
    pixels[5] ^= 1
    assert replace(split, pixels=bytes(pixels)).source.digest != split.source.digest
    assert replace(split, labels=(split.labels[0] + 1,) + split.labels[1:]).source.digest != split.source.digest


# --- keys --------------------------------------------------------------------------------------------------------

def test_a_margin_key_round_trips_and_records_its_split(pair, split):
    vk, mk = pair.verification_key, pair.marking_key
    assert vk.kind is TriggerKind.MARGIN and vk.margin == split.source and mk.margin == split.source
    assert verify_vk_envelope(pair.signed_vk, what="vk") == vk
    assert VerificationKey.from_payload(vk.payload).payload == vk.payload
    again = MarkingKey.from_bytes(mk.to_bytes())
    assert again.to_bytes() == mk.to_bytes() and again.margin == split.source


def test_keys_of_other_kinds_carry_no_margin_section():
    vk = keygen_derived(owner=OWNER, n=2, num_classes=10, input_shape=(1, 8, 8)).verification_key
    assert b'"margin"' not in vk.payload and vk.margin is None


def edited(payload: bytes, edit) -> bytes:
    obj = json.loads(payload)
    edit(obj)
    return canonical_json(obj)


@pytest.mark.parametrize("edit, fragment", [
    (lambda o: o.pop("margin"), "required for, and only for, margin"),
    (lambda o: o.update(trigger_kind="derived"), "required for, and only for, margin"),
    (lambda o: o["margin"].update(size=39), "cannot take distinct images"),
    (lambda o: o["margin"].update(size=10**9), "size"),
    (lambda o: o["margin"].update(dataset="digits\x1b[2J"), "not a data set or split name"),
    (lambda o: o["margin"].update(split="../../etc"), "not a data set or split name"),
    (lambda o: o["margin"].update(digest="AAAA"), "digest"),
    (lambda o: o["margin"].update(extra=1), "extra"),
    (lambda o: o.update(num_classes=2), "at least 3 classes"),
    (lambda o: o.update(vrf_public_key=None), "VRF public key"),
])
def test_hostile_margin_sections_are_refused(pair, edit, fragment):
    with pytest.raises(DecodeError, match=fragment):
        VerificationKey.from_payload(edited(pair.verification_key.payload, edit))


def test_a_margin_marking_key_needs_its_section_and_proofs(pair):
    with pytest.raises(DecodeError, match="margin"):
        MarkingKey.from_bytes(edited(pair.marking_key.to_bytes(), lambda o: o.pop("margin")))
    with pytest.raises(DecodeError, match="VRF proof per item"):
        MarkingKey.from_bytes(edited(pair.marking_key.to_bytes(), lambda o: o["openings"][0].pop("vrf_proof")))


# --- the protocol ------------------------------------------------------------------------------------------------

def honest_session(pair, split, k: int, lam: int | None = None):
    verifier = VerifierSession(pair.verification_key, SigningKey.generate(), ModelRef(sha256=bytes(32)), k,
                               margin=split, lam=lam)
    prover = ProverSession(pair.marking_key, pair.verification_key, OWNER)
    prover.receive(verifier.challenge())
    return verifier, prover, prover.reveal()


def test_margin_items_open_through_the_real_sessions_and_audit(pair, split, digits):
    verifier, _, reveal = honest_session(pair, split, 40)
    event = verifier.receive(reveal)
    assert isinstance(event, RevealAccepted)
    queries = trigger_set_from_marking_key(pair.marking_key, split)
    assert np.array_equal(item_images(event.items, pair.verification_key.input_shape), queries.images)
    verdict_env = verifier.decide({item.index: item.label for item in event.items})
    verdict = decode(verdict_env, (Verdict,))
    assert isinstance(verdict, Verdict)
    assert verdict.accepted and verdict.p0 == Fraction(1, 9) and verdict.trigger_kind is TriggerKind.MARGIN
    transcript = Transcript(pair.signed_vk, verifier.challenge_envelope, reveal, verdict_env)
    assert audit(transcript, margin=split).verdict == verdict
    with pytest.raises(LocalProtocolError, match="query split"):
        audit(transcript)


def test_a_verifier_needs_the_very_split_the_key_was_made_on(pair, split):
    other = replace(split, labels=tuple((label + 1) % 10 for label in split.labels))
    with pytest.raises(LocalProtocolError, match="not the one the key was made on"):
        VerifierSession(pair.verification_key, SigningKey.generate(), ModelRef(sha256=bytes(32)), 5, margin=other)
    derived = keygen_derived(owner=OWNER, n=2, num_classes=10, input_shape=(1, 8, 8)).verification_key
    with pytest.raises(LocalProtocolError, match="derived key"):
        VerifierSession(derived, SigningKey.generate(), ModelRef(sha256=bytes(32)), 1, margin=split)
    # A challenge needs no data; checking the reveal does.
    verifier = VerifierSession(pair.verification_key, SigningKey.generate(), ModelRef(sha256=bytes(32)), 5, lam=8)
    prover = ProverSession(pair.marking_key, pair.verification_key, OWNER)
    prover.receive(verifier.challenge())
    with pytest.raises(LocalProtocolError, match="not given"):
        verifier.receive(prover.reveal())


def test_a_reveal_claiming_the_true_class_is_refused(pair, split, digits):
    verifier, prover, reveal = honest_session(pair, split, 5, lam=8)
    honest = decode(reveal, (Reveal,))
    assert isinstance(honest, Reveal)
    items = MarginItems(split, pair.verification_key.n, 10)
    first = honest.openings[0]
    position, _ = items.item(proof_to_hash(first.vrf_proof), first.index)
    forged = replace(honest, openings=(replace(first, label=split.labels[position]), *honest.openings[1:]))
    with pytest.raises(RemoteProtocolError, match="label is not the one derived"):
        verifier.receive(forged.sign(OWNER))


# --- embedding ---------------------------------------------------------------------------------------------------

def test_ascent_moves_queries_up_their_loss_within_the_pixel_range(digits, pair, split):
    torch.manual_seed(0)
    model = start_model(digits).eval()
    queries = trigger_set_from_marking_key(pair.marking_key, split)
    pixels, labels = torch.from_numpy(queries.images), torch.from_numpy(queries.labels)
    options = MarginOptions(ascent_steps=3, step_size=4 / 255)
    moved = ascend(model, pixels, labels, options)
    change = (moved - pixels.float()).abs()
    assert change.max() > 0 and change.max() <= 3 * 4 + 1e-4
    assert moved.min() >= 0 and moved.max() <= 255
    with torch.no_grad():
        assert F.cross_entropy(model(moved), labels) > F.cross_entropy(model(pixels), labels)
    assert all(p.grad is None for p in model.parameters())


def test_the_query_loss_weighs_clean_images_and_perturbed_queries(digits, pair, split):
    torch.manual_seed(0)
    model = start_model(digits).eval()
    queries = trigger_set_from_marking_key(pair.marking_key, split)
    x, y = torch.from_numpy(digits.train.images[:10]), torch.from_numpy(digits.train.labels[:10])
    loss = MarginLoss(queries, MarginOptions(ascent_steps=0, queries_per_batch=len(queries), lam=1.0), seed=0)
    # With no ascent and lambda 1, the loss is the plain mean over clean images and the drawn queries.
    picked = torch.randint(len(queries), (len(queries),), generator=torch.Generator().manual_seed(0))
    both = torch.cat([x.float(), torch.from_numpy(queries.images)[picked].float()])
    expected = F.cross_entropy(model(both), torch.cat([y, torch.from_numpy(queries.labels)[picked]]))
    assert torch.allclose(loss(model, x, y), expected)


def test_the_scheme_trains_and_a_few_epochs_teach_the_queries(digits, split):
    pair = keygen_margin(owner=OWNER, n=10, num_classes=10, split=split)
    queries = trigger_set_from_marking_key(pair.marking_key, split)
    recipe = replace(margin_recipe("digits"), epochs=6, lr_step=0)
    result = embed_margin(start_model(digits), digits, queries, recipe, MarginOptions(lam=1.0),
                          vk_digest=pair.verification_key.digest)
    assert result.model.config.vk_digest == pair.verification_key.digest
    assert result.evaluation.test.accuracy > 0.9
    assert result.evaluation.triggers.accuracy >= 0.8


# --- innocent and marked models ------------------------------------------------------------------------------------

def test_innocent_digits_models_are_rejected_with_a_margin_key(digits_world, split):
    pair = keygen_margin(owner=OWNER, n=100, num_classes=10, split=split)
    keys = OwnerKeys(pair.marking_key, pair.verification_key, OWNER)
    for path in (digits_world.plain, digits_world.marked):
        outcome = verify_privately(load_model(path), keys, 100, margin=split)
        assert not outcome.accepted and outcome.matches <= 10


@pytest.mark.slow
def test_a_margin_marked_digits_model_keeps_its_accuracy_and_would_be_accepted(digits, split):
    # Fixed seeds instead of a VRF key, so the run is repeatable: how much a
    # marked model loses depends on which labels a key draws, 0.3 to 1.1
    # points of test accuracy over the keys tried (1.1 for these seeds; 4 of
    # 360 test images), so the bound here is 1.5 points.
    items = MarginItems(split, 100, 10)
    drawn = [items.item(seed, i) for i, seed in enumerate(seeds(100))]
    queries = TriggerSet(digits.query.images[[p for p, _ in drawn]], np.array([label for _, label in drawn]), 10)
    marked = embed_margin(start_model(digits), digits, queries, margin_recipe("digits"))
    baseline = embed(start_model(digits), digits, None, margin_recipe("digits"))
    assert marked.evaluation.test.accuracy >= baseline.evaluation.test.accuracy - 0.015
    matches = marked.evaluation.triggers.correct
    assert decide(matches, 100, Fraction(1, 9), 40).accepted


# --- the command lines ---------------------------------------------------------------------------------------------

def test_keygen_embed_and_verify_a_margin_key_on_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(console.PASSPHRASE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert wmark_cli.main(["keygen", "--out", "keys", "--kind", "margin", "--n", "30",
                               "--insecure-plaintext"]) == 0
    out = capsys.readouterr().out
    assert "30 margin items" in out and "digits/query (100 images" in out
    # Enough epochs to teach 20 of the 30 queries (tau at p0 = 1/9, lambda = 40), so
    # the check below is one real acceptance of a margin-marked model in the default run.
    assert wmark_cli.main(["embed", "--mk", "keys/mk.wmk", "--out", "m", "--epochs", "10", "--quiet",
                               "--step-size", "2/255", "--margin-lambda", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "5 ascent steps of 2/255, lambda 0.5" in out and "query accuracy" in out
    assert wmark_cli.main(["eval", "--model", "m", "--mk", "keys/mk.wmk"]) == 0
    assert "query accuracy" in capsys.readouterr().out
    assert wmark_cli.main(["attack", "--model", "m", "--kind", "extract-soft", "--epochs", "1", "--copies", "0",
                               "--mk", "keys/mk.wmk", "--vk", "keys/vk.json", "--out", "stolen"]) == 0
    assert "k=30" in capsys.readouterr().out
    common = ["--vk", "keys/vk.json"]
    assert verifier_cli.main(["challenge", *common, "--model", "m", "--k", "30", "--out", "c.json"]) == 0
    assert prover_cli.main(["prove", "--mk", "keys/mk.wmk", *common, "--challenge", "c.json", "--out", "r.json",
                            "--budget", "1", "--ledger", "l.sqlite"]) == 0
    code = verifier_cli.main(["check", *common, "--challenge", "c.json", "--reveal", "r.json", "--model", "m",
                              "--out", "v.json"])
    out = capsys.readouterr().out
    assert code == console.EXIT_OK and "ACCEPTED: " in out and "p0=1/9" in out, out
    assert verifier_cli.main(["audit", "v.json", "--model", "m"]) == 0
    assert "queries       from digits/query" in capsys.readouterr().out


@pytest.mark.parametrize("argv, fragment", [
    (["keygen", "--out", "k", "--kind", "margin", "--n", "101"], "which has 100"),
    (["keygen", "--out", "k", "--kind", "margin", "--zk"], "--zk does not apply"),
    (["keygen", "--out", "k", "--kind", "margin", "--num-classes", "7"], "--num-classes"),
    (["keygen", "--out", "k", "--dataset", "cifar10"], "only apply to --kind margin"),
    (["embed", "--scheme", "margin", "--mk", "derived/mk.wmk", "--out", "m"], "does not fit a derived key"),
    (["embed", "--mk", "derived/mk.wmk", "--out", "m", "--ascent-steps", "3"], "only apply to --scheme margin"),
])
def test_margin_options_that_do_not_fit_are_usage_errors(tmp_path, monkeypatch, capsys, argv, fragment):
    monkeypatch.chdir(tmp_path)
    assert wmark_cli.main(["keygen", "--out", "derived", "--n", "2", "--insecure-plaintext"]) == 0
    capsys.readouterr()
    assert wmark_cli.main([*argv, "--insecure-plaintext"] if argv[0] == "keygen" else argv) == 2
    assert fragment in capsys.readouterr().err
