"""The shading pass: :func:`shade` turns the z-buffer pass into the image, label and depth.

Per pixel it takes the owning primitive's surface record (:mod:`sim.render.materials`),
puts the weather on it (:mod:`sim.render.weather_fx`), lights it (sun and ambient, the
ego's headlights, street lamps, mirrored sky: :mod:`sim.render.lighting`), fogs it with
the one fog law and maps it through the tone LUT (:mod:`sim.render.post`); sky pixels get
the sky's radiance, fogged the same way. Rain or snow is drawn over the image last.

Example:
    >>> import numpy as np
    >>> from sim.render import DECAL_COLS, BOX_COLS, SPHERE_COLS, LAMP_COLS, PALETTE_SIZE, camera_array, rasterize
    >>> from sim.weather import WEATHER_PRESETS, environment, tone_lut
    >>> cam = camera_array((0.0, 0.0, 1.5), yaw=np.pi / 2, pitch=0.0, width=8, height=4, fov_deg=90.0)
    >>> zbuf = np.empty((4, 8), np.float32); ids = np.empty((4, 8), np.int32)
    >>> rasterize(cam, np.zeros((0, 4, 2)), np.zeros((0, DECAL_COLS)), np.zeros((0, BOX_COLS)),
    ...           np.zeros((0, SPHERE_COLS)), zbuf, ids)
    >>> rgb = np.empty((4, 8, 3), np.uint8); label = np.empty((4, 8), np.uint8); depth = np.empty((4, 8), np.float32)
    >>> w = WEATHER_PRESETS["clear"]
    >>> shade(cam, environment(w), np.full(PALETTE_SIZE, 0.2), tone_lut(w), ids, zbuf, np.zeros((0, DECAL_COLS)),
    ...       np.zeros((0, BOX_COLS)), np.zeros((0, SPHERE_COLS)), np.zeros((0, LAMP_COLS)),
    ...       np.array([0.0, 2.0, 0.7, 0.0, 1.0, 0.0]), 0.0, 1, rgb, label, depth)
    >>> label[0].tolist(), label[3].tolist()  # sky (10) above the horizon, terrain (9) below
    ([10, 10, 10, 10, 10, 10, 10, 10], [9, 9, 9, 9, 9, 9, 9, 9])
"""
from __future__ import annotations

import math

from numba import njit

