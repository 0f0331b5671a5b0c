"""The zero-knowledge exchange as protocol (docs/design.md section 4c), without a
proof system: keys with a ``zk`` section, the messages, both sessions, the
decision and the audit.  Proofs here are opaque bytes and the verifier's
proof check is simulated; test_zk.py runs the real ezkl proofs.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import sys
from dataclasses import replace

import pytest

from tests.support.fakes import FakeHasher
from tests.support.live import Keys, Peer, prover_server
from wmark.errors import DecodeError, InvalidOpening, LocalProtocolError, RemoteProtocolError
from wmark.files import atomic_write
from wmark.protocol.framing import FrameDecoder, blob_frames, encode_frame, envelope_from_frame
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.encoding import parse_json
from wmark.protocol.hazmat.identity import SigningKey, save_signing_key
from wmark.protocol.keyfile import save_marking_key
from wmark.protocol.keygen import keygen_derived
from wmark.protocol.keys import MarkingKey, VerificationKey
from wmark.protocol.messages import Challenge, ModelRef, Verdict, ZkReveal, decode
from wmark.protocol.session import (
    ProverSession,
    Refused,
    VerifierSession,
    VerifierState,
    ZkRevealAccepted,
    ZkVerifierSession,
)
from wmark.protocol.transcript import Transcript, audit
from wmark.protocol.zk import CAVEAT_DESIGNATED, CAVEAT_ZK, MIN_LOGROWS, SrsOrigin, ZkParameters, ZkStatement
from wmark.prover.ledger import Ledger
from wmark.watermark.zkcircuit import srs_size

MODEL = ModelRef(sha256=bytes(range(32)))
PARAMETERS = ZkParameters(srs_sha256=b"\x01" * 32, srs_logrows=15, srs_origin=SrsOrigin.VERIFIER,
                          circuit_sha256=b"\x02" * 32)


@pytest.fixture(scope="module")
def keys():
    owner = SigningKey.generate()
    pair = keygen_derived(owner=owner, n=12, num_classes=10, input_shape=(1, 8, 8), zk=FakeHasher())
    return pair, owner


def honest(pair, indices, *, wrong: frozenset[int] = frozenset()) -> dict[int, ZkStatement]:
    """What an honest prover's proofs claim; ``wrong`` items prove another class than their label."""
    vk, mk = pair.verification_key, pair.marking_key
    return {i: ZkStatement(vk.zk.hashes[i], (mk.openings[i].label + (i in wrong)) % 10, b"proof-%d" % i)
            for i in indices}


def exchange(pair, owner, k, statements=None, *, verifier=None):
    verifier = verifier or SigningKey.generate()
    vs = ZkVerifierSession(pair.verification_key, verifier, MODEL, k, zk=PARAMETERS, lam=8)
    ps = ProverSession(pair.marking_key, pair.verification_key, owner)
    event = ps.receive(vs.challenge())
    answer = ps.zk_reveal(statements(event.indices) if statements else honest(pair, event.indices))
    return vs, ps, answer


def test_keys_carry_the_zk_section_only_when_made_with_it(keys):
    pair, owner = keys
    vk, mk = pair.verification_key, pair.marking_key
    assert VerificationKey.from_payload(vk.payload) == vk
    assert MarkingKey.from_bytes(mk.to_bytes()).zk == mk.zk
    assert len(set(vk.zk.hashes)) == vk.n and len(set(mk.zk.salts)) == vk.n
    assert all(len(s) == 32 for s in mk.zk.salts)
    assert "salts" not in json.dumps(parse_json(vk.payload, what="vk"))
    plain = keygen_derived(owner=owner, n=3, num_classes=10, input_shape=(1, 8, 8))
    assert plain.verification_key.zk is None and b'"zk"' not in plain.verification_key.payload
    assert b'"zk"' not in plain.marking_key.to_bytes()


