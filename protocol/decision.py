"""The decision rule (docs/design.md section 4).

Under H0, the model was not marked with this key, so each revealed item
matches its committed label with probability at most ``p0``.  We accept when
the number of matches ``m`` reaches ``tau``, the smallest ``t`` with
``P[Binomial(k, p0) >= t] <= 2^-lambda``: a false accusation then has
probability at most ``2^-lambda``.

Tails are computed in exact rational arithmetic, so an auditor on any machine
recomputes the very same threshold and p-value as the verifier did.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from wmark.errors import InvalidInput

DEFAULT_LAMBDA = 40
MAX_LAMBDA = 256
MAX_K = 10_000
# The exact tails are integers of about k * log2(denominator) bits: at k =
# MAX_K and this denominator (1/L for up to 100,000 classes, six decimals for
# an imported set's p0), one decision is a few seconds of arithmetic; at
# 10^12 it was a quarter of a minute, and with the earlier Fractions, hours.
MAX_P0_DENOMINATOR = 10**6


_PROBABILITY = re.compile(r"[0-9]{1,7}/[0-9]{1,7}|[0-9]?\.[0-9]{1,6}")


def parse_probability(text: str | Fraction, *, what: str = "p0") -> Fraction:
    # A bounded syntax: Fraction() itself would try to build 10**999999999 from "1e-999999999".
    if isinstance(text, str) and not _PROBABILITY.fullmatch(text):
        raise InvalidInput(f"{what}: {text[:40]!r} is not a probability like 1/10 or 0.1 (a denominator of at "
                           f"most {MAX_P0_DENOMINATOR}, at most six decimals)")
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError, TypeError):
        raise InvalidInput(f"{what}: {text!r} is not a probability like 1/10 or 0.1") from None
    if not 0 < value < 1:
        raise InvalidInput(f"{what}: {text} must be strictly between 0 and 1")
    if value.denominator > MAX_P0_DENOMINATOR:
        raise InvalidInput(f"{what}: {text} has a denominator above {MAX_P0_DENOMINATOR} (at most six decimals)")
    return value


def check_lambda(lam: int, *, what: str = "lambda") -> int:
    """``lambda`` in 1..256: a bound on the false accusation probability of 2^-1 to 2^-256."""
    if isinstance(lam, bool) or not isinstance(lam, int) or not 1 <= lam <= MAX_LAMBDA:
        raise InvalidInput(f"{what}={lam!r} must be an integer between 1 and {MAX_LAMBDA}")
    return lam


def smallest_k(p0: Fraction, lam: int) -> int | None:
    """The least k at which k matches of k reach 2^-lambda (``p0^k <= 2^-lambda``), or None beyond MAX_K."""
    bound, power = Fraction(1, 2**lam), Fraction(1)
    for k in range(1, MAX_K + 1):
        power *= p0
        if power <= bound:
            return k
    return None


def hopeless(k: int, p0: Fraction, lam: int) -> str | None:
    """Why a sample of ``k`` items can never be accepted at this ``p0`` and ``lambda``; None if it can.

    A verification that cannot accept would reveal items for nothing, so it is
    refused before any is revealed (docs/design.md section 4).
    """
    if threshold(k, p0, lam) is not None:
        return None
    least = smallest_k(p0, lam)
    need = f"at least k={least} is needed" if least is not None else f"no k up to {MAX_K} suffices"
    return (f"k={k} can never be accepted at p0={p0}, lambda={lam}: even {k} matches of {k} have p-value "
            f"{format_probability(tail(k, k, p0))} > 2^-{lam}; {need}")


def _check(k: int, p0: Fraction) -> None:
    """Bound the work before doing it: the tails cost k * log2(denominator) bits a term."""
    if not 1 <= k <= MAX_K:
        raise InvalidInput(f"sample size k={k} must be between 1 and {MAX_K}")
    if not 0 < p0 < 1 or p0.denominator > MAX_P0_DENOMINATOR:
        raise InvalidInput(f"p0={p0} must be in (0, 1) with a denominator of at most {MAX_P0_DENOMINATOR}")


def _terms(k: int, p0: Fraction, *, downward: bool) -> Iterator[tuple[int, int]]:
    """``(j, C(k, j) a^j b^(k-j))`` for ``p0 = a/d``, ``b = d - a``: the binomial pmf
    times ``d^k``, from ``j = k`` down or from ``j = 0`` up.

    Integers only (written here: no library has it): each term follows from
    the last by one multiplication and one *exact* division by small numbers,
    ``term[j+1] (j+1) b = term[j] (k-j) a``, so a tail over k = 10,000 items
    costs milliseconds where summing Fractions (a gcd per addition) took minutes.
    """
    a, d = p0.numerator, p0.denominator
    b = d - a
    if downward:
        term = a**k
        for j in range(k, -1, -1):
            yield j, term
            if j:
                term = term * j * b // ((k - j + 1) * a)
    else:
        term = b**k
        for j in range(k + 1):
            yield j, term
            if j < k:
                term = term * (k - j) * a // ((j + 1) * b)


@lru_cache(maxsize=256)
def tail(matches: int, k: int, p0: Fraction) -> Fraction:
    """The exact p-value ``P[Binomial(k, p0) >= matches]``."""
    _check(k, p0)
    if matches <= 0:
        return Fraction(1)
    if matches > k:
        return Fraction(0)
    whole = p0.denominator**k
    if matches > k // 2:  # sum the shorter side
        upper = sum(term for j, term in itertools.takewhile(lambda jt: jt[0] >= matches,
                                                             _terms(k, p0, downward=True)))
    else:
        upper = whole - sum(term for j, term in itertools.takewhile(lambda jt: jt[0] < matches,
                                                                     _terms(k, p0, downward=False)))
    return Fraction(upper, whole)


@lru_cache(maxsize=256)
def threshold(k: int, p0: Fraction, lam: int = DEFAULT_LAMBDA) -> int | None:
    """``tau``, or None when even ``k`` matches out of ``k`` are not significant enough."""
    return _scan(k, p0, lam, None)[0]


def _scan(k: int, p0: Fraction, lam: int, matches: int | None) -> tuple[int | None, int | None]:
    """``tau``, and the tail at ``matches`` times ``d^k`` if the scan for ``tau`` passed it."""
    _check(k, p0)
    if not 1 <= lam <= MAX_LAMBDA:
        raise InvalidInput(f"lambda={lam} must be between 1 and {MAX_LAMBDA}")
    # tail(t) <= 2^-lam  <=>  upper(t) * 2^lam <= d^k; tails grow as t falls.
    whole, upper, tau, at_matches = p0.denominator**k, 0, None, None
    for t, term in _terms(k, p0, downward=True):
        upper += term
        if t == matches:
            at_matches = upper
        if upper << lam > whole:
            break
        tau = t
    return tau, at_matches


def neg_log2(p: Fraction) -> float:
    """``-log2 p`` without overflowing floats for tiny p."""
    return math.log2(p.denominator) - math.log2(p.numerator)


def format_probability(p: Fraction) -> str:
    """Six significant digits, deterministic on every platform (from the exact value)."""
    if p == 0:
        return "0"
    exponent = math.floor(math.log10(p.numerator) - math.log10(p.denominator))
    # Correct the float estimate of the exponent exactly.
    while p >= Fraction(10) ** (exponent + 1):
        exponent += 1
    while p < Fraction(10) ** exponent:
        exponent -= 1
    mantissa = round(p / Fraction(10) ** exponent * 10**5)
    if mantissa >= 10**6:
        mantissa, exponent = mantissa // 10, exponent + 1
    digits = str(mantissa)
    return f"{digits[0]}.{digits[1:]}e{exponent:+03d}"


@dataclass(frozen=True)
class Decision:
    matches: int
    k: int
    p0: Fraction
    lam: int
    tau: int | None
    p_value: Fraction

    @property
    def accepted(self) -> bool:
        return self.tau is not None and self.matches >= self.tau

    @property
    def p_value_text(self) -> str:
        return format_probability(self.p_value)

    @property
    def neg_log2_p(self) -> float:
        return neg_log2(self.p_value) if self.p_value > 0 else math.inf


def decide(matches: int, k: int, p0: Fraction, lam: int = DEFAULT_LAMBDA) -> Decision:
    if not 0 <= matches <= k:
        raise InvalidInput(f"{matches} matches out of k={k}")
    tau, upper = _scan(k, p0, lam, matches)
    # The threshold's scan passes the p-value's tail on its way unless the
    # matches lie below the threshold; only then is the tail summed apart.
    p_value = Fraction(upper, p0.denominator**k) if upper is not None else tail(matches, k, p0)
    return Decision(matches, k, p0, lam, tau, p_value)


def _binomial_sf_float(t: int, k: int, a: float) -> float:
    return sum(math.comb(k, j) * a**j * (1 - a) ** (k - j) for j in range(t, k + 1))


def lowest_passing_accuracy(k: int, p0: Fraction, lam: int = DEFAULT_LAMBDA, confidence: float = 0.99) -> float | None:
    """The lowest trigger accuracy ``a`` with ``P[Binomial(k, a) >= tau] >= confidence``.

    Advisory (floats are fine here): it tells a user which ``k`` to choose
    before anything is revealed.
    """
    tau = threshold(k, p0, lam)
    if tau is None:
        return None
    low, high = 0.0, 1.0
    for _ in range(50):
        mid = (low + high) / 2
        if _binomial_sf_float(tau, k, mid) >= confidence:
            high = mid
        else:
            low = mid
    return high
