"""ECVRF-P256-SHA256-TAI, the verifiable random function of RFC 9381.

Derived trigger sets take each item's seed from ``prove(sk_T, i)``: the
output is pseudorandom to anyone without the key, yet unique, so the owner
cannot choose or re-draw an item, and opening one item (its output and proof)
reveals nothing about the others.

This is the suite with ``suite_string`` 0x01 (RFC 9381 §5.5): NIST P-256,
SHA-256, encode-to-curve by try-and-increment (§5.4.1.1), nonces per RFC 6979
(§5.4.2.1), ``cLen`` = 16.  Verification always validates the public key
(§5.4.5), which gives full uniqueness; with cofactor 1 that reduces to
decoding the point.  The function names below follow the RFC's sections so
the code can be read against it.

We wrote it ourselves because no well-kept Python package implements
ECVRF-P256: the curve arithmetic is pycryptodome's (C) and, for proving,
OpenSSL's ECDH through ``cryptography``; the RFC 6979 nonces come from
``ecdsa``, and the RFC's test vectors (Appendix B.1) pin the rest.
Verification runs once per opened item, so its cost is the protocol's: the
C point multiplication is far cheaper than ``ecdsa``'s pure-Python one and
releases the GIL (``benchmarks/protocol.py`` measures it).

We do not rely on the multiplication by the secret being constant-time.
Proofs are made by the owner's own tools; anyone else sees finished proofs,
with at most a remote, noisy view of how long they took.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from functools import cached_property

import gmpy2

try:
    # EccPoint's own module: the public Crypto.PublicKey.ECC re-exports it but also loads
    # the key formats (ASN.1, PEM, PKCS#8), ~80 ms of start-up that every command
    # reading a vk would pay (docs/design.md section 6: commands start fast).
    from Crypto.PublicKey._point import EccPoint
except ImportError:  # pycryptodome before the module split
    from Crypto.PublicKey.ECC import EccPoint
from Crypto.Random import get_random_bytes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from ecdsa.rfc6979 import generate_k

from wmark.errors import DecodeError, InvalidProof, WmarkError

PUBLIC_KEY_BYTES = 33
PROOF_BYTES = 81
OUTPUT_BYTES = 32

_SUITE = b"\x01"
# NIST P-256 (SEC 2 §2.4.2 / FIPS 186-4 D.1.2.3): y^2 = x^3 - 3x + b over F_p.
_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
_A = _P - 3
_CURVE_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
_Q = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_BX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
_BY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5
_B = EccPoint(_BX, _BY, "P-256")
_PT_LEN = 33
_C_LEN = 16
_Q_LEN = 32
# ctr is encoded in one octet (§5.4.1.1); each try fails with probability
# about 1/2, so running out of counters has probability 2^-256.
_MAX_TRIES = 256


def _point_to_string(point: EccPoint) -> bytes:
    # SEC1 §2.3.3 with compression, as RFC 9381 §5.5 specifies.  Only a
    # forged proof makes U or V the identity; hashing its SEC1 encoding keeps
    # verification exactly as the RFC defines it (and the challenge mismatches).
    x, y = point.xy
    # EccPoint gives the identity the coordinates (0, 0), which are not on
    # P-256 (b != 0); testing them is far cheaper than is_point_at_infinity().
    if x == 0 and y == 0:
        return b"\x00"
    return bytes([2 | (int(y) & 1)]) + int(x).to_bytes(32, "big")


def _string_to_point(data: bytes) -> EccPoint | None:
    """SEC1 §2.3.4 decoding of a compressed point; ``None`` means INVALID.

    An x coordinate >= p would give a second encoding of the same point, so
    it is refused.  The square root is ``a^((p+1)/4)``, valid as p = 3 mod 4
    (gmpy2's power is much faster than Python's, and it is taken for every decoded point);
    the y found satisfies the curve equation, which EccPoint checks again.
    """
    xy = _decompress(data)
    return None if xy is None else EccPoint(*xy, "P-256")


def _decompress(data: bytes) -> tuple[int, int] | None:
    """:func:`_string_to_point` as affine coordinates, without building the point."""
    if len(data) != _PT_LEN or data[0] not in (2, 3):
        return None
    x = int.from_bytes(data[1:], "big")
    if x >= _P:
        return None
    rhs = (x * x * x + _A * x + _CURVE_B) % _P
    y = int(gmpy2.powmod(rhs, (_P + 1) // 4, _P))
    if y * y % _P != rhs:
        return None
    if (y & 1) != (data[0] & 1):
        y = _P - y
    return x, y


def _encode_to_curve_tai(salt: bytes, alpha: bytes) -> tuple[EccPoint, bytes, int]:
    """§5.4.1.1 ECVRF_encode_to_curve_try_and_increment: H, its encoding, ctr."""
    xy, point_string, ctr = _encode_to_affine(salt, alpha)
    return EccPoint(*xy, "P-256"), point_string, ctr


def _encode_to_affine(salt: bytes, alpha: bytes) -> tuple[tuple[int, int], bytes, int]:
    for ctr in range(_MAX_TRIES):
        hash_string = hashlib.sha256(_SUITE + b"\x01" + salt + alpha + bytes([ctr]) + b"\x00").digest()
        # interpret_hash_value_as_a_point (§5.5): an even-y point with x = the hash.
        point_string = b"\x02" + hash_string
        xy = _decompress(point_string)
        if xy is not None:
            return xy, point_string, ctr
    raise RuntimeError("encode_to_curve found no point in 256 tries (probability 2^-256)")


def _nonce_rfc6979(x: int, h_string: bytes) -> int:
    """§5.4.2.1: RFC 6979 §3.2 with SHA-256 over the message h_string."""
    # generate_k takes the message digest h1 and applies bits2octets itself,
    # exactly RFC 6979 step d; the RFC's vectors include k to confirm it.
    return generate_k(_Q, x, hashlib.sha256, hashlib.sha256(h_string).digest())


def _challenge(*point_strings: bytes) -> bytes:
    """§5.4.3 ECVRF_challenge_generation, as the cLen-octet c_string.

    Takes the points' encodings: Y, H and Gamma arrive encoded, and
    re-encoding a point costs more than hashing it.
    """
    digest = hashlib.sha256(_SUITE + b"\x02" + b"".join(point_strings) + b"\x00").digest()
    return digest[:_C_LEN]


def _exact_bytes(data: object, size: int, *, what: str, error: type[WmarkError] = DecodeError) -> bytes:
    """``data`` as bytes, refused with ``error`` unless it is bytes of exactly ``size``."""
    if not isinstance(data, (bytes, bytearray)):
        raise error(f"{what}: expected bytes, got {type(data).__name__}")
    if len(data) != size:
        raise error(f"{what}: expected {size} bytes, got {len(data)}")
    return bytes(data)


def _decode_proof(pi: bytes) -> tuple[EccPoint, bytes, int]:
    """§5.4.4 ECVRF_decode_proof; c stays a string for a constant-time compare."""
    pi = _exact_bytes(pi, PROOF_BYTES, what="VRF proof", error=InvalidProof)
    gamma = _string_to_point(bytes(pi[:_PT_LEN]))
    if gamma is None:
        raise InvalidProof("VRF proof: Gamma is not a compressed P-256 point")
    c_string = bytes(pi[_PT_LEN:_PT_LEN + _C_LEN])
    s = int.from_bytes(pi[_PT_LEN + _C_LEN:], "big")
    if s >= _Q:
        raise InvalidProof("VRF proof: s is not below the group order")
    return gamma, c_string, s


def _gamma_to_hash(gamma_string: bytes) -> bytes:
    # §5.2 hashes cofactor*Gamma; P-256's cofactor is 1.  A decoded point's
    # string is its canonical encoding (x < p and the parity were checked).
    return hashlib.sha256(_SUITE + b"\x03" + gamma_string + b"\x00").digest()


def proof_to_hash(pi: bytes) -> bytes:
    """§5.2 ECVRF_proof_to_hash: the 32-byte output beta of a proof.

    This does not verify the proof; use :meth:`VrfPublicKey.verify` for
    anything received from someone else.
    """
    _decode_proof(pi)
    return _gamma_to_hash(bytes(pi[:_PT_LEN]))


@dataclass(frozen=True)
class VrfPublicKey:
    """A P-256 point, SEC1-compressed on the wire (``PK_string``)."""

    _encoded: bytes
    _negated: EccPoint = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Validating here (§5.4.5: on P-256, never the identity) means no
        # VrfPublicKey can exist for a string that is not a point.
        point = _string_to_point(self._encoded)
        if point is None:
            raise DecodeError("VRF public key: not a compressed P-256 point")
        object.__setattr__(self, "_negated", -point)

    @classmethod
    def from_bytes(cls, data: bytes) -> "VrfPublicKey":
        return cls(_exact_bytes(data, PUBLIC_KEY_BYTES, what="VRF public key"))

    def to_bytes(self) -> bytes:
        return self._encoded

    def verify(self, alpha: bytes, pi: bytes) -> bytes:
        """§5.3 ECVRF_verify: beta if ``pi`` proves ``alpha`` under this key.

        Raises :class:`InvalidProof` naming what is wrong otherwise.
        """
        gamma, c_string, s = _decode_proof(pi)
        h, h_string, _ = _encode_to_curve_tai(self._encoded, alpha)
        # U = s*B - c*Y and V = s*H - c*Gamma, subtracting by adding negated
        # points since EccPoint multiplies by non-negative scalars only.
        c = int.from_bytes(c_string, "big")
        u = _B * s + self._negated * c
        v = h * s + (-gamma) * c
        gamma_string = bytes(pi[:_PT_LEN])
        challenge = _challenge(self._encoded, h_string, gamma_string, _point_to_string(u), _point_to_string(v))
        if not hmac.compare_digest(challenge, c_string):
            raise InvalidProof("VRF proof does not verify: it was not made for this public key and input")
        return _gamma_to_hash(gamma_string)

    def __repr__(self) -> str:
        return f"VrfPublicKey({self._encoded.hex()})"


@dataclass(frozen=True, repr=False)
class VrfSecretKey:
    """A P-256 scalar x in [1, q-1] (for this suite SK is x itself)."""

    _x: int

    def __post_init__(self) -> None:
        if not (isinstance(self._x, int) and 1 <= self._x < _Q):
            raise DecodeError("VRF secret key: scalar is not in [1, q-1]")

    @classmethod
    def generate(cls) -> "VrfSecretKey":
        # Rejection sampling keeps x uniform; q is within 2^-32 of 2^256, so
        # a redraw is almost never needed.
        while True:
            x = int.from_bytes(get_random_bytes(_Q_LEN), "big")
            if 1 <= x < _Q:
                return cls(x)

    @classmethod
    def from_bytes(cls, data: bytes) -> "VrfSecretKey":
        """A 32-byte big-endian scalar in [1, q-1]."""
        return cls(int.from_bytes(_exact_bytes(data, _Q_LEN, what="VRF secret key"), "big"))

    def to_bytes(self) -> bytes:
        return self._x.to_bytes(_Q_LEN, "big")

    @cached_property
    def public_key(self) -> VrfPublicKey:
        return VrfPublicKey(_point_to_string(_B * self._x))

    @cached_property
    def _openssl(self) -> ec.EllipticCurvePrivateKey:
        return ec.derive_private_key(self._x, _CURVE)

    @cached_property
    def _y_affine(self) -> tuple[int, int]:
        x, y = (_B * self._x).xy
        return int(x), int(y)

    def prove(self, alpha: bytes) -> bytes:
        """§5.1 ECVRF_prove: the 81-byte proof pi for input ``alpha``.

        The two multiplications of the variable point H (Gamma = x*H, V = k*H)
        go through OpenSSL, about five times faster than pycryptodome's
        (measured; every registry append proves once): ECDH gives x(s*H), and
        x(s*H + s*B) from the same key tells which of the two points with that
        x it is (:func:`_lift`).  The RFC's vectors and :meth:`_prove_reference`
        (tests/test_vrf.py holds the two equal) pin the result.
        """
        pk = self.public_key
        (hx, hy), h_string, _ = _encode_to_affine(pk.to_bytes(), alpha)
        k = _nonce_rfc6979(self._x, h_string)
        if hx == _BX:  # H = +-B: never for a hash output, but exact either way
            return self._prove_reference(alpha)
        # H + B in affine coordinates (one inversion), for the second ECDH of each scalar.
        slope = (hy - _BY) * int(gmpy2.invert(hx - _BX, _P)) % _P
        hbx = (slope * slope - hx - _BX) % _P
        hby = (slope * (hx - hbx) - hy) % _P
        h_key = ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, _uncompressed(hx, hy))
        hb_key = ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, _uncompressed(hbx, hby))
        k_key = ec.derive_private_key(k, _CURVE)
        u = k_key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        u_affine = int.from_bytes(u[1:33], "big"), int.from_bytes(u[33:], "big")
        try:
            gamma_string = _lift(_ecdh(self._openssl, h_key), _ecdh(self._openssl, hb_key), self._y_affine)
            v_string = _lift(_ecdh(k_key, h_key), _ecdh(k_key, hb_key), u_affine)
        except ValueError:  # an identity on the way (probability ~2^-256): the plain arithmetic handles it
            return self._prove_reference(alpha)
        u_string = bytes([2 | (u_affine[1] & 1)]) + u[1:33]
        c_string = _challenge(pk.to_bytes(), h_string, gamma_string, u_string, v_string)
        s = (k + int.from_bytes(c_string, "big") * self._x) % _Q
        return gamma_string + c_string + s.to_bytes(_Q_LEN, "big")

    def evaluate(self, alpha: bytes) -> tuple[bytes, bytes]:
        """(beta, pi): :meth:`prove` and §5.2's output of that proof, hashed from its Gamma
        without §5.3's verification (this key just made the proof; verifiers check it)."""
        pi = self.prove(alpha)
        return _gamma_to_hash(pi[:_PT_LEN]), pi

    def _prove_reference(self, alpha: bytes) -> bytes:
        """:meth:`prove` in pycryptodome's arithmetic alone, exactly as §5.1 writes it."""
        pk = self.public_key
        h, h_string, _ = _encode_to_curve_tai(pk.to_bytes(), alpha)
        gamma_string = _point_to_string(h * self._x)
        k = _nonce_rfc6979(self._x, h_string)
        c_string = _challenge(pk.to_bytes(), h_string, gamma_string, _point_to_string(_B * k),
                              _point_to_string(h * k))
        s = (k + int.from_bytes(c_string, "big") * self._x) % _Q
        return gamma_string + c_string + s.to_bytes(_Q_LEN, "big")

    def __repr__(self) -> str:
        return f"VrfSecretKey(public_key={self.public_key.to_bytes().hex()})"


