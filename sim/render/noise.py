"""Procedural primitives shared by every texture and weather effect: hashes, noise, blends.

All are small numba functions that also run from Python, so the tests can call them
directly.

How the render helpers are written (every module of :mod:`sim.render`): a helper called
per pixel is declared ``@njit(cache=True, nogil=True, inline="always")`` so numba pastes
it into the kernel, and it returns a tuple of scalars. The tiny functions here stay plain
``njit`` (LLVM inlines them, and pasting them at every call would only slow the first
compile). **Array arguments**: numba holds a reference count on an inlined helper's
array argument until its last use, and it only removes those count updates when they sit
in one branch-free block; so a helper that takes an array reads everything it needs from
it first, before any ``if`` (a read inside a branch made the night frames 2-4 times
slower).

Example:
    >>> from sim.render.noise import lattice_hash, mix, smoothstep, value_noise
    >>> 0.0 <= lattice_hash(3, 4, 5) < 1.0 and lattice_hash(3, 4, 5) == lattice_hash(3, 4, 5)
    True
    >>> value_noise(2.0, 7.0, 1) == lattice_hash(2, 7, 1)  # the noise passes through the lattice values
    True
    >>> smoothstep(0.0, 1.0, 0.5), mix(2.0, 4.0, 0.25)
    (0.5, 2.5)
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def lattice_hash(ix, iy, seed):  # pragma: no cover - numba
    """Integer hash of a lattice point to [0, 1)."""
    h = (ix * 374761393 + iy * 668265263 + seed * 2246822519) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    h = h ^ (h >> 16)
    return h * (1.0 / 4294967296.0)


@njit(cache=True, nogil=True)
def value_noise(x, y, seed):  # pragma: no cover - numba
    """Smooth value noise in [0, 1) on a unit lattice."""
    fx = math.floor(x)
    fy = math.floor(y)
    ix = np.int64(fx)
    iy = np.int64(fy)
    tx = x - fx
    ty = y - fy
    tx = tx * tx * (3.0 - 2.0 * tx)
    ty = ty * ty * (3.0 - 2.0 * ty)
    a = lattice_hash(ix, iy, seed)
    b = lattice_hash(ix + 1, iy, seed)
    c = lattice_hash(ix, iy + 1, seed)
    d = lattice_hash(ix + 1, iy + 1, seed)
    return (a + (b - a) * tx) * (1.0 - ty) + (c + (d - c) * tx) * ty


@njit(cache=True, nogil=True)
def cell_noise(x, y, scale, seed):  # pragma: no cover - numba
    """White noise per cell of size 1/scale."""
    return lattice_hash(np.int64(math.floor(x * scale)), np.int64(math.floor(y * scale)), seed)


@njit(cache=True, nogil=True)
def smoothstep(e0, e1, x):  # pragma: no cover - numba
    """Hermite step from 0 at ``e0`` to 1 at ``e1`` (either order), clamped."""
    t = (x - e0) / (e1 - e0)
    if t < 0.0:
        t = 0.0
    elif t > 1.0:
        t = 1.0
    return t * t * (3.0 - 2.0 * t)


@njit(cache=True, nogil=True)
def mix(a, b, w):  # pragma: no cover - numba
    """Linear blend ``a (1 - w) + b w``: the one cover law of snow, clouds, sky gradient and drops."""
    return a * (1.0 - w) + b * w


@njit(cache=True, nogil=True)
def mix3(r, g, b, tr, tg, tb, w):  # pragma: no cover - numba
    """:func:`mix` of a colour towards a target colour."""
    return mix(r, tr, w), mix(g, tg, w), mix(b, tb, w)
