"""Abstract trigger images rendered from a seed (docs/design.md section 2).

The picture is a pure function of (seed, shape): a soft background gradient
and a few strokes and ellipses with smooth edges, rendered at a higher
resolution and averaged down.  Randomness comes from SHAKE-256 over the seed
(:func:`wmark.protocol.hazmat.hashing.tagged_stream`), never from numpy's generators,
whose streams are not promised stable across numpy versions: a verifier with
another numpy must redraw the same image.  Only IEEE-exact operations
(+, -, *, /, sqrt, comparisons) are used, in a fixed order, for the same
reason.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from wmark.errors import InvalidInput
from wmark.protocol.hazmat.hashing import tagged_stream

PATTERN_TAG = "wmark/pattern/v1"
_SUPERSAMPLE_TARGET = 32
_MAX_SHAPES = 7
_PARAMS_PER_SHAPE = 12


def _uniforms(seed: bytes, count: int) -> np.ndarray:
    raw = np.frombuffer(tagged_stream(PATTERN_TAG, seed, 4 * count), dtype=">u4")
    return raw.astype(np.float64) / 4294967296.0


class Drawable(Protocol):
    """An item as far as its image goes: the pixels it carries (imported and
    margin items), else the seed it is rendered from (derived items), as
    :class:`wmark.protocol.items.OpenedItem` holds them."""

    @property
    def seed(self) -> bytes | None: ...

    @property
    def pixels(self) -> bytes | None: ...


def item_images(items: Sequence[Drawable], shape: tuple[int, int, int]) -> np.ndarray:
    """The uint8 N x C x H x W images of ``items``: their pixels where they carry
    them, else rendered from their seeds (together, as :func:`render_many`).

    The one derivation of an item's image, for the verifier querying a model,
    the owner training one and the zero-knowledge circuit alike, so that all
    of them draw the same picture (docs/design.md section 2).
    """
    rendered = iter(render_many([_seed(item) for item in items if item.pixels is None], shape))
    return np.stack([np.frombuffer(item.pixels, dtype=np.uint8).reshape(shape) if item.pixels is not None
                     else next(rendered) for item in items])


def _seed(item: Drawable) -> bytes:
    if item.seed is None:
        raise InvalidInput("an item carries neither pixels nor a seed to render them from")
    return item.seed


def render(seed: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    """The uint8 C x H x W image of ``seed``."""
    return render_many([seed], shape)[0]


def render_many(seeds: Sequence[bytes], shape: tuple[int, int, int]) -> np.ndarray:
    """The uint8 N x C x H x W images of ``seeds``, each exactly :func:`render`'s.

    A verifier draws every opened item, and numpy's per-call cost dominates
    an image this small, so the images are drawn together: each pixel goes
    through the same operations in the same order as when drawn alone, with
    its image's parameters broadcast, and every shape is computed only for
    the images that draw it (no blend with a zero weight stands in for a skip).
    """
    channels, height, width = shape
    factor = max(1, -(-_SUPERSAMPLE_TARGET // min(height, width)))
    hs, ws = height * factor, width * factor
    count = len(seeds)
    if not count:
        return np.zeros((0, *shape), dtype=np.uint8)
    u = np.stack([_uniforms(seed, 1 + 3 * channels + _MAX_SHAPES * (_PARAMS_PER_SHAPE + channels))
                  for seed in seeds])
    taken = 0

    def draw(width: int = 1) -> np.ndarray:
        """The next ``width`` uniforms of each image, as columns of an N x width x 1 x 1 array
        (each column broadcasts over its image's pixels)."""
        nonlocal taken
        taken += width
        return u[:, taken - width:taken, None, None]

    ys = (np.arange(hs, dtype=np.float64)[:, None] + 0.5) / hs
    xs = (np.arange(ws, dtype=np.float64)[None, :] + 0.5) / ws
    canvas = np.empty((count, channels, hs, ws), dtype=np.float64)
    for c in range(channels):
        base, gx, gy = draw()[:, 0] * 0.4, draw()[:, 0] * 0.4 - 0.2, draw()[:, 0] * 0.4 - 0.2
        canvas[:, c] = base + gx * xs + gy * ys

    shapes = 3 + (draw()[:, 0, 0, 0] * (_MAX_SHAPES - 2)).astype(np.int64)
    for slot in range(_MAX_SHAPES):
        params, colour = draw(_PARAMS_PER_SHAPE), draw(channels)
        drawn = shapes > slot
        if not drawn.any():
            continue
        alpha = np.empty((count, hs, ws), dtype=np.float64)
        strokes = drawn & (params[:, 0, 0, 0] < 0.5)
        for which, shape_of in ((strokes, _stroke), (drawn & ~strokes, _ellipse)):
            if which.any():
                alpha[which] = shape_of(params[which].swapaxes(0, 1), xs, ys)
        if drawn.all():
            canvas = canvas * (1.0 - alpha[:, None]) + colour * alpha[:, None]
        else:
            canvas[drawn] = canvas[drawn] * (1.0 - alpha[drawn, None]) + colour[drawn] * alpha[drawn, None]

    pooled = np.zeros((count, channels, height, width), dtype=np.float64)
    for dy in range(factor):
        for dx in range(factor):
            pooled = pooled + canvas[:, :, dy::factor, dx::factor]
    pooled = pooled / float(factor * factor)
    return np.clip(np.floor(pooled * 255.0 + 0.5), 0, 255).astype(np.uint8)


def _soft_edge(distance: np.ndarray, half_width: np.ndarray | float, softness: float) -> np.ndarray:
    return np.clip((half_width - distance) / softness, 0.0, 1.0)


def _stroke(p: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """A thick line segment: distance from each pixel to the segment, softened.

    ``p`` holds one shape parameter per row (P x N x 1 x 1), as :func:`_ellipse`'s does."""
    x0, y0, x1, y1 = p[1], p[2], p[3], p[4]
    half_width = 0.04 + 0.10 * p[5]
    dx, dy = x1 - x0, y1 - y0
    length2 = dx * dx + dy * dy + 1e-12
    t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / length2, 0.0, 1.0)
    ex, ey = xs - (x0 + t * dx), ys - (y0 + t * dy)
    return _soft_edge(np.sqrt(ex * ex + ey * ey), half_width, 0.03)


def _ellipse(p: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """A filled or ring-shaped rotated ellipse; rotation from a normalised vector, not trig."""
    cx, cy = 0.15 + 0.7 * p[1], 0.15 + 0.7 * p[2]
    ra, rb = 0.08 + 0.30 * p[3], 0.08 + 0.30 * p[4]
    vx, vy = p[5] - 0.5, p[6] - 0.5
    norm = np.sqrt(vx * vx + vy * vy) + 1e-12
    cos, sin = vx / norm, vy / norm
    u = ((xs - cx) * cos + (ys - cy) * sin) / ra
    v = (-(xs - cx) * sin + (ys - cy) * cos) / rb
    radius = np.sqrt(u * u + v * v)
    filled = p[7][:, 0, 0] < 0.5
    ring = 0.15 + 0.25 * p[8][~filled]
    alpha = np.empty(radius.shape, dtype=np.float64)
    alpha[filled] = _soft_edge(radius[filled], 1.0, 0.15)
    alpha[~filled] = _soft_edge(np.abs(radius[~filled] - 1.0), ring, 0.1)
    return alpha
