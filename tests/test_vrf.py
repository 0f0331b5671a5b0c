"""ECVRF-P256-SHA256-TAI against RFC 9381's vectors, and attacked with hypothesis."""

from __future__ import annotations

import json
from pathlib import Path

import ecdsa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from wmark.errors import DecodeError, InvalidProof
from wmark.protocol.hazmat import vrf
from wmark.protocol.hazmat.vrf import (
    OUTPUT_BYTES,
    PROOF_BYTES,
    PUBLIC_KEY_BYTES,
    VrfPublicKey,
    VrfSecretKey,
    proof_to_hash,
)

VECTORS = json.loads((Path(__file__).parent / "data" / "ecvrf-p256-sha256-tai.json").read_text())["vectors"]
Q = ecdsa.NIST256p.order
P = ecdsa.NIST256p.curve.p()
G = ecdsa.NIST256p.generator

# Scalar multiplication in pure Python costs milliseconds, so examples are few
# and the deadline is off (a loaded CI machine must not turn slowness into failure).
FEW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.integers(min_value=1, max_value=Q - 1)
alphas = st.binary(max_size=64)

# One fixed proof for the tamper tests, so each example costs one verify only.
SK0 = VrfSecretKey.from_bytes(bytes.fromhex(VECTORS[0]["SK"]))
ALPHA0 = bytes.fromhex(VECTORS[0]["alpha"])
PI0 = bytes.fromhex(VECTORS[0]["pi"])
PK0 = SK0.public_key


def _vector_id(v: dict) -> str:
    return v["example"].rsplit(" ", 1)[-1]


def _hex(point) -> str:
    return vrf._point_to_string(point).hex()


def _first_x(valid: bool) -> int:
    """The smallest x that is (or is not) the x coordinate of a P-256 point."""
    x = 0
    while (vrf._string_to_point(b"\x02" + x.to_bytes(32, "big")) is not None) != valid:
        x += 1
    return x


# --- RFC 9381 Appendix B.1 -------------------------------------------------


@pytest.mark.parametrize("v", VECTORS, ids=_vector_id)
class TestVectors:
    def test_public_key(self, v):
        sk = VrfSecretKey.from_bytes(bytes.fromhex(v["SK"]))
        assert sk.public_key.to_bytes().hex() == v["PK"]
        assert sk.to_bytes().hex() == v["SK"]

    def test_encode_to_curve(self, v):
        h, h_string, ctr = vrf._encode_to_curve_tai(bytes.fromhex(v["PK"]), bytes.fromhex(v["alpha"]))
        assert _hex(h) == h_string.hex() == v["H"]
        assert ctr == v["tai_ctr"]

    def test_nonce(self, v):
        k = vrf._nonce_rfc6979(int(v["SK"], 16), bytes.fromhex(v["H"]))
        assert k.to_bytes(32, "big").hex() == v["k"]

    def test_u_v_from_prover_and_verifier_sides(self, v):
        k, x = int(v["k"], 16), int(v["SK"], 16)
        h = vrf._string_to_point(bytes.fromhex(v["H"]))
        assert _hex(vrf._B * k) == v["U"]
        assert _hex(h * k) == v["V"]
        # The verifier recomputes U = s*B - c*Y and V = s*H - c*Gamma from pi.
        gamma, c_string, s = vrf._decode_proof(bytes.fromhex(v["pi"]))
        c = int.from_bytes(c_string, "big")
        assert _hex(vrf._B * s + (vrf._B * x) * (Q - c)) == v["U"]
        assert _hex(h * s + gamma * (Q - c)) == v["V"]

    def test_prove(self, v):
        sk = VrfSecretKey.from_bytes(bytes.fromhex(v["SK"]))
        assert sk.prove(bytes.fromhex(v["alpha"])).hex() == v["pi"]

    def test_proof_to_hash(self, v):
        assert proof_to_hash(bytes.fromhex(v["pi"])).hex() == v["beta"]

    def test_verify(self, v):
        pk = VrfPublicKey.from_bytes(bytes.fromhex(v["PK"]))
        assert pk.verify(bytes.fromhex(v["alpha"]), bytes.fromhex(v["pi"])).hex() == v["beta"]

    def test_alpha_text_matches_hex(self, v):
        assert v["alpha_ascii"].encode("ascii").hex() == v["alpha"]


def test_vector_proofs_do_not_cross():
    """Example 10's proof does not verify Example 11's input under the same key."""
    with pytest.raises(InvalidProof, match="does not verify"):
        PK0.verify(bytes.fromhex(VECTORS[1]["alpha"]), PI0)
    other = VrfPublicKey.from_bytes(bytes.fromhex(VECTORS[2]["PK"]))
    with pytest.raises(InvalidProof, match="does not verify"):
        other.verify(ALPHA0, PI0)


# --- keys -------------------------------------------------------------------


