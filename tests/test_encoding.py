"""Canonical JSON, strict JSON parsing and base64url (wmark.protocol.hazmat.encoding), attacked with hypothesis."""

from __future__ import annotations

import base64
import json
import random

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from wmark.errors import DecodeError, WmarkError
from wmark.protocol.beacon import LabelSource
from wmark.protocol.hazmat.commitment import Scheme
from wmark.protocol.hazmat.encoding import (
    _plain,
    b64u_decode,
    b64u_decode_many,
    b64u_encode,
    b64u_encode_many,
    canonical_json,
    wire_json,
    Encoded,
    expect_header,
    field,
    int_field,
    only_fields,
    parse_json,
)
from wmark.protocol.items import TriggerKind
from wmark.protocol.zk import SrsOrigin

SETTINGS = settings(deadline=None, max_examples=100)

# What signed wmark objects hold: ints inside the I-JSON safe range, strings,
# bools, null, lists and objects.  Floats are left out of the byte-level
# comparison below (ES6 number formatting differs from Python's repr).
SAFE_INT = st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
SCALARS = st.none() | st.booleans() | SAFE_INT | st.text(max_size=20)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)
ASCII_KEYS = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=8)
ASCII_KEYED_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(ASCII_KEYS, children, max_size=5),
    max_leaves=20,
)


def reorder(obj, rnd: random.Random):
    """The same JSON value with every object's keys inserted in another order."""
    if isinstance(obj, dict):
        items = list(obj.items())
        rnd.shuffle(items)
        return {k: reorder(v, rnd) for k, v in items}
    if isinstance(obj, list):
        return [reorder(v, rnd) for v in obj]
    return obj


# --- canonical_json -----------------------------------------------------------

@SETTINGS
@given(JSON_VALUES, st.randoms(use_true_random=False))
def test_canonical_json_ignores_key_insertion_order(obj, rnd):
    shuffled = reorder(obj, rnd)
    reversed_ = json.loads(json.dumps(obj), object_pairs_hook=lambda pairs: dict(reversed(pairs)))
    assert canonical_json(shuffled) == canonical_json(obj) == canonical_json(reversed_)


@SETTINGS
@given(JSON_VALUES)
def test_canonical_json_round_trips_through_parse_json(obj):
    encoded = canonical_json(obj)
    assert parse_json(encoded, what="doc") == obj
    # Canonical is a fixed point: re-encoding the parsed value gives the same bytes.
    assert canonical_json(parse_json(encoded, what="doc")) == encoded


@SETTINGS
@given(ASCII_KEYED_VALUES)
def test_canonical_json_is_sorted_and_compact(obj):
    # For ASCII keys and no floats, RFC 8785 coincides with this json.dumps call.
    expected = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert canonical_json(obj) == expected


# Everything rfc8785 takes or refuses: floats, integers beyond 2^53, any
# Unicode (non-BMP keys sort differently in UTF-16 than by code point), lone
# surrogates, tuples, bytes.
ANY_TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=8)
ANY_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**60), max_value=2**60) | st.floats() | ANY_TEXT
    | st.binary(max_size=2),
    lambda children: (st.lists(children, max_size=5) | st.tuples(children, children)
                      | st.dictionaries(ANY_TEXT, children, max_size=5)),
    max_leaves=20,
)


@settings(derandomize=True, deadline=None, max_examples=500)
@given(ANY_VALUES)
def test_canonical_json_is_byte_for_byte_rfc8785(obj):
    # canonical_json writes plain values with json.dumps; whatever it writes or
    # refuses must be exactly what the rfc8785 package writes or refuses.
    try:
        expected = rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, TypeError, ValueError):
        with pytest.raises(DecodeError):
            canonical_json(obj)
    else:
        assert canonical_json(obj) == expected


@pytest.mark.parametrize("obj", [
    {"k\U0001F600": 1, "k\uFFFF": 2},   # UTF-16 order puts the surrogate pair first
    {"x": 1.0}, {"x": 2**53}, {"x": -(2**53)}, {"x": "\ud800"}, {"x": "\x7f\x00\x1f"},
    {"x": ("a", 1)}, {"\u00e9": "\u00e9"},
])
def test_canonical_json_edges_match_rfc8785(obj):
    try:
        expected = rfc8785.dumps(obj)
    except rfc8785.CanonicalizationError:
        with pytest.raises(DecodeError):
            canonical_json(obj)
    else:
        assert canonical_json(obj) == expected


