"""Fixtures the adversarial scenarios share."""

from __future__ import annotations

import pytest

from wmark.harness.claims import Claim, OnRecord, on_record, public_claim


@pytest.fixture(scope="module")
def public(digits_world, tmp_path_factory) -> tuple[OnRecord, Claim]:
    """The owner on record, and its public verification (k = n): every opening is out.
    Module-scoped, so that no module sees what another did to the owner's log."""
    tmp = tmp_path_factory.mktemp("public")
    record = on_record(digits_world.keys, digits_world.marked, tmp)
    return record, public_claim(record.keys, digits_world.marked, tmp, log=record.log)
