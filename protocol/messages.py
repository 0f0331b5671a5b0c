"""The messages of a verification (docs/design.md section 4), as h11 has its events.

Each message is a frozen dataclass with one canonical JSON payload, carried in
a DSSE envelope signed by its sender: ``Challenge`` by the verifier,
``Reveal`` and ``Refusal`` by the owner (the key in ``vk``), ``Verdict`` by the
verifier.  A message is named by the domain-separated digest of its payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar, Union

from wmark.errors import DecodeError
from wmark.protocol.decision import MAX_K, MAX_LAMBDA, parse_probability
from wmark.protocol.hazmat import dsse
from wmark.protocol.hazmat import encoding as enc
from wmark.protocol.hazmat.commitment import Scheme
from wmark.protocol.hazmat.hashing import tagged_hash
from wmark.protocol.hazmat.identity import PublicKey, SigningKey
from wmark.protocol.items import ItemOpening, TriggerKind
from wmark.protocol.keys import MAX_CLASSES, MAX_ITEMS, decode_opening, encode_opening
from wmark.protocol.transparency import RegistrationInfo
from wmark.protocol.zk import ITEM_V1, ITEM_V2, ZkItem, ZkParameters, ZkVerdictInfo

VERSION = 1
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
MAX_TEXT = 1024
MAX_URL = 2048


def _digest(obj: Any, name: str) -> bytes:
    return enc.b64u_decode(obj.get(name), what=name, size=32)


def _text(obj: dict[str, Any], name: str, *, what: str, limit: int = MAX_TEXT) -> str:
    value = enc.field(obj, name, str, what=what)
    if len(value) > limit:
        raise DecodeError(f"{what}: field {name!r} longer than {limit} characters")
    return value


@dataclass(frozen=True)
class ModelRef:
    """Which suspect model a challenge is about: a file's digest, or an endpoint."""

    sha256: bytes | None = None
    url: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if (self.sha256 is None) == (self.url is None):
            raise DecodeError("a model reference is either a file digest or an endpoint URL")

    def to_obj(self) -> dict[str, Any]:
        if self.sha256 is not None:
            return {"kind": "file", "sha256": enc.b64u_encode(self.sha256)}
        return {"kind": "endpoint", "url": self.url, "name": self.name}

    def report_obj(self) -> dict[str, Any]:
        """As JSON reports show it: the digest in hex (docs/design.md section 6); never signed."""
        if self.sha256 is not None:
            return {"kind": "file", "sha256": self.sha256.hex()}
        return {"kind": "endpoint", "url": self.url, "name": self.name}

    @classmethod
    def from_obj(cls, obj: Any, *, what: str) -> "ModelRef":
        if not isinstance(obj, dict):
            raise DecodeError(f"{what}: model reference must be an object")
        if obj.get("kind") == "file":
            enc.only_fields(obj, {"kind", "sha256"}, what=what)
            return cls(sha256=enc.b64u_decode(obj.get("sha256"), what=f"{what}: model sha256", size=32))
        if obj.get("kind") == "endpoint":
            enc.only_fields(obj, {"kind", "url", "name"}, what=what)
            return cls(url=_text(obj, "url", what=what, limit=MAX_URL), name=_text(obj, "name", what=what))
        raise DecodeError(f"{what}: model reference kind must be 'file' or 'endpoint'")

    def describe(self) -> str:
        if self.sha256 is not None:
            return f"model file sha256:{self.sha256.hex()[:16]}…"
        return f"endpoint {self.url} model {self.name}"


