"""DSSE envelopes and P-256 identities (wmark.protocol.hazmat.dsse, wmark.protocol.hazmat.identity), attacked with hypothesis,
and a verification key from `wmark keygen` checked by a plain DSSE verifier written from the spec."""

from __future__ import annotations

import base64
import hashlib
import json
import pickle

import ecdsa
import pytest
from ecdsa.util import sigdecode_der, sigencode_der, sigencode_der_canonize
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from wmark.errors import DecodeError, InvalidSignature, WmarkError
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat.identity import PublicKey, SigningKey

SETTINGS = settings(deadline=None, max_examples=60)
ORDER = ecdsa.NIST256p.order
TYPE = "application/vnd.wmark.test+json"

# Two fixed keys keep the tests deterministic (RFC 6979 signatures are then fixed too).
ALICE = SigningKey(ecdsa.SigningKey.from_secret_exponent(0xA11CE, curve=ecdsa.NIST256p, hashfunc=hashlib.sha256))
MALLORY = SigningKey(ecdsa.SigningKey.from_secret_exponent(0x3A11, curve=ecdsa.NIST256p, hashfunc=hashlib.sha256))

PAYLOADS = st.binary(min_size=1, max_size=300)
PAYLOAD_TYPES = st.text(min_size=1, max_size=40)


def flip(data: bytes, position: int, mask: int) -> bytes:
    position %= len(data)
    return data[:position] + bytes([data[position] ^ mask]) + data[position + 1:]


def with_sig(envelope: dsse.Envelope, sig: bytes, keyid: str | None = None) -> dsse.Envelope:
    old = envelope.signatures[0]
    return dsse.Envelope(envelope.payload_type, envelope.payload,
                         (dsse.Signature(old.keyid if keyid is None else keyid, sig),))


# --- PAE ----------------------------------------------------------------------

def test_pae_matches_the_spec_example():
    # protocol.md of secure-systems-lab/dsse.
    assert dsse.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world")


@SETTINGS
@given(PAYLOAD_TYPES, st.binary(max_size=100))
def test_pae_counts_bytes_not_characters(payload_type, payload):
    t = payload_type.encode("utf-8")
    assert dsse.pae(payload_type, payload) == b"DSSEv1 " + str(len(t)).encode() + b" " + t + b" " + \
        str(len(payload)).encode() + b" " + payload


# --- sign / verify ------------------------------------------------------------

@SETTINGS
@given(PAYLOAD_TYPES, PAYLOADS)
def test_sign_verify_round_trip(payload_type, payload):
    env = dsse.sign(payload_type, payload, ALICE)
    assert env.signatures[0].keyid == ALICE.public_key.keyid
    assert dsse.verify(env, ALICE.public_key, payload_type=payload_type) == payload


