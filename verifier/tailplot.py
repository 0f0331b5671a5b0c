"""The binomial tail of a decision as a small inline SVG (docs/design.md section 6, ``report``).

Written by hand rather than with a plotting library: the picture is a dozen
elements, it must be byte-for-byte deterministic and self-contained (no
fonts or scripts fetched), and every number in it comes from the exact
rational tails of :mod:`wmark.protocol.decision`.
"""

from __future__ import annotations

import math
from fractions import Fraction

from wmark.protocol.decision import tail

WIDTH, HEIGHT = 560, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 14, 34


def _log10(p: Fraction) -> float:
    """log10 of a positive fraction whose parts may be far beyond float range."""
    return math.log10(p.numerator) - math.log10(p.denominator)


def tail_svg(k: int, p0: Fraction, lam: int, tau: int | None, matches: int) -> str:
    """``P[Binomial(k, p0) >= t]`` for t = 0..k on a log scale, with the acceptance
    bound 2^-lam, the threshold tau and the observed matches marked."""
    logs = [_log10(tail(t, k, p0)) for t in range(k + 1)]
    bound = -lam * math.log10(2)
    floor = math.floor(min(min(logs), bound) - 0.5)
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM

    def x(t: float) -> float:
        return _LEFT + plot_w * (t / k if k else 0.0)

    def y(log_p: float) -> float:
        return _TOP + plot_h * (log_p / floor if floor else 0.0)

    # Inline SVG in HTML needs no xmlns, and the page names no URL at all.
    parts = [(f'<svg class="tailplot" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
              f'role="img" aria-label="binomial tail P[X &gt;= t] for k={k}, p0={p0}">')]
    parts.append(f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa" '
                 f'stroke="#999"/>')
    step = max(1, math.ceil(-floor / 6))
    for decade in range(0, floor - 1, -step):
        yy = y(decade)
        parts.append(f'<line x1="{_LEFT}" y1="{yy:.1f}" x2="{_LEFT + plot_w}" y2="{yy:.1f}" stroke="#e3e3e3"/>')
        parts.append(f'<text x="{_LEFT - 6}" y="{yy + 4:.1f}" text-anchor="end" font-size="11">1e{decade}</text>')
    tick = max(1, math.ceil(k / 10))
    for t in range(0, k + 1, tick):
        parts.append(f'<text x="{x(t):.1f}" y="{HEIGHT - _BOTTOM + 14}" text-anchor="middle" '
                     f'font-size="11">{t}</text>')
    parts.append(f'<text x="{_LEFT + plot_w / 2:.1f}" y="{HEIGHT - 4}" text-anchor="middle" font-size="11">'
                 f'matches t out of k={k}</text>')
    points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in enumerate(logs))
    parts.append(f'<polyline class="tail" points="{points}" fill="none" stroke="#333" stroke-width="1.5"/>')
    parts.append(f'<line class="bound" x1="{_LEFT}" y1="{y(bound):.1f}" x2="{_LEFT + plot_w}" y2="{y(bound):.1f}" '
                 f'stroke="#b00" stroke-dasharray="4 3"/>')
    parts.append(f'<text x="{_LEFT + plot_w - 4}" y="{y(bound) - 4:.1f}" text-anchor="end" font-size="11" '
                 f'fill="#b00">2^-{lam}</text>')
    if tau is not None:
        parts.append(f'<line class="tau" x1="{x(tau):.1f}" y1="{_TOP}" x2="{x(tau):.1f}" y2="{_TOP + plot_h}" '
                     f'stroke="#b00"/>')
        parts.append(f'<text x="{x(tau) - 4:.1f}" y="{_TOP + 12}" text-anchor="end" font-size="11" '
                     f'fill="#b00">tau={tau}</text>')
    observed = logs[min(matches, k)]
    parts.append(f'<circle class="observed" cx="{x(matches):.1f}" cy="{y(observed):.1f}" r="5" fill="#05c"/>')
    parts.append(f'<text x="{x(matches) + (-8 if matches > k / 2 else 8):.1f}" y="{y(observed) - 8:.1f}" '
                 f'text-anchor="{"end" if matches > k / 2 else "start"}" font-size="11" fill="#05c">'
                 f'observed {matches}</text>')
    parts.append("</svg>")
    return "".join(parts)