_CURVE = ec.SECP256R1()


def _uncompressed(x: int, y: int) -> bytes:
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


def _ecdh(key: ec.EllipticCurvePrivateKey, peer: ec.EllipticCurvePublicKey) -> int:
    """x(s*P) for the key's scalar s; ValueError if s*P is the identity."""
    return int.from_bytes(key.exchange(ec.ECDH(), peer), "big")


def _lift(x: int, x_sum: int, q: tuple[int, int]) -> bytes:
    """The compressed point P with x(P) = ``x`` and x(P + Q) = ``x_sum``.

    The two points with abscissa x are P and -P; x(P + Q) and x(-P + Q) =
    x(P - Q) differ unless P = +-Q, which raises ValueError (so does an x
    that is no point's).  Written here: no library gives an ECDH's full point.
    """
    qx, qy = q
    if x == qx:
        raise ValueError("P = +-Q")
    rhs = (x * x * x + _A * x + _CURVE_B) % _P
    y = int(gmpy2.powmod(rhs, (_P + 1) // 4, _P))
    if y * y % _P != rhs:
        raise ValueError("not a point's abscissa")
    inverse = int(gmpy2.invert(x - qx, _P))
    for candidate in (y, _P - y):
        slope = (candidate - qy) * inverse % _P
        if (slope * slope - x - qx) % _P == x_sum:
            return bytes([2 | (candidate & 1)]) + x.to_bytes(32, "big")
    raise ValueError("no point with these abscissae")
