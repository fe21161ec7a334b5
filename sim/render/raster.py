"""Geometry and the z-buffer pass: the camera, projection, box faces and :func:`rasterize`.

:func:`rasterize` fills a depth buffer (planar camera depth, metres) and an id buffer
(which primitive owns each pixel). The small helpers here (pixel rays, world-to-camera,
projection, box face normals) are the one definition of each convention, shared with the
shading pass.

Conventions: world x east, y north, z up, metres; camera space x right, y down, z forward;
pixel (u, v) has its centre at (u + 0.5, v + 0.5).

Example:
    >>> import numpy as np
    >>> cam = camera_array((0.0, 0.0, 1.5), yaw=np.pi / 2, pitch=0.0, width=8, height=4, fov_deg=90.0)
    >>> [round(x, 9) + 0.0 for x in to_camera(0.0, 10.0, -1.5, cam)]  # 10 m ahead on the ground: (right, down, forward)
    [0.0, 1.5, 10.0]
    >>> project(0.0, 1.5, 10.0, cam)  # its pixel position
    (4.0, 2.6)
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from sim.render.layout import (
    B_COS, B_CX, B_CY, B_CZ, B_HX, B_HY, B_HZ, B_SIN, C_CU, C_CV, C_F, C_FAR, C_NEAR, CAM_SIZE, C_DOWN, C_FWD,
    C_POS, C_RIGHT, INF, S_CX, S_CY, S_CZ, S_RAD,
)


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



@njit(cache=True, nogil=True, inline="always")
def image_plane(i, centre, f):  # pragma: no cover - numba
    """Normalised image coordinate of the centre of pixel column/row ``i`` (``x / z`` or ``y / z``)."""
    return (i + 0.5 - centre) / f


@njit(cache=True, nogil=True, inline="always")
def view_ray(xn, yn, cam):  # pragma: no cover - numba
    """World direction through image-plane point (xn, yn), scaled so its forward component is 1."""
    wx = xn * cam[C_RIGHT] + yn * cam[C_DOWN] + cam[C_FWD]
    wy = xn * cam[C_RIGHT + 1] + yn * cam[C_DOWN + 1] + cam[C_FWD + 1]
    wz = xn * cam[C_RIGHT + 2] + yn * cam[C_DOWN + 2] + cam[C_FWD + 2]
    return wx, wy, wz


@njit(cache=True, nogil=True, inline="always")
def to_camera(ox, oy, oz, cam):  # pragma: no cover - numba
    """Rotate a world offset from the camera into camera space: (right, down, forward)."""
    xc = ox * cam[C_RIGHT] + oy * cam[C_RIGHT + 1] + oz * cam[C_RIGHT + 2]
    yc = ox * cam[C_DOWN] + oy * cam[C_DOWN + 1] + oz * cam[C_DOWN + 2]
    zc = ox * cam[C_FWD] + oy * cam[C_FWD + 1] + oz * cam[C_FWD + 2]
    return xc, yc, zc


@njit(cache=True, nogil=True, inline="always")
def project(xc, yc, zc, cam):  # pragma: no cover - numba
    """Pixel position (u, v) of a camera-space point in front of the camera."""
    f = cam[C_F]
    return cam[C_CU] + f * xc / zc, cam[C_CV] + f * yc / zc


@njit(cache=True, nogil=True, inline="always")
def box_face_normal(face, c, s):  # pragma: no cover - numba
    """Outward world normal of box face 0..5 (+heading, -heading, +left, -left, top, bottom).

    ``c, s`` are the cosine and sine of the box yaw.
    """
    if face == 0:
        return c, s, 0.0
    if face == 1:
        return -c, -s, 0.0
    if face == 2:
        return -s, c, 0.0
    if face == 3:
        return s, -c, 0.0
    if face == 4:
        return 0.0, 0.0, 1.0
    return 0.0, 0.0, -1.0


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
        su[k], sv[k] = project(qx[k], qy[k], qz[k], cam)
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
            yn = image_plane(v, cv, f)
            base = ncy * yn + ncz
            for u in range(u0, u1):
                den = ncx * image_plane(u, cu, f) + base
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


@njit(cache=True, nogil=True, inline="always")
def _project_polygon(wx, wy, wz, k, cam, px, py, pz):  # pragma: no cover - numba
    """Store world offset (wx, wy, wz) from the camera as camera-space vertex ``k``."""
    px[k], py[k], pz[k] = to_camera(wx, wy, wz, cam)


@njit(cache=True, nogil=True, inline="always")
def _outside_frustum(xc, yc, zc, r, near, far, tx, ty, kx, ky):  # pragma: no cover - numba
    """True when a bounding sphere (camera-space centre, radius r) misses the view frustum."""
    if zc + r < near or zc - r > far:
        return True
    if xc - zc * tx > r * kx or -xc - zc * tx > r * kx:
        return True
    return yc - zc * ty > r * ky or -yc - zc * ty > r * ky


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
    cx, cy, cz = cam[C_POS], cam[C_POS + 1], cam[C_POS + 2]
    f = cam[C_F]
    cu = cam[C_CU]
    cv = cam[C_CV]
    near = cam[C_NEAR]
    far = cam[C_FAR]
    for v in range(height):
        yn = image_plane(v, cv, f)
        for u in range(width):
            wz = view_ray(image_plane(u, cu, f), yn, cam)[2]
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
            _project_polygon(decal_verts[i, k, 0] - cx, decal_verts[i, k, 1] - cy, -cz, k, cam, px, py, pz)
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
        xc, yc, zc = to_camera(bx - cx, by - cy, bz - cz, cam)
        rad = math.sqrt(hx * hx + hy * hy + hz * hz)
        if _outside_frustum(xc, yc, zc, rad, near, far, tx, ty, kx, ky):
            continue
        for face in range(6):
            nx, ny, nz = box_face_normal(face, c, s)
            # half extent along the normal and the face's two tangents with their half extents
            if face < 2:
                hn = hx
                t1x, t1y, t1z, h1 = -s, c, 0.0, hy
                t2x, t2y, t2z, h2 = 0.0, 0.0, 1.0, hz
            elif face < 4:
                hn = hy
                t1x, t1y, t1z, h1 = c, s, 0.0, hx
                t2x, t2y, t2z, h2 = 0.0, 0.0, 1.0, hz
            else:
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
                _project_polygon(fcx + t1x * h1 * sa + t2x * h2 * sb - cx, fcy + t1y * h1 * sa + t2y * h2 * sb - cy,
                                 fcz + t1z * h1 * sa + t2z * h2 * sb - cz, k, cam, px, py, pz)
            m = _clip_near(px, py, pz, 4, near, qx, qy, qz)
            if m < 3:
                continue
            ncx, ncy, ncz = to_camera(nx, ny, nz, cam)
            _fill(qx, qy, qz, m, cam, zbuf, idbuf, box_base + 6 * i + face, True, ncx, ncy, ncz, -side, 0, su, sv, ea, eb, ec)
    sph_base = box_base + 6 * n_boxes
    for i in range(spheres.shape[0]):
        r = spheres[i, S_RAD]
        xc, yc, zc = to_camera(spheres[i, S_CX] - cx, spheres[i, S_CY] - cy, spheres[i, S_CZ] - cz, cam)
        if _outside_frustum(xc, yc, zc, r, near, far, tx, ty, kx, ky):
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
            yn = image_plane(v, cv, f)
            for u in range(u0, u1 + 1):
                xn = image_plane(u, cu, f)
                b = xn * xc + yn * yc + zc
                d2 = xn * xn + yn * yn + 1.0
                disc = b * b - d2 * cc
                if disc < 0.0:
                    continue
                t = (b - math.sqrt(disc)) / d2
                if t > near and t < zbuf[v, u]:
                    zbuf[v, u] = t
                    idbuf[v, u] = pid
