"""Effects on the finished image: the tone curve and the falling rain or snow in front of the lens.

:func:`to_display` is the one lookup of linear radiance in the weather's tone LUT
(exposure, tone curve and gamma; ``LUT_SCALE`` entries per unit of radiance).
:func:`precipitation` draws rain streaks or snow flakes over the 8-bit image: they hide
pixels, not labels, and only where the scene is farther than the drop.

Example:
    >>> import numpy as np
    >>> lut = np.arange(256, dtype=np.uint8)
    >>> to_display(0.1, lut, 255), to_display(-1.0, lut, 255), to_display(9.0, lut, 255)  # 0.1 * 1024 -> 102
    (102, 0, 255)
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from sim.render.layout import E_AMB, E_PRECIP, E_PRECIP_KIND, E_WIND, LUT_SCALE
from sim.render.noise import lattice_hash, mix


@njit(cache=True, nogil=True, inline="always")
def to_display(radiance, lut, lut_max):  # pragma: no cover - numba
    """Display value (uint8) of one linear radiance channel through the tone LUT ``lut``."""
    return lut[min(max(int(radiance * LUT_SCALE), 0), lut_max)]


@njit(cache=True, nogil=True)
def precipitation(env, zbuf, rgb, time, frame_seed, cu, cv):  # pragma: no cover - numba
    """Rain streaks or snow flakes in front of the scene (they hide pixels, not labels).

    Shape:
        env (ENV_SIZE,); zbuf (H, W) float32; rgb (H, W, 3) uint8 (in and out)
    """
    amount = env[E_PRECIP]
    if amount <= 0.0:
        return
    height, width = zbuf.shape
    scale = (width * height) / 32768.0
    bright = 0.25 + 0.75 * min(1.0, (env[E_AMB] + env[E_AMB + 1] + env[E_AMB + 2]) / 1.2)
    if env[E_PRECIP_KIND] < 0.5:
        n = int(amount * 420.0 * scale)
        wind = env[E_WIND]
        col = 200.0 * bright + 30.0
        for i in range(n):
            u0 = lattice_hash(i, 1, frame_seed) * width
            v0 = lattice_hash(i, 2, frame_seed) * height
            h3 = lattice_hash(i, 3, frame_seed)
            d = 0.8 + 20.0 * h3 * h3
            length = min(22.0, 14.0 / d * (height / 128.0) + 2.0)
            slant = wind + 0.5 * (u0 - cu) / width
            a = 0.32 * (1.0 - d / 22.0)
            steps = int(length)
            for k in range(steps):
                u = int(u0 + slant * k)
                v = int(v0 + k)
                if u < 0 or u >= width or v < 0 or v >= height:
                    break
                if zbuf[v, u] <= d:
                    continue
                for ch in range(3):
                    rgb[v, u, ch] = np.uint8(mix(rgb[v, u, ch], col, a))
    else:
        n = int(amount * 520.0 * scale)
        col = 255.0 * bright
        for i in range(n):
            h3 = lattice_hash(i, 3, 77)
            d = 1.0 + 28.0 * h3 * h3
            fall = (0.35 + 0.4 * lattice_hash(i, 4, 77)) * (6.0 / d + 0.2)
            uu = lattice_hash(i, 1, 77) * width + time * width * 0.03 * (lattice_hash(i, 5, 77) - 0.5) * 4.0
            vv = lattice_hash(i, 2, 77) * height + time * height * fall
            u0 = uu - math.floor(uu / width) * width
            v0 = vv - math.floor(vv / height) * height
            r = 2.4 / d * (height / 128.0)
            a = 0.9 * (1.0 - d / 32.0)
            if r < 0.7:
                a *= r / 0.7
                r = 0.5
            ri = int(math.ceil(r))
            for dv in range(-ri, ri + 1):
                for du in range(-ri, ri + 1):
                    if du * du + dv * dv > r * r + 0.25:
                        continue
                    u = int(u0) + du
                    v = int(v0) + dv
                    if u < 0 or u >= width or v < 0 or v >= height:
                        continue
                    if zbuf[v, u] <= d:
                        continue
                    for ch in range(3):
                        rgb[v, u, ch] = np.uint8(mix(rgb[v, u, ch], col, a))
