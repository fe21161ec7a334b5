"""Materials: what each primitive looks like before light and weather reach it.

Each ``*_surface`` function returns the same surface record for one visible point::

    (cls, ar, ag, ab, er, eg, eb, nx, ny, nz, refl, refl_floor, ground, top, snow_kind, road_edge)

the trainId, the linear albedo, the emission (lit windows, car lamps, street-lamp heads),
the unit normal, the mirror reflectivity of the sky and its floor at normal incidence,
whether it is horizontal ground (wet and snow apply) or an upward object face (snow
settles), the ground kind for snow (1 terrain, 2 sidewalk, 3 road) and, on roads, the
distance to the road edge. The procedural textures are here too, one function per law.

Example:
    >>> import numpy as np
    >>> from sim.render.layout import PALETTE_SIZE, TERRAIN
    >>> rec = terrain_surface(3.0, 4.0, np.full(PALETTE_SIZE, 0.2))
    >>> rec[0] == TERRAIN, rec[7:10], rec[12], rec[14]  # class, normal up, ground, snow kind terrain
    (True, (0.0, 0.0, 1.0), True, 1)
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from sim.render.layout import (
    B_B, B_CLS, B_COS, B_CX, B_CY, B_CZ, B_EMIT, B_G, B_HX, B_HY, B_HZ, B_P0, B_P1, B_P2, B_R, B_SIN, B_TEX, D_B,
    D_CLS, D_G, D_OX, D_OY, D_P0, D_R, D_SEED, D_TEX, D_UX, D_UY, D_VX, D_VY, P_ASPHALT, P_GRASS_A, P_GRASS_B,
    P_ROOF, S_B, S_CLS, S_CX, S_CY, S_CZ, S_G, S_R, S_RAD, S_SEED, T_ASPHALT, T_BARK, T_BRICK, T_CAR_BODY,
    T_CAR_CABIN, T_CLOTHES, T_CROSSWALK, T_HEAD, T_HEDGE, T_LAMP, T_MARKING, T_MODERN, T_PAVING, T_SIGN, T_WHEEL,
    SNOW_ROAD, SNOW_SIDEWALK, SNOW_TERRAIN, TERRAIN,
)
from sim.render.noise import cell_noise, lattice_hash, mix, value_noise
from sim.render.raster import box_face_normal
from sim.render.weather_fx import snow_on_crown

NO_ROAD_EDGE = 10.0  # road_edge of everything that is not a road (metres; far from any edge)


# ---- texture laws ---------------------------------------------------------------------------


@njit(cache=True, nogil=True, inline="always")
def asphalt_grain(x, y):  # pragma: no cover - numba
    """Brightness factor of asphalt at ground point (x, y): patches times grit."""
    return (0.84 + 0.3 * value_noise(x * 0.7, y * 0.7, 21)) * (0.86 + 0.28 * cell_noise(x, y, 11.0, 22))


@njit(cache=True, nogil=True, inline="always")
def paint_grain(x, y):  # pragma: no cover - numba
    """Brightness factor of road paint (markings, crossing stripes)."""
    return 0.8 + 0.2 * value_noise(x * 2.0, y * 2.0, 23)


@njit(cache=True, nogil=True, inline="always")
def plain_grain(x, y, scale, seed):  # pragma: no cover - numba
    """Brightness factor of plain surfaces (kerbs, poles, misc): one random tone per cell."""
    return 0.88 + 0.24 * cell_noise(x, y, scale, seed)


@njit(cache=True, nogil=True, inline="always")
def lit_window(icol, irow, seed, lights, share, base):  # pragma: no cover - numba
    """Glow of window (icol, irow) at night: 0 for the dark ones, ``share`` of them lit."""
    if lights > 0.0 and lattice_hash(icol, irow, seed + 3) < share:
        return lights * (base + 0.6 * lattice_hash(icol, irow, seed + 4))
    return 0.0


# ---- ground -----------------------------------------------------------------------------------


@njit(cache=True, nogil=True, inline="always")
def terrain_surface(px, py, palette):  # pragma: no cover - numba
    """The bare ground plane (grass) at (px, py)."""
    n1 = value_noise(px * 0.3, py * 0.3, 11)
    k = 0.78 + 0.44 * cell_noise(px, py, 7.0, 12)
    ar = mix(palette[P_GRASS_A], palette[P_GRASS_B], n1) * k
    ag = mix(palette[P_GRASS_A + 1], palette[P_GRASS_B + 1], n1) * k
    ab = mix(palette[P_GRASS_A + 2], palette[P_GRASS_B + 2], n1) * k
    return (TERRAIN, ar, ag, ab, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.3, True, False, SNOW_TERRAIN, NO_ROAD_EDGE)


@njit(cache=True, nogil=True, inline="always")
def decal_surface(di, px, py, decal_attr, palette):  # pragma: no cover - numba
    """Ground decal ``di`` (road, marking, crossing, paving, kerb) at (px, py)."""
    # every array read comes first: see "array arguments" in sim.render.noise
    cls = np.int64(decal_attr[di, D_CLS])
    tex = np.int64(decal_attr[di, D_TEX])
    ar, ag, ab = decal_attr[di, D_R], decal_attr[di, D_G], decal_attr[di, D_B]
    qx = px - decal_attr[di, D_OX]
    qy = py - decal_attr[di, D_OY]
    lu = qx * decal_attr[di, D_UX] + qy * decal_attr[di, D_UY]
    lv = qx * decal_attr[di, D_VX] + qy * decal_attr[di, D_VY]
    half_width = decal_attr[di, D_P0]
    seed = np.int64(decal_attr[di, D_SEED])
    asphalt_r, asphalt_g, asphalt_b = palette[P_ASPHALT], palette[P_ASPHALT + 1], palette[P_ASPHALT + 2]
    road_edge = NO_ROAD_EDGE
    if tex == T_ASPHALT:
        k = asphalt_grain(px, py)
        ar, ag, ab = ar * k, ag * k, ab * k
        snow_kind = SNOW_ROAD
        road_edge = half_width - abs(lv)
    elif tex == T_MARKING:
        k = paint_grain(px, py)
        ar, ag, ab = ar * k, ag * k, ab * k
        snow_kind = SNOW_ROAD
        road_edge = half_width
    elif tex == T_CROSSWALK:
        if (lu * 1.1) - math.floor(lu * 1.1) > 0.5:
            k = asphalt_grain(px, py)
            ar, ag, ab = asphalt_r * k, asphalt_g * k, asphalt_b * k
        else:
            k = paint_grain(px, py)
            ar, ag, ab = ar * k, ag * k, ab * k
        snow_kind = SNOW_ROAD
    elif tex == T_PAVING:
        tu = lu * 2.2
        tv = lv * 2.2
        fu = tu - math.floor(tu)
        fv = tv - math.floor(tv)
        k = 0.8 + 0.35 * lattice_hash(np.int64(math.floor(tu)), np.int64(math.floor(tv)), seed)
        if fu < 0.08 or fv < 0.08:
            k *= 0.62
        ar, ag, ab = ar * k, ag * k, ab * k
        snow_kind = SNOW_SIDEWALK
    else:  # kerb and anything else plain
        k = plain_grain(px, py, 6.0, 24)
        ar, ag, ab = ar * k, ag * k, ab * k
        snow_kind = SNOW_SIDEWALK
    return (cls, ar, ag, ab, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.3, True, False, snow_kind, road_edge)


# ---- boxes ------------------------------------------------------------------------------------


@njit(cache=True, nogil=True, inline="always")
def _facade(brick, face, fu, fw, hb, seed, floor_h, spacing, ar, ag, ab, roof_r, roof_g, roof_b,
            lights):  # pragma: no cover - numba
    """Brick or modern facade (windows by floor and column, lit at night) or the roof (colour ``roof_*``).

    Returns (ar, ag, ab, er, eg, eb, refl).
    """
    er, eg, eb = 0.0, 0.0, 0.0
    refl = 0.0
    if face == 4:
        return roof_r, roof_g, roof_b, er, eg, eb, refl
    ncol = max(1.0, math.floor(2.0 * fw / spacing))
    uu = (fu + fw) / (2.0 * fw) * ncol
    col = math.floor(uu)
    fcu = uu - col
    rr = hb / floor_h
    row = math.floor(rr)
    fcv = rr - row
    icol = np.int64(col)
    irow = np.int64(row)
    glass = False
    frame = False
    if brick:
        if row < 1.0:
            if fcu > 0.14 and fcu < 0.86 and fcv > 0.08 and fcv < 0.78 and lattice_hash(icol, 7, seed) < 0.55:
                glass = True
                frame = fcu < 0.2 or fcu > 0.8 or fcv > 0.72
            else:
                ar *= 0.55
                ag *= 0.5
                ab *= 0.5
        elif fcu > 0.27 and fcu < 0.73 and fcv > 0.22 and fcv < 0.8:
            glass = True
            frame = fcu < 0.33 or fcu > 0.67 or fcv < 0.28 or fcv > 0.74 or abs(fcu - 0.5) < 0.03
        else:
            br = hb * 4.0
            ib = math.floor(br)
            off = 0.5 if (np.int64(ib) & 1) == 1 else 0.0
            bu = fu * 2.0 + off
            k = 0.8 + 0.36 * lattice_hash(np.int64(math.floor(bu)), np.int64(ib), seed)
            if br - ib < 0.14:
                k *= 0.78
            if fcv > 0.86 and fcv < 0.94:
                k *= 1.25  # string course
            ar, ag, ab = ar * k, ag * k, ab * k
        if glass:
            if frame:
                ar, ag, ab = 0.55, 0.52, 0.48
            else:
                ar, ag, ab = 0.035, 0.04, 0.05
                refl = 0.28
                w = lit_window(icol, irow, seed, lights, 0.38, 0.7)
                er, eg, eb = 0.95 * w, 0.62 * w, 0.28 * w
        return ar, ag, ab, er, eg, eb, refl
    k = 1.0
    if lattice_hash(seed, 1, 5) < 0.5:  # curtain wall
        if fcv < 0.16:
            k = 1.0
        elif fcu < 0.07:
            k = 0.75
        else:
            glass = True
    else:
        if fcv > 0.32 and fcv < 0.86 and (fcu > 0.08 or row < 1.0):
            glass = True
        else:
            k = 0.92 + 0.12 * lattice_hash(icol, irow, seed)
            if fcu < 0.04:
                k *= 0.8
    if glass:
        w = lit_window(icol, irow, seed, lights, 0.33, 0.6)
        return 0.05, 0.075, 0.095, 0.75 * w, 0.8 * w, 0.85 * w, 0.3
    return ar * k, ag * k, ab * k, er, eg, eb, refl


@njit(cache=True, nogil=True, inline="always")
def _car_body(face, fu, fw, hb, hz, ar, ag, ab, lights):  # pragma: no cover - numba
    """Car paint with head and tail lamps, grille and dark sills. Returns (ar, ag, ab, er, eg, eb, refl)."""
    er, eg, eb = 0.0, 0.0, 0.0
    fv = hb / (2.0 * hz)
    refl = 0.06
    if face == 0 or face == 1:
        au = abs(fu) / fw
        if fv > 0.45 and fv < 0.75 and au > 0.45 and au < 0.88:
            if face == 0:
                ar, ag, ab = 0.75, 0.75, 0.7
                er, eg, eb = 3.2 * lights, 3.0 * lights, 2.6 * lights
            else:
                ar, ag, ab = 0.35, 0.02, 0.02
                er, eg, eb = 1.6 * lights, 0.08 * lights, 0.05 * lights
            refl = 0.0
        elif face == 0 and fv > 0.2 and fv < 0.45 and au < 0.38:
            ar, ag, ab = 0.03, 0.03, 0.03
    elif face < 4 and fv < 0.14:
        ar, ag, ab = 0.04, 0.04, 0.04
    return ar, ag, ab, er, eg, eb, refl


@njit(cache=True, nogil=True, inline="always")
def _sign_face(a, b, seed):  # pragma: no cover - numba
    """Albedo of a traffic sign's front at face coordinates (a, b) in [-1, 1]: five sign kinds."""
    kind = np.int64(lattice_hash(seed, 3, 3) * 5.0)
    rr = math.sqrt(a * a + b * b)
    if kind == 0:  # prohibition: red ring on white
        if rr > 0.98:
            return 0.6, 0.6, 0.6
        if rr > 0.72:
            return 0.55, 0.02, 0.02
        if abs(a) < 0.35 and abs(b) < 0.3 and cell_noise(a, b, 5.0, seed) < 0.5:
            return 0.02, 0.02, 0.02
        return 0.8, 0.8, 0.8
    if kind == 1:  # mandatory: blue with a white arrow
        if abs(a) < 0.12 and b > -0.6 and b < 0.3 or (b > 0.2 and abs(a) < 0.55 - (b - 0.2)):
            return 0.85, 0.85, 0.85
        return 0.02, 0.09, 0.45
    if kind == 2:  # priority: yellow diamond on white
        dd = abs(a) + abs(b)
        if dd < 0.55:
            return 0.8, 0.55, 0.02
        if dd < 0.75:
            return 0.8, 0.8, 0.8
        if dd < 0.85:
            return 0.05, 0.05, 0.05
        return 0.8, 0.8, 0.8
    if kind == 3:  # stop-like: red with a white band
        if abs(b) < 0.16 and abs(a) < 0.7:
            return 0.85, 0.85, 0.85
        return 0.6, 0.02, 0.02
    # warning: red triangle on white
    tri = b > -0.7 and abs(a) < (0.8 - (b + 0.7) * 0.55)
    inner = b > -0.5 and abs(a) < (0.5 - (b + 0.5) * 0.55)
    if tri and not inner:
        return 0.6, 0.02, 0.02
    return 0.82, 0.82, 0.82


