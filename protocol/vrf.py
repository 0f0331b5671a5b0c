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
ECVRF-P256: the curve arithmetic, point decoding and RFC 6979 nonces come
from ``ecdsa``, and the RFC's test vectors (Appendix B.1) pin the rest.

``ecdsa`` is pure Python, so scalar multiplication by the secret is not
constant-time.  Proofs are made by the owner's own tools; anyone else sees
finished proofs, with at most a remote, noisy view of how long they took.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from functools import cached_property

import ecdsa
from Crypto.Random import get_random_bytes
from ecdsa.ellipticcurve import INFINITY, PointJacobi
from ecdsa.rfc6979 import generate_k

from .errors import DecodeError, InvalidProof

PUBLIC_KEY_BYTES = 33
PROOF_BYTES = 81
OUTPUT_BYTES = 32

_SUITE = b"\x01"
_CURVE = ecdsa.NIST256p.curve
_B = ecdsa.NIST256p.generator
_Q = ecdsa.NIST256p.order
_P = _CURVE.p()
_PT_LEN = 33
_C_LEN = 16
_Q_LEN = 32
# ctr is encoded in one octet (§5.4.1.1); each try fails with probability
# about 1/2, so running out of counters has probability 2^-256.
_MAX_TRIES = 256


def _point_to_string(point: PointJacobi) -> bytes:
    # SEC1 §2.3.3 with compression, as RFC 9381 §5.5 specifies.  Only a
    # forged proof makes U or V the identity; hashing its SEC1 encoding keeps
    # verification exactly as the RFC defines it (and the challenge mismatches).
    if point == INFINITY:
        return b"\x00"
    return point.to_bytes("compressed")