@pytest.mark.parametrize("edit, message", [
    (lambda zk: zk["commitments"].pop(), "commitments for"),
    (lambda zk: zk.update(hash="sha256"), "is not"),
    (lambda zk: zk.update(input_scale=99), "input_scale"),
    (lambda zk: zk.update(salt_bytes=16), "salt_bytes"),
])
def test_a_malformed_zk_section_is_refused(keys, edit, message):
    obj = json.loads(keys[0].verification_key.payload)
    edit(obj["zk"])
    with pytest.raises(DecodeError, match=message):
        VerificationKey.from_payload(json.dumps(obj).encode())


def test_plain_messages_keep_their_encoding(keys):
    pair, owner = keys
    session = VerifierSession(pair.verification_key, SigningKey.generate(), MODEL, 3, lam=8)
    assert "zk" not in json.loads(session.challenge().payload)


def test_an_honest_exchange_is_accepted_and_audits(keys):
    pair, owner = keys
    vs, ps, answer = exchange(pair, owner, 12)
    event = vs.receive(answer)
    assert isinstance(event, ZkRevealAccepted) and len(event.items) == 12
    verdict_env = vs.decide_zk({item.index: None for item in event.items})
    verdict = decode(verdict_env, (Verdict,))
    assert verdict.accepted and verdict.matches == 12 and verdict.zk.failures == ()
    assert CAVEAT_ZK in verdict.caveats and CAVEAT_DESIGNATED in verdict.caveats
    assert Verdict.from_payload(verdict_env.payload) == verdict
    ps.receive(verdict_env)
    report = audit(Transcript(pair.signed_vk, vs.challenge_envelope, answer, verdict_env))
    assert report.verdict == verdict and len(report.zk_items) == 12


def test_a_reveal_opens_labels_only(keys):
    pair, owner = keys
    _, _, answer = exchange(pair, owner, 12)
    item = json.loads(answer.payload)["items"][0]
    assert set(item) == {"index", "label", "r_label", "input_hash", "predicted", "proofs"}


def test_a_v1_reveal_with_one_proof_an_item_still_decodes_and_v2_carries_one_per_piece(keys):
    """Reveals made before split proofs (version 1, ``proof``) decode as one-piece statements;
    a field of the other version is refused."""
    pair, owner = keys
    _, _, answer = exchange(pair, owner, 3, lambda indices: {
        i: replace(honest(pair, [i])[i], more_proofs=(b"piece 2", b"piece 3")) for i in indices})
    v2 = ZkReveal.from_payload(answer.payload)
    assert [item.statement.proofs[1:] for item in v2.items] == [(b"piece 2", b"piece 3")] * 3
    obj = json.loads(answer.payload)
    assert obj["version"] == 2
    v1 = {**obj, "version": 1, "items": [{**{k: v for k, v in item.items() if k != "proofs"},
                                          "proof": item["proofs"][0]} for item in obj["items"]]}
    decoded = ZkReveal.from_payload(json.dumps(v1).encode())
    assert [item.statement.proofs for item in decoded.items] == [item.statement.proofs[:1] for item in v2.items]
    with pytest.raises(DecodeError, match=r"unknown field\(s\) \['proof'\]"):
        ZkReveal.from_payload(json.dumps({**v1, "version": 2}).encode())
    with pytest.raises(DecodeError, match="unsupported version 3"):
        ZkReveal.from_payload(json.dumps({**obj, "version": 3}).encode())
    with pytest.raises(DecodeError, match="version"):  # JSON true equals 1 in Python, and is no version
        ZkReveal.from_payload(json.dumps({**v1, "version": True}).encode())
    too_many = {**obj, "items": [{**item, "proofs": item["proofs"] * 11} for item in obj["items"]]}
    with pytest.raises(DecodeError, match="1 to 32 proofs"):
        ZkReveal.from_payload(json.dumps(too_many).encode())


