"""The numba rasteriser: one z-buffer pass gives the pixels, the labels and the depth.

The scene is a flat ground plane (z = 0, terrain unless covered), ground decals (road,
sidewalk, markings: convex quads on the plane, drawn in layer order), oriented boxes
(buildings, cars, people, poles, signs, hedges) and spheres (tree crowns). Two kernels do
all the work:

- :func:`rasterize` fills a depth buffer (planar camera depth, metres) and an id buffer
  (which primitive owns each pixel) -- the z-buffer pass.
- :func:`shade` turns the id buffer into the RGB image (procedural textures, sun, sky,
  headlights, street lights, wet and snowy ground, fog ``I = J t + A (1 - t)`` with
  ``t = exp(-beta d)``, rain streaks or snow flakes) and writes the label (the owning
  primitive's class) and the depth from the same buffers.

The kernels are built from small jitted helpers, one module per concern:

- :mod:`sim.render.layout`: class ids, texture kinds, columns of the scene tables;
- :mod:`sim.render.noise`: hashes, value noise, smoothstep, blends;
- :mod:`sim.render.raster`: camera, projection, box faces and :func:`rasterize`;
- :mod:`sim.render.materials`: the procedural textures of ground, decals, boxes, spheres;
- :mod:`sim.render.lighting`: sky, sun and ambient, headlights, street lamps, reflections;
- :mod:`sim.render.weather_fx`: the fog law (:func:`apply_fog` is it on arrays, so the
  tests can check it against numpy), snow and rain on surfaces;
- :mod:`sim.render.post`: the tone LUT and the rain or snow over the finished image;
- :mod:`sim.render.shading`: :func:`shade`, which puts them together.

Numba's on-disk cache only notices edits to the file that defines a cached function, not
to the helpers it calls from other files; so at import this package drops its cached
machine code whenever any of its sources changed (:func:`drop_stale_kernel_cache`).

Conventions: world x east, y north, z up, metres; camera space x right, y down, z forward;
pixel (u, v) has its centre at (u + 0.5, v + 0.5). Colours are linear until the tone LUT.

Example:
    >>> import numpy as np
    >>> cam = camera_array((0.0, 0.0, 1.5), yaw=np.pi / 2, pitch=0.0, width=8, height=4, fov_deg=90.0)
    >>> zbuf = np.empty((4, 8), np.float32); ids = np.empty((4, 8), np.int32)
    >>> rasterize(cam, np.zeros((0, 4, 2)), np.zeros((0, DECAL_COLS)), np.zeros((0, BOX_COLS)),
    ...           np.zeros((0, SPHERE_COLS)), zbuf, ids)
    >>> ids[0].tolist(), ids[3].tolist()  # sky above the horizon, ground below
    ([-1, -1, -1, -1, -1, -1, -1, -1], [0, 0, 0, 0, 0, 0, 0, 0])
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def drop_stale_kernel_cache(package_dir: Path) -> bool:
    """Delete numba's cache files (``__pycache__/*.nbi``, ``*.nbc``) in ``package_dir`` if its sources changed.

    A digest of every ``*.py`` file in ``package_dir`` is kept beside the cache; when it no
    longer matches, the cached kernels may hold old copies of helpers from other files, so
    they are removed (numba then compiles afresh and caches again). Returns whether it
    dropped them. Caches moved elsewhere with ``NUMBA_CACHE_DIR`` are not touched.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); _ = (d / "k.py").write_text("x = 1")
        >>> _ = (d / "__pycache__").mkdir(); _ = (d / "__pycache__" / "k.f-1.py311.nbi").write_bytes(b"")
        >>> drop_stale_kernel_cache(d), list((d / "__pycache__").glob("*.nbi"))
        (True, [])
        >>> drop_stale_kernel_cache(d)  # nothing changed since
        False
    """
    digest = hashlib.sha256()
    for path in sorted(package_dir.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    cache_dir = package_dir / "__pycache__"
    stamp = cache_dir / "kernel_sources.sha256"
    try:
        if stamp.read_text() == digest.hexdigest():
            return False
    except OSError:
        pass  # no stamp yet
    try:
        cache_dir.mkdir(exist_ok=True)
        for path in list(cache_dir.glob("*.nbi")) + list(cache_dir.glob("*.nbc")):
            path.unlink(missing_ok=True)
        tmp = cache_dir / f"kernel_sources.{os.getpid()}.tmp"
        tmp.write_text(digest.hexdigest())
        os.replace(tmp, stamp)
    except OSError as exc:  # read-only install: numba keeps its cache elsewhere
        logger.debug("could not refresh the kernel cache in %s: %s", cache_dir, exc)
        return False
    return True


drop_stale_kernel_cache(Path(__file__).resolve().parent)

from sim.render.layout import *  # noqa: E402,F401,F403  (the table layouts are part of the API)
from sim.render.raster import camera_array, rasterize  # noqa: E402,F401
from sim.render.shading import shade  # noqa: E402,F401
from sim.render.weather_fx import apply_fog  # noqa: E402,F401
