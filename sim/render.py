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

:func:`apply_fog` is the fog law on its own, so the tests can check it against numpy.

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

import math

import numpy as np
from numba import njit

SKY_DEPTH = 1000.0  # metres written for sky pixels (and CARLA's depth-camera maximum)
INF = 1.0e30

# --- canonical trainIds the sim renders (sim/ does not import perception: tests/sim/test_sim_world.py
# checks these against perception.labels.CLASS_ID) ---------------------------------------
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN = 0, 1, 2, 3, 4, 5, 6, 7
VEGETATION, TERRAIN, SKY, PERSON, CAR = 8, 9, 10, 11, 13

# --- texture kinds ------------------------------------------------------------------------
T_ASPHALT, T_MARKING, T_PAVING, T_KERB, T_CROSSWALK = 1, 2, 3, 4, 5
T_BRICK, T_MODERN, T_PLAIN, T_CAR_BODY, T_CAR_CABIN, T_WHEEL = 10, 11, 12, 13, 14, 15
T_CLOTHES, T_HEAD, T_SIGN, T_LAMP, T_FOLIAGE, T_BARK, T_HEDGE = 16, 17, 18, 19, 20, 21, 22

# --- column layouts of the scene tables ---------------------------------------------------
# boxes: centre, half extents (local x = heading, y = left, z = up), yaw, class, albedo,
# texture kind, three texture parameters, cos/sin of yaw, emission strength
B_CX, B_CY, B_CZ, B_HX, B_HY, B_HZ, B_YAW, B_CLS, B_R, B_G, B_B = range(11)
B_TEX, B_P0, B_P1, B_P2, B_COS, B_SIN, B_EMIT = range(11, 18)
BOX_COLS = 18
# spheres: centre, radius, class, albedo, texture, seed
S_CX, S_CY, S_CZ, S_RAD, S_CLS, S_R, S_G, S_B, S_TEX, S_SEED = range(10)
SPHERE_COLS = 10
# decals (ground quads; vertices separately (N, 4, 2)): class, texture, colour, a local frame
# (origin, along-axis u, across-axis v), a parameter (half width for road pieces), seed, layer
D_CLS, D_TEX, D_R, D_G, D_B, D_OX, D_OY, D_UX, D_UY, D_VX, D_VY, D_P0, D_SEED, D_LAYER = range(14)
DECAL_COLS = 14
# street lamps: position, intensity, influence radius, colour
L_X, L_Y, L_Z, L_I, L_RAD, L_R, L_G, L_B = range(8)
LAMP_COLS = 8

# --- camera array -----------------------------------------------------------------------
C_POS, C_RIGHT, C_DOWN, C_FWD, C_F, C_CU, C_CV, C_NEAR, C_FAR = 0, 3, 6, 9, 12, 13, 14, 15, 16
CAM_SIZE = 17

# --- environment (lighting and weather) array, filled by sim.weather.environment --------
E_SUN_DIR, E_SUN_COL, E_AMB, E_ZENITH, E_HORIZON, E_GLOW = 0, 3, 6, 9, 12, 15
E_GLOW_POW, E_CLOUD, E_CLOUD_COL, E_BETA, E_FOG_START, E_AIR = 18, 19, 20, 23, 24, 25
E_LIGHTS, E_HEAD_I, E_HEAD_COS_IN, E_HEAD_COS_OUT, E_HEAD_D0 = 28, 29, 30, 31, 32
E_LAMP_D0, E_WET, E_PUDDLE, E_SNOW, E_PRECIP, E_PRECIP_KIND, E_WIND, E_SUN_DISC = 33, 34, 35, 36, 37, 38, 39, 40
ENV_SIZE = 44

# --- town palette array (linear colours), filled by sim.world ------------------------------
P_GRASS_A, P_GRASS_B, P_ASPHALT, P_ROOF = 0, 3, 6, 9
PALETTE_SIZE = 12

LUT_SIZE = 8192  # tone LUT entries
LUT_SCALE = 1024.0  # entries per unit of linear radiance


def camera_array(
    position: tuple[float, float, float],
    yaw: float,
    pitch: float,
    width: int,
    height: int,
    fov_deg: float,
    near: float = 0.1,
    far: float = 400.0,
) -> np.ndarray:
    """Pack a pinhole camera (world pose + intrinsics) for the kernels.

    ``yaw`` is the heading (radians, counter-clockwise from +x), ``pitch`` positive up,
    ``fov_deg`` the horizontal field of view.

    Shape:
        -> (CAM_SIZE,) float64
    """
    cam = np.zeros(CAM_SIZE, np.float64)
    cam[C_POS : C_POS + 3] = position
    cp, sp, cy, sy = math.cos(pitch), math.sin(pitch), math.cos(yaw), math.sin(yaw)
    fwd = np.array([cp * cy, cp * sy, sp])
    right = np.array([sy, -cy, 0.0])
    up = np.cross(right, fwd)
    cam[C_RIGHT : C_RIGHT + 3] = right
    cam[C_DOWN : C_DOWN + 3] = -up
    cam[C_FWD : C_FWD + 3] = fwd
    cam[C_F] = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    cam[C_CU] = width / 2.0
    cam[C_CV] = height / 2.0
    cam[C_NEAR] = near
    cam[C_FAR] = far
    return cam


# =========================================================================================
# rasterisation
# =========================================================================================


@njit(cache=True, nogil=True)
def _clip_near(px, py, pz, n, near, qx, qy, qz):  # pragma: no cover - numba
    """Clip a convex polygon (camera space) against z >= near; returns the vertex count."""
    m = 0
    for k in range(n):
        j = k + 1
        if j == n:
            j = 0
        ink = pz[k] >= near
        inj = pz[j] >= near
        if ink:
            qx[m] = px[k]
            qy[m] = py[k]
            qz[m] = pz[k]
            m += 1
        if ink != inj:
            t = (near - pz[k]) / (pz[j] - pz[k])
            qx[m] = px[k] + t * (px[j] - px[k])
            qy[m] = py[k] + t * (py[j] - py[k])
            qz[m] = near
            m += 1
    return m


