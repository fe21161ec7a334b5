"""The world: determinism, CARLA-shaped API, ground truth consistency, weather physics."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sim import render as R
from sim.weather import WEATHER_PRESETS, WeatherParameters
from sim.world import Location, SimConfig, SimError, Transform, World, WorldSettings, decode_depth

SMALL = SimConfig(width=96, height=48)
SENSORS = ("sensor.camera.rgb", "sensor.camera.semantic_segmentation", "sensor.camera.depth")


def _run(world: World, ticks: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    out = []
    for _ in range(ticks):
        world.tick()
        out.append(world.render())
    return out


def test_same_seed_bit_identical_and_different_seed_differs():
    a = _run(World(SMALL, seed=5), 6)
    b = _run(World(SMALL, seed=5), 6)
    c = _run(World(SMALL, seed=6), 6)
    for fa, fb in zip(a, b):
        for x, y in zip(fa, fb):
            assert x.tobytes() == y.tobytes()
    assert any(fa[0].tobytes() != fc[0].tobytes() for fa, fc in zip(a, c))
    assert any(fa[1].tobytes() != fc[1].tobytes() for fa, fc in zip(a, c))


def test_world_uses_no_global_random_state():
    np.random.seed(0)
    a = World(SMALL, seed=2).render()[0]
    np.random.seed(123)
    np.random.random(1000)
    b = World(SMALL, seed=2).render()[0]
    assert np.array_equal(a, b)


def test_reloading_a_town_gives_a_new_layout_but_the_same_sequence_per_seed():
    w1 = World(SMALL, seed=3)
    first = w1.render()[1]
    w1.load_town("oldtown")
    second = w1.render()[1]
    assert not np.array_equal(first, second)
    w2 = World(SMALL, seed=3)
    w2.load_town("oldtown")
    assert np.array_equal(w2.render()[1], second)


def test_tick_listen_and_all_sensors_from_one_render():
    world = World(SMALL, seed=0)
    settings = world.get_settings()
    assert settings.synchronous_mode and settings.fixed_delta_seconds == pytest.approx(0.1)
    settings.fixed_delta_seconds = 0.05
    world.apply_settings(settings)
    assert world.get_settings().fixed_delta_seconds == 0.05
    library = world.get_blueprint_library()
    got: dict[str, list] = {k: [] for k in SENSORS}
    cams = []
    for bp_id in SENSORS:
        bp = library.find(bp_id)
        bp.set_attribute("image_size_x", "80")
        bp.set_attribute("image_size_y", "40")
        cam = world.spawn_actor(bp, Transform(Location(x=1.0, z=1.4)), attach_to=world.ego)
        cam.listen(got[bp_id].append)
        cams.append(cam)
    frames = [world.tick() for _ in range(3)]
    assert frames == [1, 2, 3]
    for bp_id in SENSORS:
        assert [im.frame for im in got[bp_id]] == frames
        assert got[bp_id][-1].width == 80 and got[bp_id][-1].height == 40
        assert got[bp_id][-1].timestamp == pytest.approx(0.15)
    rgb, sem, dep = (got[k][-1] for k in SENSORS)
    assert rgb.array.shape == (40, 80, 3) and rgb.array.dtype == np.uint8
    assert sem.array.dtype == np.uint8 and dep.array.dtype == np.float32
    assert (sem.array == R.SKY).any()
    np.testing.assert_array_equal(sem.array == R.SKY, dep.array == R.SKY_DEPTH)
    # the same render: the direct render of the current state is identical
    assert np.array_equal(world.render(cams[0])[0], rgb.array)
    # CARLA's raw BGRA encodings
    bgra = np.frombuffer(rgb.raw_data, np.uint8).reshape(40, 80, 4)
    assert np.array_equal(bgra[..., 2::-1], rgb.array) and (bgra[..., 3] == 255).all()
    assert np.array_equal(np.frombuffer(sem.raw_data, np.uint8).reshape(40, 80, 4)[..., 2], sem.array)
    decoded = decode_depth(dep.raw_data, 80, 40)
    np.testing.assert_allclose(decoded, dep.array, atol=1000.0 / 2**24 + 1e-4)
    # stop and destroy end the callbacks
    cams[0].stop()
    cams[1].destroy()
    world.tick()
    assert len(got[SENSORS[0]]) == 3 and len(got[SENSORS[1]]) == 3 and len(got[SENSORS[2]]) == 4
    assert cams[2].is_listening and not cams[0].is_listening


def test_api_errors_are_clear():
    world = World(SMALL, seed=0)
    library = world.get_blueprint_library()
    with pytest.raises(ValueError, match="unknown blueprint 'vehicle.tesla'"):
        library.find("vehicle.tesla")
    bp = library.find("sensor.camera.rgb")
    with pytest.raises(ValueError, match="has no attribute 'gamma'"):
        bp.set_attribute("gamma", "2.2")
    with pytest.raises(ValueError, match="image_size_x must be an integer"):
        bp.set_attribute("image_size_x", "wide")
    with pytest.raises(ValueError, match="fov must be"):
        bp.set_attribute("fov", "200")
    with pytest.raises(ValueError, match="only camera blueprints"):
        world.spawn_actor("sensor.camera.rgb")
    with pytest.raises(ValueError, match="fixed_delta_seconds"):
        world.apply_settings(WorldSettings(fixed_delta_seconds=-1.0))
    with pytest.raises(ValueError, match="unknown town 'springfield'; valid towns: newtown, oldtown"):
        world.load_town("springfield")
    with pytest.raises(ValueError, match="unknown weather 'hail'; valid weathers: clear, dusk, night, fog, rain, snow"):
        world.set_weather("hail")
    with pytest.raises(ValueError, match="fog_density must be in"):
        WeatherParameters(fog_density=101)
    with pytest.raises(SimError, match="SimConfig.fov"):
        SimConfig(fov=0.0)
    with pytest.raises(SimError, match="seed"):
        World(SMALL, seed=-1)
    cam = world.spawn_actor(bp, attach_to=world.ego)
    with pytest.raises(SimError, match="callable"):
        cam.listen("not a function")


def test_every_class_appears_over_a_tour():
    cfg = SimConfig(width=128, height=64)
    world = World(cfg, seed=0)
    seen = np.zeros(256, np.int64)
    for town, weathers in (("oldtown", ("clear", "night")), ("newtown", ("rain", "snow"))):
        world.load_town(town)
        for weather in weathers:
            world.set_weather(weather)
            for i in range(60):
                world.tick()
                if i % 3 == 0:
                    seen += np.bincount(world.render()[1].ravel(), minlength=256)
    names = {"road": 0, "sidewalk": 1, "building": 2, "pole": 5, "traffic_sign": 7, "vegetation": 8, "terrain": 9,
             "sky": 10, "person": 11, "car": 13}
    missing = [n for n, k in names.items() if seen[k] == 0]
    assert not missing, f"classes never rendered: {missing}"
    assert seen[[3, 4, 6, 12] + list(range(14, 256))].sum() == 0  # nothing outside the sim's classes


def test_depth_is_consistent_with_geometry():
    world = World(SMALL, seed=1)
    world.tick()
    rgb, label, depth = world.render()
    assert (depth[label == R.SKY] == R.SKY_DEPTH).all()
    assert (depth[label != R.SKY] < world.config.draw_distance * 2).all()
    # road pixels are ground: planar depth = camera height / tan(angle below the horizon)
    f = (SMALL.width / 2) / np.tan(np.radians(SMALL.fov) / 2)
    v = np.arange(SMALL.height)[:, None] + 0.5 - SMALL.height / 2
    expected = SMALL.camera_height * f / np.maximum(v, 1e-6)
    road = (label == R.ROAD) & (v > 4)
    np.testing.assert_allclose(depth[road], np.broadcast_to(expected, depth.shape)[road], rtol=0.03)


def _luma(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def _same_view(weather: WeatherParameters | str, seed: int = 4, ticks: int = 12):
    world = World(SimConfig(width=128, height=64), seed=seed)
    world.set_weather(weather)
    for _ in range(ticks):
        world.tick()
    return world.render()


def test_weather_changes_pixels_not_ground_truth():
    views = {w: _same_view(w) for w in WEATHER_PRESETS}
    labels = [v[1] for v in views.values()]
    depths = [v[2] for v in views.values()]
    for lab, dep in zip(labels[1:], depths[1:]):
        assert np.array_equal(lab, labels[0]) and np.array_equal(dep, depths[0])
    images = {w: v[0] for w, v in views.items()}
    for a in images:
        for b in images:
            if a < b:
                assert np.abs(images[a].astype(int) - images[b].astype(int)).mean() > 4.0, (a, b)


def test_night_is_darker_and_lit_by_headlights_and_street_lights():
    clear_rgb, label, depth = _same_view("clear")
    night_rgb, _, _ = _same_view("night")
    assert _luma(night_rgb).mean() < 0.6 * _luma(clear_rgb).mean()
    world = World(SimConfig(width=128, height=64), seed=4)
    world.set_weather("night")
    gain_near, gain_far, lamp_gain, lamp_lit = [], [], [], []
    for ticks in (12, 40, 80):
        while world.frame < ticks:
            world.tick()
        lit, label, depth = world.render()
        ground = np.isin(label, [R.ROAD, R.SIDEWALK, R.TERRAIN])
        env = world._env.copy()
        world._env[R.E_HEAD_I] = 0.0  # headlights off, street lights on
        no_head = world.render()[0]
        world._env[R.E_LIGHTS] = 0.0  # all artificial light off
        dark = world.render()[0]
        world._env[:] = env
        head = _luma(lit) - _luma(no_head)  # what the headlights add
        gain_near.append(head[ground & (depth < 12.0)])
        gain_far.append(head[ground & (depth > 45.0) & (depth < 120.0)])
        lamp_gain.append((_luma(no_head) - _luma(dark))[ground])
        lamp_lit.append(_luma(no_head)[ground])
    near, far = np.concatenate(gain_near), np.concatenate(gain_far)
    assert len(near) > 100 and len(far) > 20
    assert near.mean() > 12.0 and far.mean() < 0.25 * near.mean(), (near.mean(), far.mean())  # a cone, falling with distance
    assert np.concatenate(lamp_gain).mean() > 15.0  # street lights light the ground ...
    lit_ground = np.concatenate(lamp_lit)
    assert np.percentile(lit_ground, 95) > 2.5 * np.percentile(lit_ground, 5)  # ... in pools, not evenly


def test_fog_lowers_contrast_with_distance_towards_the_airlight():
    clear_rgb, label, depth = _same_view("clear")
    fog_rgb, _, _ = _same_view("fog")
    solid = label != R.SKY
    near = solid & (depth < 15.0)
    far = solid & (depth > 70.0)
    assert near.sum() > 50 and far.sum() > 20
    air_display = _luma(fog_rgb)[label == R.SKY].mean()  # the sky is (almost) pure airlight
    fog_l, clear_l = _luma(fog_rgb), _luma(clear_rgb)
    # far pixels in fog are close to the airlight and have little contrast left
    assert np.abs(fog_l[far] - air_display).mean() < 0.5 * np.abs(clear_l[far] - air_display).mean()
    assert fog_l[far].std() < 0.5 * clear_l[far].std()
    # near pixels keep more of their contrast than far ones
    assert fog_l[near].std() > 2.0 * fog_l[far].std()


def test_snow_whitens_the_ground_and_rain_darkens_it():
    clear_rgb, label, depth = _same_view("clear")
    snow_rgb, _, _ = _same_view("snow")
    bare_rgb, _, _ = _same_view(dataclasses.replace(WEATHER_PRESETS["snow"], snow=0.0, precipitation=0.0))
    ground = np.isin(label, [R.SIDEWALK, R.TERRAIN]) & (depth < 40.0)
    assert ground.sum() > 20
    # same light, snow on the ground: much brighter, and bright in absolute terms
    assert _luma(snow_rgb)[ground].mean() > _luma(bare_rgb)[ground].mean() + 25.0
    assert _luma(snow_rgb)[ground].mean() > 150.0
    chroma = lambda img: img.astype(float).max(-1) - img.astype(float).min(-1)  # noqa: E731
    assert chroma(snow_rgb)[ground].mean() < chroma(clear_rgb)[ground].mean()
    rain = WEATHER_PRESETS["rain"]
    dry = dataclasses.replace(rain, wetness=0.0, precipitation_deposits=0.0, precipitation=0.0)
    wet_rgb, _, _ = _same_view(dataclasses.replace(rain, precipitation=0.0))
    dry_rgb, _, _ = _same_view(dry)
    near_ground = np.isin(label, [R.SIDEWALK, R.TERRAIN]) & (depth < 25.0)
    assert _luma(wet_rgb)[near_ground].mean() < 0.85 * _luma(dry_rgb)[near_ground].mean()
    # ... while the wet road mirrors the bright sky at grazing angles (Fresnel)
    far_road = (label == R.ROAD) & (depth > 30.0)
    assert _luma(wet_rgb)[far_road].mean() > _luma(dry_rgb)[far_road].mean()
    # rain streaks: same weather with precipitation changes pixels but not labels
    streaks, _, _ = _same_view("rain")
    assert np.abs(streaks.astype(int) - wet_rgb.astype(int)).max() > 30


def test_dusk_sky_is_warm():
    clear_rgb, label, _ = _same_view("clear")
    dusk_rgb, _, _ = _same_view("dusk")
    sky = label == R.SKY
    ratio = lambda img: img[sky][:, 0].mean() / max(1.0, img[sky][:, 2].mean())  # noqa: E731
    assert ratio(dusk_rgb) > ratio(clear_rgb) + 0.1
    assert _luma(dusk_rgb).mean() < _luma(clear_rgb).mean()


def test_towns_differ_in_palette_and_layout():
    def stats(town: str) -> tuple[np.ndarray, np.ndarray]:
        world = World(SimConfig(width=96, height=48, town=town), seed=0)
        counts = np.zeros(256)
        colour = []
        for i in range(40):
            world.tick()
            if i % 4 == 0:
                rgb, label, _ = world.render()
                counts += np.bincount(label.ravel(), minlength=256)
                colour.append(rgb[label == R.BUILDING].mean(0))
        return counts / counts.sum(), np.mean(colour, 0)

    old_share, old_colour = stats("oldtown")
    new_share, new_colour = stats("newtown")
    assert new_share[R.TERRAIN] > 2 * old_share[R.TERRAIN]  # verges, medians, lawns
    assert old_colour[0] - old_colour[2] > new_colour[0] - new_colour[2] + 15  # red-brown vs white/glass


def test_the_sims_class_ids_are_the_canonical_label_spaces():
    # sim/ stays free of perception (the floor plan), so it keeps its own ids; they must agree
    from perception.labels import CLASS_ID
    from sim import render

    for name, index in CLASS_ID.items():
        if hasattr(render, name.upper()):
            assert getattr(render, name.upper()) == index, name
    assert {n for n in CLASS_ID if hasattr(render, n.upper())} >= {"road", "sidewalk", "building", "sky", "person", "car"}
