"""Light: the sky, the sun and ambient, the ego's headlights, street lamps, sky reflections.

All radiances are linear. :func:`sky` is the sky's radiance for a view direction (also
what glass and wet ground mirror); the street lamps are culled per image row first
(:func:`lamp_rows`), so the per-pixel loop only visits lamps whose lit volume covers it.

Example:
    >>> import numpy as np
    >>> from sim.render.layout import E_AMB, E_SUN_COL, E_SUN_DIR, ENV_SIZE
    >>> env = np.zeros(ENV_SIZE); env[E_SUN_DIR + 2] = 1.0; env[E_SUN_COL:E_SUN_COL + 3] = 2.0
    >>> env[E_AMB:E_AMB + 3] = 0.5
    >>> sun_and_ambient(0.0, 0.0, 1.0, env)  # a face up: full ambient plus the sun overhead
    (2.5, 2.5, 2.5)
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from sim.render.layout import (
    C_FWD, C_POS, E_AMB, E_CLOUD, E_CLOUD_COL, E_GLOW, E_GLOW_POW, E_HORIZON, E_SUN_COL, E_SUN_DIR, E_SUN_DISC,
    E_ZENITH, L_I, L_RAD, L_X, L_Y, L_Z,
)
from sim.render.noise import mix, smoothstep, value_noise
from sim.render.raster import project, to_camera


@njit(cache=True, nogil=True, inline="always")
def sky(dx, dy, dz, env, clouds, time):  # pragma: no cover - numba
    """Sky radiance for a unit view direction: gradient, sun glow and disc, optional clouds."""
    # every env read comes first: see "array arguments" in sim.render.noise
    hor_r, hor_g, hor_b = env[E_HORIZON], env[E_HORIZON + 1], env[E_HORIZON + 2]
    zen_r, zen_g, zen_b = env[E_ZENITH], env[E_ZENITH + 1], env[E_ZENITH + 2]
    cs = dx * env[E_SUN_DIR] + dy * env[E_SUN_DIR + 1] + dz * env[E_SUN_DIR + 2]
    glow_pow = env[E_GLOW_POW]
    glow_r, glow_g, glow_b = env[E_GLOW], env[E_GLOW + 1], env[E_GLOW + 2]
    disc = env[E_SUN_DISC]
    cover = env[E_CLOUD]
    cloud_r, cloud_g, cloud_b = env[E_CLOUD_COL], env[E_CLOUD_COL + 1], env[E_CLOUD_COL + 2]
    e = dz if dz > 0.0 else 0.0
    t = math.sqrt(e) * (2.0 - math.sqrt(e))
    r = mix(hor_r, zen_r, t)
    g = mix(hor_g, zen_g, t)
    b = mix(hor_b, zen_b, t)
    if cs > 0.0 and glow_pow > 0.0:
        gl = cs**glow_pow
        r += glow_r * gl
        g += glow_g * gl
        b += glow_b * gl
        if cs > 0.9993:
            r += disc
            g += disc * 0.95
            b += disc * 0.85
    if clouds and cover > 0.0 and dz > 0.015:
        px = dx / dz * 0.6 + time * 0.01
        py = dy / dz * 0.6
        n = 0.65 * value_noise(px, py, 7) + 0.35 * value_noise(px * 2.7, py * 2.7, 8)
        a = smoothstep(1.0 - cover, 1.0 - cover + 0.3, n) * smoothstep(0.015, 0.12, dz)
        shade = 0.8 + 0.25 * n
        r = mix(r, cloud_r * shade, a)
        g = mix(g, cloud_g * shade, a)
        b = mix(b, cloud_b * shade, a)
    return r, g, b


@njit(cache=True, nogil=True, inline="always")
def sun_and_ambient(nx, ny, nz, env):  # pragma: no cover - numba
    """Irradiance of a surface with unit normal n from the sun and the sky's ambient."""
    sun = max(nx * env[E_SUN_DIR] + ny * env[E_SUN_DIR + 1] + nz * env[E_SUN_DIR + 2], 0.0)
    amb = 0.62 + 0.38 * nz
    lr = env[E_AMB] * amb + env[E_SUN_COL] * sun
    lg = env[E_AMB + 1] * amb + env[E_SUN_COL + 1] * sun
    lb = env[E_AMB + 2] * amb + env[E_SUN_COL + 2] * sun
    return lr, lg, lb


@njit(cache=True, nogil=True, inline="always")
def headlight(px, py, pz, nx, ny, nz, head, head_i, cos_in, cos_out, head_d0):  # pragma: no cover - numba
    """Irradiance (r, g, b) of the ego's headlight cone (warm white) at point p with normal n.

    ``head`` is the lamp position (3) and unit direction (3); 0 outside the cone.
    """
    hx = px - head[0]
    hy = py - head[1]
    hz = pz - head[2]
    d = math.sqrt(hx * hx + hy * hy + hz * hz) + 1e-6
    ca = (hx * head[3] + hy * head[4] + hz * head[5]) / d
    if ca > cos_out:
        lam = 0.35 - 0.65 * (nx * hx + ny * hy + nz * hz) / d
        if lam > 0.0:
            w = head_i * smoothstep(cos_out, cos_in, ca) * lam / (1.0 + (d / head_d0) ** 2)
            return w, w * 0.96, w * 0.88
    return 0.0, 0.0, 0.0