@njit(cache=True, nogil=True, inline="always")
def box_surface(bi, face, px, py, pz, boxes, palette, lights):  # pragma: no cover - numba
    """Face ``face`` of box ``bi`` (buildings, cars, people, poles, signs, lamps, hedges) at (px, py, pz)."""
    # every array read comes first: see "array arguments" in sim.render.noise
    cls = np.int64(boxes[bi, B_CLS])
    tex = np.int64(boxes[bi, B_TEX])
    ar, ag, ab = boxes[bi, B_R], boxes[bi, B_G], boxes[bi, B_B]
    c = boxes[bi, B_COS]
    s = boxes[bi, B_SIN]
    hx, hy, hz = boxes[bi, B_HX], boxes[bi, B_HY], boxes[bi, B_HZ]
    qx = px - boxes[bi, B_CX]
    qy = py - boxes[bi, B_CY]
    lz = pz - boxes[bi, B_CZ]
    seed = np.int64(boxes[bi, B_P0])
    p1, p2 = boxes[bi, B_P1], boxes[bi, B_P2]
    emit = boxes[bi, B_EMIT]
    roof_r, roof_g, roof_b = palette[P_ROOF], palette[P_ROOF + 1], palette[P_ROOF + 2]
    er, eg, eb = 0.0, 0.0, 0.0
    refl = 0.0
    lx = qx * c + qy * s
    ly = -qx * s + qy * c
    hb = lz + hz  # height above the box bottom
    nx, ny, nz = box_face_normal(face, c, s)
    # face coordinates: fu across the face (half width fw), hb up
    if face == 0:
        fu, fw = ly, hy
    elif face == 1:
        fu, fw = -ly, hy
    elif face == 2:
        fu, fw = -lx, hx
    else:
        fu, fw = lx, hx
    if tex == T_BRICK or tex == T_MODERN:
        ar, ag, ab, er, eg, eb, refl = _facade(tex == T_BRICK, face, fu, fw, hb, seed, p1, p2, ar, ag, ab,
                                               roof_r, roof_g, roof_b, lights)
    elif tex == T_CAR_BODY:
        ar, ag, ab, er, eg, eb, refl = _car_body(face, fu, fw, hb, hz, ar, ag, ab, lights)
    elif tex == T_CAR_CABIN:
        if face < 4:
            fv = hb / (2.0 * hz)
            if abs(fu) < 0.86 * fw and fv > 0.08 and fv < 0.9:
                ar, ag, ab = 0.03, 0.035, 0.04
                refl = 0.3
    elif tex == T_WHEEL:
        if face == 2 or face == 3:
            if fu * fu + lz * lz < 0.2 * hz * hz:
                ar, ag, ab = 0.3, 0.3, 0.3
    elif tex == T_CLOTHES:
        k = 0.85 + 0.3 * value_noise(fu * 6.0, hb * 6.0, seed)
        ar, ag, ab = ar * k, ag * k, ab * k
    elif tex == T_HEAD:
        if hb > 1.25 * hz or (face == 1 and hb > 0.7 * hz):
            w = lattice_hash(seed, 2, 9)
            ar, ag, ab = 0.02 + 0.2 * w * w, 0.015 + 0.12 * w * w, 0.01 + 0.05 * w
    elif tex == T_SIGN:
        if face == 0:
            ar, ag, ab = _sign_face(fu / fw, lz / hz, seed)
        else:
            ar, ag, ab = 0.3, 0.3, 0.31
    elif tex == T_LAMP:
        if face == 5:
            ar, ag, ab = 0.7, 0.7, 0.6
            er, eg, eb = 6.0 * lights, 5.0 * lights, 3.4 * lights
        elif lights > 0.0:
            er, eg, eb = 0.3 * lights, 0.25 * lights, 0.15 * lights
    elif tex == T_BARK:
        k = 0.75 + 0.5 * cell_noise(fu, hb * 0.5, 4.0, seed)
        ar, ag, ab = ar * k, ag * k, ab * k
    elif tex == T_HEDGE:
        k = 0.6 + 0.7 * value_noise(px * 3.0 + pz * 2.0, py * 3.0 - pz * 2.0, seed)
        ar, ag, ab = ar * k, ag * k, ab * k
    else:  # T_PLAIN: poles, misc
        k = plain_grain(fu, hb, 3.0, seed)
        ar, ag, ab = ar * k, ag * k, ab * k
    return (cls, ar, ag, ab, er * emit, eg * emit, eb * emit, nx, ny, nz, refl, 0.3, False, face == 4, 0,
            NO_ROAD_EDGE)


# ---- spheres ----------------------------------------------------------------------------------


@njit(cache=True, nogil=True, inline="always")
def sphere_surface(si, px, py, pz, spheres, snow):  # pragma: no cover - numba
    """Sphere ``si`` (tree crowns: foliage, with snow on top) at (px, py, pz)."""
    cls = np.int64(spheres[si, S_CLS])
    ir = 1.0 / spheres[si, S_RAD]
    nx = (px - spheres[si, S_CX]) * ir
    ny = (py - spheres[si, S_CY]) * ir
    nz = (pz - spheres[si, S_CZ]) * ir
    k = 0.5 + 0.8 * value_noise(px * 2.3 + pz * 1.7, py * 2.3 - pz * 1.7, np.int64(spheres[si, S_SEED]))
    k *= 0.8 + 0.2 * nz
    ar, ag, ab = spheres[si, S_R] * k, spheres[si, S_G] * k, spheres[si, S_B] * k
    if snow > 0.0:
        ar, ag, ab = snow_on_crown(ar, ag, ab, nz, k, snow)
    return (cls, ar, ag, ab, 0.0, 0.0, 0.0, nx, ny, nz, 0.0, 0.3, False, False, 0, NO_ROAD_EDGE)
