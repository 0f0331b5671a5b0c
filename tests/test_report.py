"""``wmark-verifier report``: the HTML page of a transcript, parsed and opened in a
real headless Chromium (skipped, with the reason, when none is installed;
.ci/run installs Debian's)."""

from __future__ import annotations

import base64
import io
import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from tests.support.chromium import find_chromium, open_page
from tests.test_zk_protocol import PARAMETERS, FakeHasher, honest
from wmark.files import atomic_write
from wmark.protocol.hazmat.encoding import b64u_encode
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.items import vrf_alpha
from wmark.protocol.keygen import KeyPair, keygen_derived
from wmark.protocol.messages import ModelRef
from wmark.protocol.patterns import render_many
from wmark.protocol.session import ProverSession, VerifierSession, ZkVerifierSession
from wmark.protocol.transcript import Registration, Transcript, audit
from wmark.registry.store import LogStore
from wmark.verifier.cli import main
from wmark.verifier.oracle import open_oracle
from wmark.verifier.report import png_data_uri
from wmark.verifier.verify import decide_with_model

K = 20
CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium or chromium-headless-shell on PATH "
                                                              "(apt-get install chromium; .ci/run does)")


@dataclass(frozen=True)
class World:
    pair: KeyPair
    owner: SigningKey
    zk_pair: KeyPair
    log_key: Path
    registration: Registration


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    tmp = tmp_path_factory.mktemp("report")
    owner = SigningKey.generate()
    pair = keygen_derived(owner=owner, n=100, num_classes=10, input_shape=(1, 8, 8))
    zk_pair = keygen_derived(owner=owner, n=30, num_classes=10, input_shape=(1, 8, 8), zk=FakeHasher())
    with LogStore.open(tmp / "log") as log:
        registration = Registration(log.register(pair.verification_key), log.public_key)
        log_key = log.public_key_path
    return World(pair, owner, zk_pair, log_key, registration)


SUSPECT = ModelRef(sha256=bytes(range(32)))


def make_transcript(world: World, *, matches: int, model: ModelRef = SUSPECT, registered: bool = True) -> Transcript:
    """A real signed exchange: the model's answers are given, the first ``matches`` of them right."""
    pair = world.pair
    reg = world.registration if registered else None
    vs = VerifierSession(pair.verification_key, SigningKey.generate(), model, K,
                         registration=reg.verify(pair.verification_key) if reg else None)
    ps = ProverSession(pair.marking_key, pair.verification_key, world.owner)
    ps.receive(vs.challenge())
    event = vs.receive(ps.reveal())
    answers = {item.index: item.label if n < matches else (item.label + 1) % 10
               for n, item in enumerate(event.items)}
    verdict = vs.decide(answers)
    return Transcript(pair.signed_vk, vs.challenge_envelope, vs.reveal_envelope, verdict, reg)


def make_zk_transcript(world: World) -> Transcript:
    """A zero-knowledge exchange; the proofs are opaque bytes as in test_zk_protocol (the audit and the
    report never check them: that needs ezkl, the model and the SRS, test_zk.py)."""
    pair = world.zk_pair
    vs = ZkVerifierSession(pair.verification_key, SigningKey.generate(), ModelRef(sha256=bytes(32)), K,
                           zk=PARAMETERS, lam=8)
    ps = ProverSession(pair.marking_key, pair.verification_key, world.owner)
    event = ps.receive(vs.challenge())
    reveal = ps.zk_reveal(honest(pair, event.indices, wrong=frozenset(event.indices[:2])))
    accepted = vs.receive(reveal)
    verdict = vs.decide_zk({item.index: ("the proof does not verify" if item.index == event.indices[2] else None)
                            for item in accepted.items})
    return Transcript(pair.signed_vk, vs.challenge_envelope, reveal, verdict)


def edited(transcript: Transcript) -> bytes:
    """The transcript with its verdict's match count raised, without the verifier's signature."""
    doc = json.loads(transcript.to_json())
    payload = json.loads(base64.urlsafe_b64decode(doc["verdict"]["payload"] + "=="))
    payload["matches"] += 1
    doc["verdict"]["payload"] = b64u_encode(json.dumps(payload).encode())
    return json.dumps(doc).encode()