@njit(cache=True, nogil=True)
def _fill(qx, qy, qz, m, cam, zbuf, idbuf, pid, with_depth, ncx, ncy, ncz, dd, max_over, su, sv, ea, eb, ec):  # pragma: no cover
    """Scan-convert a clipped convex polygon.

    with_depth: z-test with the plane ``n_c . X = dd`` and write depth and id; otherwise
    (ground decals) overwrite the id where the pixel already shows ground or an earlier
    decal (ids 0 .. max_over - 1).
    """
    height, width = zbuf.shape
    f = cam[C_F]
    cu = cam[C_CU]
    cv = cam[C_CV]
    vmin = 1e30
    vmax = -1e30
    for k in range(m):
        su[k] = cu + f * qx[k] / qz[k]
        sv[k] = cv + f * qy[k] / qz[k]
        if sv[k] < vmin:
            vmin = sv[k]
        if sv[k] > vmax:
            vmax = sv[k]
    area = 0.0
    for k in range(m):
        j = k + 1 if k + 1 < m else 0
        area += su[k] * sv[j] - su[j] * sv[k]
    if area == 0.0:
        return
    sign = 1.0 if area > 0.0 else -1.0
    for k in range(m):
        j = k + 1 if k + 1 < m else 0
        # inside when ea*x + eb*y + ec >= 0
        ea[k] = -(sv[j] - sv[k]) * sign
        eb[k] = (su[j] - su[k]) * sign
        ec[k] = -(ea[k] * su[k] + eb[k] * sv[k])
    v0 = max(0, int(math.ceil(vmin - 0.5)))
    v1 = min(height - 1, int(math.floor(vmax - 0.5)))
    for v in range(v0, v1 + 1):
        yc = v + 0.5
        xl = -1e30
        xr = 1e30
        empty = False
        for k in range(m):
            a = ea[k]
            rhs = -(eb[k] * yc + ec[k])
            if a > 1e-12:
                x = rhs / a
                if x > xl:
                    xl = x
            elif a < -1e-12:
                x = rhs / a
                if x < xr:
                    xr = x
            elif rhs > 0.0:
                empty = True
        if empty or xl >= xr:
            continue
        ul = xl - 0.5
        ur = xr - 0.5
        if ul < -1.0:
            ul = -1.0
        if ur > width:
            ur = width
        u0 = int(math.ceil(ul))
        u1 = int(math.ceil(ur))
        if u0 < 0:
            u0 = 0
        if u1 > width:
            u1 = width
        if u0 >= u1:
            continue
        if with_depth:
            yn = (yc - cv) / f
            base = ncy * yn + ncz
            for u in range(u0, u1):
                den = ncx * ((u + 0.5 - cu) / f) + base
                if den >= -1e-12:
                    continue
                z = dd / den
                if z < zbuf[v, u] and z > 0.0:
                    zbuf[v, u] = z
                    idbuf[v, u] = pid
        else:
            for u in range(u0, u1):
                cur = idbuf[v, u]
                if cur >= 0 and cur < max_over:
                    idbuf[v, u] = pid


