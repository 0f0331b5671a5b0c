"""Pedersen commitments on secp256k1 (docs/design.md section 3): ``C = m*G + r*H``.

Perfectly hiding: for any ``C`` every ``m`` is possible, so a verification key
published for years reveals nothing even to an unbounded adversary.  Binding
rests on nobody knowing ``log_G H``; ``H`` is derived by try-and-increment
over a public tag, so its discrete log is unknown to everyone, us included.

This is the hazmat layer: scalars and points.  Callers use
:mod:`wmark.protocol.hazmat.commitment`.
"""

from __future__ import annotations

import functools

from Crypto.Random import get_random_bytes
from ecdsa import SECP256k1
from ecdsa.ellipticcurve import INFINITY, PointJacobi

from wmark.errors import DecodeError
from wmark.protocol.hazmat.hashing import tagged_hash

CURVE = SECP256k1.curve
ORDER = SECP256k1.order
G = SECP256k1.generator
POINT_BYTES = 33
SCALAR_BYTES = 32
_P = CURVE.p()


@functools.lru_cache(maxsize=1)
def generator_h() -> PointJacobi:
    """The second generator, a point whose discrete log nobody knows."""
    counter = 0
    while True:
        x = int.from_bytes(tagged_hash("wmark/pedersen/H/v1", counter.to_bytes(4, "big")), "big")
        if x < _P:
            rhs = (pow(x, 3, _P) + 7) % _P  # secp256k1: y^2 = x^3 + 7
            y = pow(rhs, (_P + 1) // 4, _P)  # p = 3 mod 4, so this is the square root when one exists
            if y * y % _P == rhs:
                if y & 1:
                    y = _P - y
                return PointJacobi(CURVE, x, y, 1, ORDER, generator=True)
        counter += 1


def random_scalar() -> int:
    """Uniform in [0, ORDER) by rejection sampling from the OS CSPRNG."""
    while True:
        candidate = int.from_bytes(get_random_bytes(SCALAR_BYTES), "big")
        if candidate < ORDER:
            return candidate


def message_scalar(message: bytes) -> int:
    return int.from_bytes(tagged_hash("wmark/pedersen/message/v1", message), "big") % ORDER


def commit_scalar(m: int, r: int) -> PointJacobi:
    return G * (m % ORDER) + generator_h() * (r % ORDER)


def encode_point(point: PointJacobi) -> bytes:
    if point == INFINITY:
        # Only reachable if m*G = -r*H, i.e. with knowledge of log_G H.
        raise ValueError("commitment is the point at infinity")
    affine = point.to_affine()
    x, y = affine.x(), affine.y()
    return bytes([2 + (y & 1)]) + x.to_bytes(SCALAR_BYTES, "big")


def decode_point(data: bytes) -> PointJacobi:
    if len(data) != POINT_BYTES or data[0] not in (2, 3):
        raise DecodeError("Pedersen commitment: not a compressed secp256k1 point")
    x = int.from_bytes(data[1:], "big")
    if x >= _P:
        raise DecodeError("Pedersen commitment: x coordinate out of range")
    rhs = (pow(x, 3, _P) + 7) % _P
    y = pow(rhs, (_P + 1) // 4, _P)
    if y * y % _P != rhs:
        raise DecodeError("Pedersen commitment: point is not on secp256k1")
    if (y & 1) != (data[0] & 1):
        y = _P - y
    return PointJacobi(CURVE, x, y, 1, ORDER)


def encode_scalar(value: int) -> bytes:
    return value.to_bytes(SCALAR_BYTES, "big")


def decode_scalar(data: bytes) -> int:
    value = int.from_bytes(data, "big")
    if len(data) != SCALAR_BYTES or value >= ORDER:
        raise DecodeError("Pedersen opening: not a scalar below the group order")
    return value