class Page(HTMLParser):
    """Parses the report strictly enough to catch a broken page: every tag closed
    in order, and every resource reference collected."""

    VOID = frozenset({"meta", "img", "br", "hr", "input", "link", "circle", "line", "rect", "polyline", "path"})
    URL_ATTRIBUTES = frozenset({"src", "href", "action", "srcset", "poster", "data", "xlink:href", "formaction"})

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.refs: list[str] = []
        self.items: list[int] = []
        self.zk_items: list[int] = []
        self.tags: set[str] = set()
        self.text: list[str] = []
        self.feed(text)
        self.close()
        assert self.stack == [], f"unclosed tags {self.stack}"

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        attributes = dict(attrs)
        self.refs += [v or "" for k, v in attrs if k in self.URL_ATTRIBUTES]
        classes = (attributes.get("class") or "").split()
        if "item" in classes:
            self.items.append(int(attributes["data-index"]))
        if "zkitem" in classes:
            self.zk_items.append(int(attributes["data-index"]))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def well_formed(html_text: str) -> Page:
    page = Page(html_text)
    assert {"script", "iframe", "object", "embed", "link", "base", "form"}.isdisjoint(page.tags)
    assert all(ref.startswith("data:image/png;base64,") for ref in page.refs), page.refs
    assert "url(" not in html_text and "@import" not in html_text
    return page


def report(tmp_path: Path, *transcripts: bytes, args: tuple[str, ...] = ()) -> tuple[int, Path]:
    paths = []
    for n, data in enumerate(transcripts):
        paths.append(tmp_path / f"verdict{n}.json")
        atomic_write(paths[-1], data)
    out = tmp_path / "report.html"
    return main(["report", *map(str, paths), "--out", str(out), *args]), out


@needs_chromium
def test_an_accepted_transcript_renders_items_statistics_and_registration(world, tmp_path, capsys):
    transcript = make_transcript(world, matches=K)
    code, out = report(tmp_path, transcript.to_json(), args=("--log-key", str(world.log_key)))
    assert code == 0, capsys.readouterr().err
    text = out.read_text()
    page = well_formed(text)
    opened = [r.index for r in audit(transcript).verdict.results]
    assert page.items == opened and len(page.refs) == K
    assert text.count('class="item match"') == K
    body = " ".join(page.text)
    assert "ACCEPTED" in body and "1.00000e-20" in body and "tau=16" in body and "observed 20" in body
    assert world.registration.log_key.fingerprint in body  # the log you trust, named
    assert "entry index" in body and "passed" in body
    run = open_page(out, chromium=CHROMIUM)
    assert run.first_line.startswith("ACCEPTED: valid transcript")
    assert run.errors == [] and run.failed == []
    assert len(run.images) == K and all(image["ok"] for image in run.images)
    assert all(url == out.resolve().as_uri() or url.startswith("data:image/png;base64,") for url in run.requests)
    assert run.requests[0] == out.resolve().as_uri()
    assert run.screenshot.startswith(b"\x89PNG") and run.pdf.startswith(b"%PDF")
    (tmp_path / "accepted.png").write_bytes(run.screenshot)


@needs_chromium
def test_a_rejected_transcript_shows_its_misses(world, tmp_path, capsys):
    code, out = report(tmp_path, make_transcript(world, matches=3, registered=False).to_json())
    assert code == 0, capsys.readouterr().err
    text = out.read_text()
    page = well_formed(text)
    assert text.count('class="item match"') == 3 and text.count('class="item miss"') == K - 3
    assert "No registry receipt" in text and "REJECTED" in text
    run = open_page(out, chromium=CHROMIUM)
    assert run.first_line.startswith("REJECTED: valid transcript") and run.errors == [] and run.failed == []
    assert len(run.images) == K and len(page.items) == K