def test_signed_objects_take_the_fast_path():
    # The registry's per-append encodings are plain: the C encoder writes them.
    vk_like = {"type": "wmark/verification-key", "version": 1, "input_shape": [1, 8, 8], "vrf_public_key": None,
               "commitments": [{"item": "AAAA", "label": "BBBB"}] * 3, "zk": {"flag": True}}
    assert _plain(vk_like)
    assert not _plain({"x": 0.5}) and not _plain({"x": 2**53}) and not _plain({"\u00e9": 1})


def test_canonical_json_known_answer():
    assert canonical_json({"b": [1, True, None], "a": "é\n", "A": {"y": 0, "x": -3}}) == (
        b'{"A":{"x":-3,"y":0},"a":"\xc3\xa9\\n","b":[1,true,null]}'
    )


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 2**60, b"bytes", {1: "non-string key"}, object()])
def test_canonical_json_rejects_what_has_no_canonical_form(bad):
    with pytest.raises(DecodeError):
        canonical_json({"x": bad})


# --- parse_json ---------------------------------------------------------------

@pytest.mark.parametrize("doc", [
    b'{"a": 1, "a": 2}',
    b'{"a": 1, "b": {"c": 1, "c": 1}}',
    b'[{"x": null, "y": 0, "x": null}]',
])
def test_parse_json_rejects_duplicate_keys(doc):
    with pytest.raises(DecodeError, match="duplicate key"):
        parse_json(doc, what="doc")


@pytest.mark.parametrize("doc", [b"NaN", b"[Infinity]", b'{"a": -Infinity}', b"[1e400]", b'{"n": -1E+999}'])
def test_parse_json_rejects_non_finite_numbers(doc):
    with pytest.raises(DecodeError):
        parse_json(doc, what="doc")


def test_parse_json_rejects_oversized_input():
    doc = canonical_json({"x": "a" * 100})
    assert parse_json(doc, what="doc", max_bytes=len(doc)) == {"x": "a" * 100}
    with pytest.raises(DecodeError, match="exceeds the limit"):
        parse_json(doc, what="doc", max_bytes=len(doc) - 1)


@pytest.mark.parametrize("doc", [b'"\xff"', b'{"a": "\xc3"}', b'"\xed\xa0\x80"', b"\xfe\xff[]"])
def test_parse_json_rejects_invalid_utf8(doc):
    with pytest.raises(DecodeError, match="not UTF-8"):
        parse_json(doc, what="doc")


@pytest.mark.parametrize("doc", [b"", b"{", b"[1,]", b"{'a': 1}", b"1 2", b"[" * 100_000 + b"]" * 100_000,
                                 b"1" * 5000, b'{"n": ' + b"9" * 4301 + b"}"])
def test_parse_json_turns_every_malformed_document_into_decode_error(doc):
    with pytest.raises(DecodeError):
        parse_json(doc, what="doc")


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=64) | st.text(alphabet='{}[]":,0123456789.eE+-tfnrulasNIy \\', max_size=40).map(str.encode))
def test_parse_json_raises_only_decode_error(data):
    try:
        parse_json(data, what="doc")
    except DecodeError:
        pass


def test_parse_json_names_the_document():
    with pytest.raises(DecodeError, match="^my file: "):
        parse_json(b"{", what="my file")


# --- base64url ----------------------------------------------------------------

@SETTINGS
@given(st.binary(max_size=200))
def test_b64u_round_trip(data):
    text = b64u_encode(data)
    assert "=" not in text and "+" not in text and "/" not in text
    assert b64u_decode(text, what="x") == data
    assert b64u_decode(text, what="x", size=len(data)) == data
    assert b64u_decode(text, what="x", max_size=len(data)) == data


