"""Moving actors: cars and pedestrians, their simple driving/walking rules and their boxes.

Every actor moves either along the route (``kind`` 0: arc length ``pos``, ``lat`` metres
left of the centreline) or along a straight line (``kind`` 1: origin ``O``, unit direction
``u``, ``pos`` along ``u``, ``lat`` metres to the left of ``u``) -- the cross streets.
Tables are plain float64 arrays with named columns so the per-tick update stays vectorised
and cheap.

Example:
    >>> import numpy as np
    >>> t = car_boxes(np.zeros(1), np.zeros(1), np.zeros(1), np.full(1, 4.4), np.full(1, 1.8),
    ...               np.full(1, 1.5), np.full((1, 3), 0.5), np.zeros(1), np.ones(1))
    >>> t.shape  # body, cabin and two axles per car
    (4, 18)
"""
from __future__ import annotations

import math

import numpy as np

from sim import render as R

# ---- car table --------------------------------------------------------------------------
(C_KIND, C_POS, C_LAT, C_DIR, C_SPEED, C_VDES, C_OX, C_OY, C_UX, C_UY, C_LEN, C_WID, C_HGT,
 C_R, C_G, C_B, C_SEED, C_ANCHOR, C_STOP, C_CLOSE) = range(20)
CAR_COLS = 20
# ---- pedestrian table ---------------------------------------------------------------------
(P_KIND, P_POS, P_LAT, P_DIR, P_SPEED, P_VWALK, P_OX, P_OY, P_UX, P_UY, P_HGT, P_WID,
 P_TR, P_TG, P_TB, P_LR, P_LG, P_LB, P_SR, P_SG, P_SB, P_SEED, P_PHASE, P_ANCHOR, P_WAIT) = range(25)
PED_COLS = 25


def _rows(n: int, cols: int) -> np.ndarray:
    return np.zeros((n, cols), np.float64)


def box_table(
    cx, cy, cz, hx, hy, hz, yaw, cls, rgb, tex, p0=0.0, p1=0.0, p2=0.0, emit=0.0
) -> np.ndarray:
    """Assemble box rows (broadcasting scalars) in the renderer's column layout.

    Shape:
        each argument (N,) or scalar; rgb (N, 3) or (3,) -> (N, render.BOX_COLS)
    """
    cx = np.atleast_1d(np.asarray(cx, np.float64))
    n = cx.shape[0]
    out = np.empty((n, R.BOX_COLS), np.float64)
    out[:, R.B_CX] = cx
    out[:, R.B_CY] = cy
    out[:, R.B_CZ] = cz
    out[:, R.B_HX] = hx
    out[:, R.B_HY] = hy
    out[:, R.B_HZ] = hz
    out[:, R.B_YAW] = yaw
    out[:, R.B_CLS] = cls
    out[:, R.B_R : R.B_B + 1] = rgb
    out[:, R.B_TEX] = tex
    out[:, R.B_P0] = p0
    out[:, R.B_P1] = p1
    out[:, R.B_P2] = p2
    out[:, R.B_COS] = np.cos(out[:, R.B_YAW])
    out[:, R.B_SIN] = np.sin(out[:, R.B_YAW])
    out[:, R.B_EMIT] = emit
    return out