@needs_chromium
def test_a_zk_transcript_shows_statements_not_images(world, tmp_path, capsys):
    transcript = make_zk_transcript(world)
    code, out = report(tmp_path, transcript.to_json())
    assert code == 0, capsys.readouterr().err
    text = out.read_text()
    page = well_formed(text)
    verdict = audit(transcript).verdict
    assert page.refs == [] and page.items == [] and page.zk_items == [r.index for r in verdict.results]
    assert text.count("not counted: the proof does not verify") == 1
    assert text.count("(not the label)") == 2 and "Zero-knowledge verification" in text
    run = open_page(out, chromium=CHROMIUM)
    assert run.first_line.startswith(f"ACCEPTED: valid transcript {tmp_path / 'verdict0.json'}, {K - 3} of {K}")
    assert run.errors == [] and run.images == []


@needs_chromium
def test_an_edited_transcript_gets_a_page_that_says_invalid_first_and_exit_2(world, tmp_path, capsys):
    code, out = report(tmp_path, edited(make_transcript(world, matches=K)))
    assert code == 2
    assert "invalid transcript" in capsys.readouterr().err
    page = well_formed(out.read_text())
    assert page.items == [] and page.refs == []  # nothing of an unchecked transcript is shown
    run = open_page(out, chromium=CHROMIUM)
    assert run.first_line.startswith("INVALID TRANSCRIPT") and "verdict" in run.first_line
    assert "signature" in run.first_line
    assert run.errors == []


def test_the_invalid_line_is_red_and_first(world, tmp_path):
    code, out = report(tmp_path, b'{"type": "wmark/transcript", "version": 1}')
    text = out.read_text()
    assert code == 2
    body = text[text.index("<body>") + len("<body>"):]
    assert body.startswith('<p class="status invalid" id="status">INVALID TRANSCRIPT')
    assert re.search(r"\.status\.invalid \{ color: #c00", text)


def test_hostile_fields_are_escaped(world, tmp_path):
    model = ModelRef(url="http://x/<script>alert(1)</script>", name='"><img src=http://evil/>')
    code, out = report(tmp_path, make_transcript(world, matches=K, model=model).to_json())
    assert code == 0
    text = out.read_text()
    page = well_formed(text)
    assert "<script>" not in text and "&lt;script&gt;" in text and "&quot;&gt;&lt;img src=http://evil/&gt;" in text
    assert all(ref.startswith("data:") for ref in page.refs)


def test_a_report_holds_no_secret_of_the_marking_key(world, tmp_path):
    transcript = make_transcript(world, matches=K)
    code, out = report(tmp_path, transcript.to_json())
    assert code == 0
    text = out.read_text()
    mk, vk = world.pair.marking_key, world.pair.verification_key
    opened = set(Page(text).items)
    assert opened == {r.index for r in audit(transcript).verdict.results} and len(opened) == K
    unopened = [o for o in mk.openings if o.index not in opened]
    seeds = [vk.vrf_key.verify(vrf_alpha(o.index, vk.owner), o.vrf_proof) for o in unopened]
    # Every commitment's randomness (even the opened items', which the report need not show), the
    # VRF secret, and the unopened items' proofs and VRF outputs.
    secrets = [mk.vrf_secret_key.to_bytes(), *seeds, *(o.vrf_proof for o in unopened)]
    secrets += [r.randomness for o in mk.openings for r in (o.item_randomness, o.label_randomness)]
    assert len(secrets) == 1 + 2 * len(unopened) + 2 * 100
    for secret in secrets:
        for encoding in (secret.hex(), b64u_encode(secret), base64.b64encode(secret).decode()):
            assert encoding[:24] not in text
    # Nor are the unopened items' pictures (whose labels a model would give away).
    for image in render_many(seeds, vk.input_shape):
        assert png_data_uri(image) not in text
    assert sum(png_data_uri(image) in text for image in render_many(
        [vk.vrf_key.verify(vrf_alpha(o.index, vk.owner), o.vrf_proof) for o in mk.openings if o.index in opened],
        vk.input_shape)) == K  # the same test finds the opened ones


def test_two_transcripts_side_by_side_name_the_earlier_registration(world, tmp_path, capsys):
    first = make_transcript(world, matches=K).to_json()
    second = make_transcript(world, matches=K, registered=False).to_json()
    code, out = report(tmp_path, first, second, args=("--log-key", str(world.log_key)))
    assert code == 0, capsys.readouterr().err
    text = out.read_text()
    well_formed(text)
    assert text.count('<section class="claim accepted">') == 2
    assert f"Earlier claim: {tmp_path / 'verdict0.json'}" in text
    assert "the only claim with a receipt from a log you trust" in text