@SETTINGS
@given(PAYLOADS, st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_any_changed_payload_byte_is_rejected(payload, position, mask):
    env = dsse.sign(TYPE, payload, ALICE)
    forged = dsse.Envelope(TYPE, flip(payload, position, mask), env.signatures)
    with pytest.raises(InvalidSignature, match="does not verify"):
        dsse.verify(forged, ALICE.public_key, payload_type=TYPE)


@SETTINGS
@given(PAYLOADS, st.integers(min_value=0), st.integers(min_value=1, max_value=127))
def test_any_changed_payload_type_byte_is_rejected(payload, position, mask):
    env = dsse.sign(TYPE, payload, ALICE)
    changed_type = flip(TYPE.encode(), position, mask).decode("ascii")
    forged = dsse.Envelope(changed_type, payload, env.signatures)
    # A verifier that expects the original type refuses the envelope outright ...
    with pytest.raises(DecodeError, match="payloadType"):
        dsse.verify(forged, ALICE.public_key, payload_type=TYPE)
    # ... and one that expects the changed type finds the signature does not cover it.
    with pytest.raises(InvalidSignature, match="does not verify"):
        dsse.verify(forged, ALICE.public_key, payload_type=changed_type)


@SETTINGS
@given(PAYLOADS, st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_any_changed_signature_byte_is_rejected(payload, position, mask):
    env = dsse.sign(TYPE, payload, ALICE)
    forged = with_sig(env, flip(env.signatures[0].sig, position, mask))
    with pytest.raises(InvalidSignature):
        dsse.verify(forged, ALICE.public_key, payload_type=TYPE)


@SETTINGS
@given(PAYLOADS, st.binary(max_size=80))
def test_truncated_or_extended_signature_is_rejected(payload, junk):
    env = dsse.sign(TYPE, payload, ALICE)
    sig = env.signatures[0].sig
    for bad in (sig[: len(junk) % len(sig)], sig + junk[:1] if junk else sig + b"\x00", junk):
        assume(bad != sig)
        with pytest.raises(InvalidSignature):
            dsse.verify(with_sig(env, bad), ALICE.public_key, payload_type=TYPE)


def test_wrong_key_is_rejected():
    env = dsse.sign(TYPE, b"payload", ALICE)
    with pytest.raises(InvalidSignature, match="no signature by key"):
        dsse.verify(env, MALLORY.public_key, payload_type=TYPE)
    # Mallory's signature relabelled with Alice's keyid, and Alice's with Mallory's.
    mallory_env = dsse.sign(TYPE, b"payload", MALLORY)
    with pytest.raises(InvalidSignature, match="does not verify"):
        dsse.verify(with_sig(mallory_env, mallory_env.signatures[0].sig, ALICE.public_key.keyid),
                    ALICE.public_key, payload_type=TYPE)
    with pytest.raises(InvalidSignature, match="does not verify"):
        dsse.verify(with_sig(env, env.signatures[0].sig, MALLORY.public_key.keyid),
                    MALLORY.public_key, payload_type=TYPE)


def test_high_s_signature_is_rejected():
    env = dsse.sign(TYPE, b"payload", ALICE)
    r, s = sigdecode_der(env.signatures[0].sig, ORDER)
    assert s <= ORDER // 2  # we sign in low-s form
    high = sigencode_der(r, ORDER - s, ORDER)
    # The malleated signature is mathematically valid, so only the canonical-form rule refuses it.
    assert ALICE.public_key._key.verify(high, dsse.pae(TYPE, b"payload"), hashfunc=hashlib.sha256,
                                        sigdecode=sigdecode_der)
    with pytest.raises(InvalidSignature, match="low-s"):
        dsse.verify(with_sig(env, high), ALICE.public_key, payload_type=TYPE)


def test_non_canonical_der_is_rejected():
    env = dsse.sign(TYPE, b"payload", ALICE)
    sig = env.signatures[0].sig
    assert sig[0] == 0x30 and sig[1] == len(sig) - 2 < 0x80
    long_form = b"\x30\x81" + bytes([sig[1]]) + sig[2:]  # same content, non-minimal length
    with pytest.raises(InvalidSignature):
        dsse.verify(with_sig(env, long_form), ALICE.public_key, payload_type=TYPE)


@pytest.mark.parametrize("r,s", [(0, 1), (1, 0), (ORDER, 1), (1, ORDER)])
def test_out_of_range_signature_values_are_rejected(r, s):
    env = dsse.sign(TYPE, b"payload", ALICE)
    with pytest.raises(InvalidSignature):
        dsse.verify(with_sig(env, sigencode_der(r, s, ORDER)), ALICE.public_key, payload_type=TYPE)


def test_signatures_are_deterministic():
    assert dsse.sign(TYPE, b"x", ALICE) == dsse.sign(TYPE, b"x", ALICE)
    assert dsse.sign(TYPE, b"x", ALICE).signatures != dsse.sign(TYPE, b"y", ALICE).signatures


def test_signing_matches_the_rfc_6979_vector_in_low_s_form():
    # RFC 6979 A.2.5, P-256 with SHA-256, message "sample": the RFC's s is the high one.
    key = SigningKey(ecdsa.SigningKey.from_secret_exponent(
        0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721, curve=ecdsa.NIST256p,
        hashfunc=hashlib.sha256))
    r = 0xEFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716
    s = 0xF7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8
    assert key.sign(b"sample") == sigencode_der(r, ORDER - s, ORDER)


@SETTINGS
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=ORDER - 1))
def test_signing_matches_ecdsa_deterministic_canonical_signatures(message, secret):
    # Two implementations of RFC 6979: OpenSSL's (ours) and python-ecdsa's, low s in both.
    reference = ecdsa.SigningKey.from_secret_exponent(secret, curve=ecdsa.NIST256p, hashfunc=hashlib.sha256)
    expected = reference.sign_deterministic(message, hashfunc=hashlib.sha256, sigencode=sigencode_der_canonize)
    assert SigningKey(reference).sign(message) == expected