def test_the_cut_a_challenge_pins_round_trips_and_old_challenges_have_none():
    pinned = replace(PARAMETERS, piece_rows=196608)
    assert ZkParameters.from_obj(pinned.to_obj(), what="c") == pinned
    assert "piece_rows" not in PARAMETERS.to_obj()
    assert ZkParameters.from_obj(PARAMETERS.to_obj(), what="c").piece_rows is None
    with pytest.raises(DecodeError, match="piece_rows"):
        ZkParameters.from_obj({**PARAMETERS.to_obj(), "piece_rows": 0}, what="c")


def test_swapped_and_failing_proofs_are_non_matches_reported_in_the_verdict(keys):
    pair, owner = keys

    def swapped(indices):
        statements = honest(pair, indices)
        a, b = indices[0], indices[1]
        statements[a], statements[b] = statements[b], statements[a]
        return statements

    vs, _, answer = exchange(pair, owner, 12, swapped)
    event = vs.receive(answer)
    first, second, third = (item.index for item in event.items[:3])
    verdict_env = vs.decide_zk({item.index: "simulated: does not verify" if item.index == third else None
                                for item in event.items})
    verdict = decode(verdict_env, (Verdict,))
    failed = {f.index: f.reason for f in verdict.zk.failures}
    assert set(failed) == {first, second, third}
    assert "another hidden input" in failed[first] and failed[third] == "simulated: does not verify"
    assert verdict.matches == 9
    assert [r.predicted for r in verdict.results[:3]] == [None, None, None]
    audit(Transcript(pair.signed_vk, vs.challenge_envelope, answer, verdict_env))


def test_audit_catches_a_verdict_that_counts_a_swapped_proof(keys):
    pair, owner = keys
    verifier = SigningKey.generate()

    def swapped(indices):
        statements = honest(pair, indices)
        statements[indices[0]] = statements[indices[1]]
        return statements

    vs, _, answer = exchange(pair, owner, 4, swapped, verifier=verifier)
    vs.receive(answer)
    honest_verdict = decode(vs.decide_zk({i: None for i in vs.subset}), (Verdict,))
    forged = Verdict(**{**honest_verdict.__dict__, "zk": honest_verdict.zk.__class__(PARAMETERS, ())})
    with pytest.raises(InvalidOpening, match="do not follow"):
        audit(Transcript(pair.signed_vk, vs.challenge_envelope, answer, forged.sign(verifier)))


def test_wrong_labels_are_counted_not_hidden(keys):
    pair, owner = keys
    vs, _, answer = exchange(pair, owner, 12, lambda idx: honest(pair, idx, wrong=frozenset(idx[:5])))
    event = vs.receive(answer)
    verdict = decode(vs.decide_zk({i.index: None for i in event.items}), (Verdict,))
    assert verdict.matches == 7 and verdict.zk.failures == ()


def test_the_prover_never_opens_items_for_a_zk_challenge(keys):
    pair, owner = keys
    vs = ZkVerifierSession(pair.verification_key, SigningKey.generate(), MODEL, 3, zk=PARAMETERS, lam=8)
    ps = ProverSession(pair.marking_key, pair.verification_key, owner)
    ps.receive(vs.challenge())
    with pytest.raises(LocalProtocolError, match="never with openings"):
        ps.reveal()


def test_openings_do_not_answer_a_zk_challenge(keys):
    pair, owner = keys
    verifier = SigningKey.generate()
    vs = ZkVerifierSession(pair.verification_key, verifier, MODEL, 3, zk=PARAMETERS, lam=8)
    plain = Challenge.from_payload(vs.challenge().payload)
    ps = ProverSession(pair.marking_key, pair.verification_key, owner)
    ps.receive(Challenge(**{**plain.__dict__, "zk": None}).sign(verifier))
    with pytest.raises(RemoteProtocolError, match="zk-reveal"):
        vs.receive(ps.reveal())