def test_generate_gives_fresh_valid_keys():
    keys = [VrfSecretKey.generate() for _ in range(4)]
    assert len({k.to_bytes() for k in keys}) == 4
    for key in keys:
        assert 1 <= int.from_bytes(key.to_bytes(), "big") < Q
        assert VrfSecretKey.from_bytes(key.to_bytes()) == key
        assert len(key.public_key.to_bytes()) == PUBLIC_KEY_BYTES


def test_fresh_key_round_trip():
    sk = VrfSecretKey.generate()
    pi = sk.prove(b"item 0")
    assert sk.public_key.verify(b"item 0", pi) == proof_to_hash(pi)


def test_secret_key_repr_hides_the_scalar():
    text = repr(SK0) + str(SK0)
    x = int.from_bytes(SK0.to_bytes(), "big")
    for secret in (SK0.to_bytes().hex(), str(x), hex(x)):
        assert secret.lower() not in text.lower()
    assert PK0.to_bytes().hex() in text


@pytest.mark.parametrize(
    "data",
    [b"", bytes(31), bytes(33), bytes(32), Q.to_bytes(32, "big"), (Q + 1).to_bytes(32, "big"), b"\xff" * 32],
    ids=["empty", "short", "long", "zero", "q", "q+1", "max"],
)
def test_secret_key_rejects(data):
    with pytest.raises(DecodeError, match="VRF secret key"):
        VrfSecretKey.from_bytes(data)


def test_secret_key_rejects_non_bytes():
    with pytest.raises(DecodeError, match="expected bytes"):
        VrfSecretKey.from_bytes("00" * 32)  # type: ignore[arg-type]


def test_secret_key_extremes_work():
    for x in (1, Q - 1):
        sk = VrfSecretKey.from_bytes(x.to_bytes(32, "big"))
        pi = sk.prove(b"")
        assert sk.public_key.verify(b"", pi) == proof_to_hash(pi)


def test_public_key_round_trip_and_equality():
    again = VrfPublicKey.from_bytes(PK0.to_bytes())
    assert again == PK0 and hash(again) == hash(PK0)
    assert again.to_bytes() == bytes.fromhex(VECTORS[0]["PK"])


def _public_key_rejects() -> dict[str, bytes]:
    on_curve, off_curve = _first_x(True), _first_x(False)
    x_pk = PK0.to_bytes()[1:]
    return {
        "empty": b"",
        "short": PK0.to_bytes()[:-1],
        "long": PK0.to_bytes() + b"\x00",
        "identity": b"\x00",
        "identity-padded": bytes(33),
        "uncompressed-prefix": b"\x04" + x_pk,
        "hybrid-prefix": b"\x06" + x_pk,
        "uncompressed": (G * 7).to_bytes("uncompressed"),
        "not-on-curve": b"\x02" + off_curve.to_bytes(32, "big"),
        # x + p encodes the same point as x; SEC1 allows only x < p.
        "x-not-reduced": b"\x02" + (on_curve + P).to_bytes(32, "big"),
        "x-equals-p": b"\x02" + P.to_bytes(32, "big"),
    }


@pytest.mark.parametrize("name", list(_public_key_rejects()))
def test_public_key_rejects(name):
    with pytest.raises(DecodeError, match="VRF public key"):
        VrfPublicKey.from_bytes(_public_key_rejects()[name])


def test_public_key_constructor_validates_too():
    for bad in (bytes(33), b"\x05" * 33, b"\x02" + _first_x(False).to_bytes(32, "big")):
        with pytest.raises(DecodeError, match="not a compressed P-256 point"):
            VrfPublicKey(bad)


def test_secret_key_constructor_validates_too():
    for bad in (0, Q, -1):
        with pytest.raises(DecodeError):
            VrfSecretKey(bad)


# --- proofs: specific malformations -----------------------------------------


def _with_s(pi: bytes, s: int) -> bytes:
    return pi[:49] + s.to_bytes(32, "big")


@pytest.mark.parametrize("s", [Q, Q + 1, 2**256 - 1], ids=["q", "q+1", "max"])
def test_s_not_below_q_is_rejected(s):
    with pytest.raises(InvalidProof, match="s is not below the group order"):
        PK0.verify(ALPHA0, _with_s(PI0, s))
    with pytest.raises(InvalidProof, match="s is not below the group order"):
        proof_to_hash(_with_s(PI0, s))


@pytest.mark.parametrize(
    "gamma",
    [
        bytes(33),
        b"\x04" + PI0[1:33],
        b"\x02" + P.to_bytes(32, "big"),
        b"\x02" + (_first_x(True) + P).to_bytes(32, "big"),
        b"\x02" + _first_x(False).to_bytes(32, "big"),
    ],
    ids=["zeros", "bad-prefix", "x-equals-p", "x-not-reduced", "not-on-curve"],
)
def test_bad_gamma_is_rejected(gamma):
    pi = gamma + PI0[33:]
    with pytest.raises(InvalidProof, match="Gamma is not a compressed P-256 point"):
        PK0.verify(ALPHA0, pi)
    with pytest.raises(InvalidProof, match="Gamma"):
        proof_to_hash(pi)