@SETTINGS
@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/ \n.", max_size=24))
def test_b64u_decode_accepts_only_canonical_text(text):
    """Whatever it is given, decode either refuses or returns bytes that encode back to the same text."""
    try:
        data = b64u_decode(text, what="x")
    except DecodeError:
        return
    assert b64u_encode(data) == text


def _one_by_one(texts, **bounds):
    try:
        return [b64u_decode(t, what=f"item {i}", **bounds) for i, t in enumerate(texts)]
    except DecodeError as exc:
        return str(exc)


def _together(texts, **bounds):
    try:
        return b64u_decode_many(texts, what=lambda i: f"item {i}", **bounds)
    except DecodeError as exc:
        return str(exc)


# Lists of one length (the fast path) with a character, a trailing bit or a length spoilt here and there.
_SAME_LENGTH = st.integers(1, 40).flatmap(lambda n: st.lists(st.binary(min_size=n, max_size=n), max_size=6)).map(
    lambda values: [b64u_encode(v) for v in values])
_SPOILT = st.tuples(_SAME_LENGTH, st.integers(0, 5), st.sampled_from(["", "B", "=", "+", "/", " ", "é", "x", 7]),
                    st.integers(-3, 0)).map(
    lambda t: t[0] if not t[0] else [
        (t[0][i][:max(0, len(t[0][i]) + t[3] - 1)] + t[2] if isinstance(t[2], str) else t[2])
        if i == t[1] % len(t[0]) else t[0][i] for i in range(len(t[0]))])


@SETTINGS
@given(st.one_of(_SAME_LENGTH, _SPOILT, st.lists(st.text(alphabet="AQgw_-=+/ é", max_size=9), max_size=5)),
       st.sampled_from([{}, {"size": 32}, {"max_size": 16}, {"size": 1}]))
def test_b64u_decode_many_equals_decoding_one_by_one(texts, bounds):
    """Same values, or the same first error naming the same item, as b64u_decode on each in turn."""
    assert _together(texts, **bounds) == _one_by_one(texts, **bounds)


@SETTINGS
@given(st.one_of(st.integers(0, 40).flatmap(lambda n: st.lists(st.binary(min_size=n, max_size=n), max_size=6)),
                 st.lists(st.binary(max_size=9), max_size=5)))
def test_b64u_encode_many_equals_encoding_one_by_one(values):
    # Every length mod 3 (each pads its slot differently), mixed lengths and empty values included.
    assert b64u_encode_many(values) == [b64u_encode(v) for v in values]


