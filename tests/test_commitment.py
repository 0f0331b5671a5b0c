"""Hash and Pedersen commitments (wmark.protocol.hazmat.commitment, wmark.protocol.hazmat.pedersen), attacked with hypothesis.

A Pedersen commitment costs two secp256k1 scalar multiplications in pure
Python (~15 ms), so its property tests run few examples with no deadline.
"""

from __future__ import annotations

import hashlib

import pytest
from ecdsa import SECP256k1
from ecdsa.ellipticcurve import INFINITY
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from wmark.errors import DecodeError, InvalidOpening
from wmark.protocol.hazmat import pedersen
from wmark.protocol.hazmat.commitment import (
    HASH_COMMIT_TAG,
    RANDOMNESS_BYTES,
    Commitment,
    Opening,
    Scheme,
    check,
    commit,
    verify,
)

FAST = settings(deadline=None, max_examples=150)
SLOW = settings(deadline=None, max_examples=30)

SCHEMES = st.sampled_from([Scheme.HASH, Scheme.PEDERSEN])
MESSAGES = st.binary(max_size=3200)
SCALARS = st.integers(min_value=0, max_value=pedersen.ORDER - 1)
P = SECP256k1.curve.p()


def flip(data: bytes, position: int, mask: int) -> bytes:
    position %= len(data)
    return data[:position] + bytes([data[position] ^ mask]) + data[position + 1:]


# --- commit / verify, both schemes ---------------------------------------------

@FAST
@given(MESSAGES)
def test_hash_commitment_round_trip(message):
    c, o = commit(message, Scheme.HASH)
    assert c.scheme is Scheme.HASH and len(c.value) == 32 and len(o.randomness) == RANDOMNESS_BYTES
    assert verify(c, message, o)
    check(c, message, o, what="item")


@SLOW
@given(MESSAGES)
def test_pedersen_commitment_round_trip(message):
    c, o = commit(message, "pedersen")
    assert c.scheme is Scheme.PEDERSEN and len(c.value) == pedersen.POINT_BYTES
    assert verify(c, message, o)
    check(c, message, o, what="item")


@settings(deadline=None, max_examples=40)
@given(SCHEMES, MESSAGES, MESSAGES)
def test_changed_message_never_verifies(scheme, message, other):
    assume(message != other)
    c, o = commit(message, scheme)
    assert not verify(c, other, o)
    with pytest.raises(InvalidOpening, match="item 3"):
        check(c, other, o, what="item 3")