from sim.render.layout import (
    C_CU, C_CV, C_F, C_POS, E_BETA, E_FOG_START, E_HEAD_COS_IN, E_HEAD_COS_OUT, E_HEAD_D0, E_HEAD_I, E_LAMP_D0,
    E_LIGHTS, E_PUDDLE, E_SNOW, E_WET, L_B, L_G, L_R, SKY, SKY_DEPTH,
)
from sim.render.lighting import (
    headlight, lamp_rows, lamp_screen_boxes, sky, sky_reflection, street_lamp, sun_and_ambient,
)
from sim.render.materials import box_surface, decal_surface, sphere_surface, terrain_surface
from sim.render.post import precipitation, to_display
from sim.render.raster import image_plane, view_ray
from sim.render.weather_fx import fog_rgb, fog_transmittance, surface_weather


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
    cx, cy, cz = cam[C_POS], cam[C_POS + 1], cam[C_POS + 2]
    f = cam[C_F]
    cu = cam[C_CU]
    cv = cam[C_CV]
    box_base = 1 + decal_attr.shape[0]
    sph_base = box_base + 6 * boxes.shape[0]
    lights = env[E_LIGHTS]
    beta = env[E_BETA]
    fog_start = env[E_FOG_START]
    wet = env[E_WET]
    puddles = env[E_PUDDLE]
    snow = env[E_SNOW]
    lut_max = lut.shape[0] - 1
    n_lamps = lamps.shape[0] if lights > 0.0 else 0
    lbox = lamp_screen_boxes(lamps, n_lamps, cam, width, height)
    row_count, row_lamps = lamp_rows(lbox, n_lamps, height)
    head_i = env[E_HEAD_I] * lights
    cos_in = env[E_HEAD_COS_IN]
    cos_out = env[E_HEAD_COS_OUT]
    head_d0 = env[E_HEAD_D0]
    lamp_d0 = env[E_LAMP_D0]
    for v in range(height):
        yn = image_plane(v, cv, f)
        for u in range(width):
            wx, wy, wz = view_ray(image_plane(u, cu, f), yn, cam)
            wn = math.sqrt(wx * wx + wy * wy + wz * wz)
            vx = wx / wn
            vy = wy / wn
            vz = wz / wn
            pid = idbuf[v, u]
            if pid < 0:
                cr, cg, cb = sky(vx, vy, vz, env, True, time)
                if beta > 0.0:
                    cr, cg, cb = fog_rgb(cr, cg, cb, fog_transmittance(beta, SKY_DEPTH * wn, fog_start), env)
                rgb[v, u, 0] = to_display(cr, lut, lut_max)
                rgb[v, u, 1] = to_display(cg, lut, lut_max)
                rgb[v, u, 2] = to_display(cb, lut, lut_max)
                label[v, u] = SKY
                depth[v, u] = SKY_DEPTH
                continue
            z = zbuf[v, u]
            px = cx + wx * z
            py = cy + wy * z
            pz = cz + wz * z
            # ---- material --------------------------------------------------------------
            if pid == 0:
                rec = terrain_surface(px, py, palette)
            elif pid < box_base:
                rec = decal_surface(pid - 1, px, py, decal_attr, palette)
            elif pid < sph_base:
                q = pid - box_base
                bi = q // 6
                rec = box_surface(bi, q - 6 * bi, px, py, pz, boxes, palette, lights)
            else:
                rec = sphere_surface(pid - sph_base, px, py, pz, spheres, snow)
            cls, ar, ag, ab, er, eg, eb, nx, ny, nz, refl, refl_floor, ground, top, snow_kind, road_edge = rec
            # ---- weather on the surface ---------------------------------------------------
            ar, ag, ab, refl, refl_floor, spec = surface_weather(ar, ag, ab, refl, refl_floor, px, py, nz, ground, top,
                                                                 snow_kind, road_edge, snow, wet, puddles)
            # ---- lighting ---------------------------------------------------------------
            lr, lg, lb = sun_and_ambient(nx, ny, nz, env)
            if head_i > 0.0:
                hr, hg, hb = headlight(px, py, pz, nx, ny, nz, head, head_i, cos_in, cos_out, head_d0)
                if hr > 0.0:
                    lr += hr
                    lg += hg
                    lb += hb
            for k in range(row_count[v]):
                li = row_lamps[v, k]
                if u < lbox[li, 0] or u > lbox[li, 1]:
                    continue
                hit, w, sp = street_lamp(li, px, py, pz, nx, ny, nz, vx, vy, vz, spec, lamps, lights, lamp_d0)
                if hit:
                    lr += w * lamps[li, L_R]
                    lg += w * lamps[li, L_G]
                    lb += w * lamps[li, L_B]
                    if sp > 0.0:
                        er += sp * lamps[li, L_R]
                        eg += sp * lamps[li, L_G]
                        eb += sp * lamps[li, L_B]
            cr = ar * lr + er
            cg = ag * lg + eg
            cb = ab * lb + eb
            if refl > 0.0:
                cr, cg, cb = sky_reflection(cr, cg, cb, vx, vy, vz, nx, ny, nz, refl, refl_floor, env, time)
            # ---- fog and tone ---------------------------------------------------------------
            if beta > 0.0:
                cr, cg, cb = fog_rgb(cr, cg, cb, fog_transmittance(beta, z * wn, fog_start), env)
            rgb[v, u, 0] = to_display(cr, lut, lut_max)
            rgb[v, u, 1] = to_display(cg, lut, lut_max)
            rgb[v, u, 2] = to_display(cb, lut, lut_max)
            label[v, u] = cls
            depth[v, u] = z
    precipitation(env, zbuf, rgb, time, frame_seed, cu, cv)
