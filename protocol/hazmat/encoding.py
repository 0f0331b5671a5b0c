"""Canonical byte encodings for everything that is signed or hashed.

Objects become JSON canonicalised per RFC 8785 (the ``rfc8785`` package), so
one object has exactly one encoding and a signature never depends on how a
library happens to serialise it.  Bytes inside JSON are base64url without
padding.  Every object carries a ``type`` and a ``version`` field, checked on
decoding by :func:`expect_header`.
"""

from __future__ import annotations

import binascii
import itertools
import json
import math
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, TypeVar

import rfc8785

from wmark.errors import DecodeError

# Large enough for a 100-item imported trigger set of 3x224x224 images
# (~15 MB raw, ~20 MB as base64), small enough that a hostile file cannot
# exhaust memory.
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
# A transcript nests about eight levels deep; json's own recursion limit
# (about a thousand) would be reached only after the stack is deep already.
MAX_DEPTH = 32
MAX_INT_DIGITS = 20


# RFC 8785 writes numbers as IEEE doubles: integers are exact only up to here.
_JCS_MAX_INT = 2**53 - 1


def _plain(obj: Any) -> bool:
    """Whether ``json.dumps`` with sorted keys writes ``obj`` exactly as RFC 8785 does.

    True for ASCII strings and keys (code-point order is then UTF-16 order, and
    both escape exactly the control characters, ``"`` and ``\\``, the same
    way), safe integers, booleans, null, lists, tuples and dicts of those.
    Floats, large integers, non-ASCII text and subclasses are left to ``rfc8785``.
    """
    return _plain_all((obj,))


def _plain_all(values: Any) -> bool:
    # One loop per container rather than one call per value: this walk, not
    # the encoding, is most of canonical_json's time.
    for value in values:
        kind = type(value)
        if kind is str:
            if not value.isascii():
                return False
        elif kind is int:
            if not -_JCS_MAX_INT <= value <= _JCS_MAX_INT:
                return False
        elif kind is dict:
            if not (all(type(k) is str and k.isascii() for k in value) and _plain_all(value.values())):
                return False
        elif kind is list or kind is tuple:
            if not _plain_all(value):
                return False
        elif value is not None and kind is not bool:
            return False
    return True


# One encoder for every call: json.dumps builds one per call when given options.
# ensure_ascii=False, because ensure_ascii=True would also escape DEL (RFC 8785 does not).
_PLAIN_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Encoded:
    """A value whose compact JSON is known already (as :func:`wire_json` would write it):
    :func:`wire_json` writes ``text`` in its place instead of encoding the value again."""

    text: str


_HELD = threading.local()
_HELD_MARK = "\0wmark/encoded\0"


def _hold(value: object) -> str:
    if type(value) is not Encoded:
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")
    _HELD.texts.append(value.text)
    return _HELD_MARK


_WIRE_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=_hold)
_HELD_JSON = json.dumps(_HELD_MARK)


def wire_json(obj: Any) -> str:
    """``json.dumps(obj, sort_keys=True, separators=(",", ":"))``, each :class:`Encoded` value
    written as its text.

    The log's receipts repeat what it encoded already: the entry, and the tree
    head and beacon key its whole batch shares; encoding them again was most
    of a receipt's cost (py-spy).  Written here: json's C encoder writes a
    marker for each, which is then replaced; a document that holds the
    marker's text itself is encoded again without markers.
    tests/test_encoding.py holds this equal to json.dumps.
    """
    _HELD.texts = []
    try:
        parts = _WIRE_ENCODER.encode(obj).split(_HELD_JSON)
        texts = _HELD.texts
    finally:
        del _HELD.texts
    if len(parts) != len(texts) + 1:
        return json.dumps(_unheld(obj), sort_keys=True, separators=(",", ":"))
    return "".join(itertools.chain.from_iterable(zip(parts, texts))) + parts[-1]