def _compact(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# The marker wire_json writes in an Encoded value's place, and text containing it, among the values.
_MARKED = st.sampled_from(["\0wmark/encoded\0", "x\0wmark/encoded\0y"])


@SETTINGS
@given(st.dictionaries(st.text(max_size=8), st.tuples(JSON_VALUES | _MARKED, st.booleans()), max_size=6),
       st.lists(JSON_VALUES | _MARKED, max_size=3))
def test_wire_json_equals_json_dumps_with_encoded_values_spliced_in(fields, items):
    # Some values stand in as their compact JSON, at the top and one level down in a list.
    obj = {k: Encoded(_compact(v)) if wrap else v for k, (v, wrap) in fields.items()}
    obj["list"] = [Encoded(_compact(v)) for v in items]
    plain = {k: v for k, (v, _) in fields.items()} | {"list": items}
    assert wire_json(obj) == _compact(plain)


def test_wire_json_refuses_what_json_cannot_encode():
    with pytest.raises(TypeError, match="bytes is not JSON serialisable"):
        wire_json({"x": b"raw"})


def test_b64u_encode_many_known_answer():
    # RFC 4648 section 10's vectors, the same length at a time.
    assert b64u_encode_many([b"f", b"o"]) == ["Zg", "bw"]
    assert b64u_encode_many([b"fo", b"ob"]) == ["Zm8", "b2I"]
    assert b64u_encode_many([b"foo", b"bar"]) == ["Zm9v", "YmFy"]
    assert b64u_encode_many([b"\xfb\xff", b"\xff\xfe"]) == ["-_8", "__4"]


def test_b64u_decode_many_refuses_a_non_canonical_string_among_canonical_ones():
    texts = [b64u_encode(bytes([i]) * 32) for i in range(5)]
    assert b64u_decode_many(texts, what=str) == [bytes([i]) * 32 for i in range(5)]
    # The last character of a 43-character string carries two unused bits: "B" sets one.
    with pytest.raises(DecodeError, match="^3: non-canonical"):
        b64u_decode_many(texts[:3] + [texts[3][:-1] + "B"] + texts[4:], what=str)


@pytest.mark.parametrize("text", [
    "AA==",      # padded
    "AAA=",      # padded
    "A",         # impossible length
    "AB",        # non-zero trailing bits: decodes to 0x00, whose canonical form is "AA"
    "AAB",       # same, two bytes
    "a+b/",      # standard alphabet
    "AA AA",     # whitespace
    "AA\n",
    "AA.A",
])
def test_b64u_decode_rejects_non_canonical_forms(text):
    with pytest.raises(DecodeError):
        b64u_decode(text, what="x")


def test_b64u_known_answer():
    assert b64u_encode(b"\xfb\xff") == "-_8"
    assert b64u_decode("-_8", what="x") == b"\xfb\xff"
    assert base64.urlsafe_b64encode(b"\xfb\xff") == b"-_8="


@SETTINGS
@given(st.binary(min_size=0, max_size=64), st.integers(min_value=0, max_value=70))
def test_b64u_decode_checks_length(data, expected):
    text = b64u_encode(data)
    if expected == len(data):
        assert b64u_decode(text, what="x", size=expected) == data
    else:
        with pytest.raises(DecodeError, match="expected"):
            b64u_decode(text, what="x", size=expected)
    if len(data) > expected:
        with pytest.raises(DecodeError, match="longer than"):
            b64u_decode(text, what="x", max_size=expected)
    else:
        assert b64u_decode(text, what="x", max_size=expected) == data


@pytest.mark.parametrize("value", [None, 3, b"AAAA", ["AAAA"]])
def test_b64u_decode_rejects_non_strings(value):
    with pytest.raises(DecodeError, match="base64url string"):
        b64u_decode(value, what="x")


# --- object headers and fields ------------------------------------------------

def test_expect_header_checks_type_and_version():
    obj = {"type": "wmark/x", "version": 1}
    assert expect_header(obj, type_="wmark/x", version=1, what="o") is obj
    for bad in ({"type": "wmark/y", "version": 1}, {"type": "wmark/x", "version": 2}, {"version": 1},
                {"type": "wmark/x", "version": True}, ["wmark/x", 1]):
        with pytest.raises(DecodeError):
            expect_header(bad, type_="wmark/x", version=1, what="o")


def test_field_type_checks_never_take_bool_for_int():
    obj = {"n": True, "m": 3, "s": "x"}
    with pytest.raises(DecodeError, match="wrong type"):
        field(obj, "n", int, what="o")
    assert field(obj, "n", bool, what="o") is True
    assert field(obj, "m", int, what="o") == 3
    with pytest.raises(DecodeError, match="missing field"):
        field(obj, "absent", int, what="o")
    with pytest.raises(DecodeError, match="wrong type"):
        field(obj, "s", int, what="o")
    assert int_field(obj, "m", what="o", low=3, high=3) == 3
    with pytest.raises(DecodeError, match="outside"):
        int_field(obj, "m", what="o", low=4, high=9)
    only_fields(obj, {"n", "m", "s"}, what="o")
    with pytest.raises(DecodeError, match="unknown field"):
        only_fields(obj, {"n", "m"}, what="o")


def test_decode_error_is_a_wmark_error():
    assert issubclass(DecodeError, WmarkError)


@pytest.mark.parametrize("kind, what", [(Scheme, "commitment scheme"), (TriggerKind, "trigger kind"),
                                        (LabelSource, "label source"), (SrsOrigin, "SRS origin")])
def test_wire_enums_parse_their_values_and_name_themselves_refusing_others(kind, what):
    for member in kind:
        assert kind.parse(member.value) is member
    with pytest.raises(DecodeError, match=rf"^unknown {what} 'bogus' \(expected .+ or .+\)$"):
        kind.parse("bogus")
    with pytest.raises(DecodeError, match=f"unknown {what}"):
        kind.parse(None)
