"""Weather on the scene: the fog law and what rain and snow do to surfaces.

Fog is Koschmieder's law ``I = J t + A (1 - t)`` with transmittance
``t = exp(-beta max(0, d - start))``: :func:`fog_transmittance` and :func:`fog_blend` are
its one implementation, used by the shading kernel (surfaces and sky) and by
:func:`apply_fog` (the same law on arrays, which the tests check against numpy).

Snow settles on ground by kind (a full cover on grass, trampled on paving, slush in the
road lanes and white along the kerb), on upward faces and on the top of tree crowns; rain
darkens ground and upward faces and turns road into a weak mirror with sharp puddles.

Example:
    >>> import numpy as np
    >>> fog_transmittance(0.03, 1.5, 2.0), fog_blend(0.2, 0.7, 1.0)  # before the fog starts
    (1.0, 0.2)
    >>> out = apply_fog(np.array([[0.2, 0.3, 0.4]]), np.array([1000.0]), 0.03, 2.0, np.array([0.7, 0.7, 0.8]))
    >>> np.round(out, 6).tolist()  # far away only the airlight is left
    [[0.7, 0.7, 0.8]]
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from sim.render.layout import E_AIR, SNOW_ROAD, SNOW_SIDEWALK, SNOW_TERRAIN
from sim.render.noise import cell_noise, mix3, smoothstep, value_noise


# ---- fog ----------------------------------------------------------------------------------------


@njit(cache=True, nogil=True, inline="always")
def fog_transmittance(beta, dist, start):  # pragma: no cover - numba
    """Fraction of the scene radiance that survives ``dist`` metres of fog starting at ``start``."""
    d = dist - start
    if d < 0.0:
        d = 0.0
    return math.exp(-beta * d)


@njit(cache=True, nogil=True, inline="always")
def fog_blend(radiance, air, t):  # pragma: no cover - numba
    """The fog law for one channel: ``J t + A (1 - t)``."""
    return radiance * t + air * (1.0 - t)


@njit(cache=True, nogil=True, inline="always")
def fog_rgb(r, g, b, t, env):  # pragma: no cover - numba
    """:func:`fog_blend` of a colour with the environment's airlight."""
    return fog_blend(r, env[E_AIR], t), fog_blend(g, env[E_AIR + 1], t), fog_blend(b, env[E_AIR + 2], t)


@njit(cache=True, nogil=True)
def apply_fog(radiance, dist, beta, start, air):  # pragma: no cover - numba
    """The fog law on arrays: ``I = J t + A (1 - t)``, ``t = exp(-beta max(0, d - start))``.

    Shape:
        radiance (N, 3) float64, dist (N,) float64, air (3,) -> (N, 3) float64
    """
    out = np.empty_like(radiance)
    for i in range(radiance.shape[0]):
        t = fog_transmittance(beta, dist[i], start)
        for ch in range(3):
            out[i, ch] = fog_blend(radiance[i, ch], air[ch], t)
    return out


# ---- snow and rain on surfaces ------------------------------------------------------------------


@njit(cache=True, nogil=True, inline="always")
def snow_on_ground(ar, ag, ab, px, py, snow_kind, road_edge, snow):  # pragma: no cover - numba
    """Snow cover of ground point (px, py) by ground kind; returns the new albedo."""
    if snow_kind == SNOW_TERRAIN:
        c = smoothstep(0.25, 0.45, snow * (0.55 + 0.55 * value_noise(px * 0.9, py * 0.9, 31)))
        g = 0.9 + 0.1 * cell_noise(px, py, 5.0, 32)
        return mix3(ar, ag, ab, 0.86 * g, 0.88 * g, 0.92 * g, c)
    if snow_kind == SNOW_SIDEWALK:  # trampled, partly cleared: the paving shows through
        c = snow * (0.25 + 0.65 * smoothstep(0.25, 0.7, value_noise(px * 1.1, py * 1.1, 33)))
        return mix3(ar, ag, ab, 0.55, 0.57, 0.62, c)
    edge = smoothstep(1.1, 0.3, road_edge + 0.4 * value_noise(px * 1.5, py * 1.5, 34))
    c = snow * (0.15 + 0.8 * edge)
    sc = 0.22 + 0.55 * edge  # grey slush in the lanes, white along the kerb
    return mix3(ar, ag, ab, sc, sc, sc + 0.03, c)


@njit(cache=True, nogil=True, inline="always")
def wet_ground(ar, ag, ab, px, py, snow_kind, wet, puddles):  # pragma: no cover - numba
    """Rain on ground point (px, py): darker albedo and a water film.

    Returns (ar, ag, ab, spec): ``spec`` is the film's mirror strength -- a blurred, weak
    mirror on asphalt, a sharp one in puddles; paving and grass only darken.
    """
    road = snow_kind == SNOW_ROAD
    pd = puddles * smoothstep(0.55, 0.72, value_noise(px * 0.35, py * 0.35, 41)) if road else 0.0
    k = 1.0 - 0.5 * wet - 0.35 * pd
    spec = wet * (0.15 + 0.85 * pd) if road else 0.05 * wet
    return ar * k, ag * k, ab * k, spec


@njit(cache=True, nogil=True, inline="always")
def snow_on_crown(ar, ag, ab, nz, k, snow):  # pragma: no cover - numba
    """Snow on the upper part (normal z ``nz``) of a tree crown of foliage brightness ``k``."""
    if nz > 0.35:
        c = snow * smoothstep(0.35, 0.75, nz) * (0.5 + 0.5 * k)
        return mix3(ar, ag, ab, 0.8, 0.82, 0.86, c)
    return ar, ag, ab


@njit(cache=True, nogil=True, inline="always")
def surface_weather(ar, ag, ab, refl, refl_floor, px, py, nz, ground, top, snow_kind, road_edge, snow, wet,
                    puddles):  # pragma: no cover - numba
    """Snow and rain on a surface record's albedo and reflectivity.

    Returns (ar, ag, ab, refl, refl_floor, spec); ``spec`` > 0 only on wet ground (the
    strength of the street lamps' highlights there).
    """
    spec = 0.0
    if ground:
        if snow > 0.0:
            ar, ag, ab = snow_on_ground(ar, ag, ab, px, py, snow_kind, road_edge, snow)
        if wet > 0.0:
            ar, ag, ab, spec = wet_ground(ar, ag, ab, px, py, snow_kind, wet, puddles)
            refl = spec
            refl_floor = 0.0
    elif top and snow > 0.0:
        ar, ag, ab = mix3(ar, ag, ab, 0.85, 0.87, 0.9, snow * 0.9)
    elif wet > 0.0 and nz > 0.5:
        k = 1.0 - 0.3 * wet
        ar, ag, ab = ar * k, ag * k, ab * k
    return ar, ag, ab, refl, refl_floor, spec