def test_keys_pickle_after_use():
    # Ray ships keys to its workers; the OpenSSL handles cached by signing and verifying do not pickle.
    env = dsse.sign(TYPE, b"payload", ALICE)
    dsse.verify(env, ALICE.public_key, payload_type=TYPE)
    key = pickle.loads(pickle.dumps(ALICE))
    assert key.sign(b"payload") == ALICE.sign(b"payload")
    assert pickle.loads(pickle.dumps(ALICE.public_key)) == ALICE.public_key
    dsse.verify(env, pickle.loads(pickle.dumps(ALICE.public_key)), payload_type=TYPE)


def test_a_second_signature_by_another_key_does_not_help():
    env = dsse.sign(TYPE, b"payload", ALICE)
    other = dsse.sign(TYPE, b"other", MALLORY)
    both = dsse.Envelope(TYPE, b"other", other.signatures + env.signatures)
    with pytest.raises(InvalidSignature):
        dsse.verify(both, ALICE.public_key, payload_type=TYPE)
    assert dsse.verify(both, MALLORY.public_key, payload_type=TYPE) == b"other"


# --- envelope JSON --------------------------------------------------------------

@SETTINGS
@given(PAYLOAD_TYPES, PAYLOADS)
def test_envelope_json_round_trip(payload_type, payload):
    env = dsse.sign(payload_type, payload, ALICE)
    data = env.to_json()
    doc = json.loads(data)
    assert set(doc) == {"payload", "payloadType", "signatures"}
    assert base64.b64decode(doc["payload"]) == payload
    parsed = dsse.Envelope.from_json(data)
    assert parsed == env
    assert dsse.verify(parsed, ALICE.public_key, payload_type=payload_type) == payload


def test_envelope_accepts_url_safe_base64_as_the_spec_allows():
    env = dsse.sign(TYPE, b"\xfb\xff\xfe" * 10, ALICE)
    doc = json.loads(env.to_json())
    doc["payload"] = base64.urlsafe_b64encode(env.payload).decode().rstrip("=")
    doc["signatures"][0]["sig"] = base64.urlsafe_b64encode(env.signatures[0].sig).decode()
    assert "-" in doc["payload"] or "_" in doc["payload"]
    assert dsse.Envelope.from_json(json.dumps(doc).encode()) == env


def _envelope_doc() -> dict:
    return json.loads(dsse.sign(TYPE, b"payload", ALICE).to_json())


@pytest.mark.parametrize("edit", [
    lambda d: d.pop("payload"),
    lambda d: d.pop("payloadType"),
    lambda d: d.update(payloadType=""),
    lambda d: d.update(payloadType=7),
    lambda d: d.update(extra=1),
    lambda d: d.update(payload="not base64!"),
    lambda d: d.update(payload=None),
    lambda d: d.update(signatures=[]),
    lambda d: d.update(signatures={}),
    lambda d: d.update(signatures=d["signatures"] * 5),
    lambda d: d["signatures"][0].update(sig="%%%"),
    lambda d: d["signatures"][0].update(sig=base64.b64encode(b"x" * 200).decode()),
    lambda d: d["signatures"][0].update(keyid=5),
    lambda d: d["signatures"][0].update(cert="x"),
    lambda d: d.update(signatures=["sig"]),
])
def test_malformed_envelopes_are_decode_errors(edit):
    doc = _envelope_doc()
    edit(doc)
    with pytest.raises(DecodeError):
        dsse.Envelope.from_json(json.dumps(doc).encode())


@settings(deadline=None, max_examples=150)
@given(st.data())
def test_envelope_parser_raises_only_wmark_errors(data):
    raw = dsse.sign(TYPE, b'{"a": 1}', ALICE).to_json()
    position = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    mutated = raw[:position] + data.draw(st.binary(max_size=3)) + raw[position + data.draw(st.integers(0, 3)):]
    try:
        env = dsse.Envelope.from_json(mutated)
        dsse.verify(env, ALICE.public_key, payload_type=TYPE)
    except WmarkError:
        pass


# --- identities -----------------------------------------------------------------

