"""KeyGen, the verification and marking keys, and the sealed key file
(wmark.protocol.keygen, wmark.protocol.keys, wmark.protocol.items, wmark.protocol.keyfile)."""

from __future__ import annotations

import functools
import json
import os
import stat
from dataclasses import replace

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wmark.errors import DecodeError, InvalidInput, InvalidOpening, InvalidSignature, WmarkError, WrongPassphrase
from wmark.protocol import keyfile
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.commitment import Scheme
from wmark.protocol.hazmat.encoding import b64u_decode, b64u_encode, canonical_json, parse_json
from wmark.protocol.hazmat.hashing import tagged_hash, tagged_hashes_of_pairs
from wmark.protocol.hazmat.identity import SigningKey
from wmark.protocol.hazmat.vrf import VrfSecretKey
from wmark.protocol.items import ItemOpening, TriggerKind, encode_image, open_item
from wmark.protocol.keygen import keygen_derived, keygen_imported
from wmark.protocol.keys import (
    MAX_VK_BYTES,
    VK_PAYLOAD_TYPE,
    MarkingKey,
    VerificationKey,
    VkRecord,
    key_set_mismatch,
    load_verification_key,
    verify_vk_envelope,
    verify_vk_for_log,
)

OWNER = SigningKey.generate()
SHAPE = (1, 8, 8)
FUZZ = settings(deadline=None, max_examples=150,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def pixels_for(count: int, shape=SHAPE) -> list[bytes]:
    c, h, w = shape
    return [bytes((i * 37 + j) % 256 for j in range(c * h * w)) for i in range(count)]


@functools.cache
def make_pair(kind: str, scheme: Scheme):
    if kind == "derived":
        return keygen_derived(owner=OWNER, n=5, num_classes=10, input_shape=SHAPE, scheme=scheme)
    return keygen_imported(owner=OWNER, images=pixels_for(4, (3, 4, 4)), labels=[0, 2, 1, 2], num_classes=3,
                           input_shape=(3, 4, 4), scheme=scheme)


@pytest.fixture(params=list(Scheme), ids=lambda s: s.value)
def derived(request):
    return make_pair("derived", request.param)


@pytest.fixture(params=list(Scheme), ids=lambda s: s.value)
def imported(request):
    return make_pair("imported", request.param)


@pytest.fixture(params=[(k, s) for k in ("derived", "imported") for s in Scheme], ids=lambda p: f"{p[0]}-{p[1].value}")
def pair(request):
    return make_pair(*request.param)


@pytest.fixture(scope="module")
def vk_file(tmp_path_factory):
    pair = keygen_derived(owner=OWNER, n=3, num_classes=10, input_shape=SHAPE)
    path = tmp_path_factory.mktemp("vk") / "vk.json"
    path.write_bytes(pair.signed_vk.to_json())
    return path, pair


def resign(payload: bytes) -> dsse.Envelope:
    return dsse.sign(VK_PAYLOAD_TYPE, payload, OWNER)


def edited_payload(pair, **changes) -> bytes:
    obj = parse_json(pair.verification_key.payload, what="vk")
    obj.update(changes)
    return canonical_json(obj)


# --- keygen and the encodings -------------------------------------------------------

def test_keygen_derived_shapes_the_keys(derived):
    vk, mk = derived.verification_key, derived.marking_key
    assert vk.n == mk.n == 5 and vk.kind is mk.kind is TriggerKind.DERIVED
    assert vk.vrf_key == mk.vrf_secret_key.public_key
    assert vk.owner == OWNER.public_key
    assert all(o.vrf_proof is not None and o.image is None for o in mk.openings)
    assert [o.index for o in mk.openings] == list(range(5))
    assert all(0 <= o.label < 10 for o in mk.openings)
    assert len({c.item.value for c in vk.commitments}) == 5


def test_keygen_imported_shapes_the_keys(imported):
    vk, mk = imported.verification_key, imported.marking_key
    assert vk.kind is TriggerKind.IMPORTED and vk.vrf_key is None and mk.vrf_secret_key is None
    assert [o.label for o in mk.openings] == [0, 2, 1, 2]
    assert [o.image for o in mk.openings] == [encode_image((3, 4, 4), p) for p in pixels_for(4, (3, 4, 4))]


def test_vk_round_trips_through_its_encodings(pair):
    vk = pair.verification_key
    assert VerificationKey.from_payload(vk.payload) == vk
    assert pair.signed_vk.payload == vk.payload
    envelope = dsse.Envelope.from_json(pair.signed_vk.to_json())
    assert verify_vk_envelope(envelope, what="vk") == vk


def test_vk_payload_is_the_rfc8785_encoding_of_its_object(pair):
    # _canonical_payload writes the commitments list itself: held here against an
    # encoder we did not write, over the whole object.
    assert rfc8785.dumps(json.loads(pair.verification_key.payload)) == pair.verification_key.payload


def test_mk_round_trips_through_its_encoding(pair):
    mk = pair.marking_key
    decoded = MarkingKey.from_bytes(mk.to_bytes())
    assert decoded == mk
    assert decoded.to_bytes() == mk.to_bytes()


def test_vk_digest_is_stable_and_is_the_tagged_hash_of_the_signed_payload(pair):
    vk = pair.verification_key
    again = VerificationKey.from_payload(pair.signed_vk.payload)
    assert again.digest == vk.digest == pair.marking_key.vk_digest
    assert vk.digest == tagged_hash("wmark/vk/v1", pair.signed_vk.payload)
    assert len(vk.digest) == 32
    assert len(set(vk.commitment_digests())) == vk.n


def test_two_keygens_give_different_keys():
    a = keygen_derived(owner=OWNER, n=2, num_classes=10, input_shape=SHAPE)
    b = keygen_derived(owner=OWNER, n=2, num_classes=10, input_shape=SHAPE)
    assert a.verification_key.digest != b.verification_key.digest
    assert a.verification_key.vrf_key != b.verification_key.vrf_key


def test_every_opening_opens_its_commitment(pair):
    vk, mk = pair.verification_key, pair.marking_key
    for opening, commitments in zip(mk.openings, vk.commitments):
        opened = open_item(opening, commitments, kind=vk.kind, num_classes=vk.num_classes,
                           input_shape=vk.input_shape, vrf_key=vk.vrf_key, owner=vk.owner)
        assert opened.index == opening.index and opened.label == opening.label
        if vk.kind is TriggerKind.DERIVED:
            assert opened.pixels is None and len(opened.seed) == 32
        else:
            assert opened.seed is None and len(opened.pixels) == 3 * 4 * 4


def _open(vk, opening, index):
    return open_item(opening, vk.commitments[index], kind=vk.kind, num_classes=vk.num_classes,
                     input_shape=vk.input_shape, vrf_key=vk.vrf_key, owner=vk.owner)


def test_an_opening_does_not_open_another_items_commitment(pair):
    vk, mk = pair.verification_key, pair.marking_key
    with pytest.raises(InvalidOpening):
        _open(vk, mk.openings[0], 1)


def test_a_changed_label_or_swapped_randomness_does_not_open(pair):
    vk, mk = pair.verification_key, pair.marking_key
    o = mk.openings[0]
    other_label = (o.label + 1) % vk.num_classes
    relabelled = ItemOpening(o.index, other_label, o.item_randomness, o.label_randomness, o.vrf_proof, o.image)
    with pytest.raises(InvalidOpening):
        _open(vk, relabelled, 0)
    swapped = ItemOpening(o.index, o.label, o.label_randomness, o.item_randomness, o.vrf_proof, o.image)
    with pytest.raises(InvalidOpening):
        _open(vk, swapped, 0)
    out_of_range = ItemOpening(o.index, vk.num_classes, o.item_randomness, o.label_randomness, o.vrf_proof, o.image)
    with pytest.raises(InvalidOpening, match="outside"):
        _open(vk, out_of_range, 0)


def test_derived_opening_with_a_foreign_vrf_proof_does_not_open(derived):
    vk, mk = derived.verification_key, derived.marking_key
    o = mk.openings[2]
    from wmark.protocol.items import vrf_alpha

    foreign = VrfSecretKey.generate().prove(vrf_alpha(2, vk.owner))
    forged = ItemOpening(o.index, o.label, o.item_randomness, o.label_randomness, vrf_proof=foreign)
    with pytest.raises(InvalidOpening, match="VRF"):
        _open(vk, forged, 2)
    # The proof of item 3 does not open item 2, even with item 2's index.
    moved = ItemOpening(2, o.label, o.item_randomness, o.label_randomness, vrf_proof=mk.openings[3].vrf_proof)
    with pytest.raises(InvalidOpening):
        _open(vk, moved, 2)
    with_image = ItemOpening(o.index, o.label, o.item_randomness, o.label_randomness, o.vrf_proof, image=b"x")
    with pytest.raises(InvalidOpening, match="VRF proof only"):
        _open(vk, with_image, 2)


def test_imported_opening_with_a_changed_pixel_does_not_open(imported):
    vk, mk = imported.verification_key, imported.marking_key
    o = mk.openings[1]
    image = bytearray(o.image)
    image[-1] ^= 1
    forged = ItemOpening(o.index, o.label, o.item_randomness, o.label_randomness, image=bytes(image))
    with pytest.raises(InvalidOpening, match="image"):
        _open(vk, forged, 1)
    wrong_shape = ItemOpening(o.index, o.label, o.item_randomness, o.label_randomness, image=o.image[:-1])
    with pytest.raises(InvalidOpening, match="canonical"):
        _open(vk, wrong_shape, 1)


def test_key_reprs_hide_secrets(derived):
    mk = derived.marking_key
    secret = b64u_encode(mk.openings[0].item_randomness.randomness)
    for text in (repr(mk), repr(mk.openings[0]), repr(mk.vrf_secret_key), str(mk)):
        assert secret not in text and mk.openings[0].item_randomness.randomness.hex() not in text
        assert mk.vrf_secret_key.to_bytes().hex() not in text


@pytest.mark.parametrize("kwargs,match", [
    (dict(n=0), "trigger set size"),
    (dict(n=10_001), "trigger set size"),
    (dict(num_classes=1), "label count"),
    (dict(input_shape=(5, 8, 8)), "input_shape"),
    (dict(input_shape=(1, 0, 8)), "input_shape"),
    (dict(input_shape=(1, 8, 513)), "input_shape"),
])
def test_keygen_derived_rejects_bad_parameters(kwargs, match):
    args = dict(owner=OWNER, n=2, num_classes=10, input_shape=SHAPE) | kwargs
    with pytest.raises(InvalidInput, match=match):
        keygen_derived(**args)


def test_keygen_imported_rejects_bad_inputs():
    images = pixels_for(2)
    with pytest.raises(InvalidInput, match="2 images but 3 labels"):
        keygen_imported(owner=OWNER, images=images, labels=[0, 1, 1], num_classes=10, input_shape=SHAPE)
    with pytest.raises(InvalidInput, match="outside"):
        keygen_imported(owner=OWNER, images=images, labels=[0, 10], num_classes=10, input_shape=SHAPE)
    with pytest.raises(InvalidInput, match="outside"):
        keygen_imported(owner=OWNER, images=images, labels=[-1, 0], num_classes=10, input_shape=SHAPE)
    with pytest.raises(InvalidInput, match="bytes, expected"):
        keygen_imported(owner=OWNER, images=[images[0], images[1][:-1]], labels=[0, 1], num_classes=10,
                        input_shape=SHAPE)
    with pytest.raises(InvalidInput, match="trigger set size"):
        keygen_imported(owner=OWNER, images=[], labels=[], num_classes=10, input_shape=SHAPE)


# --- a signed vk cannot be edited ----------------------------------------------------

TAMPER_PAIRS = [keygen_derived(owner=OWNER, n=4, num_classes=10, input_shape=SHAPE, scheme=s) for s in Scheme]


@settings(deadline=None, max_examples=60)
@given(st.data())
def test_any_changed_commitment_breaks_the_signature(data):
    pair = data.draw(st.sampled_from(TAMPER_PAIRS))
    obj = parse_json(pair.signed_vk.payload, what="vk")
    index = data.draw(st.integers(0, len(obj["commitments"]) - 1))
    which = data.draw(st.sampled_from(["item", "label"]))
    text = obj["commitments"][index][which]
    position = data.draw(st.integers(0, len(text) - 1))
    replacement = data.draw(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
    new = text[:position] + replacement + text[position + 1:]
    if new == text:
        new = text[:position] + ("A" if text[position] != "A" else "B") + text[position + 1:]
    obj["commitments"][index][which] = new
    forged = dsse.Envelope(VK_PAYLOAD_TYPE, canonical_json(obj), pair.signed_vk.signatures)
    with pytest.raises(InvalidSignature, match="signature does not verify"):
        verify_vk_envelope(forged, what="vk")


@pytest.mark.parametrize("edit", [
    lambda o: o["commitments"].pop(),
    lambda o: o["commitments"].append(o["commitments"][0]),
    lambda o: o["commitments"].reverse(),
    lambda o: o.update(num_classes=o["num_classes"] + 1),
    lambda o: o.update(input_shape=[3, 32, 32]),
    lambda o: o.update(scheme="pedersen"),
    lambda o: o.update(created="2001-01-01T00:00:00+00:00"),
])
def test_any_edit_of_a_signed_vk_breaks_the_signature(edit):
    pair = TAMPER_PAIRS[0]
    obj = parse_json(pair.signed_vk.payload, what="vk")
    edit(obj)
    forged = dsse.Envelope(VK_PAYLOAD_TYPE, canonical_json(obj), pair.signed_vk.signatures)
    with pytest.raises(InvalidSignature, match="altered after the owner signed it"):
        verify_vk_envelope(forged, what="vk")


def test_vk_signed_by_someone_other_than_the_named_owner_is_rejected():
    pair = TAMPER_PAIRS[0]
    mallory = SigningKey.generate()
    forged = dsse.sign(VK_PAYLOAD_TYPE, pair.signed_vk.payload, mallory)
    with pytest.raises(InvalidSignature, match="no signature by key"):
        verify_vk_envelope(forged, what="vk")


def test_vk_with_the_wrong_payload_type_is_rejected():
    pair = TAMPER_PAIRS[0]
    env = dsse.sign("application/json", pair.signed_vk.payload, OWNER)
    with pytest.raises(DecodeError, match="payloadType"):
        verify_vk_envelope(env, what="vk")


@pytest.mark.parametrize("changes,match", [
    (dict(vrf_public_key=""), "VRF"),        # a derived vk with an empty VRF key
    (dict(vrf_public_key=None), "VRF"),
    (dict(version=True), "version"),
    (dict(version=2), "version"),
    (dict(created="x" * 65), "created"),
    (dict(num_classes=1), "num_classes"),
    (dict(num_classes=True), "num_classes"),
    (dict(input_shape=[1, 8]), "input_shape"),
    (dict(scheme="md5"), "scheme"),
    (dict(trigger_kind="imported"), "VRF"),
    (dict(extra="field"), "unknown field"),
    (dict(commitments=[]), "commitments"),
    (dict(commitments=[{"item": "AAAA", "label": "AAAA"}]), "commitment"),
])
def test_signed_but_malformed_vk_payloads_are_decode_errors(changes, match):
    """Signed by the owner but not a valid vk: each is refused by name, never half-accepted."""
    env = resign(edited_payload(TAMPER_PAIRS[0], **changes))
    with pytest.raises(DecodeError, match=match):
        verify_vk_envelope(env, what="vk")


# --- load_verification_key never raises anything but a WmarkError ----------------------

def test_load_verification_key_reads_what_keygen_wrote(vk_file):
    path, pair = vk_file
    vk, envelope = load_verification_key(path)
    assert vk == pair.verification_key and envelope == pair.signed_vk


@FUZZ
@given(st.data())
def test_truncated_vk_file_is_a_wmark_error(tmp_path, vk_file, data):
    path, _ = vk_file
    raw = path.read_bytes()
    cut = data.draw(st.integers(0, len(raw) - 2))
    broken = tmp_path / "broken.json"
    broken.write_bytes(raw[:cut])
    with pytest.raises(WmarkError):
        load_verification_key(broken)


@FUZZ
@given(st.data())
def test_mutated_vk_file_is_a_wmark_error_or_the_same_key(tmp_path, vk_file, data):
    path, pair = vk_file
    raw = path.read_bytes()
    position = data.draw(st.integers(0, len(raw) - 1))
    mutated = raw[:position] + data.draw(st.binary(min_size=0, max_size=4)) + \
        raw[position + data.draw(st.integers(0, 4)):]
    broken = tmp_path / "mutated.json"
    broken.write_bytes(mutated)
    try:
        vk, _ = load_verification_key(broken)
    except WmarkError:
        return
    assert vk == pair.verification_key  # only layout changes (whitespace, base64 flavour) survive


@FUZZ
@given(st.binary(max_size=300))
def test_garbage_vk_file_is_a_wmark_error(tmp_path, garbage):
    broken = tmp_path / "garbage.json"
    broken.write_bytes(garbage)
    with pytest.raises(WmarkError):
        load_verification_key(broken)


def _envelope_with_payload(payload: bytes, payload_type: str = VK_PAYLOAD_TYPE) -> bytes:
    return dsse.Envelope(payload_type, payload, (dsse.Signature("k", b"\x30\x00"),)).to_json()


@pytest.mark.parametrize("content", [
    b"[]", b"{}", b"null", b'"vk"', b"12", b'{"payload": "", "payloadType": "x", "signatures": []}',
    _envelope_with_payload(b"not json"),
    _envelope_with_payload(b"[1, 2]"),
    _envelope_with_payload(b'{"owner_public_key": 5}'),
    _envelope_with_payload(b'{"owner_public_key": "AAAA"}'),
    _envelope_with_payload(b'{"n": ' + b"1" * 5000 + b"}"),
    _envelope_with_payload(b"\xff\xfe"),
    b'{"payload": ' + b"1" * 5000 + b"}",
    b"[" * 50_000 + b"]" * 50_000,
])
def test_non_envelope_vk_files_are_wmark_errors(tmp_path, content):
    path = tmp_path / "vk.json"
    path.write_bytes(content)
    with pytest.raises(WmarkError):
        load_verification_key(path)


def test_missing_directory_and_oversized_vk_files_are_invalid_input(tmp_path):
    with pytest.raises(InvalidInput, match="not found"):
        load_verification_key(tmp_path / "absent.json")
    with pytest.raises(InvalidInput, match="directory"):
        load_verification_key(tmp_path)
    huge = tmp_path / "huge.json"
    with huge.open("wb") as fh:
        fh.truncate(MAX_VK_BYTES + 1)
    with pytest.raises(InvalidInput, match="exceeds the limit"):
        load_verification_key(huge)


# --- the sealed marking key ----------------------------------------------------------

@pytest.fixture(scope="module")
def small_mk():
    return keygen_derived(owner=OWNER, n=2, num_classes=10, input_shape=SHAPE).marking_key


@pytest.fixture(scope="module")
def cheap_sealed(small_mk):
    """Sealed with a small scrypt cost so that fuzzing can unseal hundreds of times; the
    format and the checks are the same, the cost is read back from the file."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(keyfile, "SCRYPT_N", 2**8)
        mp.setattr(keyfile, "SCRYPT_R", 2)
        sealed = keyfile.seal(small_mk, "correct horse")
    assert json.loads(sealed)["n"] == 2**8
    return sealed


def test_seal_unseal_round_trip_at_the_default_cost(tmp_path, small_mk):
    path = tmp_path / "mk.wmk"
    keyfile.save_marking_key(path, small_mk, "correct horse battery")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert keyfile.is_sealed(path)
    doc = json.loads(path.read_bytes())
    assert (doc["n"], doc["r"], doc["p"]) == (keyfile.SCRYPT_N, keyfile.SCRYPT_R, keyfile.SCRYPT_P) == (2**17, 8, 1)
    # Nothing of the key appears in clear.
    raw = path.read_bytes()
    assert b64u_encode(small_mk.openings[0].item_randomness.randomness).encode() not in raw
    assert b"vrf_secret_key" not in raw and b"openings" not in raw
    assert keyfile.load_marking_key(path, "correct horse battery") == small_mk
    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        keyfile.load_marking_key(path, "correct horse batterY")


def test_two_seals_of_one_key_differ(small_mk, cheap_sealed):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(keyfile, "SCRYPT_N", 2**8)
        again = json.loads(keyfile.seal(small_mk, "correct horse"))
    first = json.loads(cheap_sealed)
    assert again["salt"] != first["salt"] and again["nonce"] != first["nonce"]
    assert again["ciphertext"] != first["ciphertext"]


def test_unseal_cheap_round_trip_and_wrong_passphrases(small_mk, cheap_sealed):
    assert keyfile.unseal(cheap_sealed, "correct horse", what="mk") == small_mk
    for wrong in ("correct horsE", "correct horse ", "", "x"):
        with pytest.raises(WrongPassphrase):
            keyfile.unseal(cheap_sealed, wrong, what="mk")
    with pytest.raises(WrongPassphrase, match="encrypted"):
        keyfile.unseal(cheap_sealed, None, what="mk")


def test_empty_passphrase_is_refused_when_sealing(small_mk):
    with pytest.raises(InvalidInput, match="empty passphrase"):
        keyfile.seal(small_mk, "")


def _flip_b64_field(doc: dict, name: str, position: int, mask: int) -> None:
    data = bytearray(b64u_decode(doc[name], what=name))
    data[position % len(data)] ^= mask
    doc[name] = b64u_encode(bytes(data))


@settings(deadline=None, max_examples=80)
@given(st.sampled_from(["ciphertext", "tag", "salt", "nonce"]), st.integers(min_value=0),
       st.integers(min_value=1, max_value=255))
def test_flipped_bits_in_the_sealed_fields_are_wrong_passphrase(cheap_sealed, name, position, mask):
    doc = json.loads(cheap_sealed)
    _flip_b64_field(doc, name, position, mask)
    with pytest.raises(WrongPassphrase):
        keyfile.unseal(canonical_json(doc), "correct horse", what="mk")


@pytest.mark.parametrize("changes", [dict(n=2**9), dict(n=2**7), dict(r=3), dict(p=2), dict(comment="hi")])
def test_edited_but_valid_header_fails_authentication(cheap_sealed, changes):
    """The KDF parameters are associated data: editing them is detected, not obeyed silently."""
    doc = json.loads(cheap_sealed) | changes
    with pytest.raises(WrongPassphrase):
        keyfile.unseal(canonical_json(doc), "correct horse", what="mk")


@pytest.mark.parametrize("changes,match", [
    (dict(n=2**21), "outside"),
    (dict(n=2**30), "outside"),
    (dict(n=1), "outside"),
    (dict(n=0), "outside"),
    (dict(n=1000), "power of two"),
    (dict(n=3), "power of two"),
    (dict(n="256"), "wrong type"),
    (dict(n=True), "wrong type"),
    (dict(r=0), "outside"),
    (dict(r=17), "outside"),
    (dict(p=0), "outside"),
    (dict(p=5), "outside"),
    (dict(kdf="pbkdf2"), "unsupported"),
    (dict(cipher="AES-128-CBC"), "unsupported"),
    (dict(version=2), "version"),
    (dict(salt="AAAA"), "salt"),
    (dict(nonce=None), "nonce"),
    (dict(tag=""), "tag"),
])
def test_out_of_bounds_scrypt_parameters_and_fields_are_rejected(cheap_sealed, changes, match):
    doc = json.loads(cheap_sealed) | changes
    with pytest.raises(DecodeError, match=match):
        keyfile.unseal(canonical_json(doc), "correct horse", what="mk")


@settings(deadline=None, max_examples=200)
@given(st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_any_flipped_byte_of_the_sealed_file_is_refused(cheap_sealed, position, mask):
    position %= len(cheap_sealed)
    mutated = cheap_sealed[:position] + bytes([cheap_sealed[position] ^ mask]) + cheap_sealed[position + 1:]
    with pytest.raises((WrongPassphrase, DecodeError)):
        keyfile.unseal(mutated, "correct horse", what="mk")


def test_plaintext_key_loads_without_passphrase(tmp_path, small_mk):
    path = tmp_path / "mk.wmk"
    keyfile.save_marking_key(path, small_mk, None)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not keyfile.is_sealed(path)
    assert path.read_bytes() == small_mk.to_bytes()
    assert keyfile.load_marking_key(path, None) == small_mk
    assert keyfile.load_marking_key(path, "ignored") == small_mk


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"type": "wmark/other", "version": 1}',
                                     b'{"type": "wmark/marking-key", "version": 1}', b"\xff"])
def test_garbage_key_files_are_wmark_errors(tmp_path, content):
    path = tmp_path / "mk.wmk"
    path.write_bytes(content)
    with pytest.raises(WmarkError):
        keyfile.load_marking_key(path, "pw")


@pytest.mark.parametrize("edit,match", [
    (lambda o: o["openings"].reverse(), "indexed"),
    (lambda o: o["openings"][0].update(r_item="AAAA"), "r_item"),
    (lambda o: o["openings"][0].update(index=True), "index"),
    (lambda o: o["openings"][0].update(extra=1), "unknown field"),
    (lambda o: o.update(vrf_secret_key=""), "VRF key"),
    (lambda o: o.update(vk_digest="AAAA"), "vk_digest"),
])
def test_malformed_plaintext_marking_keys_are_decode_errors(small_mk, edit, match):
    obj = parse_json(small_mk.to_bytes(), what="mk")
    edit(obj)
    with pytest.raises(DecodeError, match=match):
        MarkingKey.from_bytes(canonical_json(obj))


# --- one owner's key set ------------------------------------------------------------


def test_a_key_set_of_one_owner_has_no_mismatch(pair):
    assert key_set_mismatch(pair.marking_key, pair.verification_key, OWNER.public_key) is None


def test_a_key_set_mismatch_names_the_owner_key_the_marking_key_or_the_vrf_key(derived):
    mk, vk = derived.marking_key, derived.verification_key
    other = make_pair("imported", vk.scheme)
    assert "is not the one that signed vk.json" in key_set_mismatch(mk, vk, SigningKey.generate().public_key,
                                                                    vk_name="vk.json")
    assert "mk.wmk is the marking key of another verification key" in key_set_mismatch(
        other.marking_key, vk, OWNER.public_key, mk_name="mk.wmk")
    assert "VRF key" in key_set_mismatch(replace(mk, vrf_secret_key=VrfSecretKey.generate()), vk, OWNER.public_key)


# Edits of a vk's payload, each re-signed by the owner, so that what the decoders make of them is compared.
_LOG_EDITS = [
    lambda o: o,
    lambda o: o.update(version=True),
    lambda o: o.update(num_classes=True),
    lambda o: o.update(num_classes=3.0),
    lambda o: o.pop("vrf_public_key"),
    lambda o: o.update(vrf_public_key=None),
    lambda o: o.update(labels="committed"),
    lambda o: o.update(labels="registry"),
    lambda o: o.update(extra=1),
    lambda o: o.update(created=o["created"] + "\n"),
    lambda o: o.update(scheme="pedersen"),
    lambda o: o.update(input_shape=[1, 8]),
    lambda o: o["commitments"][0].update(item=o["commitments"][0]["item"][:-1]),
    lambda o: o["commitments"][0].update(item=o["commitments"][0]["item"][:-1] + "B"),
    lambda o: o["commitments"][0].update(extra="A"),
    lambda o: o["commitments"].clear(),
    lambda o: o.update(owner_public_key=o["owner_public_key"] + "A"),
]


def _resigned(payload: bytes) -> dsse.Envelope:
    return dsse.sign(VK_PAYLOAD_TYPE, payload, OWNER)


def _outcome(decode, envelope):
    try:
        return decode(envelope)
    except WmarkError as exc:
        return type(exc)


@settings(deadline=None, max_examples=120)
@given(st.data())
def test_the_log_decoder_refuses_exactly_what_the_full_decoder_refuses(data):
    # verify_vk_for_log builds no commitment objects; it must accept the same envelopes and
    # name a vk by the same digests as verify_vk_envelope (docs/design.md section 4b).
    pair = data.draw(st.sampled_from(TAMPER_PAIRS + [make_pair("imported", s) for s in Scheme]))
    obj = parse_json(pair.signed_vk.payload, what="vk")
    data.draw(st.sampled_from(_LOG_EDITS))(obj)
    encoding = data.draw(st.sampled_from(["canonical", "spaced", "unsorted", "duplicate", "nan", "deep", "huge"]))
    if encoding == "canonical":
        payload = canonical_json(obj)
    elif encoding in ("duplicate", "nan", "deep", "huge"):
        # What parse_json's hooks refuse and the log's parser leaves to the canonical comparison.
        field_name = data.draw(st.sampled_from(sorted(obj)))
        value = {"duplicate": canonical_json(obj.get(field_name)).decode(), "nan": "NaN", "deep": "[" * 40 + "]" * 40,
                 "huge": "1" * 30}[encoding]
        text = canonical_json(obj).decode()
        payload = (text[:-1] + f',"{field_name}":{value}}}').encode() if encoding == "duplicate" else (
            text.replace(f'"{field_name}":{canonical_json(obj[field_name]).decode()}', f'"{field_name}":{value}', 1)
            .encode())
    else:
        payload = json.dumps(obj, separators=(", ", ": ") if encoding == "spaced" else (",", ":")).encode()
    envelope = _resigned(payload)
    full = _outcome(lambda e: VkRecord.of(verify_vk_envelope(e, what="vk")), envelope)
    assert _outcome(lambda e: verify_vk_for_log(e, what="vk"), envelope) == full


def test_the_log_decoder_records_the_vks_digests():
    pair = TAMPER_PAIRS[0]
    record = verify_vk_for_log(pair.signed_vk, what="vk")
    assert record.digest == pair.verification_key.digest
    assert record.commitment_digests() == pair.verification_key.commitment_digests()
    assert record.owner == OWNER.public_key


@pytest.mark.parametrize("payload", [
    # Not canonical: the digest naming a vk is over the canonical bytes, so these are refused.
    lambda p: p.replace(b",", b", ", 1),
    lambda p: json.dumps(json.loads(p), sort_keys=False).encode(),
])
def test_the_log_decoder_refuses_a_non_canonical_payload(payload):
    with pytest.raises(DecodeError, match="not canonical"):
        verify_vk_for_log(_resigned(payload(TAMPER_PAIRS[0].signed_vk.payload)), what="vk")


def test_the_log_decoder_checks_the_signature():
    signed = TAMPER_PAIRS[0].signed_vk
    forged = dsse.Envelope(VK_PAYLOAD_TYPE, signed.payload.replace(b'"num_classes":10', b'"num_classes":11'),
                           signed.signatures)
    with pytest.raises(InvalidSignature):
        verify_vk_for_log(forged, what="vk")


@settings(deadline=None, max_examples=100)
@given(st.lists(st.tuples(st.binary(max_size=40), st.binary(max_size=40)), max_size=5))
def test_item_digests_in_one_update_equal_tagged_hash(pairs):
    assert tagged_hashes_of_pairs("wmark/vk/item/v1", pairs) == [tagged_hash("wmark/vk/item/v1", a, b)
                                                                 for a, b in pairs]