class Message:
    """Shared codec: subclasses define TYPE, PAYLOAD_TYPE, DIGEST_TAG, _to_obj, _from_obj."""

    TYPE: ClassVar[str]
    PAYLOAD_TYPE: ClassVar[str]
    DIGEST_TAG: ClassVar[str]

    # The encoding a message writes, and those it reads (older ones included).
    WRITES: ClassVar[int] = VERSION
    READS: ClassVar[tuple[int, ...]] = (VERSION,)

    def payload(self) -> bytes:
        return enc.canonical_json({"type": self.TYPE, "version": self.WRITES, **self._to_obj()})

    def sign(self, key: SigningKey) -> dsse.Envelope:
        return dsse.sign(self.PAYLOAD_TYPE, self.payload(), key)

    @classmethod
    def digest_of(cls, envelope: dsse.Envelope) -> bytes:
        return tagged_hash(cls.DIGEST_TAG, envelope.payload)

    def digest(self) -> bytes:
        """What ``digest_of`` gives for this message once signed (the digest covers the payload only)."""
        return tagged_hash(self.DIGEST_TAG, self.payload())

    @classmethod
    def from_payload(cls, payload: bytes) -> "Message":
        what = cls.TYPE.split("/")[-1]
        obj = enc.parse_json(payload, what=what, max_bytes=MAX_MESSAGE_BYTES)
        given = obj.get("version") if isinstance(obj, dict) else None
        # Only an int picks the reader (JSON true equals 1 in Python); anything else expect_header refuses.
        version = given if type(given) is int and given in cls.READS else cls.WRITES
        obj = enc.expect_header(obj, type_=cls.TYPE, version=version, what=what)
        return cls._from_obj(obj, what)

    def _to_obj(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def _from_obj(cls, obj: dict[str, Any], what: str) -> "Message":
        raise NotImplementedError


@dataclass(frozen=True)
class Challenge(Message):
    """Verifier -> prover: which key, which model, how many items, a fresh nonce.

    ``k = n`` asks for public verification (the paper's Verify); ``k < n`` for
    private verification, where the rest of the trigger set stays secret.
    With ``zk`` it asks for zero-knowledge proofs instead of openings (docs/design.md
    section 4c), about a model file the verifier holds.  ``lam`` and ``p0`` bind
    the decision rule before anything is revealed: the verdict must use them, and
    a prover refuses a challenge whose ``k`` could never be accepted under them.
    """

    TYPE: ClassVar[str] = "wmark/challenge"
    PAYLOAD_TYPE: ClassVar[str] = "application/vnd.wmark.challenge+json"
    DIGEST_TAG: ClassVar[str] = "wmark/challenge/v1"

    vk_digest: bytes
    model: ModelRef
    n: int
    k: int
    nonce: bytes
    verifier: PublicKey
    issued: str
    zk: ZkParameters | None = None
    # Absent only in challenges made before they were bound (docs/design.md section 4).
    lam: int | None = None
    p0: Fraction | None = None

    def __post_init__(self) -> None:
        if (self.lam is None) != (self.p0 is None):
            raise DecodeError("a challenge binds both lambda and p0, or neither")
        if self.zk is not None and self.model.sha256 is None:
            raise DecodeError("a zero-knowledge challenge is about a model file the verifier holds, not an endpoint")

    def _to_obj(self) -> dict[str, Any]:
        return {
            "vk_digest": enc.b64u_encode(self.vk_digest), "model": self.model.to_obj(), "n": self.n, "k": self.k,
            "nonce": enc.b64u_encode(self.nonce), "verifier_public_key": enc.b64u_encode(self.verifier.to_der()),
            "issued": self.issued,
            # Absent rather than null in plain challenges, whose encoding predates it.
            **({"zk": self.zk.to_obj()} if self.zk is not None else {}),
            **({"lambda": self.lam, "p0": f"{self.p0.numerator}/{self.p0.denominator}"}
               if self.lam is not None and self.p0 is not None else {}),
        }

    @classmethod
    def _from_obj(cls, obj: dict[str, Any], what: str) -> "Challenge":
        enc.only_fields(obj, {"type", "version", "vk_digest", "model", "n", "k", "nonce", "verifier_public_key",
                              "issued", "zk", "lambda", "p0"}, what=what)
        n = enc.int_field(obj, "n", what=what, low=1, high=MAX_ITEMS)
        return cls(
            vk_digest=_digest(obj, "vk_digest"),
            model=ModelRef.from_obj(obj.get("model"), what=what),
            n=n,
            k=enc.int_field(obj, "k", what=what, low=1, high=min(n, MAX_K)),
            nonce=enc.b64u_decode(obj.get("nonce"), what=f"{what}: nonce", size=32),
            verifier=PublicKey.from_der(enc.b64u_decode(obj.get("verifier_public_key"), what=f"{what}: verifier key",
                                                        max_size=256), what=f"{what}: verifier key"),
            issued=_text(obj, "issued", what=what, limit=64),
            zk=ZkParameters.from_obj(obj["zk"], what=what) if "zk" in obj else None,
            lam=enc.int_field(obj, "lambda", what=what, low=1, high=MAX_LAMBDA) if "lambda" in obj else None,
            p0=(parse_probability(_text(obj, "p0", what=what, limit=64), what=f"{what}: p0")
                if "p0" in obj else None),
        )


@dataclass(frozen=True)
class Answer(Message):
    """What the owner answers a challenge with: one entry per sampled item, in
    the subset's order (openings in a :class:`Reveal`, proofs in a :class:`ZkReveal`)."""

    ENTRIES: ClassVar[str]  # the payload field that lists the entries
    ENTRY: ClassVar[str]  # one of them, in error messages

    challenge_digest: bytes
    vk_digest: bytes
    scheme: Scheme

    @property
    def entries(self) -> tuple[Any, ...]:
        return getattr(self, self.ENTRIES)

    @property
    def indices(self) -> tuple[int, ...]:
        return tuple(entry.index for entry in self.entries)

    def _to_obj(self) -> dict[str, Any]:
        return {
            "challenge_digest": enc.b64u_encode(self.challenge_digest), "vk_digest": enc.b64u_encode(self.vk_digest),
            "scheme": self.scheme.value, self.ENTRIES: [self._encode_entry(e) for e in self.entries],
        }

    @classmethod
    def _from_obj(cls, obj: dict[str, Any], what: str) -> "Answer":
        enc.only_fields(obj, {"type", "version", "challenge_digest", "vk_digest", "scheme", cls.ENTRIES}, what=what)
        scheme = Scheme.parse(enc.field(obj, "scheme", str, what=what))
        raw = enc.field(obj, cls.ENTRIES, list, what=what)
        if not 1 <= len(raw) <= MAX_ITEMS:
            raise DecodeError(f"{what}: 1 to {MAX_ITEMS} {cls.ENTRIES} expected, got {len(raw)}")
        # The entries are the subclass's own field, named by ENTRIES.
        return cls(_digest(obj, "challenge_digest"), _digest(obj, "vk_digest"), scheme,
                   **{cls.ENTRIES: tuple(cls._decode_entry(o, scheme, what=f"{what}: {cls.ENTRY} {i}",
                                                               version=obj["version"])
                                         for i, o in enumerate(raw))})

    @staticmethod
    def _encode_entry(entry: Any) -> Any:
        raise NotImplementedError

    @staticmethod
    def _decode_entry(obj: Any, scheme: Scheme, *, what: str, version: int) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Reveal(Answer):
    """Prover -> verifier: the openings of the sampled subset, and nothing else."""

    TYPE: ClassVar[str] = "wmark/reveal"
    PAYLOAD_TYPE: ClassVar[str] = "application/vnd.wmark.reveal+json"
    DIGEST_TAG: ClassVar[str] = "wmark/reveal/v1"
    ENTRIES: ClassVar[str] = "openings"
    ENTRY: ClassVar[str] = "opening"

    openings: tuple[ItemOpening, ...]

    @staticmethod
    def _encode_entry(entry: ItemOpening) -> Any:
        return encode_opening(entry)

    @staticmethod
    def _decode_entry(obj: Any, scheme: Scheme, *, what: str, version: int = VERSION) -> ItemOpening:
        return decode_opening(obj, scheme, what=what, max_index=MAX_ITEMS - 1)


@dataclass(frozen=True)
class ZkReveal(Answer):
    """Prover -> verifier, answering a zero-knowledge challenge: per sampled item
    the label's opening and a proof about the hidden input; no image, no seed."""

    TYPE: ClassVar[str] = "wmark/zk-reveal"
    PAYLOAD_TYPE: ClassVar[str] = "application/vnd.wmark.zk-reveal+json"
    DIGEST_TAG: ClassVar[str] = "wmark/zk-reveal/v1"
    ENTRIES: ClassVar[str] = "items"
    ENTRY: ClassVar[str] = "item"

    # v2 lists one proof per piece of a model proven in pieces; v1 reveals (one proof an item) still decode.
    WRITES: ClassVar[int] = ITEM_V2
    READS: ClassVar[tuple[int, ...]] = (ITEM_V1, ITEM_V2)

    items: tuple[ZkItem, ...]

    @staticmethod
    def _encode_entry(entry: ZkItem) -> Any:
        return entry.to_obj()

    @staticmethod
    def _decode_entry(obj: Any, scheme: Scheme, *, what: str, version: int = ITEM_V2) -> ZkItem:
        return ZkItem.from_obj(obj, scheme, what=what, max_index=MAX_ITEMS - 1, max_class=MAX_CLASSES,
                               version=version)


@dataclass(frozen=True)
class Refusal(Message):
    """Prover -> verifier: a signed no, e.g. when the leakage budget would be exceeded."""

    TYPE: ClassVar[str] = "wmark/refusal"
    PAYLOAD_TYPE: ClassVar[str] = "application/vnd.wmark.refusal+json"
    DIGEST_TAG: ClassVar[str] = "wmark/refusal/v1"

    challenge_digest: bytes
    reason: str

    def _to_obj(self) -> dict[str, Any]:
        return {"challenge_digest": enc.b64u_encode(self.challenge_digest), "reason": self.reason}

    @classmethod
    def _from_obj(cls, obj: dict[str, Any], what: str) -> "Refusal":
        enc.only_fields(obj, {"type", "version", "challenge_digest", "reason"}, what=what)
        return cls(_digest(obj, "challenge_digest"), _text(obj, "reason", what=what))


@dataclass(frozen=True)
class ItemResult:
    """One queried item: its committed label and the class the model answered
    (None in a zero-knowledge verdict when the item's proof did not count)."""

    index: int
    label: int
    predicted: int | None

    @property
    def match(self) -> bool:
        return self.label == self.predicted


def _result(entry: Any, *, zk: bool, what: str) -> ItemResult:
    def small_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_CLASSES

    # Only a zero-knowledge verdict has items without a class: those whose proof failed.
    if (not isinstance(entry, list) or len(entry) != 3 or not small_int(entry[0]) or not small_int(entry[1])
            or not (small_int(entry[2]) or (zk and entry[2] is None))):
        raise DecodeError(f"{what}: a result must be [index, label, predicted]")
    return ItemResult(*entry)


@dataclass(frozen=True)
class Verdict(Message):
    """Verifier's signed decision, bound to the whole message chain."""

    TYPE: ClassVar[str] = "wmark/verdict"
    PAYLOAD_TYPE: ClassVar[str] = "application/vnd.wmark.verdict+json"
    DIGEST_TAG: ClassVar[str] = "wmark/verdict/v1"

    vk_digest: bytes
    challenge_digest: bytes
    reveal_digest: bytes
    chain_digest: bytes
    model: ModelRef
    trigger_kind: TriggerKind
    results: tuple[ItemResult, ...]
    p0: Fraction
    lam: int
    tau: int | None
    matches: int
    p_value: str
    neg_log2_p: str
    accepted: bool
    caveats: tuple[str, ...]
    registration: RegistrationInfo | None
    decided: str
    zk: ZkVerdictInfo | None = None

    @property
    def k(self) -> int:
        return len(self.results)

    def _to_obj(self) -> dict[str, Any]:
        return {
            "vk_digest": enc.b64u_encode(self.vk_digest), "challenge_digest": enc.b64u_encode(self.challenge_digest),
            "reveal_digest": enc.b64u_encode(self.reveal_digest), "chain_digest": enc.b64u_encode(self.chain_digest),
            "model": self.model.to_obj(), "trigger_kind": self.trigger_kind.value,
            "results": [[r.index, r.label, r.predicted] for r in self.results],
            "p0": f"{self.p0.numerator}/{self.p0.denominator}", "lambda": self.lam, "tau": self.tau,
            "matches": self.matches, "p_value": self.p_value, "neg_log2_p": self.neg_log2_p,
            "accepted": self.accepted, "caveats": list(self.caveats), "registration": self.registration.to_obj() if self.registration else None,
            "decided": self.decided,
            **({"zk": self.zk.to_obj()} if self.zk is not None else {}),
        }

    @classmethod
    def _from_obj(cls, obj: dict[str, Any], what: str) -> "Verdict":
        enc.only_fields(obj, {"type", "version", "vk_digest", "challenge_digest", "reveal_digest", "chain_digest",
                              "model", "trigger_kind", "results", "p0", "lambda", "tau", "matches", "p_value",
                              "neg_log2_p", "accepted", "caveats", "registration", "decided", "zk"}, what=what)
        zk = (ZkVerdictInfo.from_obj(obj["zk"], what=what, max_text=MAX_TEXT, max_items=MAX_ITEMS)
              if "zk" in obj else None)
        raw_results = enc.field(obj, "results", list, what=what)
        if not 1 <= len(raw_results) <= MAX_ITEMS:
            raise DecodeError(f"{what}: 1 to {MAX_ITEMS} results expected")
        results = [_result(entry, zk=zk is not None, what=what) for entry in raw_results]
        tau = obj.get("tau")
        if tau is not None and (not isinstance(tau, int) or isinstance(tau, bool) or not 0 <= tau <= MAX_K):
            raise DecodeError(f"{what}: tau must be null or an integer")
        caveats = enc.field(obj, "caveats", list, what=what)
        if len(caveats) > 16 or not all(isinstance(c, str) and len(c) <= MAX_TEXT for c in caveats):
            raise DecodeError(f"{what}: malformed caveats")
        registration = obj.get("registration")
        accepted = obj.get("accepted")
        if not isinstance(accepted, bool):
            raise DecodeError(f"{what}: accepted must be true or false")
        return cls(
            vk_digest=_digest(obj, "vk_digest"), challenge_digest=_digest(obj, "challenge_digest"),
            reveal_digest=_digest(obj, "reveal_digest"), chain_digest=_digest(obj, "chain_digest"),
            model=ModelRef.from_obj(obj.get("model"), what=what),
            trigger_kind=TriggerKind.parse(enc.field(obj, "trigger_kind", str, what=what)),
            results=tuple(results),
            p0=parse_probability(_text(obj, "p0", what=what, limit=64), what=f"{what}: p0"),
            lam=enc.int_field(obj, "lambda", what=what, low=1, high=MAX_LAMBDA),
            tau=tau,
            matches=enc.int_field(obj, "matches", what=what, low=0, high=MAX_K),
            p_value=_text(obj, "p_value", what=what, limit=32),
            neg_log2_p=_text(obj, "neg_log2_p", what=what, limit=32),
            accepted=accepted,
            caveats=tuple(caveats),
            registration=(RegistrationInfo.from_obj(registration, what=f"{what}: registration")
                          if registration is not None else None),
            decided=_text(obj, "decided", what=what, limit=64),
            zk=zk,
        )


AnyMessage = Union[Challenge, Reveal, ZkReveal, Refusal, Verdict]
MESSAGE_TYPES: dict[str, type[Message]] = {
    m.PAYLOAD_TYPE: m for m in (Challenge, Reveal, ZkReveal, Refusal, Verdict)
}


def decode(envelope: dsse.Envelope, expected: tuple[type[Message], ...]) -> Message:
    """Decode an envelope's payload as one of ``expected`` (signature checked by the caller)."""
    cls = MESSAGE_TYPES.get(envelope.payload_type)
    if cls is None:
        raise DecodeError(f"unknown message type {envelope.payload_type!r}")
    if cls not in expected:
        names = " or ".join(c.__name__ for c in expected)
        raise DecodeError(f"expected a {names}, got a {cls.__name__}")
    return cls.from_payload(envelope.payload)


def chain_digest(vk_digest: bytes, challenge_digest: bytes, reveal_digest: bytes) -> bytes:
    return tagged_hash("wmark/transcript/chain/v1", vk_digest, challenge_digest, reveal_digest)