def test_each_verifier_resumes_only_its_own_kind_of_challenge(keys):
    pair, _ = keys
    verifier = SigningKey.generate()
    zk_challenge = ZkVerifierSession(pair.verification_key, verifier, MODEL, 3, zk=PARAMETERS, lam=8).challenge()
    plain_challenge = VerifierSession(pair.verification_key, verifier, MODEL, 3, lam=8).challenge()
    with pytest.raises(LocalProtocolError, match="asks for zero-knowledge proofs"):
        VerifierSession.resume(pair.verification_key, verifier, zk_challenge)
    with pytest.raises(LocalProtocolError, match="asks for openings"):
        ZkVerifierSession.resume(pair.verification_key, verifier, plain_challenge)
    resumed = ZkVerifierSession.resume(pair.verification_key, verifier, zk_challenge)
    assert resumed.state is VerifierState.AWAIT_REVEAL and resumed.zk == PARAMETERS


def test_a_changed_label_is_a_broken_opening(keys):
    pair, owner = keys
    vs, _, answer = exchange(pair, owner, 3)
    obj = json.loads(answer.payload)
    obj["items"][0]["label"] = (obj["items"][0]["label"] + 1) % 10
    forged = ZkReveal.from_payload(json.dumps(obj).encode()).sign(owner)
    with pytest.raises(RemoteProtocolError, match="label"):
        vs.receive(forged)


def test_a_key_without_zk_commitments_cannot_be_challenged_in_zk(keys):
    _, owner = keys
    plain = keygen_derived(owner=owner, n=4, num_classes=10, input_shape=(1, 8, 8))
    with pytest.raises(LocalProtocolError, match="no zero-knowledge commitments"):
        ZkVerifierSession(plain.verification_key, SigningKey.generate(), MODEL, 2, zk=PARAMETERS)
    forged = Challenge(plain.verification_key.digest, MODEL, 4, 2, b"\0" * 32, owner.public_key, "now",
                       zk=PARAMETERS).sign(owner)
    with pytest.raises(RemoteProtocolError, match="no zero-knowledge commitments"):
        ProverSession(plain.marking_key, plain.verification_key, owner).receive(forged)


def test_an_endpoint_cannot_be_challenged_in_zk(keys):
    pair, _ = keys
    with pytest.raises(LocalProtocolError, match="weights"):
        ZkVerifierSession(pair.verification_key, SigningKey.generate(), ModelRef(url="http://x", name="m"), 2,
                          zk=PARAMETERS)


def test_zk_messages_cross_the_frame_transport_unchanged(keys):
    pair, owner = keys
    vs, _, answer = exchange(pair, owner, 12)
    decoder = FrameDecoder()
    frames = decoder.feed(encode_frame(answer.to_json()))
    event = vs.receive(envelope_from_frame(frames[0], sender="prover"))
    assert isinstance(event, ZkRevealAccepted)
    assert isinstance(dsse.Envelope.from_json(answer.to_json()), dsse.Envelope)


def test_without_ezkl_keygen_names_the_extra(monkeypatch, tmp_path, capsys):
    from wmark.watermark.cli import main

    monkeypatch.setitem(sys.modules, "ezkl", None)
    assert main(["keygen", "--out", str(tmp_path / "keys"), "--zk", "--insecure-plaintext"]) == 2
    assert "pip install '.[zk]'" in capsys.readouterr().err
    assert not (tmp_path / "keys").exists()


# --- wmark-prover serve, before any proof: the SRS and the model ------------


@pytest.fixture(scope="module")
def keys_on_disk(keys, tmp_path_factory) -> Keys:
    pair, owner = keys
    root = tmp_path_factory.mktemp("zk-keys")
    save_signing_key(root / "owner.pem", owner)
    save_marking_key(root / "mk.wmk", pair.marking_key, None)
    atomic_write(root / "vk.json", pair.signed_vk.to_json())
    return Keys(root, pair)


def zk_session(pair, srs: bytes, logrows: int) -> ZkVerifierSession:
    parameters = replace(PARAMETERS, srs_sha256=hashlib.sha256(srs).digest(), srs_logrows=logrows)
    return ZkVerifierSession(pair.verification_key, SigningKey.generate(), MODEL, 3, zk=parameters, lam=8)