def car_boxes(x, y, yaw, length, width, height, rgb, seed, emit) -> np.ndarray:
    """Four boxes per car: body, cabin (glass band, roof), front and rear axle (tyres).

    Shape:
        x, y, yaw, length, width, height, seed, emit (N,); rgb (N, 3) -> (4 N, BOX_COLS)
    """
    n = len(x)
    if n == 0:
        return np.zeros((0, R.BOX_COLS))
    c, s = np.cos(yaw), np.sin(yaw)
    body_bot = 0.3
    body_top = body_bot + 0.52 * (height - body_bot)
    # local x offsets (along heading) and box geometry for each part
    fx = np.stack([np.zeros(n), -0.06 * length, 0.5 * length - 0.78, -0.5 * length + 0.78], 1)  # (N, 4)
    zc = np.stack([(body_bot + body_top) / 2, (body_top + height) / 2, np.full(n, 0.32), np.full(n, 0.32)], 1)
    hx = np.stack([length / 2, 0.27 * length, np.full(n, 0.32), np.full(n, 0.32)], 1)
    hy = np.stack([width / 2, width / 2 - 0.09, width / 2 + 0.01, width / 2 + 0.01], 1)
    hz = np.stack([(body_top - body_bot) / 2, (height - body_top) / 2, np.full(n, 0.32), np.full(n, 0.32)], 1)
    tex = np.array([R.T_CAR_BODY, R.T_CAR_CABIN, R.T_WHEEL, R.T_WHEEL], np.float64)
    colours = np.repeat(rgb[:, None, :], 4, axis=1)  # (N, 4, 3)
    colours[:, 2:, :] = 0.025
    return box_table(
        (x[:, None] + c[:, None] * fx).ravel(),
        (y[:, None] + s[:, None] * fx).ravel(),
        zc.ravel(), hx.ravel(), hy.ravel(), hz.ravel(),
        np.repeat(yaw, 4), R.CAR, colours.reshape(-1, 3), np.tile(tex, n),
        np.repeat(seed, 4), 0.0, 0.0, np.repeat(emit, 4),
    )


def person_boxes(x, y, yaw, height, width, phase, walking, torso, legs, skin, seed) -> np.ndarray:
    """Six boxes per person: two legs, torso, two arms, head; limbs swing with ``phase``.

    Shape:
        x, y, yaw, height, width, phase, walking, seed (N,); torso, legs, skin (N, 3)
        -> (6 N, BOX_COLS)
    """
    n = len(x)
    if n == 0:
        return np.zeros((0, R.BOX_COLS))
    c, s = np.cos(yaw), np.sin(yaw)
    leg_h = 0.47 * height
    torso_h = 0.32 * height
    arm_h = 0.34 * height
    swing = np.sin(phase) * walking
    zero = np.zeros(n)
    fx = np.stack([0.2 * swing, -0.2 * swing, zero, -0.16 * swing, 0.16 * swing, zero], 1)  # (N, 6)
    fy = np.stack([np.full(n, 0.1), np.full(n, -0.1), zero, width / 2 + 0.06, -width / 2 - 0.06, zero], 1)
    zc = np.stack([leg_h / 2, leg_h / 2, leg_h + torso_h / 2, leg_h + torso_h - arm_h / 2,
                   leg_h + torso_h - arm_h / 2, leg_h + torso_h + 0.14], 1)
    hx = np.stack([np.full(n, 0.09), np.full(n, 0.09), np.full(n, 0.13), np.full(n, 0.06), np.full(n, 0.06), np.full(n, 0.1)], 1)
    hy = np.stack([np.full(n, 0.085), np.full(n, 0.085), width / 2, np.full(n, 0.06), np.full(n, 0.06), np.full(n, 0.09)], 1)
    hz = np.stack([leg_h / 2, leg_h / 2, torso_h / 2, arm_h / 2, arm_h / 2, np.full(n, 0.12)], 1)
    colours = np.stack([legs, legs, torso, torso, torso, skin], 1)  # (N, 6, 3)
    tex = np.array([R.T_CLOTHES] * 5 + [R.T_HEAD], np.float64)
    return box_table(
        (x[:, None] + c[:, None] * fx - s[:, None] * fy).ravel(),
        (y[:, None] + s[:, None] * fx + c[:, None] * fy).ravel(),
        zc.ravel(), hx.ravel(), hy.ravel(), hz.ravel(),
        np.repeat(yaw, 6), R.PERSON, colours.reshape(-1, 3), np.tile(tex, n), np.repeat(seed, 6),
    )