def test_negated_gamma_is_rejected():
    flipped = bytes([PI0[0] ^ 1]) + PI0[1:]
    with pytest.raises(InvalidProof, match="does not verify"):
        PK0.verify(ALPHA0, flipped)


def test_forged_proof_with_identity_u_is_rejected():
    """A proof with s = c*x makes U the identity; it must not verify.

    Only someone holding x can build it, but it exercises the identity
    encoding inside the challenge hash (SEC1's single 0x00 octet).
    """
    x = int.from_bytes(SK0.to_bytes(), "big")
    c = int.from_bytes(PI0[33:49], "big")
    forged = _with_s(PI0, c * x % Q)
    with pytest.raises(InvalidProof, match="does not verify"):
        PK0.verify(ALPHA0, forged)


def test_gamma_from_another_key_is_rejected():
    """Gamma is what fixes beta: one from another key cannot be passed off."""
    other = VrfSecretKey.from_bytes(bytes.fromhex(VECTORS[2]["SK"]))
    foreign = other.prove(ALPHA0)
    with pytest.raises(InvalidProof, match="does not verify"):
        PK0.verify(ALPHA0, foreign[:33] + PI0[33:])


@pytest.mark.parametrize("bad", ["text", None, 81], ids=["str", "none", "int"])
def test_non_bytes_proof_is_rejected(bad):
    with pytest.raises(InvalidProof, match="expected bytes"):
        PK0.verify(ALPHA0, bad)
    with pytest.raises(InvalidProof, match="expected bytes"):
        proof_to_hash(bad)


def test_bytearray_inputs_are_accepted():
    assert PK0.verify(bytearray(ALPHA0), bytearray(PI0)) == proof_to_hash(PI0)
    assert VrfPublicKey.from_bytes(bytearray(PK0.to_bytes())) == PK0


# --- properties --------------------------------------------------------------


@FEW
@given(x=scalars, alpha=alphas)
def test_round_trip(x, alpha):
    sk = VrfSecretKey(x)
    pi = sk.prove(alpha)
    assert len(pi) == PROOF_BYTES
    beta = sk.public_key.verify(alpha, pi)
    assert len(beta) == OUTPUT_BYTES
    assert beta == proof_to_hash(pi)


@FEW
@given(x=scalars, alpha=alphas)
def test_public_key_survives_encoding(x, alpha):
    sk = VrfSecretKey(x)
    pk = VrfPublicKey.from_bytes(sk.public_key.to_bytes())
    assert VrfSecretKey.from_bytes(sk.to_bytes()) == sk
    pi = sk.prove(alpha)
    assert pk.verify(alpha, pi) == proof_to_hash(pi)


@FEW
@given(x=scalars, a=alphas, b=alphas)
def test_deterministic_and_distinct(x, a, b):
    sk = VrfSecretKey(x)
    pi_a = sk.prove(a)
    assert sk.prove(a) == pi_a
    assert VrfSecretKey(x).prove(a) == pi_a
    if a != b:
        assert proof_to_hash(sk.prove(b)) != proof_to_hash(pi_a)


@FEW
@given(x=scalars, y=scalars, alpha=alphas)
def test_outputs_differ_across_keys(x, y, alpha):
    assume(x != y)
    assert proof_to_hash(VrfSecretKey(x).prove(alpha)) != proof_to_hash(VrfSecretKey(y).prove(alpha))


