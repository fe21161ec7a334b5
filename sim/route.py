"""The ego's route: an endless main road of straights and circular bends, grown lazily.

The route is parametrised by arc length ``s`` (metres). Its heading stays within +-35 degrees
of north, so the road never loops back onto itself; intersections (perpendicular cross
streets) sit on straights, spaced by the town's block length.

Example:
    >>> import numpy as np
    >>> from sim.towns import get_town
    >>> r = Route(get_town("oldtown"), seed=3)
    >>> x, y, h = r.frame(np.array([0.0, 50.0]))
    >>> x.shape, bool(y[1] > y[0])
    ((2,), True)
    >>> all(a < b for a, b in zip(r.intersections, r.intersections[1:]))
    True
"""
from __future__ import annotations

import math

import numpy as np

from sim.towns import TownStyle

MAX_HEADING_DEV = math.radians(35.0)  # the route's heading stays this close to north
NORTH = math.pi / 2.0


class Route:
    """Straight and arc pieces laid end to end, extended on demand by :meth:`ensure`.

    Example:
        >>> from sim.towns import get_town
        >>> r = Route(get_town("newtown"), seed=0)
        >>> r.ensure(2000.0); r.length >= 2000.0
        True
    """

    def __init__(self, style: TownStyle, seed: int | np.random.SeedSequence) -> None:
        self.style = style
        self._rng = np.random.default_rng(seed)
        self._s0: list[float] = []
        self._x0: list[float] = []
        self._y0: list[float] = []
        self._h0: list[float] = []
        self._k: list[float] = []  # curvature (1/m), positive turns left
        self._arrays: tuple[np.ndarray, ...] | None = None
        self.length = 0.0
        self.intersections: list[float] = []  # route s of each cross street's centre
        self._x, self._y, self._h = 0.0, 0.0, NORTH
        self._straight_next = True
        self._add(90.0, 0.0)  # a straight start so the first view is calm
        self._place_intersections(0.0, 90.0, first=55.0)
        self.ensure(600.0)

    # ---- construction --------------------------------------------------------------------
    def _add(self, length: float, curvature: float) -> None:
        self._s0.append(self.length)
        self._x0.append(self._x)
        self._y0.append(self._y)
        self._h0.append(self._h)
        self._k.append(curvature)
        h1 = self._h + curvature * length
        if curvature == 0.0:
            self._x += length * math.cos(self._h)
            self._y += length * math.sin(self._h)
        else:
            self._x += (math.sin(h1) - math.sin(self._h)) / curvature
            self._y -= (math.cos(h1) - math.cos(self._h)) / curvature
        self._h = h1
        self.length += length
        self._arrays = None

    def _place_intersections(self, s_start: float, length: float, first: float | None = None) -> None:
        style = self.style
        lo, hi = style.block_length
        last = self.intersections[-1] if self.intersections else -1e9
        s = s_start + (first if first is not None else 28.0)
        s = max(s, last + lo)
        while s <= s_start + length - 28.0:
            self.intersections.append(s)
            s += self._rng.uniform(lo, hi)

    def ensure(self, s_max: float) -> None:
        """Grow the route until it is at least ``s_max`` long."""
        style = self.style
        while self.length < s_max:
            if self._straight_next:
                length = float(self._rng.uniform(*style.straight_length))
                start = self.length
                self._add(length, 0.0)
                self._place_intersections(start, length)
            else:
                radius = float(self._rng.uniform(*style.curve_radius))
                angle = math.radians(float(self._rng.uniform(*style.curve_angle_deg)))
                sign = 1.0 if self._rng.random() < 0.5 else -1.0
                dev = self._h - NORTH
                if abs(dev + sign * angle) > MAX_HEADING_DEV:
                    sign = -sign
                if abs(dev + sign * angle) > MAX_HEADING_DEV:
                    angle = max(0.0, MAX_HEADING_DEV - abs(dev)) * 0.9
                if angle > 1e-3:
                    self._add(radius * angle, sign / radius)
            self._straight_next = not self._straight_next

    # ---- queries -------------------------------------------------------------------------
    def _tables(self) -> tuple[np.ndarray, ...]:
        if self._arrays is None:
            self._arrays = tuple(np.array(a, np.float64) for a in (self._s0, self._x0, self._y0, self._h0, self._k))
        return self._arrays

    def frame(self, s: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Position and heading at arc lengths ``s`` (clamped to [0, length]).

        Shape:
            s (N,) -> x (N,), y (N,), heading (N,)
        """
        s = np.clip(np.asarray(s, np.float64), 0.0, self.length)
        s0, x0, y0, h0, k = self._tables()
        i = np.clip(np.searchsorted(s0, s, side="right") - 1, 0, len(s0) - 1)
        ds = s - s0[i]
        kk = k[i]
        hh0 = h0[i]
        h = hh0 + kk * ds
        curved = np.abs(kk) > 1e-12
        ksafe = np.where(curved, kk, 1.0)
        x = np.where(curved, x0[i] + (np.sin(h) - np.sin(hh0)) / ksafe, x0[i] + ds * np.cos(hh0))
        y = np.where(curved, y0[i] - (np.cos(h) - np.cos(hh0)) / ksafe, y0[i] + ds * np.sin(hh0))
        return x, y, h

    def point(self, s: np.ndarray | float, lateral: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World position ``lateral`` metres left of the centreline at ``s``, and the heading.

        Shape:
            s (N,), lateral (N,) -> x (N,), y (N,), heading (N,)
        """
        x, y, h = self.frame(s)
        lateral = np.asarray(lateral, np.float64)
        return x - np.sin(h) * lateral, y + np.cos(h) * lateral, h

    def curvature(self, s: float) -> float:
        """Curvature (1/m) at ``s``."""
        s0, _, _, _, k = self._tables()
        i = int(np.clip(np.searchsorted(s0, s, side="right") - 1, 0, len(s0) - 1))
        return float(k[i])

    def near_intersection(self, s: np.ndarray | float, margin: float) -> np.ndarray:
        """True where ``s`` is within ``margin`` of an intersection centre.

        Shape:
            s (N,) -> (N,) bool
        """
        s = np.asarray(s, np.float64)
        if not self.intersections:
            return np.zeros(s.shape, bool)
        inter = np.asarray(self.intersections)
        return (np.abs(s[..., None] - inter) < margin).any(axis=-1)