def _straight_xy(table: np.ndarray, ox: int, oy: int, ux: int, uy: int, pos: int, lat: int):
    p = table[:, pos]
    q = table[:, lat]
    x = table[:, ox] + table[:, ux] * p - table[:, uy] * q
    y = table[:, oy] + table[:, uy] * p + table[:, ux] * q
    return x, y, np.arctan2(table[:, uy], table[:, ux])


class Traffic:
    """Cars and pedestrians of one town, and the ego's speed rule.

    Example:
        >>> t = Traffic()
        >>> t.cars.shape, t.peds.shape
        ((0, 20), (0, 25))
    """

    def __init__(self) -> None:
        self.cars = _rows(0, CAR_COLS)
        self.peds = _rows(0, PED_COLS)

    def add(self, cars: np.ndarray, peds: np.ndarray) -> None:
        """Append spawned rows (cars that would overlap a car in the same lane are dropped)."""
        for row in cars:
            same = (
                (self.cars[:, C_KIND] == row[C_KIND])
                & (np.abs(self.cars[:, C_LAT] - row[C_LAT]) < 1.0)
                & (np.abs(self.cars[:, C_DIR] - row[C_DIR]) < 0.5)
                & (np.abs(self.cars[:, C_OX] - row[C_OX]) < 1e-6)
                & (np.abs(self.cars[:, C_UX] - row[C_UX]) < 1e-6)
                & (np.abs(self.cars[:, C_POS] - row[C_POS]) < 12.0)
            )
            if not same.any():
                self.cars = np.vstack([self.cars, row[None]])
        if len(peds):
            self.peds = np.vstack([self.peds, peds])

    def world_cars(self, route) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World x, y, yaw of every car."""
        t = self.cars
        x = np.empty(len(t))
        y = np.empty(len(t))
        yaw = np.empty(len(t))
        on_route = t[:, C_KIND] == 0
        if on_route.any():
            rx, ry, rh = route.point(t[on_route, C_POS], t[on_route, C_LAT])
            x[on_route], y[on_route] = rx, ry
            yaw[on_route] = rh + np.where(t[on_route, C_DIR] < 0, math.pi, 0.0)
        if (~on_route).any():
            sx, sy, sh = _straight_xy(t[~on_route], C_OX, C_OY, C_UX, C_UY, C_POS, C_LAT)
            x[~on_route], y[~on_route], yaw[~on_route] = sx, sy, sh
        return x, y, yaw

    def world_peds(self, route) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World x, y, yaw of every pedestrian."""
        t = self.peds
        x = np.empty(len(t))
        y = np.empty(len(t))
        yaw = np.empty(len(t))
        on_route = t[:, P_KIND] == 0
        if on_route.any():
            rx, ry, rh = route.point(t[on_route, P_POS], t[on_route, P_LAT])
            x[on_route], y[on_route], yaw[on_route] = rx, ry, rh
        if (~on_route).any():
            sx, sy, sh = _straight_xy(t[~on_route], P_OX, P_OY, P_UX, P_UY, P_POS, P_LAT)
            x[~on_route], y[~on_route], yaw[~on_route] = sx, sy, sh
        yaw = yaw + np.where(t[:, P_DIR] < 0, math.pi, 0.0)
        return x, y, yaw

    def boxes(self, route, lights: bool) -> np.ndarray:
        """All actors' boxes for the renderer.

        Shape:
            -> (4 cars + 6 pedestrians, BOX_COLS)
        """
        c = self.cars
        x, y, yaw = self.world_cars(route)
        cars = car_boxes(x, y, yaw, c[:, C_LEN], c[:, C_WID], c[:, C_HGT], c[:, C_R : C_B + 1], c[:, C_SEED],
                         np.full(len(c), 1.0 if lights else 0.0))
        p = self.peds
        x, y, yaw = self.world_peds(route)
        peds = person_boxes(x, y, yaw, p[:, P_HGT], p[:, P_WID], p[:, P_PHASE], (p[:, P_SPEED] > 0.05).astype(np.float64),
                            p[:, P_TR : P_TB + 1], p[:, P_LR : P_LB + 1], p[:, P_SR : P_SB + 1], p[:, P_SEED])
        return np.concatenate([cars, peds]) if len(peds) else cars

    # ---- dynamics ----------------------------------------------------------------------
    def _ped_crossing(self, half: float) -> tuple[np.ndarray, np.ndarray]:
        """Route s where each cross-street pedestrian's line meets the main road, and
        whether the pedestrian is on the main carriageway now."""
        p = self.peds
        cross = p[:, P_KIND] == 1
        cross_s = p[:, P_ANCHOR] - p[:, P_LAT]
        on_road = cross & (np.abs(p[:, P_POS]) < half + 0.4)
        return cross_s, on_road

    def _blocking(self, half: float, lane_lat: float) -> np.ndarray:
        """Route s of the pedestrians on the road in, or walking into, the lane at ``lane_lat``."""
        p = self.peds
        if len(p) == 0:
            return np.zeros(0)
        cross_s, on_road = self._ped_crossing(half)
        a = p[:, P_POS]  # the cross line's coordinate is the route's lateral offset
        toward = (lane_lat - a) * p[:, P_DIR]
        near = np.abs(a - lane_lat) < 2.2
        coming = (toward > 0.0) & (np.abs(a - lane_lat) < 5.0) & (p[:, P_WAIT] <= 0.0)
        return cross_s[on_road & (near | coming)]

    def step(self, dt: float, ego_s: float, ego_lat: float, half: float, lane_width: float) -> None:
        """Advance every actor by ``dt`` seconds (cars follow, stop for pedestrians and, on
        cross streets, wait at the stop line while the ego comes through)."""
        p = self.peds
        if len(p):
            cross_s, on_road = self._ped_crossing(half)
            gap = cross_s - ego_s
            cross = p[:, P_KIND] == 1
            waiting = cross & (p[:, P_WAIT] > 0.0)
            start = waiting & (gap < p[:, P_WAIT])
            p[start, P_WAIT] = 0.0
            speed = np.where(p[:, P_WAIT] > 0.0, 0.0, p[:, P_VWALK])
            nxt = p[:, P_POS] + p[:, P_DIR] * speed * dt
            entering = cross & ~on_road & (np.abs(nxt) < half + 0.4) & (gap > -4.0) & (gap < 34.0)
            speed = np.where(entering, 0.0, speed)
            p[:, P_SPEED] = speed
            p[:, P_POS] += p[:, P_DIR] * speed * dt
            p[:, P_PHASE] += speed * dt * (2.0 * math.pi / 1.35)
        c = self.cars
        if len(c) == 0:
            return
        limit = c[:, C_VDES].copy()
        route_cars = np.nonzero(c[:, C_KIND] == 0)[0]
        if len(route_cars):
            prog = c[route_cars, C_POS] * c[route_cars, C_DIR]
            lane_key = np.round(c[route_cars, C_LAT] * 2.0) * c[route_cars, C_DIR]
            order = np.lexsort((prog, lane_key))
            for a, b in zip(order[:-1], order[1:]):
                if lane_key[a] == lane_key[b]:
                    ia, ib = route_cars[a], route_cars[b]
                    gap = prog[b] - prog[a] - 0.5 * (c[ia, C_LEN] + c[ib, C_LEN])
                    limit[ia] = min(limit[ia], max(0.0, (gap - 5.0) / 1.2))
            for i in route_cars:
                d = c[i, C_DIR]
                blockers = self._blocking(half, c[i, C_LAT])
                if len(blockers):
                    ahead = (blockers - c[i, C_POS]) * d
                    ahead = ahead[(ahead > 0.0) & (ahead < 40.0)]
                    if len(ahead):
                        limit[i] = min(limit[i], max(0.0, (ahead.min() - c[i, C_LEN] / 2 - 4.0) / 1.3))
                if d > 0 and abs(c[i, C_LAT] - ego_lat) < 1.2:
                    ahead = c[i, C_POS] - ego_s
                    if 0.0 < ahead < 28.0:
                        c[i, C_CLOSE] += dt
                        if c[i, C_CLOSE] > 6.0:  # followed for a while: it speeds up and leaves
                            c[i, C_VDES] = max(c[i, C_VDES], 15.0)
                    elif -6.0 < ahead <= 0.0:
                        limit[i] = min(limit[i], 0.0)  # never drive into the ego from behind
        cross_cars = np.nonzero(c[:, C_KIND] == 1)[0]
        if len(cross_cars):
            ego_near = (c[cross_cars, C_ANCHOR] - ego_s > -10.0) & (c[cross_cars, C_ANCHOR] - ego_s < 75.0)
            for j, i in enumerate(cross_cars):
                before = c[i, C_POS] < c[i, C_STOP] + 0.5
                if ego_near[j] and before:
                    limit[i] = min(limit[i], max(0.0, (c[i, C_STOP] - c[i, C_POS]) * 0.8))
            lane_key = np.round(c[cross_cars, C_UX] * 100) + 1000 * np.round(c[cross_cars, C_OX])
            order = np.lexsort((c[cross_cars, C_POS], lane_key))
            for a, b in zip(order[:-1], order[1:]):
                if lane_key[a] == lane_key[b]:
                    ia, ib = cross_cars[a], cross_cars[b]
                    gap = c[ib, C_POS] - c[ia, C_POS] - 0.5 * (c[ia, C_LEN] + c[ib, C_LEN])
                    limit[ia] = min(limit[ia], max(0.0, (gap - 4.0) / 1.2))
        c[:, C_SPEED] = np.clip(limit, c[:, C_SPEED] - 7.0 * dt, c[:, C_SPEED] + 2.5 * dt)
        c[:, C_SPEED] = np.maximum(c[:, C_SPEED], 0.0)
        c[:, C_POS] += c[:, C_DIR] * c[:, C_SPEED] * dt

    def ego_limit(self, ego_s: float, ego_lat: float, half: float) -> float:
        """The speed the ego may drive: behind its lead car and before crossing people."""
        v = 1e9
        c = self.cars
        if len(c):
            same = (c[:, C_KIND] == 0) & (c[:, C_DIR] > 0) & (np.abs(c[:, C_LAT] - ego_lat) < 1.2)
            ahead = c[same, C_POS] - ego_s - 0.5 * c[same, C_LEN] - 2.3
            ahead = ahead[ahead > -2.0]
            if len(ahead):
                v = min(v, max(0.0, (ahead.min() - 6.0) / 1.2))
        if len(self.peds):
            ahead = self._blocking(half, ego_lat) - ego_s
            ahead = ahead[(ahead > 0.0) & (ahead < 45.0)]
            if len(ahead):
                v = min(v, max(0.0, (ahead.min() - 9.0) / 1.3))
        return v

    def prune(self, ego_s: float, ahead: float) -> None:
        """Drop actors far behind the ego or beyond the generated world."""
        c = self.cars
        route = c[:, C_KIND] == 0
        keep = np.where(route, (c[:, C_POS] > ego_s - 40.0) & (c[:, C_POS] < ego_s + ahead),
                        (c[:, C_ANCHOR] > ego_s - 40.0) & (np.abs(c[:, C_POS]) < 130.0))
        self.cars = c[keep]
        p = self.peds
        route = p[:, P_KIND] == 0
        keep = np.where(route, p[:, P_POS] > ego_s - 40.0, (p[:, P_ANCHOR] > ego_s - 40.0) & (np.abs(p[:, P_POS]) < 130.0))
        self.peds = p[keep]