def _string_to_point(data: bytes, *, precompute: bool = False) -> PointJacobi | None:
    """SEC1 §2.3.4 decoding of a compressed point; ``None`` means INVALID.

    ecdsa does not reject an x coordinate >= p, which would give a second
    encoding of the same point, so that is checked here.  The square root is
    taken as ``a^((p+1)/4)`` (valid as p = 3 mod 4), several times faster than
    ecdsa's generic Tonelli-Shanks, which dominated verification time.
    ``precompute`` builds ecdsa's multiplication table, worth it for a public
    key that verifies many proofs.
    """
    if len(data) != _PT_LEN or data[0] not in (2, 3):
        return None
    x = int.from_bytes(data[1:], "big")
    if x >= _P:
        return None
    rhs = (x * x * x + _CURVE.a() * x + _CURVE.b()) % _P
    y = pow(rhs, (_P + 1) // 4, _P)
    if y * y % _P != rhs:
        return None
    if (y & 1) != (data[0] & 1):
        y = _P - y
    return PointJacobi(_CURVE, x, y, 1, _Q, generator=precompute)


def _encode_to_curve_tai(salt: bytes, alpha: bytes) -> tuple[PointJacobi, int]:
    """§5.4.1.1 ECVRF_encode_to_curve_try_and_increment; also returns ctr."""
    for ctr in range(_MAX_TRIES):
        hash_string = hashlib.sha256(_SUITE + b"\x01" + salt + alpha + bytes([ctr]) + b"\x00").digest()
        # interpret_hash_value_as_a_point (§5.5): an even-y point with x = the hash.
        point = _string_to_point(b"\x02" + hash_string)
        if point is not None:
            return point, ctr
    raise RuntimeError("encode_to_curve found no point in 256 tries (probability 2^-256)")


def _nonce_rfc6979(x: int, h_string: bytes) -> int:
    """§5.4.2.1: RFC 6979 §3.2 with SHA-256 over the message h_string."""
    # generate_k takes the message digest h1 and applies bits2octets itself,
    # exactly RFC 6979 step d; the RFC's vectors include k to confirm it.
    return generate_k(_Q, x, hashlib.sha256, hashlib.sha256(h_string).digest())


def _challenge(*points: PointJacobi) -> bytes:
    """§5.4.3 ECVRF_challenge_generation, as the cLen-octet c_string."""
    digest = hashlib.sha256(_SUITE + b"\x02" + b"".join(map(_point_to_string, points)) + b"\x00").digest()
    return digest[:_C_LEN]


def _decode_proof(pi: bytes) -> tuple[PointJacobi, bytes, int]:
    """§5.4.4 ECVRF_decode_proof; c stays a string for a constant-time compare."""
    if not isinstance(pi, (bytes, bytearray)):
        raise InvalidProof(f"VRF proof: expected bytes, got {type(pi).__name__}")
    if len(pi) != PROOF_BYTES:
        raise InvalidProof(f"VRF proof: expected {PROOF_BYTES} bytes, got {len(pi)}")
    gamma = _string_to_point(bytes(pi[:_PT_LEN]))
    if gamma is None:
        raise InvalidProof("VRF proof: Gamma is not a compressed P-256 point")
    c_string = bytes(pi[_PT_LEN:_PT_LEN + _C_LEN])
    s = int.from_bytes(pi[_PT_LEN + _C_LEN:], "big")
    if s >= _Q:
        raise InvalidProof("VRF proof: s is not below the group order")
    return gamma, c_string, s


def _gamma_to_hash(gamma: PointJacobi) -> bytes:
    # §5.2 hashes cofactor*Gamma; P-256's cofactor is 1.
    return hashlib.sha256(_SUITE + b"\x03" + _point_to_string(gamma) + b"\x00").digest()


def proof_to_hash(pi: bytes) -> bytes:
    """§5.2 ECVRF_proof_to_hash: the 32-byte output beta of a proof.

    This does not verify the proof; use :meth:`VrfPublicKey.verify` for
    anything received from someone else.
    """
    gamma, _, _ = _decode_proof(pi)
    return _gamma_to_hash(gamma)


@dataclass(frozen=True)
class VrfPublicKey:
    """A P-256 point, SEC1-compressed on the wire (``PK_string``)."""

    _encoded: bytes
    _point: PointJacobi = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Validating here (§5.4.5: on P-256, never the identity) means no
        # VrfPublicKey can exist for a string that is not a point.
        point = _string_to_point(self._encoded, precompute=True)
        if point is None:
            raise DecodeError("VRF public key: not a compressed P-256 point")
        object.__setattr__(self, "_point", point)

    @classmethod
    def from_bytes(cls, data: bytes) -> "VrfPublicKey":
        if not isinstance(data, (bytes, bytearray)):
            raise DecodeError(f"VRF public key: expected bytes, got {type(data).__name__}")
        if len(data) != PUBLIC_KEY_BYTES:
            raise DecodeError(f"VRF public key: expected {PUBLIC_KEY_BYTES} bytes, got {len(data)}")
        return cls(bytes(data))

    def to_bytes(self) -> bytes:
        return self._encoded

    def verify(self, alpha: bytes, pi: bytes) -> bytes:
        """§5.3 ECVRF_verify: beta if ``pi`` proves ``alpha`` under this key.

        Raises :class:`InvalidProof` naming what is wrong otherwise.
        """
        gamma, c_string, s = _decode_proof(pi)
        h, _ = _encode_to_curve_tai(self._encoded, alpha)
        minus_c = -int.from_bytes(c_string, "big") % _Q
        u = _B * s + self._point * minus_c
        v = h.mul_add(s, gamma, minus_c)
        if not hmac.compare_digest(_challenge(self._point, h, gamma, u, v), c_string):
            raise InvalidProof("VRF proof does not verify: it was not made for this public key and input")
        return _gamma_to_hash(gamma)

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
        if not isinstance(data, (bytes, bytearray)):
            raise DecodeError(f"VRF secret key: expected bytes, got {type(data).__name__}")
        if len(data) != _Q_LEN:
            raise DecodeError(f"VRF secret key: expected {_Q_LEN} bytes, got {len(data)}")
        return cls(int.from_bytes(data, "big"))

    def to_bytes(self) -> bytes:
        return self._x.to_bytes(_Q_LEN, "big")

    @cached_property
    def public_key(self) -> VrfPublicKey:
        return VrfPublicKey((_B * self._x).to_bytes("compressed"))

    def prove(self, alpha: bytes) -> bytes:
        """§5.1 ECVRF_prove: the 81-byte proof pi for input ``alpha``."""
        pk = self.public_key
        h, _ = _encode_to_curve_tai(pk.to_bytes(), alpha)
        h_string = _point_to_string(h)
        gamma = h * self._x
        k = _nonce_rfc6979(self._x, h_string)
        c_string = _challenge(pk._point, h, gamma, _B * k, h * k)
        s = (k + int.from_bytes(c_string, "big") * self._x) % _Q
        return _point_to_string(gamma) + c_string + s.to_bytes(_Q_LEN, "big")

    def __repr__(self) -> str:
        return f"VrfSecretKey(public_key={self.public_key.to_bytes().hex()})"
