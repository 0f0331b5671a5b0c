"""Stand-ins for what protocol tests need without a proof system (no torch, no ezkl)."""

from __future__ import annotations

import hashlib

from wmark.protocol.items import ItemOpening


class FakeHasher:
    """Stands in for ezkl's Poseidon: what matters here is that it binds item and salt."""

    input_scale = 8

    def __call__(self, opening: ItemOpening, salt: bytes) -> bytes:
        return hashlib.sha256(opening.vrf_proof + salt).digest()
