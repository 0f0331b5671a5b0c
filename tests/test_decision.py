"""The decision rule: exact binomial tails, the threshold, and the planning aid."""

import math
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from wmark.errors import InvalidInput
from wmark.protocol.decision import (
    decide,
    format_probability,
    lowest_passing_accuracy,
    parse_probability,
    tail,
    threshold,
)

p0s = st.sampled_from([Fraction(1, 2), Fraction(1, 10), Fraction(1, 9), Fraction(1, 100), Fraction(3, 7)])


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 200), p0=p0s, lam=st.integers(1, 64))
def test_threshold_is_the_smallest_significant_count(k, p0, lam):
    tau = threshold(k, p0, lam)
    bound = Fraction(1, 2**lam)
    if tau is None:
        assert tail(k, k, p0) > bound
    else:
        assert tail(tau, k, p0) <= bound
        assert tau == 0 or tail(tau - 1, k, p0) > bound


def exact_tail(m: int, k: int, p0: Fraction) -> Fraction:
    """``P[Binomial(k, p0) >= m]`` as one minus the lower tail: another formula than the
    library's upper-tail sum, in exact arithmetic, so the two must agree exactly."""
    q = 1 - p0
    return 1 - sum((math.comb(k, j) * p0**j * q ** (k - j) for j in range(min(m, k + 1))), Fraction(0))


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 300), p0=p0s, data=st.data())
def test_exact_tail_is_the_binomial_tail(k, p0, data):
    m = data.draw(st.integers(-1, k + 1))
    assert tail(m, k, p0) == exact_tail(max(m, 0), k, p0)


# scipy's binom.sf keeps about 1e-9 relative accuracy only well above the
# smallest doubles (below ~1e-280 it drifts: k=174, p0=1/100, m=174), so it
# serves as an outside check of the exact values where it is accurate.
SCIPY_ACCURATE_ABOVE = 1e-200


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 300), p0=p0s, data=st.data())
def test_exact_tail_agrees_with_scipy_where_scipy_is_accurate(k, p0, data):
    m = data.draw(st.integers(0, k))
    exact = tail(m, k, p0)
    assume(exact >= SCIPY_ACCURATE_ABOVE)
    assert float(exact) == pytest.approx(binom.sf(m - 1, k, float(p0)), rel=1e-9)


def test_the_tail_that_fooled_scipy_is_exact():
    # The falsifying example of the old float comparison: exactly (1/100)^174.
    assert tail(174, 174, Fraction(1, 100)) == Fraction(1, 100**174)


def test_known_values():
    assert threshold(20, Fraction(1, 10)) == 16
    assert threshold(100, Fraction(1, 10)) == 37
    assert threshold(10, Fraction(1, 10)) is None  # 10^-10 > 2^-40: ten items can never suffice
    d = decide(20, 20, Fraction(1, 10))
    assert d.accepted and d.p_value == Fraction(1, 10**20) and d.p_value_text == "1.00000e-20"
    assert not decide(15, 20, Fraction(1, 10)).accepted


@settings(max_examples=100)
@given(num=st.integers(1, 10**6), den=st.integers(1, 10**6))
def test_format_probability_matches_float_formatting(num, den):
    p = Fraction(min(num, den), max(num, den) + 1)
    assert float(format_probability(p)) == pytest.approx(float(p), rel=1e-5)


def test_lowest_passing_accuracy_passes_with_99_percent():
    for k in (20, 50, 100):
        a = lowest_passing_accuracy(k, Fraction(1, 10))
        tau = threshold(k, Fraction(1, 10))
        assert binom.sf(tau - 1, k, a) >= 0.99 - 1e-9
        assert binom.sf(tau - 1, k, a - 0.01) < 0.99
    assert lowest_passing_accuracy(10, Fraction(1, 10)) is None


@pytest.mark.parametrize("text", ["0", "1", "1.5", "-0.1", "abc", "1/0"])
def test_bad_probabilities_are_refused(text):
    with pytest.raises(InvalidInput):
        parse_probability(text)


@settings(max_examples=80, deadline=None)
@given(k=st.integers(1, 60), numerator=st.integers(1, 999), denominator=st.integers(2, 1000), data=st.data())
def test_integer_tails_equal_the_textbook_sum(k, numerator, denominator, data):
    p0 = Fraction(min(numerator, denominator - 1), denominator)
    m = data.draw(st.integers(-1, k + 1))
    textbook = sum((Fraction(math.comb(k, j)) * p0**j * (1 - p0) ** (k - j) for j in range(max(m, 0), k + 1)),
                   Fraction(0))
    assert tail(m, k, p0) == textbook


def test_the_work_of_a_decision_is_bounded_before_it_starts():
    with pytest.raises(InvalidInput, match="denominator"):
        parse_probability("1/1000001")
    with pytest.raises(InvalidInput, match="six decimals|is not a probability"):
        parse_probability("0.1234567")
    with pytest.raises(InvalidInput, match="denominator"):
        threshold(10_000, Fraction(123456789011, 999999999989))
    with pytest.raises(InvalidInput, match="k=10001"):
        tail(3, 10_001, Fraction(1, 10))
    with pytest.raises(InvalidInput, match="lambda"):
        threshold(100, Fraction(1, 10), 10**9)