@FEW
@given(position=st.integers(0, PROOF_BYTES * 8 - 1))
def test_any_flipped_bit_of_pi_is_rejected(position):
    pi = bytearray(PI0)
    pi[position // 8] ^= 1 << (position % 8)
    with pytest.raises(InvalidProof):
        PK0.verify(ALPHA0, bytes(pi))


@FEW
@given(index=st.integers(0, PROOF_BYTES - 1), value=st.integers(0, 255))
def test_any_changed_byte_of_pi_is_rejected(index, value):
    assume(PI0[index] != value)
    pi = bytearray(PI0)
    pi[index] = value
    with pytest.raises(InvalidProof):
        PK0.verify(ALPHA0, bytes(pi))


@FEW
@given(alpha=alphas, other=alphas)
def test_proof_does_not_carry_to_another_alpha(alpha, other):
    assume(alpha != other)
    pi = SK0.prove(alpha)
    with pytest.raises(InvalidProof, match="does not verify"):
        PK0.verify(other, pi)


@FEW
@given(position=st.integers(0, len(ALPHA0) * 8 - 1))
def test_any_flipped_bit_of_alpha_is_rejected(position):
    alpha = bytearray(ALPHA0)
    alpha[position // 8] ^= 1 << (position % 8)
    with pytest.raises(InvalidProof, match="does not verify"):
        PK0.verify(bytes(alpha), PI0)


@FEW
@given(position=st.integers(0, PUBLIC_KEY_BYTES * 8 - 1))
def test_any_flipped_bit_of_public_key_is_rejected(position):
    pk = bytearray(PK0.to_bytes())
    pk[position // 8] ^= 1 << (position % 8)
    with pytest.raises((DecodeError, InvalidProof)):
        VrfPublicKey.from_bytes(bytes(pk)).verify(ALPHA0, PI0)


@FEW
@given(index=st.integers(0, PUBLIC_KEY_BYTES - 1), value=st.integers(0, 255))
def test_any_changed_byte_of_public_key_is_rejected(index, value):
    pk = bytearray(PK0.to_bytes())
    assume(pk[index] != value)
    pk[index] = value
    with pytest.raises((DecodeError, InvalidProof)):
        VrfPublicKey.from_bytes(bytes(pk)).verify(ALPHA0, PI0)


@FEW
@given(data=st.binary(max_size=200))
def test_malformed_proof_lengths_are_rejected(data):
    assume(len(data) != PROOF_BYTES)
    with pytest.raises(InvalidProof, match=f"expected {PROOF_BYTES} bytes, got {len(data)}"):
        PK0.verify(ALPHA0, data)
    with pytest.raises(InvalidProof, match=f"expected {PROOF_BYTES} bytes"):
        proof_to_hash(data)


@FEW
@given(data=st.binary(max_size=100))
def test_malformed_key_lengths_are_rejected(data):
    if len(data) != PUBLIC_KEY_BYTES:
        with pytest.raises(DecodeError, match=f"expected {PUBLIC_KEY_BYTES} bytes"):
            VrfPublicKey.from_bytes(data)
    if len(data) != 32:
        with pytest.raises(DecodeError, match="expected 32 bytes"):
            VrfSecretKey.from_bytes(data)


@FEW
@given(data=st.binary(min_size=PROOF_BYTES, max_size=PROOF_BYTES))
def test_random_proofs_are_rejected(data):
    with pytest.raises(InvalidProof):
        PK0.verify(ALPHA0, data)


@FEW
@given(data=st.binary(min_size=PUBLIC_KEY_BYTES, max_size=PUBLIC_KEY_BYTES))
def test_random_public_keys_decode_only_to_points(data):
    try:
        pk = VrfPublicKey.from_bytes(data)
    except DecodeError:
        return
    assert pk.to_bytes() == data
    assert data[0] in (2, 3) and int.from_bytes(data[1:], "big") < P


@settings(max_examples=60, deadline=None)
@given(x=scalars, alpha=alphas)
def test_openssl_prove_equals_the_reference(x, alpha):
    # prove() multiplies H through OpenSSL's ECDH and recovers each point's y
    # from a second ECDH (vrf._lift); the plain arithmetic of section 5.1 must agree.
    sk = VrfSecretKey(x)
    assert sk.prove(alpha) == sk._prove_reference(alpha)


@pytest.mark.parametrize("v", VECTORS, ids=_vector_id)
def test_reference_prove_matches_the_vectors(v):
    sk = VrfSecretKey.from_bytes(bytes.fromhex(v["SK"]))
    assert sk._prove_reference(bytes.fromhex(v["alpha"])).hex() == v["pi"]


def test_lift_picks_the_point_whose_sum_matches():
    h = vrf._string_to_point(bytes.fromhex(VECTORS[0]["H"]))
    q = vrf._B * 12345
    for point in (h, -h):
        x = int(point.x)
        total = point + q
        qx, qy = (int(c) for c in q.xy)
        assert vrf._lift(x, int(total.x), (qx, qy)) == vrf._point_to_string(point)
    with pytest.raises(ValueError):
        vrf._lift(qx, 1, (qx, qy))  # P = +-Q: the sum cannot tell them apart


def test_prove_falls_back_when_a_lift_fails(monkeypatch):
    def fail(*args):
        raise ValueError("P = +-Q")

    monkeypatch.setattr(vrf, "_lift", fail)
    v = VECTORS[0]
    assert VrfSecretKey.from_bytes(bytes.fromhex(v["SK"])).prove(bytes.fromhex(v["alpha"])).hex() == v["pi"]


@FEW
@given(x=scalars, alpha=alphas)
def test_evaluate_is_prove_and_proof_to_hash(x, alpha):
    sk = VrfSecretKey(x)
    beta, pi = sk.evaluate(alpha)
    assert pi == sk.prove(alpha) and beta == proof_to_hash(pi) == sk.public_key.verify(alpha, pi)