@njit(cache=True, nogil=True)
def rasterize(cam, decal_verts, decal_attr, boxes, spheres, zbuf, idbuf):  # pragma: no cover
    """The z-buffer pass: ground plane, decals in order, boxes and spheres.

    Ids written: -1 sky, 0 ground plane, 1 + i decal i, 1 + D + 6 b + f face f of box b,
    1 + D + 6 B + s sphere s.

    Shape:
        cam (CAM_SIZE,); decal_verts (D, 4, 2); decal_attr (D, DECAL_COLS);
        boxes (B, BOX_COLS); spheres (S, SPHERE_COLS); zbuf (H, W) float32 (out);
        idbuf (H, W) int32 (out)
    """
    height, width = zbuf.shape
    cx, cy, cz = cam[0], cam[1], cam[2]
    rx, ry, rz = cam[3], cam[4], cam[5]
    dx, dy, dz = cam[6], cam[7], cam[8]
    fx, fy, fz = cam[9], cam[10], cam[11]
    f = cam[C_F]
    cu = cam[C_CU]
    cv = cam[C_CV]
    near = cam[C_NEAR]
    far = cam[C_FAR]
    for v in range(height):
        yn = (v + 0.5 - cv) / f
        for u in range(width):
            xn = (u + 0.5 - cu) / f
            wz = xn * rz + yn * dz + fz
            if wz < -1e-9:
                t = -cz / wz
                if t < far:
                    zbuf[v, u] = t
                    idbuf[v, u] = 0
                    continue
            zbuf[v, u] = INF
            idbuf[v, u] = -1
    px = np.empty(8)
    py = np.empty(8)
    pz = np.empty(8)
    qx = np.empty(10)
    qy = np.empty(10)
    qz = np.empty(10)
    su = np.empty(10)
    sv = np.empty(10)
    ea = np.empty(10)
    eb = np.empty(10)
    ec = np.empty(10)
    tx = (width / 2.0) / f
    ty = (height / 2.0) / f
    kx = math.sqrt(1.0 + tx * tx)
    ky = math.sqrt(1.0 + ty * ty)
    n_decals = decal_verts.shape[0]
    box_base = 1 + n_decals
    for i in range(n_decals):
        for k in range(4):
            wx = decal_verts[i, k, 0] - cx
            wy = decal_verts[i, k, 1] - cy
            wzz = -cz
            px[k] = wx * rx + wy * ry + wzz * rz
            py[k] = wx * dx + wy * dy + wzz * dz
            pz[k] = wx * fx + wy * fy + wzz * fz
        if pz[0] > far and pz[1] > far and pz[2] > far and pz[3] > far:
            continue
        m = _clip_near(px, py, pz, 4, near, qx, qy, qz)
        if m < 3:
            continue
        _fill(qx, qy, qz, m, cam, zbuf, idbuf, 1 + i, False, 0.0, 0.0, 0.0, 0.0, box_base, su, sv, ea, eb, ec)
    n_boxes = boxes.shape[0]
    for i in range(n_boxes):
        bx, by, bz = boxes[i, B_CX], boxes[i, B_CY], boxes[i, B_CZ]
        hx, hy, hz = boxes[i, B_HX], boxes[i, B_HY], boxes[i, B_HZ]
        c = boxes[i, B_COS]
        s = boxes[i, B_SIN]
        ox, oy, oz = bx - cx, by - cy, bz - cz
        zc = ox * fx + oy * fy + oz * fz
        xc = ox * rx + oy * ry + oz * rz
        yc = ox * dx + oy * dy + oz * dz
        rad = math.sqrt(hx * hx + hy * hy + hz * hz)
        if zc + rad < near or zc - rad > far:
            continue
        if xc - zc * tx > rad * kx or -xc - zc * tx > rad * kx:
            continue
        if yc - zc * ty > rad * ky or -yc - zc * ty > rad * ky:
            continue
        for face in range(6):
            if face == 0 or face == 1:
                sg = 1.0 if face == 0 else -1.0
                nx, ny, nz = sg * c, sg * s, 0.0
                hn = hx
                t1x, t1y, t1z, h1 = -s, c, 0.0, hy
                t2x, t2y, t2z, h2 = 0.0, 0.0, 1.0, hz
            elif face == 2 or face == 3:
                sg = 1.0 if face == 2 else -1.0
                nx, ny, nz = -sg * s, sg * c, 0.0
                hn = hy
                t1x, t1y, t1z, h1 = c, s, 0.0, hx
                t2x, t2y, t2z, h2 = 0.0, 0.0, 1.0, hz
            else:
                sg = 1.0 if face == 4 else -1.0
                nx, ny, nz = 0.0, 0.0, sg
                hn = hz
                t1x, t1y, t1z, h1 = c, s, 0.0, hx
                t2x, t2y, t2z, h2 = -s, c, 0.0, hy
            fcx = bx + nx * hn
            fcy = by + ny * hn
            fcz = bz + nz * hn
            side = (cx - fcx) * nx + (cy - fcy) * ny + (cz - fcz) * nz
            if side <= 1e-9:
                continue
            for k in range(4):
                sa = 1.0 if (k == 0 or k == 3) else -1.0
                sb = 1.0 if k < 2 else -1.0
                wx = fcx + t1x * h1 * sa + t2x * h2 * sb - cx
                wy = fcy + t1y * h1 * sa + t2y * h2 * sb - cy
                wzz = fcz + t1z * h1 * sa + t2z * h2 * sb - cz
                px[k] = wx * rx + wy * ry + wzz * rz
                py[k] = wx * dx + wy * dy + wzz * dz
                pz[k] = wx * fx + wy * fy + wzz * fz
            m = _clip_near(px, py, pz, 4, near, qx, qy, qz)
            if m < 3:
                continue
            ncx = nx * rx + ny * ry + nz * rz
            ncy = nx * dx + ny * dy + nz * dz
            ncz = nx * fx + ny * fy + nz * fz
            _fill(qx, qy, qz, m, cam, zbuf, idbuf, box_base + 6 * i + face, True, ncx, ncy, ncz, -side, 0, su, sv, ea, eb, ec)
    sph_base = box_base + 6 * n_boxes
    for i in range(spheres.shape[0]):
        ox = spheres[i, S_CX] - cx
        oy = spheres[i, S_CY] - cy
        oz = spheres[i, S_CZ] - cz
        r = spheres[i, S_RAD]
        zc = ox * fx + oy * fy + oz * fz
        xc = ox * rx + oy * ry + oz * rz
        yc = ox * dx + oy * dy + oz * dz
        if zc + r < near or zc - r > far:
            continue
        if xc - zc * tx > r * kx or -xc - zc * tx > r * kx:
            continue
        if yc - zc * ty > r * ky or -yc - zc * ty > r * ky:
            continue
        cc = xc * xc + yc * yc + zc * zc - r * r
        if cc <= 0.0:
            continue  # camera inside the sphere
        if zc - r > near:
            lo = (xc - r) / (zc - r) if xc - r < 0.0 else (xc - r) / (zc + r)
            hi = (xc + r) / (zc - r) if xc + r > 0.0 else (xc + r) / (zc + r)
            u0 = max(0, int(math.floor(cu + f * lo)))
            u1 = min(width - 1, int(math.ceil(cu + f * hi)))
            lo = (yc - r) / (zc - r) if yc - r < 0.0 else (yc - r) / (zc + r)
            hi = (yc + r) / (zc - r) if yc + r > 0.0 else (yc + r) / (zc + r)
            v0 = max(0, int(math.floor(cv + f * lo)))
            v1 = min(height - 1, int(math.ceil(cv + f * hi)))
        else:
            u0, u1, v0, v1 = 0, width - 1, 0, height - 1
        pid = sph_base + i
        for v in range(v0, v1 + 1):
            yn = (v + 0.5 - cv) / f
            for u in range(u0, u1 + 1):
                xn = (u + 0.5 - cu) / f
                b = xn * xc + yn * yc + zc
                d2 = xn * xn + yn * yn + 1.0
                disc = b * b - d2 * cc
                if disc < 0.0:
                    continue
                t = (b - math.sqrt(disc)) / d2
                if t > near and t < zbuf[v, u]:
                    zbuf[v, u] = t
                    idbuf[v, u] = pid


# =========================================================================================
# shading helpers
# =========================================================================================


@njit(cache=True, nogil=True)
def _hash(ix, iy, seed):  # pragma: no cover
    """Integer hash of a lattice point to [0, 1)."""
    h = (ix * 374761393 + iy * 668265263 + seed * 2246822519) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    h = h ^ (h >> 16)
    return h * (1.0 / 4294967296.0)


@njit(cache=True, nogil=True)
def _vnoise(x, y, seed):  # pragma: no cover
    """Smooth value noise in [0, 1) on a unit lattice."""
    fx = math.floor(x)
    fy = math.floor(y)
    ix = np.int64(fx)
    iy = np.int64(fy)
    tx = x - fx
    ty = y - fy
    tx = tx * tx * (3.0 - 2.0 * tx)
    ty = ty * ty * (3.0 - 2.0 * ty)
    a = _hash(ix, iy, seed)
    b = _hash(ix + 1, iy, seed)
    c = _hash(ix, iy + 1, seed)
    d = _hash(ix + 1, iy + 1, seed)
    return (a + (b - a) * tx) * (1.0 - ty) + (c + (d - c) * tx) * ty