@njit(cache=True, nogil=True)
def lamp_screen_boxes(lamps, n_lamps, cam, width, height):  # pragma: no cover - numba
    """Screen rectangle (u0, u1, v0, v1) of each street lamp's lit volume (empty when behind).

    The lit volume is a box from the ground (or one radius below the lamp) up to just
    above it. Shape: lamps (L, LAMP_COLS) -> (max(n_lamps, 1), 4) int64
    """
    lbox = np.empty((max(n_lamps, 1), 4), np.int64)
    for li in range(n_lamps):
        r = lamps[li, L_RAD]
        umin, umax, vmin, vmax = 1e9, -1e9, 1e9, -1e9
        behind = False
        for k in range(8):
            ox = lamps[li, L_X] + (r if (k & 1) else -r) - cam[C_POS]
            oy = lamps[li, L_Y] + (r if (k & 2) else -r) - cam[C_POS + 1]
            oz = (lamps[li, L_Z] + 0.5 if (k & 4) else max(0.0, lamps[li, L_Z] - r)) - cam[C_POS + 2]
            xc, yc, zc = to_camera(ox, oy, oz, cam)
            if zc < 0.1:
                behind = True
                continue
            su_, sv_ = project(xc, yc, zc, cam)
            umin = min(umin, su_)
            umax = max(umax, su_)
            vmin = min(vmin, sv_)
            vmax = max(vmax, sv_)
        if behind:
            # a corner behind the camera: either the whole volume is behind (no box) or it
            # surrounds the camera (the whole image)
            zc = (lamps[li, L_X] - cam[C_POS]) * cam[C_FWD] + (lamps[li, L_Y] - cam[C_POS + 1]) * cam[C_FWD + 1]
            if zc + r < 0.1:
                lbox[li, 0], lbox[li, 1], lbox[li, 2], lbox[li, 3] = 1, 0, 1, 0
            else:
                lbox[li, 0], lbox[li, 1], lbox[li, 2], lbox[li, 3] = 0, width - 1, 0, height - 1
            continue
        lbox[li, 0] = max(0, int(math.floor(umin)))
        lbox[li, 1] = min(width - 1, int(math.ceil(umax)))
        lbox[li, 2] = max(0, int(math.floor(vmin)))
        lbox[li, 3] = min(height - 1, int(math.ceil(vmax)))
    return lbox


@njit(cache=True, nogil=True)
def lamp_rows(lbox, n_lamps, height):  # pragma: no cover - numba
    """Per image row, the lamps whose screen rectangle covers it: (row_count (H,), row_lamps (H, L))."""
    row_count = np.zeros(height, np.int64)
    row_lamps = np.empty((height, max(n_lamps, 1)), np.int64)
    for li in range(n_lamps):
        if lbox[li, 0] > lbox[li, 1]:
            continue
        for v in range(lbox[li, 2], lbox[li, 3] + 1):
            row_lamps[v, row_count[v]] = li
            row_count[v] += 1
    return row_count, row_lamps


@njit(cache=True, nogil=True, inline="always")
def street_lamp(li, px, py, pz, nx, ny, nz, vx, vy, vz, spec, lamps, lights, lamp_d0):  # pragma: no cover - numba
    """Light of street lamp ``li`` at point p (normal n, unit view ray v).

    Returns (hit, w, sp): whether it reaches p, its irradiance weight (times the lamp
    colour) and, on wet ground (``spec`` > 0), the Blinn highlight it leaves there (an
    emission, times the lamp colour; 0 elsewhere).
    """
    intensity = lamps[li, L_I]  # every lamps read comes first: see "array arguments" in sim.render.noise
    rad = lamps[li, L_RAD]
    qx = lamps[li, L_X] - px
    qy = lamps[li, L_Y] - py
    qz = lamps[li, L_Z] - pz
    d2 = qx * qx + qy * qy + qz * qz
    if d2 > rad * rad:
        return False, 0.0, 0.0
    d = math.sqrt(d2) + 1e-6
    lam = 0.2 + 0.8 * (nx * qx + ny * qy + nz * qz) / d
    if lam <= 0.0:
        return False, 0.0, 0.0
    fall = 1.0 - d2 / (rad * rad)
    down = qz / d  # street lights are cut-off luminaires: most light goes down
    if down < 0.0:
        down = 0.0
    w = intensity * lights * lam * fall * (0.15 + 0.85 * down * down) / (1.0 + d2 / (lamp_d0 * lamp_d0))
    sp = 0.0
    if spec > 0.0:
        hvx = qx / d - vx
        hvy = qy / d - vy
        hvz = qz / d - vz
        hn = math.sqrt(hvx * hvx + hvy * hvy + hvz * hvz) + 1e-9
        hh = hvz / hn
        if hh > 0.9:
            sp = spec * 3.0 * intensity * lights * hh**40 * fall
    return True, w, sp


@njit(cache=True, nogil=True, inline="always")
def sky_reflection(cr, cg, cb, vx, vy, vz, nx, ny, nz, refl, refl_floor, env, time):  # pragma: no cover - numba
    """Add the mirrored sky (Schlick Fresnel, capped) to a shaded colour; ``v`` is the unit view ray."""
    dn = vx * nx + vy * ny + vz * nz
    mx = vx - 2.0 * dn * nx
    my = vy - 2.0 * dn * ny
    mz = vz - 2.0 * dn * nz
    sr, sg, sb = sky(mx, my, max(mz, 0.02), env, False, time)
    fr = 1.0 + dn
    fr = min(0.04 + 0.96 * fr * fr * fr * fr * fr, 0.6)
    k = refl * (refl_floor + fr)
    return cr * (1.0 - k * 0.3) + sr * k, cg * (1.0 - k * 0.3) + sg * k, cb * (1.0 - k * 0.3) + sb * k
