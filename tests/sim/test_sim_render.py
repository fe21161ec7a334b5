"""The rasteriser and shading kernels on hand-built scenes, against plain numpy references."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sim import render as R
from sim.actors import box_table
from sim.render import drop_stale_kernel_cache
from sim.render.lighting import sky
from sim.render.weather_fx import fog_blend, fog_transmittance
from sim.weather import WEATHER_PRESETS, environment, tone_lut

W, H = 64, 32


def _camera(pitch: float = 0.0, z: float = 1.5) -> np.ndarray:
    return R.camera_array((0.0, 0.0, z), yaw=math.pi / 2, pitch=pitch, width=W, height=H, fov_deg=90.0)  # looking north


def _empty(cols: int) -> np.ndarray:
    return np.zeros((0, cols))


def _raster(cam, dv=None, da=None, boxes=None, spheres=None):
    dv = np.zeros((0, 4, 2)) if dv is None else dv
    da = _empty(R.DECAL_COLS) if da is None else da
    boxes = _empty(R.BOX_COLS) if boxes is None else boxes
    spheres = _empty(R.SPHERE_COLS) if spheres is None else spheres
    zbuf = np.empty((H, W), np.float32)
    ids = np.empty((H, W), np.int32)
    R.rasterize(cam, dv, da, boxes, spheres, zbuf, ids)
    return zbuf, ids


def _shade(cam, ids, zbuf, da=None, boxes=None, spheres=None, weather="clear"):
    w = WEATHER_PRESETS[weather]
    rgb = np.empty((H, W, 3), np.uint8)
    label = np.empty((H, W), np.uint8)
    depth = np.empty((H, W), np.float32)
    R.shade(cam, environment(w), np.full(R.PALETTE_SIZE, 0.2), tone_lut(w), ids, zbuf,
            _empty(R.DECAL_COLS) if da is None else da, _empty(R.BOX_COLS) if boxes is None else boxes,
            _empty(R.SPHERE_COLS) if spheres is None else spheres, _empty(R.LAMP_COLS),
            np.array([0.0, 2.0, 0.7, 0.0, 1.0, 0.0]), 0.0, 1, rgb, label, depth)
    return rgb, label, depth


def test_ground_plane_depth_matches_numpy_reference_exactly():
    for pitch in (0.0, math.radians(-4.0), math.radians(3.0)):
        cam = _camera(pitch)
        zbuf, ids = _raster(cam)
        f, cu, cv = cam[R.C_F], cam[R.C_CU], cam[R.C_CV]
        u = np.arange(W)[None, :]
        v = np.arange(H)[:, None]
        xn = (u + 0.5 - cu) / f
        yn = (v + 0.5 - cv) / f
        wz = xn * cam[R.C_RIGHT + 2] + yn * cam[R.C_DOWN + 2] + cam[R.C_FWD + 2]  # (H, W)
        with np.errstate(divide="ignore"):
            t = -cam[2] / wz
        ground = (wz < -1e-9) & (t < cam[R.C_FAR])
        assert ground.any() and (~ground).any()
        assert np.array_equal(ids == 0, ground)
        assert np.array_equal(zbuf[ground], t[ground].astype(np.float32))
        assert (ids[~ground] == -1).all()


def test_nearer_box_occludes_farther_and_depth_is_its_distance():
    cam = _camera()
    far = box_table(0.0, 30.0, 3.0, 2.0, 4.0, 3.0, math.pi / 2, R.BUILDING, np.full(3, 0.5), R.T_PLAIN)
    near = box_table(0.0, 10.0, 1.5, 0.5, 0.5, 1.5, math.pi / 2, R.CAR, np.full(3, 0.5), R.T_PLAIN)
    boxes = np.concatenate([far, near])
    zbuf, ids = _raster(cam, boxes=boxes)
    rgb, label, depth = _shade(cam, ids, zbuf, boxes=boxes)
    centre = (H // 2, W // 2)
    assert label[centre] == R.CAR
    # the near box's face towards the camera is the plane y = 9.5: planar depth 9.5 m
    assert depth[centre] == pytest.approx(9.5, abs=1e-4)
    # the far box shows around the near one at its own front face y = 30 - 2 = 28
    assert label[H // 2, W // 2 + 3] == R.BUILDING
    assert depth[H // 2, W // 2 + 3] == pytest.approx(28.0, abs=1e-3)
    # drawing order must not matter: swap the boxes
    zbuf2, ids2 = _raster(cam, boxes=boxes[::-1].copy())
    assert np.array_equal(zbuf, zbuf2)


def test_box_depth_matches_ray_plane_reference():
    cam = _camera(pitch=math.radians(2.0))
    box = box_table(1.0, 12.0, 2.0, 1.5, 2.0, 2.0, math.pi / 2 + 0.3, R.BUILDING, np.full(3, 0.5), R.T_PLAIN)
    zbuf, ids = _raster(cam, boxes=box)
    hit = ids >= 1
    assert hit.sum() > 50
    # numpy reference: intersect each pixel ray with the box (slab method in the box frame)
    f, cu, cv = cam[R.C_F], cam[R.C_CU], cam[R.C_CV]
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    xn, yn = (u + 0.5 - cu) / f, (v + 0.5 - cv) / f
    d = xn[..., None] * cam[3:6] + yn[..., None] * cam[6:9] + cam[9:12]  # (H, W, 3) rays with forward = 1
    c, s = box[0, R.B_COS], box[0, R.B_SIN]
    o = cam[:3] - box[0, :3]
    ol = np.array([o[0] * c + o[1] * s, -o[0] * s + o[1] * c, o[2]])
    dl = np.stack([d[..., 0] * c + d[..., 1] * s, -d[..., 0] * s + d[..., 1] * c, d[..., 2]], -1)
    h = box[0, R.B_HX : R.B_HZ + 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-h - ol) / dl
        t2 = (h - ol) / dl
    tmin = np.minimum(t1, t2).max(-1)
    tmax = np.maximum(t1, t2).min(-1)
    ref_hit = (tmax >= tmin) & (tmin > 0)
    agree = hit == ref_hit
    assert agree.mean() > 0.99  # only silhouette pixels may differ
    both = hit & ref_hit
    np.testing.assert_allclose(zbuf[both], tmin[both], rtol=1e-5)


def test_sphere_depth_and_sky_depth():
    cam = _camera()
    sph = np.zeros((1, R.SPHERE_COLS))
    sph[0, :4] = (0.0, 20.0, 1.5, 3.0)
    sph[0, R.S_CLS] = R.VEGETATION
    sph[0, R.S_R : R.S_B + 1] = 0.2
    sph[0, R.S_TEX] = R.T_FOLIAGE
    zbuf, ids = _raster(cam, spheres=sph)
    rgb, label, depth = _shade(cam, ids, zbuf, spheres=sph)
    assert label[H // 2, W // 2] == R.VEGETATION
    xn = yn = 0.5 / cam[R.C_F]  # the centre pixel's ray (x right, y down, z forward = 1)
    b, d2, cc = 20.0, xn * xn + yn * yn + 1.0, 20.0**2 - 3.0**2
    assert depth[H // 2, W // 2] == pytest.approx((b - math.sqrt(b * b - d2 * cc)) / d2, rel=1e-6)
    sky = label == R.SKY
    assert sky[0].all() and (depth[sky] == R.SKY_DEPTH).all()
    assert (depth[~sky] < R.SKY_DEPTH).all() and (depth[~sky] > 0).all()


def test_decals_paint_ground_in_layer_order_without_changing_depth():
    cam = _camera()
    dv = np.array([[[-3.0, 2.0], [3.0, 2.0], [3.0, 40.0], [-3.0, 40.0]],
                   [[-1.0, 5.0], [1.0, 5.0], [1.0, 9.0], [-1.0, 9.0]]])
    da = np.zeros((2, R.DECAL_COLS))
    da[:, R.D_CLS] = (R.ROAD, R.SIDEWALK)
    da[:, R.D_TEX] = R.T_KERB
    da[:, R.D_R : R.D_B + 1] = 0.3
    z0, _ = _raster(cam)
    zbuf, ids = _raster(cam, dv=dv, da=da)
    assert np.array_equal(z0, zbuf)
    rgb, label, depth = _shade(cam, ids, zbuf, da=da)
    assert set(np.unique(label).tolist()) == {R.ROAD, R.SIDEWALK, R.TERRAIN, R.SKY}
    # the second decal (drawn later) wins where both cover the ground: pixel looking at y ~ 7
    row = int(round(cam[R.C_CV] + cam[R.C_F] * 1.5 / 7.0 - 0.5))
    assert label[row, W // 2] == R.SIDEWALK
    assert label[row, 2] != R.SIDEWALK


def test_apply_fog_matches_numpy_reference_exactly():
    rng = np.random.default_rng(0)
    radiance = rng.random((500, 3))
    dist = rng.random(500) * 400.0
    air = np.array([0.7, 0.72, 0.75])
    out = R.apply_fog(radiance, dist, 0.03, 2.0, air)
    t = np.array([math.exp(x) for x in -0.03 * np.maximum(dist - 2.0, 0.0)])  # libm exp, as numba's
    ref = radiance * t[:, None] + air * (1.0 - t[:, None])
    assert np.array_equal(out, ref)
    # far away everything converges to the airlight
    far = R.apply_fog(radiance, np.full(500, 1000.0), 0.03, 0.0, air)
    np.testing.assert_allclose(far, np.broadcast_to(air, far.shape), atol=1e-12)


def test_camera_array_is_orthonormal():
    cam = R.camera_array((1.0, 2.0, 1.4), yaw=0.7, pitch=0.1, width=256, height=128, fov_deg=90.0)
    basis = np.stack([cam[3:6], cam[6:9], cam[9:12]])
    np.testing.assert_allclose(basis @ basis.T, np.eye(3), atol=1e-12)
    assert cam[R.C_F] == pytest.approx(128.0)


def test_kernel_fog_is_apply_fog_on_sky_and_surfaces():
    # one fog law: the shaded sky and a plain surface, rebuilt in numpy around R.apply_fog, match exactly
    w = WEATHER_PRESETS["fog"]
    env, lut = environment(w), tone_lut(w)
    assert env[R.E_BETA] > 0.0 and env[R.E_FOG_START] > 0.0
    assert env[R.E_LIGHTS] == 0.0 and env[R.E_SNOW] == 0.0 and env[R.E_PRECIP] == 0.0  # no lamps, snow or rain
    cam = _camera(pitch=math.radians(-6.0))
    albedo = np.array([0.3, 0.25, 0.2])
    # a wide flat slab under the camera; the cabin texture leaves its top face plain
    slab = box_table(0.0, 30.0, -0.5, 40.0, 40.0, 1.0, math.pi / 2, R.CAR, albedo, R.T_CAR_CABIN)
    zbuf, ids = _raster(cam, boxes=slab)
    rgb, label, depth = _shade(cam, ids, zbuf, boxes=slab, weather="fog")
    sky_px, top_px = ids == -1, ids == 1 + 4  # box 0, face 4 (top)
    assert sky_px.sum() > 100 and top_px.sum() > 100

    f, cu, cv = cam[R.C_F], cam[R.C_CU], cam[R.C_CV]
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    xn, yn = (u + 0.5 - cu) / f, (v + 0.5 - cv) / f
    wx = xn * cam[R.C_RIGHT] + yn * cam[R.C_DOWN] + cam[R.C_FWD]  # (H, W) view rays, forward component 1
    wy = xn * cam[R.C_RIGHT + 1] + yn * cam[R.C_DOWN + 1] + cam[R.C_FWD + 1]
    wz = xn * cam[R.C_RIGHT + 2] + yn * cam[R.C_DOWN + 2] + cam[R.C_FWD + 2]
    wn = np.sqrt(wx * wx + wy * wy + wz * wz)  # (H, W)
    air = env[R.E_AIR : R.E_AIR + 3]

    def display(radiance):  # (N, 3) linear -> (N, 3) uint8 through the tone LUT
        return lut[np.clip((radiance * R.LUT_SCALE).astype(np.int64), 0, lut.shape[0] - 1)]

    # sky: the sky's radiance, fogged over SKY_DEPTH along the ray
    vx, vy, vz = (c[sky_px] / wn[sky_px] for c in (wx, wy, wz))
    sky_rad = np.array([sky(a, b, c, env, True, 0.0) for a, b, c in zip(vx, vy, vz)])  # (N, 3)
    fogged = R.apply_fog(sky_rad, R.SKY_DEPTH * wn[sky_px], env[R.E_BETA], env[R.E_FOG_START], air)
    assert np.array_equal(rgb[sky_px], display(fogged))
    assert not np.array_equal(rgb[sky_px], display(sky_rad))  # the fog does change the sky
    # slab top (normal up): wet-darkened albedo under ambient plus sun, fogged over its distance
    sun = max(0.0 * env[R.E_SUN_DIR] + 0.0 * env[R.E_SUN_DIR + 1] + 1.0 * env[R.E_SUN_DIR + 2], 0.0)
    light = env[R.E_AMB : R.E_AMB + 3] * (0.62 + 0.38 * 1.0) + env[R.E_SUN_COL : R.E_SUN_COL + 3] * sun
    surface = albedo * (1.0 - 0.3 * env[R.E_WET]) * light  # (3,)
    dist = zbuf[top_px].astype(np.float64) * wn[top_px]
    fogged = R.apply_fog(np.tile(surface, (dist.shape[0], 1)), dist, env[R.E_BETA], env[R.E_FOG_START], air)
    assert np.array_equal(rgb[top_px], display(fogged))
    assert len(np.unique(rgb[top_px], axis=0)) > 3  # the fog grades the slab with distance
    assert (label[top_px] == R.CAR).all() and np.array_equal(depth[top_px], zbuf[top_px])


def test_fog_helpers_are_the_law():
    # t = exp(-beta max(0, d - start)); I = J t + A (1 - t)
    assert fog_transmittance(0.05, 1.0, 2.0) == 1.0  # before the fog starts nothing is lost
    assert fog_transmittance(0.05, 12.0, 2.0) == math.exp(-0.05 * 10.0)
    t = fog_transmittance(0.05, 12.0, 2.0)
    assert fog_blend(0.2, 0.9, t) == 0.2 * t + 0.9 * (1.0 - t)
    assert fog_blend(0.2, 0.9, 1.0) == 0.2 and fog_blend(0.2, 0.9, 0.0) == 0.9


def test_drop_stale_kernel_cache_follows_the_sources(tmp_path):
    (tmp_path / "kernel.py").write_text("x = 1\n")
    (tmp_path / "helper.py").write_text("y = 2\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    assert drop_stale_kernel_cache(tmp_path)  # first sight: no stamp yet
    (cache / "kernel.shade-10.py311.nbi").write_bytes(b"index")
    (cache / "kernel.shade-10.py311.1.nbc").write_bytes(b"code")
    (cache / "kernel.cpython-311.pyc").write_bytes(b"pyc")
    assert not drop_stale_kernel_cache(tmp_path)  # unchanged sources: the cache stays
    assert (cache / "kernel.shade-10.py311.nbi").exists()
    (tmp_path / "helper.py").write_text("y = 3\n")  # a helper in another file changes
    assert drop_stale_kernel_cache(tmp_path)
    assert sorted(p.name for p in cache.iterdir()) == ["kernel.cpython-311.pyc", "kernel_sources.sha256"]
    assert not drop_stale_kernel_cache(tmp_path)
