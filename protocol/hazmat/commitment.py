"""Commitments to trigger items and labels (Adi et al. 2018, Section 2.2).

One small interface over two schemes (docs/design.md section 3):

* ``hash`` (default): ``SHA-256("wmark/commit/v1" || len(m) || m || r)`` with
  ``r`` 32 bytes from the OS CSPRNG; computationally hiding and binding.
* ``pedersen``: ``m*G + r*H`` on secp256k1; perfectly hiding, computationally
  binding, additively homomorphic (see :mod:`wmark.protocol.hazmat.pedersen`).

>>> c, o = commit(b"label:7")
>>> verify(c, b"label:7", o)
True
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from Crypto.Random import get_random_bytes

from wmark.errors import DecodeError, InvalidOpening
from wmark.protocol.hazmat import pedersen
from wmark.protocol.hazmat.encoding import WireEnum

HASH_COMMIT_TAG = b"wmark/commit/v1"
RANDOMNESS_BYTES = 32


class Scheme(WireEnum, what="commitment scheme"):
    HASH = "hash"
    PEDERSEN = "pedersen"


_COMMITMENT_BYTES = {Scheme.HASH: 32, Scheme.PEDERSEN: pedersen.POINT_BYTES}


def commitment_bytes(scheme: Scheme) -> int:
    """The length of every commitment of ``scheme``."""
    return _COMMITMENT_BYTES[scheme]


@dataclass(frozen=True)
class Commitment:
    """A public commitment ``Com(m, r)``; appears in the verification key."""

    scheme: Scheme
    value: bytes

    def __post_init__(self) -> None:
        if len(self.value) != _COMMITMENT_BYTES[self.scheme]:
            raise DecodeError(f"{self.scheme.value} commitment must be {_COMMITMENT_BYTES[self.scheme]} bytes")


@dataclass(frozen=True, repr=False)
class Opening:
    """The secret randomness ``r`` that opens a commitment; part of the marking key."""

    scheme: Scheme
    randomness: bytes

    def __post_init__(self) -> None:
        if len(self.randomness) != RANDOMNESS_BYTES:
            raise DecodeError(f"opening randomness must be {RANDOMNESS_BYTES} bytes")
        if self.scheme is Scheme.PEDERSEN:
            pedersen.decode_scalar(self.randomness)

    def __repr__(self) -> str:
        return f"Opening(scheme={self.scheme.value}, randomness=<secret>)"


def _hash_commit(message: bytes, randomness: bytes) -> bytes:
    return hashlib.sha256(HASH_COMMIT_TAG + len(message).to_bytes(8, "big") + message + randomness).digest()


def _compute(scheme: Scheme, message: bytes, randomness: bytes) -> bytes:
    if scheme is Scheme.HASH:
        return _hash_commit(message, randomness)
    r = pedersen.decode_scalar(randomness)
    return pedersen.encode_point(pedersen.commit_scalar(pedersen.message_scalar(message), r))


def commit(message: bytes, scheme: Scheme | str = Scheme.HASH) -> tuple[Commitment, Opening]:
    """Commit to ``message`` with fresh randomness from the OS CSPRNG."""
    scheme = Scheme.parse(scheme)
    if scheme is Scheme.HASH:
        randomness = get_random_bytes(RANDOMNESS_BYTES)
    else:
        randomness = pedersen.encode_scalar(pedersen.random_scalar())
    return Commitment(scheme, _compute(scheme, message, randomness)), Opening(scheme, randomness)


def verify(commitment: Commitment, message: bytes, opening: Opening) -> bool:
    """True iff ``opening`` opens ``commitment`` to ``message`` (constant-time compare)."""
    if commitment.scheme is not opening.scheme:
        return False
    try:
        expected = _compute(commitment.scheme, message, opening.randomness)
    except DecodeError:
        return False
    return hmac.compare_digest(expected, commitment.value)


def check(commitment: Commitment, message: bytes, opening: Opening, *, what: str) -> None:
    """Like :func:`verify`, raising :class:`InvalidOpening` naming ``what``."""
    if not verify(commitment, message, opening):
        raise InvalidOpening(f"{what}: opening does not match the commitment in the verification key")