def test_key_pem_round_trips_and_repr_hides_the_secret(tmp_path):
    key = SigningKey.generate()
    assert SigningKey.from_pem(key.to_pem()).public_key == key.public_key
    assert PublicKey.from_pem(key.public_key.to_pem()) == key.public_key
    assert PublicKey.from_der(key.public_key.to_der()) == key.public_key
    secret_hex = format(key._key.privkey.secret_multiplier, "x")
    assert secret_hex not in repr(key) and "PRIVATE" not in repr(key)
    assert key.public_key.keyid == hashlib.sha256(key.public_key.to_der()).hexdigest()


def test_keys_on_other_curves_are_rejected():
    k1 = ecdsa.SigningKey.generate(curve=ecdsa.SECP256k1)
    with pytest.raises(DecodeError, match="P-256"):
        PublicKey.from_der(k1.get_verifying_key().to_der())
    with pytest.raises(DecodeError, match="P-256"):
        SigningKey.from_pem(k1.to_pem(format="pkcs8"))
    with pytest.raises(DecodeError):
        PublicKey.from_pem("-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----\n")


# --- a plain DSSE check, written from the spec, of what `wmark keygen` publishes ---------

def plain_dsse_verify(vk_json: bytes) -> dict:
    """Verify a wmark vk.json with nothing but ecdsa, base64, json and hashlib.

    DSSE (github.com/secure-systems-lab/dsse, envelope.md and protocol.md):
    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, with
    LEN the ASCII decimal byte count; the signature is over PAE.  The signer
    here is the key named in the payload's owner_public_key (base64url DER
    SubjectPublicKeyInfo); the signature is base64 DER ECDSA P-256/SHA-256.
    """
    envelope = json.loads(vk_json)
    payload_type = envelope["payloadType"].encode("utf-8")
    body = base64.b64decode(envelope["payload"], validate=True)
    pae = b" ".join([b"DSSEv1", str(len(payload_type)).encode("ascii"), payload_type,
                     str(len(body)).encode("ascii"), body])
    statement = json.loads(body)
    der_b64 = statement["owner_public_key"]
    der = base64.urlsafe_b64decode(der_b64 + "=" * (-len(der_b64) % 4))
    owner = ecdsa.VerifyingKey.from_der(der)
    assert owner.curve == ecdsa.NIST256p
    signature = envelope["signatures"][0]
    assert signature["keyid"] == hashlib.sha256(der).hexdigest()
    sig = base64.b64decode(signature["sig"], validate=True)
    owner.verify(sig, pae, hashfunc=hashlib.sha256, sigdecode=ecdsa.util.sigdecode_der)  # raises if bad
    return statement


@pytest.fixture(scope="module")
def keygen_output(tmp_path_factory):
    from wmark.watermark.cli import main

    out = tmp_path_factory.mktemp("plain-dsse") / "keys"
    assert main(["keygen", "--out", str(out), "--n", "3", "--insecure-plaintext"]) == 0
    return out


def test_vk_from_wmark_keygen_verifies_with_a_plain_dsse_implementation(keygen_output):
    vk_json = (keygen_output / "vk.json").read_bytes()
    statement = plain_dsse_verify(vk_json)
    assert json.loads(vk_json)["payloadType"] == "application/vnd.wmark.verification-key+json"
    assert statement["type"] == "wmark/verification-key" and statement["version"] == 1
    assert len(statement["commitments"]) == 3
    # The key in the payload is the owner's key that keygen saved beside it.
    pem_key = ecdsa.VerifyingKey.from_pem((keygen_output / "owner.pub").read_bytes())
    der_b64 = statement["owner_public_key"]
    assert pem_key.to_der() == base64.urlsafe_b64decode(der_b64 + "=" * (-len(der_b64) % 4))


def test_plain_dsse_check_rejects_a_tampered_vk(keygen_output):
    envelope = json.loads((keygen_output / "vk.json").read_bytes())
    body = base64.b64decode(envelope["payload"])
    statement = json.loads(body)
    item = statement["commitments"][1]["item"]
    statement["commitments"][1]["item"] = ("B" if item[0] == "A" else "A") + item[1:]
    envelope["payload"] = base64.b64encode(
        json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()).decode()
    with pytest.raises(ecdsa.BadSignatureError):
        plain_dsse_verify(json.dumps(envelope).encode())
