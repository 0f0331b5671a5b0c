"""Known answers of the sampler (docs/design.md section 4, step 2).

An auditor recomputes the challenged subset and every derived label from
public digests, possibly with another version of wmark years later, so the
exact values are part of the format: a change that keeps subsets well shaped
and labels in range but draws other ones (say, a sign flipped in the shuffle,
or more bytes read per draw) breaks every stored transcript and key.  These
vectors were computed by this implementation when they were written.
"""

from __future__ import annotations

from wmark.protocol.hazmat.sampling import DigestStream, derive_label, sample_subset


def test_subsets_are_the_ones_drawn_when_the_format_was_fixed():
    assert sample_subset(bytes(32), 20, 5) == (0, 14, 16, 18, 19)
    assert sample_subset(bytes(range(32)), 300, 12) == (18, 63, 88, 92, 111, 133, 152, 154, 201, 228, 252, 283)


def test_derived_labels_are_the_ones_drawn_when_the_format_was_fixed():
    assert [derive_label(bytes([i]) * 32, 10) for i in range(8)] == [8, 1, 0, 2, 3, 0, 1, 9]
    assert [derive_label(bytes([i]) * 32, 1000) for i in range(4)] == [197, 462, 976, 591]


def test_the_integer_stream_is_the_one_drawn_when_the_format_was_fixed():
    stream = DigestStream("wmark/test/v1", b"seed")
    assert [stream.randbelow(b) for b in (1, 2, 255, 256, 257, 70000)] == [0, 1, 235, 78, 230, 59800]