def test_serve_checks_the_srs_and_the_model_before_it_proves(keys_on_disk, tmp_path):
    pair = keys_on_disk.pair
    srs = secrets.token_bytes(srs_size(MIN_LOGROWS))
    with prover_server(keys_on_disk, tmp_path, "--max-srs-logrows", str(MIN_LOGROWS)) as server:
        # An SRS past the limit: refused at once, before a byte of it is taken.
        session, peer = zk_session(pair, srs, MIN_LOGROWS + 1), Peer(server.port)
        peer.send(encode_frame(session.challenge().to_json()))
        refused = session.receive(dsse.Envelope.from_json(peer.receive()))
        assert isinstance(refused, Refused) and "--max-srs-logrows" in refused.reason
        peer.close()

        # The SRS sent is not the one the challenge names: the session ends, unanswered.
        session, peer = zk_session(pair, srs, MIN_LOGROWS), Peer(server.port)
        peer.send(encode_frame(session.challenge().to_json()))
        for frame in blob_frames(io.BytesIO(srs[:-1] + bytes([srs[-1] ^ 1]))):
            peer.send(frame)
        assert peer.receive() is None
        server.wait_for_log("its SHA-256 is not the one the challenge names")

        # The right SRS, about a model this prover holds no copy of: a signed refusal saying so.
        session, peer = zk_session(pair, srs, MIN_LOGROWS), Peer(server.port)
        peer.send(encode_frame(session.challenge().to_json()))
        for frame in blob_frames(io.BytesIO(srs)):
            peer.send(frame)
        refused = session.receive(dsse.Envelope.from_json(peer.receive()))
        assert isinstance(refused, Refused) and "holds no copy of the suspect model" in refused.reason
        peer.close()
        server.wait_for_log("refused: this prover holds no copy")
        # Nothing was opened, so the leakage ledger has nothing to show.
        assert Ledger.open_existing(server.ledger).entries() == ()


# --- wmark-verifier zkchallenge --same-items-as: the earlier challenge is checked before any circuit is built ---


def test_zkchallenge_takes_the_items_of_an_earlier_challenge_of_its_own_for_the_same_k(keys_on_disk, tmp_path,
                                                                                         capsys):
    from tests.support.cli_world import call
    from wmark.verifier.cli.zkchallenge import same_items
    from wmark.watermark.datasets import load_task
    from wmark.watermark.embed import start_model
    from wmark.watermark.modelio import save_model

    pair = keys_on_disk.pair
    vk = pair_vk = pair.verification_key
    mine, theirs = SigningKey.generate(), SigningKey.generate()
    save_signing_key(tmp_path / "verifier.pem", mine)

    def earlier(identity: SigningKey, k: int, name: str):
        session = ZkVerifierSession(pair_vk, identity, MODEL, k, zk=PARAMETERS, lam=3)
        atomic_write(tmp_path / name, session.challenge().to_json())
        return tmp_path / name, session.subset

    path, subset = earlier(mine, 1, "mine.json")
    assert same_items(str(path), vk, mine, 1) == subset
    save_model(tmp_path / "model", start_model(load_task("digits"), arch="zk_cnn"))
    base = ["zkchallenge", "--vk", keys_on_disk.root / "vk.json", "--model", tmp_path / "model", "--k", "1",
            "--lambda", "3", "--out", tmp_path / "new.json", "--identity", tmp_path / "verifier.pem"]
    for name, identity, k, complaint in (("theirs.json", theirs, 1, "another verifier key"),
                                         ("two.json", mine, 2, "samples 2 items, not --k 1")):
        other, _ = earlier(identity, k, name)
        code, _, err = call(capsys, "wmark-verifier", [*base, "--same-items-as", other])
        assert code == 2 and complaint in err and err.count("\n") == 1, err
    assert not (tmp_path / "new.json").exists() and not (tmp_path / "new.srs").exists()