@njit(cache=True, nogil=True)
def _cell(x, y, scale, seed):  # pragma: no cover
    """White noise per cell of size 1/scale."""
    return _hash(np.int64(math.floor(x * scale)), np.int64(math.floor(y * scale)), seed)


@njit(cache=True, nogil=True)
def _smooth(e0, e1, x):  # pragma: no cover
    t = (x - e0) / (e1 - e0)
    if t < 0.0:
        t = 0.0
    elif t > 1.0:
        t = 1.0
    return t * t * (3.0 - 2.0 * t)


@njit(cache=True, nogil=True)
def _sky(dx, dy, dz, env, clouds, time):  # pragma: no cover
    """Sky radiance for a unit view direction."""
    e = dz if dz > 0.0 else 0.0
    t = math.sqrt(e) * (2.0 - math.sqrt(e))
    r = env[E_HORIZON] * (1.0 - t) + env[E_ZENITH] * t
    g = env[E_HORIZON + 1] * (1.0 - t) + env[E_ZENITH + 1] * t
    b = env[E_HORIZON + 2] * (1.0 - t) + env[E_ZENITH + 2] * t
    cs = dx * env[E_SUN_DIR] + dy * env[E_SUN_DIR + 1] + dz * env[E_SUN_DIR + 2]
    if cs > 0.0 and env[E_GLOW_POW] > 0.0:
        gl = cs ** env[E_GLOW_POW]
        r += env[E_GLOW] * gl
        g += env[E_GLOW + 1] * gl
        b += env[E_GLOW + 2] * gl
        if cs > 0.9993:
            r += env[E_SUN_DISC]
            g += env[E_SUN_DISC] * 0.95
            b += env[E_SUN_DISC] * 0.85
    cover = env[E_CLOUD]
    if clouds and cover > 0.0 and dz > 0.015:
        px = dx / dz * 0.6 + time * 0.01
        py = dy / dz * 0.6
        n = 0.65 * _vnoise(px, py, 7) + 0.35 * _vnoise(px * 2.7, py * 2.7, 8)
        a = _smooth(1.0 - cover, 1.0 - cover + 0.3, n) * _smooth(0.015, 0.12, dz)
        shade = 0.8 + 0.25 * n
        r = r * (1.0 - a) + env[E_CLOUD_COL] * shade * a
        g = g * (1.0 - a) + env[E_CLOUD_COL + 1] * shade * a
        b = b * (1.0 - a) + env[E_CLOUD_COL + 2] * shade * a
    return r, g, b


@njit(cache=True, nogil=True)
def apply_fog(radiance, dist, beta, start, air):  # pragma: no cover
    """The fog law on arrays: ``I = J t + A (1 - t)``, ``t = exp(-beta max(0, d - start))``.

    Shape:
        radiance (N, 3) float64, dist (N,) float64, air (3,) -> (N, 3) float64
    """
    out = np.empty_like(radiance)
    for i in range(radiance.shape[0]):
        d = dist[i] - start
        if d < 0.0:
            d = 0.0
        t = math.exp(-beta * d)
        for ch in range(3):
            out[i, ch] = radiance[i, ch] * t + air[ch] * (1.0 - t)
    return out


# =========================================================================================
# the shading pass
# =========================================================================================


