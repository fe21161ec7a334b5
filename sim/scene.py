"""Procedural content along the route, generated in 40 m chunks as the ego drives.

:class:`SceneGenerator` lays out, for each chunk of the route: the road (asphalt, kerbs,
sidewalks, lane markings, crosswalks), buildings in a front row and a background row,
parks, trees, hedges, street lights, traffic signs, parked cars, and at every
intersection a perpendicular cross street with its own sidewalks, buildings, lights,
walkers and cars. It also spawns the moving actors (route traffic, sidewalk walkers,
people waiting to cross). Chunks are generated strictly in order from one seeded
generator, so a seed fixes the whole world.

Lateral offsets are metres left of the route's centreline (the ego drives on the right,
at negative offsets).

Example:
    >>> from sim.towns import get_town
    >>> from sim.route import Route
    >>> style = get_town("oldtown")
    >>> gen = SceneGenerator(Route(style, seed=1), style, seed=2)
    >>> chunk = gen.generate(0)
    >>> chunk.decal_verts.shape[1:], chunk.boxes.shape[1] == R.BOX_COLS
    ((4, 2), True)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim import actors as A
from sim import render as R
from sim.route import Route
from sim.towns import TownStyle, srgb_to_linear

CHUNK_LENGTH = 40.0  # metres of route per chunk
CROSS_LENGTH = 100.0  # cross streets reach this far either side of the main road
STEP = 5.0  # decal strip resolution along the route

# sRGB car paints, weighted towards the greys real traffic is made of
CAR_PAINTS = np.array([
    (232, 232, 230), (175, 177, 180), (105, 106, 110), (26, 26, 28), (150, 22, 24), (28, 52, 120),
    (22, 30, 62), (34, 82, 48), (205, 170, 40), (190, 172, 135), (200, 92, 24), (120, 160, 205),
    (90, 20, 30), (60, 70, 60),
])
CAR_WEIGHTS = np.array([6, 6, 5, 6, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1], np.float64)
CLOTHES = np.array([
    (30, 36, 60), (20, 20, 22), (90, 90, 95), (150, 30, 30), (40, 90, 50), (220, 220, 215),
    (190, 170, 130), (60, 40, 30), (200, 120, 40), (70, 110, 170), (120, 40, 90), (160, 160, 60),
    (240, 200, 60), (200, 80, 120),
])
SKIN = np.array([(236, 188, 160), (214, 160, 120), (170, 115, 80), (120, 78, 52), (80, 52, 38)])


@dataclass(frozen=True)
class Chunk:
    """Everything generated for one stretch of route (static tables + spawned actors).

    Example:
        >>> from sim.towns import get_town
        >>> style = get_town("oldtown")
        >>> c = SceneGenerator(Route(style, seed=0), style, seed=0).generate(0)
        >>> (c.s0, c.s1), c.lamps.shape[1] == R.LAMP_COLS
        ((0.0, 40.0), True)
    """

    index: int
    s0: float
    s1: float
    decal_verts: np.ndarray  # (D, 4, 2)
    decal_attr: np.ndarray  # (D, DECAL_COLS)
    boxes: np.ndarray  # (B, BOX_COLS)
    spheres: np.ndarray  # (S, SPHERE_COLS)
    lamps: np.ndarray  # (L, LAMP_COLS)
    cars: np.ndarray  # (C, CAR_COLS) spawned moving cars
    peds: np.ndarray  # (P, PED_COLS) spawned pedestrians


class _Acc:
    """Row accumulators for one chunk."""

    def __init__(self) -> None:
        self.dv: list[np.ndarray] = []
        self.da: list[np.ndarray] = []
        self.boxes: list[np.ndarray] = []
        self.spheres: list[np.ndarray] = []
        self.lamps: list[np.ndarray] = []
        self.cars: list[np.ndarray] = []
        self.peds: list[np.ndarray] = []

    @staticmethod
    def _cat(rows: list[np.ndarray], cols: int) -> np.ndarray:
        return np.concatenate(rows) if rows else np.zeros((0, cols))


class SceneGenerator:
    """Generates chunk after chunk of one town's world from one seed.

    Example:
        >>> from sim.towns import get_town
        >>> style = get_town("newtown")
        >>> gen = SceneGenerator(Route(style, seed=0), style, seed=0)
        >>> [gen.generate(i).index for i in range(2)]
        [0, 1]
    """

    def __init__(self, route: Route, style: TownStyle, seed: int | np.random.SeedSequence,
                 traffic_scale: float = 1.0, pedestrian_scale: float = 1.0, cruise_speed: float = 12.0) -> None:
        self.route = route
        self.cruise_speed = cruise_speed  # the ego's; cars going its way drive a little slower
        self.style = style
        self.rng = np.random.default_rng(seed)
        self.traffic_scale = traffic_scale
        self.pedestrian_scale = pedestrian_scale
        self.half = style.road_half_width
        self.sw = float(self.rng.uniform(*style.sidewalk_width))
        self.sw_in = self.half + style.verge_width
        self.sw_out = self.sw_in + self.sw
        self.zone = style.cross_half_width + style.verge_width + self.sw + 1.0  # keep-clear around crossings
        self.facade_back = self.sw_out + style.setback[1] + style.building_depth[1] + 2.0
        self._cursor = {1: 0.0, -1: 0.0}
        self._bg_cursor = {1: 0.0, -1: 0.0}
        self._tree_cursor = {1: 2.0, -1: 6.0}
        self._median_cursor = 4.0
        self._next = 0
        lin = srgb_to_linear
        self.c_facade = lin(np.array(style.facade_colours))
        self.c_asphalt = lin(style.asphalt)
        self.c_marking = lin(style.marking)
        self.c_centre = lin(style.centre_marking)
        self.c_paving = lin(np.array(style.paving))
        self.c_kerb = lin(style.kerb)
        self.c_foliage = lin(np.array(style.foliage))
        self.c_trunk = lin(style.trunk)
        self.c_hedge = lin(style.hedge)
        self.c_cars = lin(CAR_PAINTS)
        self.c_clothes = lin(CLOTHES)
        self.c_skin = lin(SKIN)
        self.paving = self.c_paving[self.rng.integers(len(self.c_paving))]
        self.lamp_colour = np.array([1.0, 0.78, 0.5]) if style.facade == "brick" else np.array([0.92, 0.95, 1.0])
        self.lamp_height = 6.5 if style.facade == "brick" else 8.5
        self.lamp_pole = np.array([0.035, 0.045, 0.04]) if style.facade == "brick" else np.array([0.3, 0.31, 0.32])

    # ------------------------------------------------------------------------------------
    def generate(self, index: int) -> Chunk:
        """Generate chunk ``index`` (chunks must be asked for in order 0, 1, 2, ...)."""
        if index != self._next:
            raise ValueError(f"chunks must be generated in order: expected {self._next}, got {index}")
        self._next += 1
        s0 = index * CHUNK_LENGTH
        s1 = s0 + CHUNK_LENGTH
        self.route.ensure(s1 + 300.0)
        acc = _Acc()
        self._road(acc, s0, s1)
        for side in (1, -1):
            self._buildings(acc, side, s1)
            self._background(acc, side, s1)
            self._trees(acc, side, s1)
            self._lamps(acc, side, s0, s1)
            self._signs(acc, side, s0, s1)
            self._parked(acc, side, s0, s1)
        if self.style.median_width > 0.0:
            self._median_trees(acc, s1)
        for s_i in self.route.intersections:
            if s0 <= s_i < s1:
                self._intersection(acc, s_i)
        self._walkers(acc, s0, s1)
        self._traffic(acc, s0, s1)
        order = np.argsort(np.concatenate([a[:, R.D_LAYER] for a in acc.da]), kind="stable") if acc.da else None
        dv = _Acc._cat(acc.dv, 8).reshape(-1, 4, 2)
        da = _Acc._cat(acc.da, R.DECAL_COLS)
        if order is not None:
            dv, da = dv[order], da[order]
        return Chunk(
            index, s0, s1, np.ascontiguousarray(dv), np.ascontiguousarray(da),
            _Acc._cat(acc.boxes, R.BOX_COLS), _Acc._cat(acc.spheres, R.SPHERE_COLS),
            _Acc._cat(acc.lamps, R.LAMP_COLS), _Acc._cat(acc.cars, A.CAR_COLS), _Acc._cat(acc.peds, A.PED_COLS),
        )

    # ---- helpers -------------------------------------------------------------------------
    def _seed(self) -> int:
        return int(self.rng.integers(1, 2**30))

    def _vary(self, rgb: np.ndarray, amount: float = 0.12) -> np.ndarray:
        return np.clip(rgb * self.rng.uniform(1.0 - amount, 1.0 + amount, size=3), 0.0, 1.0)

    def _near(self, s: float, margin: float) -> bool:
        return bool(self.route.near_intersection(np.array([s]), margin)[0])

    def _free(self, s0: float, s1: float, margin: float) -> list[tuple[float, float]]:
        """Sub-ranges of [s0, s1) at least ``margin`` from every intersection centre."""
        ranges = [(s0, s1)]
        for s_i in self.route.intersections:
            a, b = s_i - margin, s_i + margin
            nxt = []
            for lo, hi in ranges:
                if b <= lo or a >= hi:
                    nxt.append((lo, hi))
                    continue
                if lo < a:
                    nxt.append((lo, a))
                if b < hi:
                    nxt.append((b, hi))
            ranges = nxt
        return [(lo, hi) for lo, hi in ranges if hi - lo > 0.05]

    def _strip(self, acc: _Acc, s0: float, s1: float, lat_a: float, lat_b: float, cls: int, tex: int,
               rgb: np.ndarray, layer: int, p0: float | None = None, step: float = STEP) -> None:
        """Ground quads following the route between two lateral offsets."""
        n = max(1, int(math.ceil((s1 - s0) / step - 1e-9)))
        ss = np.linspace(s0, s1, n + 1)
        xa, ya, _ = self.route.point(ss, lat_a)
        xb, yb, _ = self.route.point(ss, lat_b)
        verts = np.empty((n, 4, 2))
        verts[:, 0, 0], verts[:, 0, 1] = xa[:-1], ya[:-1]
        verts[:, 1, 0], verts[:, 1, 1] = xa[1:], ya[1:]
        verts[:, 2, 0], verts[:, 2, 1] = xb[1:], yb[1:]
        verts[:, 3, 0], verts[:, 3, 1] = xb[:-1], yb[:-1]
        sm = 0.5 * (ss[:-1] + ss[1:])
        xo, yo, hm = self.route.point(sm, 0.5 * (lat_a + lat_b))
        attr = np.zeros((n, R.DECAL_COLS))
        attr[:, R.D_CLS] = cls
        attr[:, R.D_TEX] = tex
        attr[:, R.D_R : R.D_B + 1] = rgb
        attr[:, R.D_OX], attr[:, R.D_OY] = xo, yo
        attr[:, R.D_UX], attr[:, R.D_UY] = np.cos(hm), np.sin(hm)
        attr[:, R.D_VX], attr[:, R.D_VY] = -np.sin(hm), np.cos(hm)
        attr[:, R.D_P0] = abs(lat_b - lat_a) / 2.0 if p0 is None else p0
        attr[:, R.D_SEED] = self._seed()
        attr[:, R.D_LAYER] = layer
        acc.dv.append(verts.reshape(n, 8))
        acc.da.append(attr)

    def _rect(self, acc: _Acc, o: np.ndarray, u: np.ndarray, v: np.ndarray, a0: float, a1: float, b0: float,
              b1: float, cls: int, tex: int, rgb: np.ndarray, layer: int, p0: float | None = None) -> None:
        """One ground rectangle: points o + u a + v b for a in [a0, a1], b in [b0, b1]."""
        corners = [(a0, b0), (a1, b0), (a1, b1), (a0, b1)]
        verts = np.array([o + u * a + v * b for a, b in corners]).reshape(1, 8)
        centre = o + u * (a0 + a1) / 2 + v * (b0 + b1) / 2
        attr = np.zeros((1, R.DECAL_COLS))
        attr[0, R.D_CLS] = cls
        attr[0, R.D_TEX] = tex
        attr[0, R.D_R : R.D_B + 1] = rgb
        attr[0, R.D_OX : R.D_OY + 1] = centre
        attr[0, R.D_UX : R.D_UY + 1] = u
        attr[0, R.D_VX : R.D_VY + 1] = v
        attr[0, R.D_P0] = abs(b1 - b0) / 2.0 if p0 is None else p0
        attr[0, R.D_SEED] = self._seed()
        attr[0, R.D_LAYER] = layer
        acc.dv.append(verts)
        acc.da.append(attr)

    # ---- the road ------------------------------------------------------------------------
    def _road(self, acc: _Acc, s0: float, s1: float) -> None:
        st = self.style
        half, med = self.half, st.median_width / 2.0
        for side in (1.0, -1.0):
            self._strip(acc, s0, s1, side * self.sw_in, side * self.sw_out, R.SIDEWALK, R.T_PAVING, self.paving, 0)
            self._strip(acc, s0, s1, side * half, side * (half + 0.28), R.SIDEWALK, R.T_KERB, self.c_kerb, 1)
            if med > 0.0:
                self._strip(acc, s0, s1, side * (med - 0.25), side * med, R.SIDEWALK, R.T_KERB, self.c_kerb, 1)
        if med > 0.0:
            for side in (1.0, -1.0):
                self._strip(acc, s0, s1, side * med, side * half, R.ROAD, R.T_ASPHALT, self.c_asphalt, 2)
        else:
            self._strip(acc, s0, s1, -half, half, R.ROAD, R.T_ASPHALT, self.c_asphalt, 2)
        # markings, interrupted at intersections
        lw = st.lane_width
        for lo, hi in self._free(s0, s1, self.zone - 0.5):
            if med == 0.0:
                self._dashes(acc, lo, hi, 0.0, 0.14, self.c_centre, 3.0, 8.0)
                if st.parking_width > 0.0:
                    for side in (1.0, -1.0):
                        self._strip(acc, lo, hi, side * (lw - 0.06), side * (lw + 0.06), R.ROAD, R.T_MARKING, self.c_marking, 3, p0=1.0)
            else:
                for side in (1.0, -1.0):
                    self._strip(acc, lo, hi, side * (med + 0.2), side * (med + 0.32), R.ROAD, R.T_MARKING, self.c_centre, 3, p0=0.3)
                    self._strip(acc, lo, hi, side * (half - 0.35), side * (half - 0.23), R.ROAD, R.T_MARKING, self.c_marking, 3, p0=0.3)
                    for lane in range(1, st.lanes_per_side):
                        self._dashes(acc, lo, hi, side * (med + lane * lw), 0.13, self.c_marking, 3.0, 9.0)

    def _dashes(self, acc: _Acc, lo: float, hi: float, lat: float, width: float, rgb: np.ndarray,
                dash: float, period: float) -> None:
        k0 = math.ceil(lo / period)
        k = k0
        while k * period < hi:
            a = k * period
            b = min(a + dash, hi)
            if b - a > 0.3:
                self._strip(acc, a, b, lat - width / 2, lat + width / 2, R.ROAD, R.T_MARKING, rgb, 3, p0=2.0, step=dash)
            k += 1

    # ---- buildings -----------------------------------------------------------------------
    def _building_box(self, acc: _Acc, x: float, y: float, yaw: float, length: float, depth: float,
                      height: float) -> None:
        st = self.style
        colour = self._vary(self.c_facade[self.rng.integers(len(self.c_facade))], 0.1)
        tex = R.T_BRICK if st.facade == "brick" else R.T_MODERN
        spacing = float(self.rng.uniform(*st.window_spacing))
        floor_h = st.floor_height * float(self.rng.uniform(0.95, 1.06))
        acc.boxes.append(A.box_table(x, y, height / 2, length / 2, depth / 2, height / 2, yaw, R.BUILDING, colour,
                                     tex, self._seed(), floor_h, spacing))

    def _buildings(self, acc: _Acc, side: int, s1: float) -> None:
        st = self.style
        rng = self.rng
        while self._cursor[side] < s1:
            s = self._cursor[side]
            park = rng.random() < st.park_probability
            length = float(rng.uniform(*(st.park_length if park else st.building_length)))
            clash = [s_i for s_i in self.route.intersections if s_i - self.zone < s + length and s < s_i + self.zone]
            if clash:
                self._cursor[side] = max(clash) + self.zone + float(rng.uniform(0.0, 1.0))
                continue
            depth = float(rng.uniform(*st.building_depth))
            setback = float(rng.uniform(*st.setback))
            lat = side * (self.sw_out + setback + depth / 2)
            k = self.route.curvature(s + length / 2) * side
            if k > 0.0:  # inside of a bend: shorten so the corners stay off the sidewalk
                radius = 1.0 / k - abs(lat) + depth / 2
                length = min(length, max(4.0, math.sqrt(8.0 * radius * (0.4 + setback))))
            x, y, h = self.route.point(np.array([s + length / 2]), lat)
            if park:
                for _ in range(int(rng.integers(2, 5))):
                    ts = s + float(rng.uniform(2.0, length - 2.0))
                    tl = side * (self.sw_out + float(rng.uniform(2.0, 6.0 + setback)))
                    tx, ty, _ = self.route.point(np.array([ts]), tl)
                    self._tree(acc, float(tx[0]), float(ty[0]))
            else:
                self._building_box(acc, float(x[0]), float(y[0]), float(h[0]), length, depth,
                                   float(rng.uniform(*st.building_height)))
                if st.hedge_probability > 0.0 and setback > 2.5 and rng.random() < st.hedge_probability:
                    hx, hy, hh = self.route.point(np.array([s + length / 2]), side * (self.sw_out + 0.7))
                    hgt = float(rng.uniform(0.9, 1.4))
                    acc.boxes.append(A.box_table(hx, hy, hgt / 2, length * 0.45, 0.4, hgt / 2, hh, R.VEGETATION,
                                                 self._vary(self.c_hedge), R.T_HEDGE, self._seed()))
            gap = float(rng.uniform(*st.gap_length)) if rng.random() < st.gap_probability else float(rng.uniform(0.0, 0.3))
            self._cursor[side] = s + length + gap

    def _background(self, acc: _Acc, side: int, s1: float) -> None:
        st = self.style
        rng = self.rng
        zone = self.zone + st.setback[1] + st.building_depth[1] + 4.0
        while self._bg_cursor[side] < s1:
            s = self._bg_cursor[side]
            length = float(rng.uniform(14.0, 36.0))
            clash = [s_i for s_i in self.route.intersections if s_i - zone < s + length and s < s_i + zone]
            if clash:
                self._bg_cursor[side] = max(clash) + zone
                continue
            if rng.random() < 0.8:
                depth = float(rng.uniform(12.0, 24.0))
                lat = side * (self.facade_back + float(rng.uniform(3.0, 16.0)) + depth / 2)
                x, y, h = self.route.point(np.array([s + length / 2]), lat)
                self._building_box(acc, float(x[0]), float(y[0]), float(h[0]), length, depth,
                                   float(rng.uniform(*st.background_height)))
            self._bg_cursor[side] = s + length + float(rng.uniform(0.5, 6.0))

    # ---- vegetation ----------------------------------------------------------------------
    def _tree(self, acc: _Acc, x: float, y: float, scale: float = 1.0) -> None:
        rng = self.rng
        colour = self._vary(self.c_foliage[rng.integers(len(self.c_foliage))], 0.15)
        seed = self._seed()
        if self.style.tree_kind == "round":
            trunk = float(rng.uniform(2.2, 3.2)) * scale
            r = float(rng.uniform(1.8, 2.6)) * scale
            acc.boxes.append(A.box_table(x, y, (trunk + 0.6) / 2, 0.17, 0.17, (trunk + 0.6) / 2, float(rng.uniform(0, 3)),
                                         R.VEGETATION, self._vary(self.c_trunk), R.T_BARK, seed))
            rows = [(x, y, trunk + 0.75 * r, r)]
            for _ in range(2):
                ang = float(rng.uniform(0, 2 * math.pi))
                off = r * float(rng.uniform(0.45, 0.75))
                rows.append((x + off * math.cos(ang), y + off * math.sin(ang), trunk + r * float(rng.uniform(0.5, 1.1)),
                             r * float(rng.uniform(0.6, 0.8))))
        else:
            trunk = 1.4 * scale
            base = float(rng.uniform(1.25, 1.75)) * scale
            acc.boxes.append(A.box_table(x, y, (trunk + 1.0) / 2, 0.15, 0.15, (trunk + 1.0) / 2, 0.0, R.VEGETATION,
                                         self._vary(self.c_trunk), R.T_BARK, seed))
            rows = [(x, y, trunk + base * z, base * f) for z, f in ((0.9, 1.0), (1.85, 0.8), (2.65, 0.6), (3.3, 0.4))]
        sph = np.zeros((len(rows), R.SPHERE_COLS))
        sph[:, R.S_CX : R.S_RAD + 1] = rows
        sph[:, R.S_CLS] = R.VEGETATION
        sph[:, R.S_R : R.S_B + 1] = colour
        sph[:, R.S_TEX] = R.T_FOLIAGE
        sph[:, R.S_SEED] = seed
        acc.spheres.append(sph)

    def _lamp_slot(self, s: float, side: int) -> bool:
        """Is ``s`` within 3 m of a street light on this side?"""
        period = self.style.lamp_spacing
        off = 0.0 if side > 0 else period / 2
        d = (s - off) % period
        return min(d, period - d) < 3.0

    def _trees(self, acc: _Acc, side: int, s1: float) -> None:
        st = self.style
        rng = self.rng
        lat = side * (self.half + 1.0 if st.verge_width == 0.0 else self.half + st.verge_width * 0.55)
        while self._tree_cursor[side] < s1:
            s = self._tree_cursor[side]
            self._tree_cursor[side] = s + float(rng.uniform(*st.tree_spacing))
            if self._near(s, self.zone + 2.0) or self._lamp_slot(s, side) or rng.random() < 0.2:
                continue
            x, y, _ = self.route.point(np.array([s]), lat)
            self._tree(acc, float(x[0]), float(y[0]), float(rng.uniform(0.85, 1.15)))

    def _median_trees(self, acc: _Acc, s1: float) -> None:
        rng = self.rng
        while self._median_cursor < s1:
            s = self._median_cursor
            self._median_cursor = s + float(rng.uniform(8.0, 14.0))
            if self._near(s, self.style.cross_half_width + 4.0):
                continue
            x, y, _ = self.route.point(np.array([s]), 0.0)
            self._tree(acc, float(x[0]), float(y[0]), float(rng.uniform(0.75, 1.0)))

    # ---- street furniture ------------------------------------------------------------------
    def _lamp(self, acc: _Acc, x: float, y: float, ox: float, oy: float) -> None:
        h = self.lamp_height
        arm = 1.7
        yaw = math.atan2(oy, ox)
        hx, hy = x + ox * arm, y + oy * arm
        acc.boxes.append(np.concatenate([
            A.box_table(x, y, h / 2, 0.15, 0.15, h / 2, yaw, R.POLE, self.lamp_pole, R.T_PLAIN, self._seed()),
            A.box_table(x + ox * arm / 2, y + oy * arm / 2, h - 0.1, arm / 2, 0.07, 0.07, yaw, R.POLE, self.lamp_pole,
                        R.T_PLAIN, self._seed()),
            A.box_table(hx, hy, h - 0.24, 0.34, 0.19, 0.11, yaw, R.POLE, np.array([0.25, 0.25, 0.26]), R.T_LAMP, 0.0,
                        emit=1.0),
        ]))
        row = np.zeros((1, R.LAMP_COLS))
        row[0, :5] = (hx, hy, h - 0.45, 1.7, 15.0)
        row[0, R.L_R : R.L_B + 1] = self.lamp_colour
        acc.lamps.append(row)

    def _lamps(self, acc: _Acc, side: int, s0: float, s1: float) -> None:
        period = self.style.lamp_spacing
        off = 0.0 if side > 0 else period / 2
        k = math.ceil((s0 - off) / period)
        while off + k * period < s1:
            s = off + k * period
            k += 1
            if self._near(s, self.style.cross_half_width + 1.5):
                continue
            x, y, h = self.route.point(np.array([s]), side * (self.half + 0.45))
            self._lamp(acc, float(x[0]), float(y[0]), float(math.sin(h[0]) * side), float(-math.cos(h[0]) * side))

    def _sign(self, acc: _Acc, x: float, y: float, yaw: float) -> None:
        rng = self.rng
        tall = rng.random() < 0.3
        pw, ph = (0.32, 0.45) if tall else (0.4, 0.4)
        top = float(rng.uniform(2.5, 3.0))
        acc.boxes.append(np.concatenate([
            A.box_table(x, y, (top - 0.1) / 2, 0.11, 0.11, (top - 0.1) / 2, yaw, R.POLE, np.array([0.22, 0.22, 0.23]),
                        R.T_PLAIN, self._seed()),
            A.box_table(x + 0.14 * math.cos(yaw), y + 0.14 * math.sin(yaw), top - ph, 0.03, pw, ph, yaw, R.TRAFFIC_SIGN,
                        np.array([0.7, 0.7, 0.7]), R.T_SIGN, self._seed()),
        ]))

    def _signs(self, acc: _Acc, side: int, s0: float, s1: float) -> None:
        rng = self.rng
        if rng.random() >= self.style.sign_probability:
            return
        s = float(rng.uniform(s0, s1))
        if self._near(s, self.zone + 2.0) or self._lamp_slot(s, side):
            return
        x, y, h = self.route.point(np.array([s]), side * (self.half + 0.6))
        self._sign(acc, float(x[0]), float(y[0]), float(h[0]) + (math.pi if side < 0 else 0.0))

    def _car_shape(self, n: int) -> tuple[np.ndarray, ...]:
        rng = self.rng
        kind = rng.random(n)
        length = np.where(kind < 0.7, rng.uniform(4.0, 4.8, n), rng.uniform(4.6, 5.2, n))
        width = np.where(kind < 0.7, rng.uniform(1.72, 1.86, n), rng.uniform(1.85, 2.0, n))
        height = np.where(kind < 0.7, rng.uniform(1.4, 1.55, n), rng.uniform(1.65, 1.9, n))
        paint = self.c_cars[rng.choice(len(self.c_cars), size=n, p=CAR_WEIGHTS / CAR_WEIGHTS.sum())]
        paint = np.clip(paint * rng.uniform(0.88, 1.12, (n, 1)), 0.0, 1.0)
        seeds = rng.integers(1, 2**30, n).astype(np.float64)
        return length, width, height, paint, seeds

    def _parked(self, acc: _Acc, side: int, s0: float, s1: float) -> None:
        st = self.style
        if st.parking_width <= 0.0:
            return
        slots = np.arange(math.ceil(s0 / 6.0), math.ceil(s1 / 6.0)) * 6.0 + 3.0
        slots = slots[(slots < s1) & ~self.route.near_intersection(slots, self.zone + 5.0)]
        slots = slots[self.rng.random(len(slots)) < st.parked_probability]
        if len(slots) == 0:
            return
        lat = side * (st.lane_width + st.parking_width / 2)
        x, y, h = self.route.point(slots + self.rng.uniform(-0.6, 0.6, len(slots)), lat)
        length, width, height, paint, seeds = self._car_shape(len(slots))
        yaw = h + (math.pi if side > 0 else 0.0)
        acc.boxes.append(A.car_boxes(x, y, yaw, length, width, height, paint, seeds, np.zeros(len(slots))))

    # ---- the cross street ----------------------------------------------------------------
    def _intersection(self, acc: _Acc, s_i: float) -> None:
        st = self.style
        rng = self.rng
        x, y, h = self.route.frame(np.array([s_i]))
        o = np.array([x[0], y[0]])
        t = np.array([math.cos(h[0]), math.sin(h[0])])  # along the main road
        c = np.array([-t[1], t[0]])  # along the cross street (to the left)
        ch = st.cross_half_width
        L = CROSS_LENGTH
        sw_in, sw_out = ch + st.verge_width, ch + st.verge_width + self.sw
        for sb in (1.0, -1.0):
            self._rect(acc, o, c, t, -L, L, sb * sw_in, sb * sw_out, R.SIDEWALK, R.T_PAVING, self.paving, 0)
            self._rect(acc, o, c, t, -L, L, sb * ch, sb * (ch + 0.28), R.SIDEWALK, R.T_KERB, self.c_kerb, 1)
        self._rect(acc, o, c, t, -L, L, -ch, ch, R.ROAD, R.T_ASPHALT, self.c_asphalt, 2, p0=ch)
        # crosswalks over the main road (on the cross street's sidewalk lines) and over the cross street
        for sb in (1.0, -1.0):
            mid = sb * (sw_in + sw_out) / 2
            self._rect(acc, o + t * mid, c, t, -self.half, self.half, -self.sw / 2, self.sw / 2, R.ROAD, R.T_CROSSWALK,
                       self.c_marking, 3, p0=self.half)
            mid_l = sb * (self.sw_in + self.sw_out) / 2
            self._rect(acc, o + c * mid_l, t, c, -ch, ch, -self.sw / 2, self.sw / 2, R.ROAD, R.T_CROSSWALK,
                       self.c_marking, 3, p0=ch)
            # the cross street's centre line beyond the main road
            a0 = self.sw_out + 1.5
            for a in np.arange(a0, L, 8.0):
                self._rect(acc, o, c, t, sb * a, sb * (a + 3.0), -0.07, 0.07, R.ROAD, R.T_MARKING, self.c_centre, 3, p0=2.0)
        # buildings along the cross street, behind the main street's front row
        for sa in (1.0, -1.0):
            for sb in (1.0, -1.0):
                a = self.facade_back
                while a < L - 8.0:
                    length = float(rng.uniform(*st.building_length))
                    if rng.random() < 0.85:
                        depth = float(rng.uniform(*st.building_depth))
                        b = sb * (sw_out + float(rng.uniform(*st.setback)) + depth / 2)
                        p = o + c * sa * (a + length / 2) + t * b
                        self._building_box(acc, float(p[0]), float(p[1]), float(h[0]) + math.pi / 2, length, depth,
                                           float(rng.uniform(*st.building_height)))
                    a += length + float(rng.uniform(0.2, 4.0))
                # a street light and a tree per quadrant
                p = o + c * sa * (self.sw_out + 4.0) + t * sb * (ch + 0.45)
                self._lamp(acc, float(p[0]), float(p[1]), float(-t[0] * sb), float(-t[1] * sb))
                p = o + c * sa * (self.sw_out + float(rng.uniform(12.0, 30.0))) + t * sb * (ch + 0.9 + st.verge_width * 0.3)
                self._tree(acc, float(p[0]), float(p[1]))
        # signs before the crossing, facing the traffic that comes to it
        for side in (-1.0, 1.0):
            if rng.random() < 0.8:
                p = o - side * t * (self.zone + 1.0) + side * c * (self.half + 0.6)
                self._sign(acc, float(p[0]), float(p[1]), float(h[0]) + (math.pi if side < 0 else 0.0))
        # people: walkers on the cross sidewalks, some waiting at the crosswalks over the main road
        ped_rate = st.pedestrian_density * self.pedestrian_scale
        n = int(rng.poisson(ped_rate * 2 * L / 100.0 * 0.4))
        for _ in range(n):
            sb = 1.0 if rng.random() < 0.5 else -1.0
            a = float(rng.uniform(self.sw_out + 1.0, L * 0.8)) * (1.0 if rng.random() < 0.5 else -1.0)
            b = sb * (sw_in + float(rng.uniform(0.4, self.sw - 0.4)))
            acc.peds.append(self._person(1, a, -b, 1.0 if rng.random() < 0.5 else -1.0, o, c, s_i, 0.0))
        for sb in (1.0, -1.0):
            if rng.random() < st.crossing_probability * self.pedestrian_scale:
                start = 1.0 if rng.random() < 0.5 else -1.0
                b = sb * (sw_in + self.sw / 2 + float(rng.uniform(-0.6, 0.6)))
                a = start * (self.sw_in + float(rng.uniform(0.3, 0.9)))
                acc.peds.append(self._person(1, a, -b, -start, o, c, s_i, float(rng.uniform(45.0, 90.0))))
        # cars on the cross street, driving on the right
        n = int(rng.poisson(st.traffic_density * self.traffic_scale * 2 * L / 100.0 * 0.35))
        for _ in range(n):
            d = 1.0 if rng.random() < 0.5 else -1.0
            lane = int(rng.integers(st.cross_lanes_per_side))
            length, width, height, paint, seeds = self._car_shape(1)
            row = np.zeros((1, A.CAR_COLS))
            row[0, A.C_KIND] = 1
            row[0, A.C_POS] = float(rng.uniform(-L, L * 0.6))
            row[0, A.C_LAT] = -(lane + 0.5) * st.lane_width
            row[0, A.C_DIR] = 1.0
            row[0, A.C_VDES] = float(rng.uniform(7.0, 11.0))
            row[0, A.C_SPEED] = row[0, A.C_VDES]
            row[0, A.C_OX : A.C_OY + 1] = o
            row[0, A.C_UX : A.C_UY + 1] = c * d
            row[0, A.C_LEN], row[0, A.C_WID], row[0, A.C_HGT] = length[0], width[0], height[0]
            row[0, A.C_R : A.C_B + 1] = paint[0]
            row[0, A.C_SEED] = seeds[0]
            row[0, A.C_ANCHOR] = s_i
            row[0, A.C_STOP] = -(self.sw_out + 1.5 + length[0] / 2)
            if -self.sw_out - 3.0 < row[0, A.C_POS] < self.sw_out + 3.0:
                continue  # not in the middle of the junction
            acc.cars.append(row)

    # ---- people and traffic on the main road -------------------------------------------------
    def _person(self, kind: int, pos: float, lat: float, direction: float, o: np.ndarray | None, u: np.ndarray | None,
                anchor: float, wait: float) -> np.ndarray:
        rng = self.rng
        row = np.zeros((1, A.PED_COLS))
        row[0, A.P_KIND] = kind
        row[0, A.P_POS] = pos
        row[0, A.P_LAT] = lat
        row[0, A.P_DIR] = direction
        standing = kind == 0 and rng.random() < 0.12
        row[0, A.P_VWALK] = 0.0 if standing else float(rng.uniform(1.0, 1.7))
        if o is not None and u is not None:
            row[0, A.P_OX : A.P_OY + 1] = o
            row[0, A.P_UX : A.P_UY + 1] = u
        row[0, A.P_HGT] = float(rng.uniform(1.55, 1.92))
        row[0, A.P_WID] = float(rng.uniform(0.38, 0.5))
        row[0, A.P_TR : A.P_TB + 1] = self._vary(self.c_clothes[rng.integers(len(self.c_clothes))], 0.15)
        row[0, A.P_LR : A.P_LB + 1] = self._vary(self.c_clothes[rng.integers(len(self.c_clothes))], 0.15)
        row[0, A.P_SR : A.P_SB + 1] = self.c_skin[rng.integers(len(self.c_skin))]
        row[0, A.P_SEED] = self._seed()
        row[0, A.P_PHASE] = float(rng.uniform(0, 2 * math.pi))
        row[0, A.P_ANCHOR] = anchor
        row[0, A.P_WAIT] = wait
        return row

    def _walkers(self, acc: _Acc, s0: float, s1: float) -> None:
        rng = self.rng
        n = int(rng.poisson(self.style.pedestrian_density * self.pedestrian_scale * (s1 - s0) / 100.0))
        for _ in range(n):
            side = 1.0 if rng.random() < 0.5 else -1.0
            lat = side * (self.sw_in + float(rng.uniform(0.35, self.sw - 0.35)))
            acc.peds.append(self._person(0, float(rng.uniform(s0, s1)), lat, 1.0 if rng.random() < 0.5 else -1.0,
                                         None, None, 0.0, 0.0))

    def _traffic(self, acc: _Acc, s0: float, s1: float) -> None:
        st = self.style
        rng = self.rng
        n = int(rng.poisson(st.traffic_density * self.traffic_scale * (s1 - s0) / 100.0))
        med = st.median_width / 2
        for _ in range(n):
            d = 1.0 if rng.random() < 0.45 else -1.0
            lane = int(rng.integers(st.lanes_per_side))
            length, width, height, paint, seeds = self._car_shape(1)
            row = np.zeros((1, A.CAR_COLS))
            row[0, A.C_KIND] = 0
            row[0, A.C_POS] = float(rng.uniform(s0, s1))
            row[0, A.C_LAT] = -d * (med + (lane + 0.5) * st.lane_width)
            row[0, A.C_DIR] = d
            if d > 0:  # same direction: a little slower than the ego, so it catches up and follows
                row[0, A.C_VDES] = self.cruise_speed * float(rng.uniform(0.65, 1.0))
            else:
                row[0, A.C_VDES] = float(rng.uniform(9.0, 14.0))
            row[0, A.C_SPEED] = row[0, A.C_VDES]
            row[0, A.C_LEN], row[0, A.C_WID], row[0, A.C_HGT] = length[0], width[0], height[0]
            row[0, A.C_R : A.C_B + 1] = paint[0]
            row[0, A.C_SEED] = seeds[0]
            row[0, A.C_ANCHOR] = np.nan
            row[0, A.C_STOP] = np.nan
            acc.cars.append(row)