def test_without_a_trusted_log_two_transcripts_name_no_earlier_claim(world, tmp_path, capsys):
    first = make_transcript(world, matches=K).to_json()
    second = make_transcript(world, matches=K, registered=False).to_json()
    code, out = report(tmp_path, first, second)
    text = out.read_text()
    assert "Earlier claim:" not in text and "registration unverified" in text, text[-2000:]


def test_a_missing_file_is_a_usage_error_with_no_page(tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["report", str(tmp_path / "absent.json"), "--out", str(out)]) == 2
    assert not out.exists() and "absent.json" in capsys.readouterr().err


def test_a_receipt_from_a_log_you_do_not_trust_makes_the_page_invalid(world, tmp_path):
    with LogStore.open(tmp_path / "other-log") as other:
        other_key = other.public_key_path
    code, out = report(tmp_path, make_transcript(world, matches=K).to_json(), args=("--log-key", str(other_key)))
    assert code == 2
    text = out.read_text()
    assert '<body><p class="status invalid" id="status">INVALID TRANSCRIPT' in text
    assert "not from the log key" in text and Page(text).items == []


def test_two_transcripts_about_different_models_are_not_a_dispute(world, tmp_path, capsys):
    code, out = report(tmp_path, make_transcript(world, matches=K).to_json(),
                       make_transcript(world, matches=K, model=ModelRef(sha256=bytes(32))).to_json())
    assert code == 2 and "different models" in capsys.readouterr().err
    assert "Undecided: the two transcripts are about different models" in out.read_text()


def test_with_the_model_the_report_re_queries_it(digits_world, tmp_path, capsys):
    """The README's walk-through in small: a real marked model, verified, then reported with --model."""
    oracle = open_oracle(model_dir=str(digits_world.marked))
    pair = digits_world.pair
    vs = VerifierSession(pair.verification_key, SigningKey.generate(), oracle.model_ref, K)
    ps = ProverSession(pair.marking_key, pair.verification_key, digits_world.owner)
    ps.receive(vs.challenge())
    verdict = decide_with_model(vs, vs.receive(ps.reveal()), oracle, decoys=None)
    transcript = Transcript(pair.signed_vk, vs.challenge_envelope, vs.reveal_envelope, verdict)
    code, out = report(tmp_path, transcript.to_json(), args=("--model", str(digits_world.marked)))
    assert code == 0, capsys.readouterr().err
    text = out.read_text()
    assert "passed</span>: re-queried the model: 20 of 20 answers as recorded; 20 matches now" in text
    assert len(well_formed(text).items) == K
    # Another model than the challenged one is the user's mistake: no page, exit 2.
    again = tmp_path / "again.html"
    assert main(["report", str(tmp_path / "verdict0.json"), "--out", str(again),
                 "--model", str(digits_world.plain)]) == 2
    assert not again.exists() and "is about" in capsys.readouterr().err


def test_only_the_first_thumbnails_are_drawn(world, tmp_path, monkeypatch):
    """The bound on the page's work: beyond MAX_THUMBNAILS, items are listed without pictures."""
    monkeypatch.setattr("wmark.verifier.report.MAX_THUMBNAILS", 5)
    code, out = report(tmp_path, make_transcript(world, matches=K).to_json())
    page = well_formed(out.read_text())
    assert code == 0 and len(page.items) == K and len(page.refs) == 5
    assert "Items beyond the first 5 without their pictures" in out.read_text()


def test_large_images_are_shrunk_and_small_ones_grown(tmp_path):
    from PIL import Image

    for shape, size in (((1, 8, 8), (72, 72)), ((3, 512, 256), (36, 72)), ((3, 100, 100), (72, 72))):
        uri = png_data_uri(np.zeros(shape, dtype=np.uint8))
        image = Image.open(io.BytesIO(base64.b64decode(uri.removeprefix("data:image/png;base64,"))))
        assert image.size == size