@settings(deadline=None, max_examples=40)
@given(SCHEMES, MESSAGES, st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_changed_opening_never_verifies(scheme, message, position, mask):
    c, o = commit(message, scheme)
    if scheme is Scheme.HASH:
        changed = Opening(scheme, flip(o.randomness, position, mask))
    else:
        # Any other scalar: the flipped bytes may leave [0, ORDER), so add instead.
        r = pedersen.decode_scalar(o.randomness)
        changed = Opening(scheme, pedersen.encode_scalar((r + position % (pedersen.ORDER - 1) + 1) % pedersen.ORDER))
    assert changed.randomness != o.randomness
    assert not verify(c, message, changed)


@settings(deadline=None, max_examples=40)
@given(SCHEMES, MESSAGES, st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_changed_commitment_never_verifies(scheme, message, position, mask):
    c, o = commit(message, scheme)
    changed = Commitment(scheme, flip(c.value, position, mask))
    assert not verify(changed, message, o)


def test_commitment_and_opening_of_different_schemes_never_verify():
    ch, oh = commit(b"m", Scheme.HASH)
    cp, op = commit(b"m", Scheme.PEDERSEN)
    assert verify(ch, b"m", oh) and verify(cp, b"m", op)
    # The same randomness bytes labelled with the other scheme: only the scheme check refuses them.
    fixed = b"\x01" * 32
    c_hash = Commitment(Scheme.HASH, hashlib.sha256(HASH_COMMIT_TAG + (1).to_bytes(8, "big") + b"m" + fixed).digest())
    assert verify(c_hash, b"m", Opening(Scheme.HASH, fixed))
    assert not verify(c_hash, b"m", Opening(Scheme.PEDERSEN, fixed))
    c_ped = Commitment(Scheme.PEDERSEN, pedersen.encode_point(
        pedersen.commit_scalar(pedersen.message_scalar(b"m"), int.from_bytes(fixed, "big"))))
    assert verify(c_ped, b"m", Opening(Scheme.PEDERSEN, fixed))
    assert not verify(c_ped, b"m", Opening(Scheme.HASH, fixed))
    assert not verify(ch, b"m", op) and not verify(cp, b"m", oh)


@pytest.mark.parametrize("scheme", list(Scheme))
def test_commitments_to_the_same_message_differ(scheme):
    (c1, o1), (c2, o2) = commit(b"label:7", scheme), commit(b"label:7", scheme)
    assert o1.randomness != o2.randomness
    assert c1.value != c2.value
    assert not verify(c1, b"label:7", o2) and not verify(c2, b"label:7", o1)


@pytest.mark.parametrize("scheme", list(Scheme))
def test_randomness_is_not_reused_across_many_commitments(scheme):
    count = 200 if scheme is Scheme.HASH else 20
    pairs = [commit(b"same", scheme) for _ in range(count)]
    assert len({o.randomness for _, o in pairs}) == count
    assert len({c.value for c, _ in pairs}) == count


@FAST
@given(MESSAGES, st.binary(min_size=32, max_size=32))
def test_hash_commitment_is_the_documented_formula(message, randomness):
    """SHA-256("wmark/commit/v1" || len(m) as 8 bytes || m || r), computed here independently."""
    expected = hashlib.sha256(b"wmark/commit/v1" + len(message).to_bytes(8, "big") + message + randomness).digest()
    assert HASH_COMMIT_TAG == b"wmark/commit/v1"
    assert verify(Commitment(Scheme.HASH, expected), message, Opening(Scheme.HASH, randomness))


def test_hash_commitment_binds_the_message_length():
    # Without the length prefix, (m || r[:1], r[1:] + x) would collide with (m, r) shifted.
    c, o = commit(b"ab", Scheme.HASH)
    shifted = Opening(Scheme.HASH, o.randomness[1:] + b"\x00")
    assert not verify(c, b"ab" + o.randomness[:1], shifted)


@SLOW
@given(MESSAGES, SCALARS)
def test_pedersen_commitment_is_m_g_plus_r_h(message, r):
    c = Commitment(Scheme.PEDERSEN, pedersen.encode_point(
        pedersen.G * pedersen.message_scalar(message) + pedersen.generator_h() * r))
    assert verify(c, message, Opening(Scheme.PEDERSEN, pedersen.encode_scalar(r)))


# --- Pedersen at the scalar and point level --------------------------------------

@SLOW
@given(SCALARS, SCALARS, SCALARS, SCALARS)
def test_pedersen_is_additively_homomorphic(m1, r1, m2, r2):
    # Points, not encodings: (0, 0) commits to the point at infinity, which has no encoding.
    total = pedersen.commit_scalar(m1, r1) + pedersen.commit_scalar(m2, r2)
    combined = pedersen.commit_scalar((m1 + m2) % pedersen.ORDER, (r1 + r2) % pedersen.ORDER)
    assert total == combined
    # commit_scalar reduces its inputs, so unreduced sums give the same point.
    assert pedersen.commit_scalar(m1 + m2, r1 + r2) == combined
    # ... and a wrong sum does not.
    assert pedersen.commit_scalar(m1 + m2 + 1, r1 + r2) != total


@SLOW
@given(SCALARS, SCALARS, st.integers(min_value=1, max_value=pedersen.ORDER - 1))
def test_pedersen_binds_message_and_randomness(m, r, delta):
    c = pedersen.commit_scalar(m, r)
    assert pedersen.commit_scalar(m + delta, r) != c
    assert pedersen.commit_scalar(m, r + delta) != c


def test_generator_h_is_on_the_curve_and_independent_of_g():
    h = pedersen.generator_h()
    x, y = h.x(), h.y()
    assert h != INFINITY
    assert SECP256k1.curve.contains_point(x, y)
    assert (x, y) != (pedersen.G.x(), pedersen.G.y())
    assert x != pedersen.G.x()  # not G, and not -G either
    assert h * pedersen.ORDER == INFINITY
    assert y % 2 == 0


def test_generator_h_is_the_documented_try_and_increment():
    """Recomputed here from the construction, so no silent change can orphan published commitments."""
    tag = b"wmark/pedersen/H/v1"
    for counter in range(1000):
        digest = hashlib.sha256(len(tag).to_bytes(2, "big") + tag + (4).to_bytes(8, "big")
                                + counter.to_bytes(4, "big")).digest()
        x = int.from_bytes(digest, "big")
        if x >= P:
            continue
        rhs = (pow(x, 3, P) + 7) % P
        y = pow(rhs, (P + 1) // 4, P)
        if y * y % P == rhs:
            break
    h = pedersen.generator_h()
    assert h.x() == x
    assert h.y() in (y, P - y) and h.y() % 2 == 0


def test_random_scalars_are_in_range_and_distinct():
    values = [pedersen.random_scalar() for _ in range(200)]
    assert all(0 <= v < pedersen.ORDER for v in values)
    assert len(set(values)) == 200
    assert max(v.bit_length() for v in values) >= 250  # not drawn from a short range


@SLOW
@given(st.integers(min_value=1, max_value=pedersen.ORDER - 1))
def test_point_encoding_round_trips(k):
    point = pedersen.G * k
    data = pedersen.encode_point(point)
    assert len(data) == pedersen.POINT_BYTES and data[0] in (2, 3)
    decoded = pedersen.decode_point(data)
    assert (decoded.x(), decoded.y()) == (point.x(), point.y())
    # The other prefix is the negated point.
    negated = pedersen.decode_point(bytes([data[0] ^ 1]) + data[1:])
    assert (negated.x(), negated.y()) == (point.x(), P - point.y())


def _x_not_on_curve() -> int:
    x = 1
    while True:
        rhs = (pow(x, 3, P) + 7) % P
        if pow(rhs, (P - 1) // 2, P) != 1:
            return x
        x += 1


@pytest.mark.parametrize("data", [
    b"",
    b"\x02" * 32,
    b"\x02" * 34,
    b"\x04" + (1).to_bytes(32, "big"),
    b"\x00" + (1).to_bytes(32, "big"),
    b"\x02" + P.to_bytes(32, "big"),
    b"\x03" + (2**256 - 1).to_bytes(32, "big"),
    b"\x02" + _x_not_on_curve().to_bytes(32, "big"),
])
def test_point_decoding_rejects_garbage(data):
    with pytest.raises(DecodeError):
        pedersen.decode_point(data)


def test_point_at_infinity_is_never_encoded():
    with pytest.raises(ValueError):
        pedersen.encode_point(INFINITY)


@FAST
@given(SCALARS)
def test_scalar_encoding_round_trips(value):
    data = pedersen.encode_scalar(value)
    assert len(data) == pedersen.SCALAR_BYTES
    assert pedersen.decode_scalar(data) == value


@pytest.mark.parametrize("data", [
    pedersen.ORDER.to_bytes(32, "big"),
    (pedersen.ORDER + 1).to_bytes(32, "big"),
    b"\xff" * 32,
    b"\x01" * 31,
    b"\x00" * 33,
    b"",
])
def test_scalar_decoding_rejects_garbage(data):
    with pytest.raises(DecodeError):
        pedersen.decode_scalar(data)


# --- the value types -------------------------------------------------------------

@pytest.mark.parametrize("scheme", list(Scheme))
def test_opening_repr_hides_the_secret(scheme):
    _, o = commit(b"secret item", scheme)
    for text in (repr(o), str(o), f"{o}", repr([o])):
        assert o.randomness.hex() not in text
        assert repr(o.randomness) not in text
        assert o.randomness.hex()[:8] not in text
        assert "<secret>" in text


@pytest.mark.parametrize("scheme,length", [(Scheme.HASH, 31), (Scheme.HASH, 33), (Scheme.PEDERSEN, 32),
                                           (Scheme.PEDERSEN, 34)])
def test_commitment_of_wrong_length_is_rejected(scheme, length):
    with pytest.raises(DecodeError):
        Commitment(scheme, b"\x02" * length)


def test_opening_of_wrong_length_or_out_of_range_scalar_is_rejected():
    for scheme in Scheme:
        for length in (0, 31, 33):
            with pytest.raises(DecodeError):
                Opening(scheme, b"\x01" * length)
    Opening(Scheme.HASH, b"\xff" * 32)  # any 32 bytes are hash randomness
    with pytest.raises(DecodeError):
        Opening(Scheme.PEDERSEN, b"\xff" * 32)


def test_scheme_parse():
    assert Scheme.parse("hash") is Scheme.HASH and Scheme.parse("pedersen") is Scheme.PEDERSEN
    for bad in ("sha256", "", None, 1):
        with pytest.raises(DecodeError, match="unknown commitment scheme"):
            Scheme.parse(bad)
    with pytest.raises(DecodeError):
        commit(b"m", "md5")