@njit(cache=True, nogil=True)
def shade(cam, env, palette, lut, idbuf, zbuf, decal_attr, boxes, spheres, lamps, head, time, frame_seed, rgb, label, depth):  # pragma: no cover
    """Textures, lighting and weather for every pixel; writes image, label and depth.

    ``head`` is the ego's headlight: position (3) and unit direction (3). ``lut`` maps
    linear radiance (``LUT_SCALE`` entries per unit) to display values (exposure, tone
    curve and gamma of the current weather).

    Shape:
        idbuf, zbuf (H, W); decal_attr (D, DECAL_COLS); boxes (B, BOX_COLS);
        spheres (S, SPHERE_COLS); lamps (L, LAMP_COLS); lut (LUT_SIZE,) uint8;
        rgb (H, W, 3) uint8 (out); label (H, W) uint8 (out); depth (H, W) float32 (out)
    """
    height, width = zbuf.shape
    cx, cy, cz = cam[0], cam[1], cam[2]
    rx, ry, rz = cam[3], cam[4], cam[5]
    dx, dy, dz = cam[6], cam[7], cam[8]
    fx, fy, fz = cam[9], cam[10], cam[11]
    f = cam[C_F]
    cu = cam[C_CU]
    cv = cam[C_CV]
    n_decals = decal_attr.shape[0]
    box_base = 1 + n_decals
    sph_base = box_base + 6 * boxes.shape[0]
    lights = env[E_LIGHTS]
    beta = env[E_BETA]
    fog_start = env[E_FOG_START]
    wet = env[E_WET]
    puddles = env[E_PUDDLE]
    snow = env[E_SNOW]
    sdx, sdy, sdz = env[E_SUN_DIR], env[E_SUN_DIR + 1], env[E_SUN_DIR + 2]
    lut_max = lut.shape[0] - 1
    # screen rectangles of the street lamps' influence spheres
    n_lamps = lamps.shape[0] if lights > 0.0 else 0
    lbox = np.empty((max(n_lamps, 1), 4), np.int64)
    for li in range(n_lamps):
        # screen rectangle of the lit volume: a box from the ground up to just above the lamp
        r = lamps[li, L_RAD]
        umin, umax, vmin, vmax = 1e9, -1e9, 1e9, -1e9
        behind = False
        for k in range(8):
            ox = lamps[li, L_X] + (r if (k & 1) else -r) - cx
            oy = lamps[li, L_Y] + (r if (k & 2) else -r) - cy
            oz = (lamps[li, L_Z] + 0.5 if (k & 4) else max(0.0, lamps[li, L_Z] - r)) - cz
            zc = ox * fx + oy * fy + oz * fz
            if zc < 0.1:
                behind = True
                continue
            su_ = cu + f * (ox * rx + oy * ry + oz * rz) / zc
            sv_ = cv + f * (ox * dx + oy * dy + oz * dz) / zc
            umin = min(umin, su_)
            umax = max(umax, su_)
            vmin = min(vmin, sv_)
            vmax = max(vmax, sv_)
        if behind:
            ox = lamps[li, L_X] - cx
            oy = lamps[li, L_Y] - cy
            zc = ox * fx + oy * fy
            if zc + r < 0.1:
                lbox[li, 0], lbox[li, 1], lbox[li, 2], lbox[li, 3] = 1, 0, 1, 0
            else:
                lbox[li, 0], lbox[li, 1], lbox[li, 2], lbox[li, 3] = 0, width - 1, 0, height - 1
            continue
        lbox[li, 0] = max(0, int(math.floor(umin)))
        lbox[li, 1] = min(width - 1, int(math.ceil(umax)))
        lbox[li, 2] = max(0, int(math.floor(vmin)))
        lbox[li, 3] = min(height - 1, int(math.ceil(vmax)))
    # per image row, the lamps whose screen rectangle covers it
    row_count = np.zeros(height, np.int64)
    row_lamps = np.empty((height, max(n_lamps, 1)), np.int64)
    for li in range(n_lamps):
        if lbox[li, 0] > lbox[li, 1]:
            continue
        for v in range(lbox[li, 2], lbox[li, 3] + 1):
            row_lamps[v, row_count[v]] = li
            row_count[v] += 1
    hpx, hpy, hpz = head[0], head[1], head[2]
    hdx, hdy, hdz = head[3], head[4], head[5]
    head_i = env[E_HEAD_I] * lights
    cos_in = env[E_HEAD_COS_IN]
    cos_out = env[E_HEAD_COS_OUT]
    head_d0 = env[E_HEAD_D0]
    lamp_d0 = env[E_LAMP_D0]
    for v in range(height):
        yn = (v + 0.5 - cv) / f
        for u in range(width):
            xn = (u + 0.5 - cu) / f
            wx = xn * rx + yn * dx + fx
            wy = xn * ry + yn * dy + fy
            wz = xn * rz + yn * dz + fz
            wn = math.sqrt(wx * wx + wy * wy + wz * wz)
            vx = wx / wn
            vy = wy / wn
            vz = wz / wn
            pid = idbuf[v, u]
            if pid < 0:
                sr, sg, sb = _sky(vx, vy, vz, env, True, time)
                t = math.exp(-beta * (SKY_DEPTH * wn - fog_start)) if beta > 0.0 else 1.0
                sr = sr * t + env[E_AIR] * (1.0 - t)
                sg = sg * t + env[E_AIR + 1] * (1.0 - t)
                sb = sb * t + env[E_AIR + 2] * (1.0 - t)
                rgb[v, u, 0] = lut[min(int(sr * LUT_SCALE), lut_max)]
                rgb[v, u, 1] = lut[min(int(sg * LUT_SCALE), lut_max)]
                rgb[v, u, 2] = lut[min(int(sb * LUT_SCALE), lut_max)]
                label[v, u] = SKY
                depth[v, u] = SKY_DEPTH
                continue
            z = zbuf[v, u]
            px = cx + wx * z
            py = cy + wy * z
            pz = cz + wz * z
            nx, ny, nz = 0.0, 0.0, 1.0
            er, eg, eb = 0.0, 0.0, 0.0
            refl = 0.0  # mirror reflection of the sky (glass, wet ground)
            refl_floor = 0.3  # glass and paint reflect even at normal incidence
            ground = False  # horizontal ground surface: wet and snow apply
            top = False  # upward face of an object: snow settles
            snow_kind = 0  # 1 terrain, 2 sidewalk, 3 road
            road_edge = 10.0
            if pid == 0:
                cls = TERRAIN
                n1 = _vnoise(px * 0.3, py * 0.3, 11)
                n2 = _cell(px, py, 7.0, 12)
                k = 0.78 + 0.44 * n2
                ar = (palette[P_GRASS_A] * (1.0 - n1) + palette[P_GRASS_B] * n1) * k
                ag = (palette[P_GRASS_A + 1] * (1.0 - n1) + palette[P_GRASS_B + 1] * n1) * k
                ab = (palette[P_GRASS_A + 2] * (1.0 - n1) + palette[P_GRASS_B + 2] * n1) * k
                ground = True
                snow_kind = 1
            elif pid < box_base:
                di = pid - 1
                cls = np.int64(decal_attr[di, D_CLS])
                tex = np.int64(decal_attr[di, D_TEX])
                ar, ag, ab = decal_attr[di, D_R], decal_attr[di, D_G], decal_attr[di, D_B]
                qx = px - decal_attr[di, D_OX]
                qy = py - decal_attr[di, D_OY]
                lu = qx * decal_attr[di, D_UX] + qy * decal_attr[di, D_UY]
                lv = qx * decal_attr[di, D_VX] + qy * decal_attr[di, D_VY]
                ground = True
                if tex == T_ASPHALT:
                    k = (0.84 + 0.3 * _vnoise(px * 0.7, py * 0.7, 21)) * (0.86 + 0.28 * _cell(px, py, 11.0, 22))
                    ar *= k
                    ag *= k
                    ab *= k
                    snow_kind = 3
                    road_edge = decal_attr[di, D_P0] - abs(lv)
                elif tex == T_MARKING:
                    k = 0.8 + 0.2 * _vnoise(px * 2.0, py * 2.0, 23)
                    ar *= k
                    ag *= k
                    ab *= k
                    snow_kind = 3
                    road_edge = decal_attr[di, D_P0]
                elif tex == T_CROSSWALK:
                    if (lu * 1.1) - math.floor(lu * 1.1) > 0.5:
                        k = (0.84 + 0.3 * _vnoise(px * 0.7, py * 0.7, 21)) * (0.86 + 0.28 * _cell(px, py, 11.0, 22))
                        ar = palette[P_ASPHALT] * k
                        ag = palette[P_ASPHALT + 1] * k
                        ab = palette[P_ASPHALT + 2] * k
                    else:
                        k = 0.8 + 0.2 * _vnoise(px * 2.0, py * 2.0, 23)
                        ar *= k
                        ag *= k
                        ab *= k
                    snow_kind = 3
                elif tex == T_PAVING:
                    tu = lu * 2.2
                    tv = lv * 2.2
                    fu = tu - math.floor(tu)
                    fv = tv - math.floor(tv)
                    k = 0.8 + 0.35 * _hash(np.int64(math.floor(tu)), np.int64(math.floor(tv)), np.int64(decal_attr[di, D_SEED]))
                    if fu < 0.08 or fv < 0.08:
                        k *= 0.62
                    ar *= k
                    ag *= k
                    ab *= k
                    snow_kind = 2
                else:  # kerb and anything else plain
                    k = 0.88 + 0.24 * _cell(px, py, 6.0, 24)
                    ar *= k
                    ag *= k
                    ab *= k
                    snow_kind = 2
            elif pid < sph_base:
                q = pid - box_base
                bi = q // 6
                face = q - 6 * bi
                cls = np.int64(boxes[bi, B_CLS])
                tex = np.int64(boxes[bi, B_TEX])
                ar, ag, ab = boxes[bi, B_R], boxes[bi, B_G], boxes[bi, B_B]
                c = boxes[bi, B_COS]
                s = boxes[bi, B_SIN]
                hx, hy, hz = boxes[bi, B_HX], boxes[bi, B_HY], boxes[bi, B_HZ]
                qx = px - boxes[bi, B_CX]
                qy = py - boxes[bi, B_CY]
                lx = qx * c + qy * s
                ly = -qx * s + qy * c
                lz = pz - boxes[bi, B_CZ]
                hb = lz + hz  # height above the box bottom
                if face == 0:
                    nx, ny, nz = c, s, 0.0
                    fu, fw = ly, hy
                elif face == 1:
                    nx, ny, nz = -c, -s, 0.0
                    fu, fw = -ly, hy
                elif face == 2:
                    nx, ny, nz = -s, c, 0.0
                    fu, fw = -lx, hx
                elif face == 3:
                    nx, ny, nz = s, -c, 0.0
                    fu, fw = lx, hx
                elif face == 4:
                    nx, ny, nz = 0.0, 0.0, 1.0
                    fu, fw = lx, hx
                    top = True
                else:
                    nx, ny, nz = 0.0, 0.0, -1.0
                    fu, fw = lx, hx
                seed = np.int64(boxes[bi, B_P0])
                if tex == T_BRICK or tex == T_MODERN:
                    if face == 4:
                        ar, ag, ab = palette[P_ROOF], palette[P_ROOF + 1], palette[P_ROOF + 2]
                    else:
                        floor_h = boxes[bi, B_P1]
                        spacing = boxes[bi, B_P2]
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
                        if tex == T_BRICK:
                            if row < 1.0:
                                if fcu > 0.14 and fcu < 0.86 and fcv > 0.08 and fcv < 0.78 and _hash(icol, 7, seed) < 0.55:
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
                                k = 0.8 + 0.36 * _hash(np.int64(math.floor(bu)), np.int64(ib), seed)
                                if br - ib < 0.14:
                                    k *= 0.78
                                if fcv > 0.86 and fcv < 0.94:
                                    k *= 1.25  # string course
                                ar *= k
                                ag *= k
                                ab *= k
                            if glass:
                                if frame:
                                    ar, ag, ab = 0.55, 0.52, 0.48
                                else:
                                    ar, ag, ab = 0.035, 0.04, 0.05
                                    refl = 0.28
                                    if lights > 0.0 and _hash(icol, irow, seed + 3) < 0.38:
                                        w = lights * (0.7 + 0.6 * _hash(icol, irow, seed + 4))
                                        er, eg, eb = 0.95 * w, 0.62 * w, 0.28 * w
                        else:
                            curtain = _hash(seed, 1, 5) < 0.5
                            if curtain:
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
                                    k = 0.92 + 0.12 * _hash(icol, irow, seed)
                                    if fcu < 0.04:
                                        k *= 0.8
                            if glass:
                                ar, ag, ab = 0.05, 0.075, 0.095
                                refl = 0.3
                                if lights > 0.0 and _hash(icol, irow, seed + 3) < 0.33:
                                    w = lights * (0.6 + 0.6 * _hash(icol, irow, seed + 4))
                                    er, eg, eb = 0.75 * w, 0.8 * w, 0.85 * w
                            else:
                                ar *= k
                                ag *= k
                                ab *= k
                elif tex == T_CAR_BODY:
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
                elif tex == T_CAR_CABIN:
                    if face < 4:
                        fv = hb / (2.0 * hz)
                        if abs(fu) < 0.86 * fw and fv > 0.08 and fv < 0.9:
                            ar, ag, ab = 0.03, 0.035, 0.04
                            refl = 0.3
                elif tex == T_WHEEL:
                    if face == 2 or face == 3:
                        du = fu
                        dv = lz
                        if du * du + dv * dv < 0.2 * hz * hz:
                            ar, ag, ab = 0.3, 0.3, 0.3
                elif tex == T_CLOTHES:
                    k = 0.85 + 0.3 * _vnoise(fu * 6.0, hb * 6.0, seed)
                    ar *= k
                    ag *= k
                    ab *= k
                elif tex == T_HEAD:
                    if hb > 1.25 * hz or (face == 1 and hb > 0.7 * hz):
                        w = _hash(seed, 2, 9)
                        ar, ag, ab = 0.02 + 0.2 * w * w, 0.015 + 0.12 * w * w, 0.01 + 0.05 * w
                elif tex == T_SIGN:
                    if face == 0:
                        a = fu / fw
                        b = lz / hz
                        kind = np.int64(_hash(seed, 3, 3) * 5.0)
                        rr = math.sqrt(a * a + b * b)
                        if kind == 0:  # prohibition: red ring on white
                            if rr > 0.98:
                                ar, ag, ab = 0.6, 0.6, 0.6
                            elif rr > 0.72:
                                ar, ag, ab = 0.55, 0.02, 0.02
                            elif abs(a) < 0.35 and abs(b) < 0.3 and _cell(a, b, 5.0, seed) < 0.5:
                                ar, ag, ab = 0.02, 0.02, 0.02
                            else:
                                ar, ag, ab = 0.8, 0.8, 0.8
                        elif kind == 1:  # mandatory: blue with a white arrow
                            if abs(a) < 0.12 and b > -0.6 and b < 0.3 or (b > 0.2 and abs(a) < 0.55 - (b - 0.2)):
                                ar, ag, ab = 0.85, 0.85, 0.85
                            else:
                                ar, ag, ab = 0.02, 0.09, 0.45
                        elif kind == 2:  # priority: yellow diamond on white
                            dd = abs(a) + abs(b)
                            if dd < 0.55:
                                ar, ag, ab = 0.8, 0.55, 0.02
                            elif dd < 0.75:
                                ar, ag, ab = 0.8, 0.8, 0.8
                            elif dd < 0.85:
                                ar, ag, ab = 0.05, 0.05, 0.05
                            else:
                                ar, ag, ab = 0.8, 0.8, 0.8
                        elif kind == 3:  # stop-like: red with a white band
                            if abs(b) < 0.16 and abs(a) < 0.7:
                                ar, ag, ab = 0.85, 0.85, 0.85
                            else:
                                ar, ag, ab = 0.6, 0.02, 0.02
                        else:  # warning: red triangle on white
                            tri = b > -0.7 and abs(a) < (0.8 - (b + 0.7) * 0.55)
                            inner = b > -0.5 and abs(a) < (0.5 - (b + 0.5) * 0.55)
                            if tri and not inner:
                                ar, ag, ab = 0.6, 0.02, 0.02
                            else:
                                ar, ag, ab = 0.82, 0.82, 0.82
                    else:
                        ar, ag, ab = 0.3, 0.3, 0.31
                elif tex == T_LAMP:
                    if face == 5:
                        ar, ag, ab = 0.7, 0.7, 0.6
                        er, eg, eb = 6.0 * lights, 5.0 * lights, 3.4 * lights
                    elif lights > 0.0:
                        er, eg, eb = 0.3 * lights, 0.25 * lights, 0.15 * lights
                elif tex == T_BARK:
                    k = 0.75 + 0.5 * _cell(fu, hb * 0.5, 4.0, seed)
                    ar *= k
                    ag *= k
                    ab *= k
                elif tex == T_HEDGE:
                    k = 0.6 + 0.7 * _vnoise(px * 3.0 + pz * 2.0, py * 3.0 - pz * 2.0, seed)
                    ar *= k
                    ag *= k
                    ab *= k
                else:  # T_PLAIN: poles, misc
                    k = 0.88 + 0.24 * _cell(fu, hb, 3.0, seed)
                    ar *= k
                    ag *= k
                    ab *= k
                er *= boxes[bi, B_EMIT]
                eg *= boxes[bi, B_EMIT]
                eb *= boxes[bi, B_EMIT]
            else:
                si = pid - sph_base
                cls = np.int64(spheres[si, S_CLS])
                ar, ag, ab = spheres[si, S_R], spheres[si, S_G], spheres[si, S_B]
                ir = 1.0 / spheres[si, S_RAD]
                nx = (px - spheres[si, S_CX]) * ir
                ny = (py - spheres[si, S_CY]) * ir
                nz = (pz - spheres[si, S_CZ]) * ir
                k = 0.5 + 0.8 * _vnoise(px * 2.3 + pz * 1.7, py * 2.3 - pz * 1.7, np.int64(spheres[si, S_SEED]))
                k *= 0.8 + 0.2 * nz
                ar *= k
                ag *= k
                ab *= k
                if snow > 0.0 and nz > 0.35:
                    c = snow * _smooth(0.35, 0.75, nz) * (0.5 + 0.5 * k)
                    ar = ar * (1.0 - c) + 0.8 * c
                    ag = ag * (1.0 - c) + 0.82 * c
                    ab = ab * (1.0 - c) + 0.86 * c
            # ---- weather on surfaces ----------------------------------------------------
            spec = 0.0
            if ground:
                if snow > 0.0:
                    if snow_kind == 1:
                        c = _smooth(0.25, 0.45, snow * (0.55 + 0.55 * _vnoise(px * 0.9, py * 0.9, 31)))
                        g = 0.9 + 0.1 * _cell(px, py, 5.0, 32)
                        ar = ar * (1.0 - c) + 0.86 * g * c
                        ag = ag * (1.0 - c) + 0.88 * g * c
                        ab = ab * (1.0 - c) + 0.92 * g * c
                    elif snow_kind == 2:  # trampled, partly cleared: the paving shows through
                        c = snow * (0.25 + 0.65 * _smooth(0.25, 0.7, _vnoise(px * 1.1, py * 1.1, 33)))
                        ar = ar * (1.0 - c) + 0.55 * c
                        ag = ag * (1.0 - c) + 0.57 * c
                        ab = ab * (1.0 - c) + 0.62 * c
                    else:
                        edge = _smooth(1.1, 0.3, road_edge + 0.4 * _vnoise(px * 1.5, py * 1.5, 34))
                        c = snow * (0.15 + 0.8 * edge)
                        sc = 0.22 + 0.55 * edge  # grey slush in the lanes, white along the kerb
                        ar = ar * (1.0 - c) + sc * c
                        ag = ag * (1.0 - c) + sc * c
                        ab = ab * (1.0 - c) + (sc + 0.03) * c
                if wet > 0.0:
                    pd = puddles * _smooth(0.55, 0.72, _vnoise(px * 0.35, py * 0.35, 41)) if snow_kind == 3 else 0.0
                    k = 1.0 - 0.5 * wet - 0.35 * pd
                    ar *= k
                    ag *= k
                    ab *= k
                    # water film: a blurred, weak mirror on asphalt, a sharp one in puddles;
                    # paving and grass only darken
                    spec = wet * (0.15 + 0.85 * pd) if snow_kind == 3 else 0.05 * wet
                    refl = spec
                    refl_floor = 0.0
            elif top and snow > 0.0:
                c = snow * 0.9
                ar = ar * (1.0 - c) + 0.85 * c
                ag = ag * (1.0 - c) + 0.87 * c
                ab = ab * (1.0 - c) + 0.9 * c
            elif wet > 0.0 and nz > 0.5:
                ar *= 1.0 - 0.3 * wet
                ag *= 1.0 - 0.3 * wet
                ab *= 1.0 - 0.3 * wet
            # ---- lighting ---------------------------------------------------------------
            sun = nx * sdx + ny * sdy + nz * sdz
            if sun < 0.0:
                sun = 0.0
            amb = 0.62 + 0.38 * nz
            lr = env[E_AMB] * amb + env[E_SUN_COL] * sun
            lg = env[E_AMB + 1] * amb + env[E_SUN_COL + 1] * sun
            lb = env[E_AMB + 2] * amb + env[E_SUN_COL + 2] * sun
            if head_i > 0.0:
                hx_ = px - hpx
                hy_ = py - hpy
                hz_ = pz - hpz
                d = math.sqrt(hx_ * hx_ + hy_ * hy_ + hz_ * hz_) + 1e-6
                ca = (hx_ * hdx + hy_ * hdy + hz_ * hdz) / d
                if ca > cos_out:
                    cone = _smooth(cos_out, cos_in, ca)
                    lam = 0.35 - 0.65 * (nx * hx_ + ny * hy_ + nz * hz_) / d
                    if lam > 0.0:
                        w = head_i * cone * lam / (1.0 + (d / head_d0) ** 2)
                        lr += w
                        lg += w * 0.96
                        lb += w * 0.88
            for k in range(row_count[v]):
                li = row_lamps[v, k]
                if u < lbox[li, 0] or u > lbox[li, 1]:
                    continue
                qx = lamps[li, L_X] - px
                qy = lamps[li, L_Y] - py
                qz = lamps[li, L_Z] - pz
                d2 = qx * qx + qy * qy + qz * qz
                rad = lamps[li, L_RAD]
                if d2 > rad * rad:
                    continue
                d = math.sqrt(d2) + 1e-6
                lam = 0.2 + 0.8 * (nx * qx + ny * qy + nz * qz) / d
                if lam <= 0.0:
                    continue
                fall = 1.0 - d2 / (rad * rad)
                down = qz / d  # street lights are cut-off luminaires: most light goes down
                if down < 0.0:
                    down = 0.0
                w = lamps[li, L_I] * lights * lam * fall * (0.15 + 0.85 * down * down) / (1.0 + d2 / (lamp_d0 * lamp_d0))
                lr += w * lamps[li, L_R]
                lg += w * lamps[li, L_G]
                lb += w * lamps[li, L_B]
                if spec > 0.0:
                    # Blinn highlight of the lamp on wet ground
                    hvx = qx / d - vx
                    hvy = qy / d - vy
                    hvz = qz / d - vz
                    hn = math.sqrt(hvx * hvx + hvy * hvy + hvz * hvz) + 1e-9
                    hh = hvz / hn
                    if hh > 0.9:
                        sp = spec * 3.0 * lamps[li, L_I] * lights * hh**40 * fall
                        er += sp * lamps[li, L_R]
                        eg += sp * lamps[li, L_G]
                        eb += sp * lamps[li, L_B]
            cr = ar * lr + er
            cg = ag * lg + eg
            cb = ab * lb + eb
            if refl > 0.0:
                dn = vx * nx + vy * ny + vz * nz
                mx = vx - 2.0 * dn * nx
                my = vy - 2.0 * dn * ny
                mz = vz - 2.0 * dn * nz
                fr = 1.0 + dn
                fr = 0.04 + 0.96 * fr * fr * fr * fr * fr
                if fr > 0.6:
                    fr = 0.6
                sr, sg, sb = _sky(mx, my, mz if mz > 0.02 else 0.02, env, False, time)
                k = refl * (refl_floor + fr)
                cr = cr * (1.0 - k * 0.3) + sr * k
                cg = cg * (1.0 - k * 0.3) + sg * k
                cb = cb * (1.0 - k * 0.3) + sb * k
            if beta > 0.0:
                dist = z * wn - fog_start
                if dist < 0.0:
                    dist = 0.0
                t = math.exp(-beta * dist)
                cr = cr * t + env[E_AIR] * (1.0 - t)
                cg = cg * t + env[E_AIR + 1] * (1.0 - t)
                cb = cb * t + env[E_AIR + 2] * (1.0 - t)
            ir_ = int(cr * LUT_SCALE)
            ig_ = int(cg * LUT_SCALE)
            ib_ = int(cb * LUT_SCALE)
            rgb[v, u, 0] = lut[min(max(ir_, 0), lut_max)]
            rgb[v, u, 1] = lut[min(max(ig_, 0), lut_max)]
            rgb[v, u, 2] = lut[min(max(ib_, 0), lut_max)]
            label[v, u] = cls
            depth[v, u] = z
    _precipitation(env, zbuf, rgb, time, frame_seed, cu, cv)


@njit(cache=True, nogil=True)
def _precipitation(env, zbuf, rgb, time, frame_seed, cu, cv):  # pragma: no cover
    """Rain streaks or snow flakes in front of the scene (they hide pixels, not labels)."""
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
            u0 = _hash(i, 1, frame_seed) * width
            v0 = _hash(i, 2, frame_seed) * height
            h3 = _hash(i, 3, frame_seed)
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
                    rgb[v, u, ch] = np.uint8(rgb[v, u, ch] * (1.0 - a) + col * a)
    else:
        n = int(amount * 520.0 * scale)
        col = 255.0 * bright
        for i in range(n):
            h3 = _hash(i, 3, 77)
            d = 1.0 + 28.0 * h3 * h3
            fall = (0.35 + 0.4 * _hash(i, 4, 77)) * (6.0 / d + 0.2)
            uu = _hash(i, 1, 77) * width + time * width * 0.03 * (_hash(i, 5, 77) - 0.5) * 4.0
            vv = _hash(i, 2, 77) * height + time * height * fall
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
                        rgb[v, u, ch] = np.uint8(rgb[v, u, ch] * (1.0 - a) + col * a)