def _unheld(obj: Any) -> Any:
    if type(obj) is Encoded:
        return json.loads(obj.text)
    if isinstance(obj, dict):
        return {k: _unheld(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_unheld(v) for v in obj]
    return obj


def canonical_json(obj: Any) -> bytes:
    """RFC 8785 canonical JSON of ``obj`` (dicts, lists, str, int, bool, None).

    The ``rfc8785`` package writes it; for the plain objects wmark signs
    (:func:`_plain`) the C JSON encoder writes the same bytes about twenty
    times faster (the registry encodes several per append).  Written here,
    and checked byte for byte against ``rfc8785`` by tests/test_encoding.py.
    """
    if _plain(obj):
        return _PLAIN_ENCODER.encode(obj).encode("ascii")
    try:
        return rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise DecodeError(f"object cannot be canonically encoded: {exc}") from exc


def parse_json(data: bytes, *, what: str, max_bytes: int = MAX_DOCUMENT_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """Parse untrusted JSON with bounds on its size, its nesting and its numbers
    (integers of at most :data:`MAX_INT_DIGITS` digits, finite floats); duplicate
    keys are rejected."""
    if len(data) > max_bytes:
        raise DecodeError(f"{what}: {len(data)} bytes exceeds the limit of {max_bytes}")
    obj = _parse(data, what=what)
    _check_depth(obj, max_depth, what=what)
    return obj


def _check_depth(obj: Any, max_depth: int, *, what: str) -> None:
    """Iteratively, so a deep document cannot exhaust the stack of the checker either."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > max_depth:
            raise DecodeError(f"{what}: JSON nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def parse_json_to_recanonicalise(data: bytes, *, what: str, max_bytes: int) -> Any:
    """Parse untrusted JSON bounded in size only, for a caller that accepts the bytes only
    if they are, byte for byte, :func:`canonical_json` of the fields it then decoded and
    checked one by one (:func:`wmark.protocol.keys.verify_vk_for_log`).

    That comparison refuses whatever the hooks of :func:`parse_json` refuse: a
    duplicate key (the canonical form has each key once), a constant or an
    out-of-range number (no checked field holds one), and nesting (every
    field's shape is checked); the hooks were half the parse's cost (measured).
    """
    if len(data) > max_bytes:
        raise DecodeError(f"{what}: {len(data)} bytes exceeds the limit of {max_bytes}")
    return _parse(data, what=what, hooks=False)


def _parse(data: bytes, *, what: str, hooks: bool = True) -> Any:

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(pairs)
        if len(result) != len(pairs):  # rare: find the key to name it
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise DecodeError(f"{what}: duplicate key {key!r}")
                seen.add(key)
        return result

    try:
        if not hooks:
            return json.loads(data.decode("utf-8"))
        return json.loads(data.decode("utf-8"), object_pairs_hook=no_duplicates,
                          parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{what}: not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise DecodeError(f"{what}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    except RecursionError as exc:
        raise DecodeError(f"{what}: JSON nested too deeply") from exc
    except ValueError as exc:  # e.g. an integer beyond Python's 4300-digit conversion limit
        raise DecodeError(f"{what}: not valid JSON ({exc})") from exc


def _reject_constant(name: str) -> Any:
    raise DecodeError(f"JSON constant {name} is not allowed")


def _bounded_int(text: str) -> int:
    # Every integer wmark reads fits in 64 bits; a 10^400 one would only
    # overflow whatever uses it (numpy, float()).
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise DecodeError(f"JSON integer of {len(text)} digits is out of range")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 overflows to Infinity, which JSON cannot express
        raise DecodeError(f"JSON number {text[:32]} is out of range")
    return value


# binascii directly, as base64.urlsafe_b64encode/decode do underneath, without
# their per-call overhead: the registry codes hundreds of these per append.
_TO_URL = bytes.maketrans(b"+/", b"-_")
_FROM_URL = bytes.maketrans(b"-_", b"+/")


def b64u_encode(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).translate(_TO_URL).rstrip(b"=").decode("ascii")


def b64u_encode_many(values: Sequence[bytes]) -> list[str]:
    """:func:`b64u_encode` of each of ``values``, in one C call when they share a length.

    The registry encodes a hundred digests per entry, where one call per value
    was most of the entry's encoding (measured).  Written here: each value is
    followed by the zero bytes that pad it to a multiple of three, so that it
    starts a fresh base64 group; base64 pads a short group with zero bits, so
    the characters of a value are the first ``ceil(4n/3)`` of its slot.
    tests/test_encoding.py holds this equal to one call per value.
    """
    if not values:
        return []
    length = len(values[0])
    if length == 0 or any(len(v) != length for v in values):
        return [b64u_encode(v) for v in values]
    pad = b"\0" * (-length % 3)
    text = binascii.b2a_base64(pad.join(values) + pad, newline=False).translate(_TO_URL).decode("ascii")
    slot, used = (length + len(pad)) * 4 // 3, -(-length * 4 // 3)
    return [text[at:at + used] for at in range(0, len(text), slot)]


def b64u_decode(text: Any, *, what: str, size: int | None = None, max_size: int | None = None) -> bytes:
    """Decode base64url (no padding), checking the exact or maximum length."""
    if not isinstance(text, str):
        raise DecodeError(f"{what}: expected a base64url string")
    if max_size is not None and len(text) > (max_size * 4) // 3 + 4:
        raise DecodeError(f"{what}: longer than {max_size} bytes")
    if "=" in text or "+" in text or "/" in text:
        raise DecodeError(f"{what}: not unpadded base64url")
    try:
        data = binascii.a2b_base64((text + "=" * (-len(text) % 4)).encode("ascii").translate(_FROM_URL))
    except (binascii.Error, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise DecodeError(f"{what}: invalid base64url") from exc
    # Re-encoding is cheaper than matching a pattern of the canonical forms (measured).
    if b64u_encode(data) != text:
        raise DecodeError(f"{what}: non-canonical base64url")
    if size is not None and len(data) != size:
        raise DecodeError(f"{what}: expected {size} bytes, got {len(data)}")
    if max_size is not None and len(data) > max_size:
        raise DecodeError(f"{what}: longer than {max_size} bytes")
    return data


_B64U_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def b64u_decode_many(texts: Sequence[Any], *, what: Callable[[int], str], size: int | None = None,
                     max_size: int | None = None) -> list[bytes]:
    """:func:`b64u_decode` of each of ``texts`` (``what(i)`` names item i in an error).

    Registry appends decode hundreds of same-length digests per vk and entry,
    where one call per string was most of the cost (measured).  Written here:
    strings of one length are decoded together, each followed by the "A"s
    that pad it to a multiple of four characters, in one C call; the padding
    bytes come out zero exactly when each string's unused trailing bits are
    zero, i.e. when it is canonical.  Anything else (mixed lengths, a bad
    character, a non-canonical string) goes through :func:`b64u_decode` one by
    one, which raises its usual error; tests/test_encoding.py holds the two
    paths equal.
    """
    values = _decode_same_length(texts)
    if values is None or (size is not None and values and len(values[0]) != size) or (
            max_size is not None and values and len(values[0]) > max_size):
        return [b64u_decode(t, what=what(i), size=size, max_size=max_size) for i, t in enumerate(texts)]
    return values


def _decode_same_length(texts: Sequence[Any]) -> list[bytes] | None:
    """The decoded values if every text is a canonical base64url string of one non-zero length; else None."""
    if not texts or type(texts[0]) is not str:
        return None
    length = len(texts[0])
    pad = -length % 4
    if length == 0 or pad == 3 or not all(type(t) is str and len(t) == length for t in texts):
        return None
    joined = ("A" * pad).join(texts) + "A" * pad
    if not _B64U_ALPHABET.fullmatch(joined):
        return None
    data = binascii.a2b_base64(joined.encode("ascii").translate(_FROM_URL))
    n, step = length * 3 // 4, (length + pad) * 3 // 4
    if len(data) != step * len(texts) or any(data[at::step].strip(b"\0") for at in range(n, step)):
        return None
    return [data[at:at + n] for at in range(0, len(data), step)]


def hex_decode(text: Any, *, what: str, size: int) -> bytes:
    """Lower-case hex of exactly ``size`` bytes: how digests are shown and reported
    (docs/design.md section 6: hex everywhere a person or a pipeline reads one)."""
    if not isinstance(text, str) or len(text) != 2 * size or text.strip("0123456789abcdef"):
        raise DecodeError(f"{what}: expected {2 * size} lower-case hex digits")
    return bytes.fromhex(text)


def expect_header(obj: Any, *, type_: str, version: int, what: str) -> dict[str, Any]:
    """Check that ``obj`` is a dict of the given ``type`` and ``version``."""
    if not isinstance(obj, dict):
        raise DecodeError(f"{what}: expected a JSON object")
    if obj.get("type") != type_:
        raise DecodeError(f"{what}: expected type {type_!r}, got {obj.get('type')!r}")
    if obj.get("version") != version or isinstance(obj.get("version"), bool):  # true == 1 in Python
        raise DecodeError(f"{what}: unsupported version {obj.get('version')!r} (this tool reads {version})")
    return obj


def field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], *, what: str) -> Any:
    """Fetch a required field and check its JSON type (bool is not an int here)."""
    if name not in obj:
        raise DecodeError(f"{what}: missing field {name!r}")
    value = obj[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise DecodeError(f"{what}: field {name!r} has the wrong type")
    if not isinstance(value, kinds):
        raise DecodeError(f"{what}: field {name!r} has the wrong type")
    return value


def int_field(obj: dict[str, Any], name: str, *, what: str, low: int, high: int) -> int:
    value = field(obj, name, int, what=what)
    if not low <= value <= high:
        raise DecodeError(f"{what}: field {name!r}={value} outside [{low}, {high}]")
    return value


def only_fields(obj: dict[str, Any], allowed: set[str], *, what: str) -> None:
    extra = set(obj) - allowed
    if extra:
        raise DecodeError(f"{what}: unknown field(s) {sorted(extra)}")


def object_with(obj: Any, allowed: set[str], *, what: str) -> dict[str, Any]:
    """``obj`` if it is a JSON object with no field outside ``allowed``."""
    if not isinstance(obj, dict):
        raise DecodeError(f"{what}: expected an object")
    only_fields(obj, allowed, what=what)
    return obj


E = TypeVar("E", bound=Enum)


def enum_value(kind: type[E], value: object, *, name: str) -> E:
    """The member of a wire enum whose value is ``value``; else an error naming the choices."""
    try:
        return kind(value)
    except ValueError:
        choices = [member.value for member in kind]
        raise DecodeError(f"unknown {name} {str(value)[:40]!r} (expected {', '.join(choices[:-1])} or "
                          f"{choices[-1]})") from None


W = TypeVar("W", bound="WireEnum")


class WireEnum(str, Enum):
    """A string enum as it travels in JSON: :meth:`parse` takes a wire value and refuses any
    other with the choices named.  A subclass says what it is called in that message:
    ``class Scheme(WireEnum, what="commitment scheme")``."""

    _what: ClassVar[str]

    def __init_subclass__(cls, *, what: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._what = what

    @classmethod
    def parse(cls: type[W], value: object) -> W:
        return enum_value(cls, value, name=cls._what)
