"""The closed loop's controller and dynamics: VehicleControl and LaneKeeperConfig checks, the
LaneKeeper on hand-made label maps, the ego steered through the World (sign convention,
autopilot refusal, determinism), and a lane keeper that stays in lane on ground truth but
leaves the road when blind."""
from __future__ import annotations

import math
from collections import deque
from dataclasses import replace

import numpy as np
import pytest

from sim.control import LaneGuide, LaneKeeper, LaneKeeperConfig, VehicleControl
from sim.towns import TOWN_NAMES, get_town
from sim.world import SimConfig, SimError, World

SKY = 10  # canonical trainId of the sky: never drivable
SMALL = SimConfig(width=64, height=32)


def road_map(width: int, height: int, centre_m: float, road_m: float, fov: float = 90.0,
             camera_height: float = 1.4) -> np.ndarray:
    """A flat straight road ``road_m`` wide whose centre lies ``centre_m`` metres right of the
    camera, seen by a level pinhole camera (as LaneKeeper back-projects); sky elsewhere."""
    focal = (width / 2) / math.tan(math.radians(fov) / 2)
    labels = np.full((height, width), SKY, np.uint8)
    for v in range(height):
        below = v + 0.5 - height / 2
        if below <= 0:
            continue
        ahead = camera_height * focal / below
        across = (np.arange(width) + 0.5 - width / 2) * ahead / focal  # metres right of the camera
        labels[v, np.abs(across - centre_m) <= road_m / 2] = 0
    return labels


def replace_town(config: SimConfig, town: str) -> SimConfig:
    return replace(config, town=town)


def keeper_for(config: SimConfig, keeper: LaneKeeperConfig | None = None) -> LaneKeeper:
    return LaneKeeper(keeper or LaneKeeperConfig(), config.fov, config.camera_height, config.width, config.height,
                      config.camera_forward)


GUIDE = LaneGuide(target_offset_m=0.0, span_width_m=8.0, lane_width_m=3.5)


# ---- VehicleControl / LaneKeeperConfig validation ------------------------------------------------
@pytest.mark.parametrize("kwargs, field", [
    ({"steer": 1.5}, "steer"), ({"steer": -1.01}, "steer"), ({"steer": True}, "steer"), ({"steer": "0.1"}, "steer"),
    ({"steer": float("nan")}, "steer"), ({"throttle": -0.1}, "throttle"), ({"throttle": 1.2}, "throttle"),
    ({"throttle": True}, "throttle"), ({"brake": 2}, "brake"), ({"brake": None}, "brake"),
])
def test_vehicle_control_refuses_out_of_range_or_non_numbers(kwargs, field):
    with pytest.raises(ValueError, match=f"VehicleControl.{field}"):
        VehicleControl(**kwargs)


def test_vehicle_control_accepts_its_whole_range():
    assert VehicleControl(steer=-1).steer == -1 and VehicleControl(steer=1.0).steer == 1.0
    full = VehicleControl(throttle=1.0, steer=0.25, brake=0, hand_brake=True, reverse=True)
    assert (full.throttle, full.steer, full.brake, full.hand_brake, full.reverse) == (1.0, 0.25, 0, True, True)
    assert VehicleControl() == VehicleControl(steer=0.0)  # frozen dataclass: compared by value


@pytest.mark.parametrize("kwargs, message", [
    ({"near_m": 12.0, "far_m": 8.0}, "0 < near_m < far_m"), ({"near_m": 0.0}, "0 < near_m < far_m"),
    ({"near_m": 5.0, "far_m": 5.0}, "0 < near_m < far_m"),
    ({"span_tolerance": 0.0}, "span_tolerance"), ({"span_tolerance": 1.0}, "span_tolerance"),
    ({"min_rows": 1}, "min_rows"), ({"min_rows": 3.0}, "min_rows"),
    ({"outlier_m": 0.0}, "outlier_m"), ({"max_curvature": -0.1}, "max_curvature"),
    ({"smoothing": 0.0}, "smoothing"), ({"smoothing": 1.1}, "smoothing"),
    ({"blind_decay": -0.1}, "blind_decay"), ({"blind_decay": 1.5}, "blind_decay"),
])
def test_lane_keeper_config_refuses_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LaneKeeperConfig(**kwargs)


def test_lane_keeper_config_edges_that_are_allowed():
    LaneKeeperConfig(smoothing=1.0, blind_decay=0.0, min_rows=2)
    LaneKeeperConfig(blind_decay=1.0)


# ---- LaneKeeper on hand-made maps -----------------------------------------------------------------
def test_lane_points_find_the_road_centre_in_metres():
    keeper = keeper_for(SimConfig())
    ahead, across = keeper.lane_points(road_map(256, 128, 1.0, 8.0), GUIDE)
    assert len(ahead) >= 10 and np.all(ahead >= 4.0 - 0.5) and np.all(ahead <= 14.0 + 0.5)  # near_m .. far_m
    assert np.allclose(across, 1.0, atol=0.05)  # to within a pixel's width at these distances
    _, centred = keeper.lane_points(road_map(256, 128, 0.0, 8.0), GUIDE)
    assert np.allclose(centred, 0.0, atol=1e-9)


def test_lane_points_put_the_lane_target_metres_left_of_the_span_centre():
    keeper = keeper_for(SimConfig())
    labels = road_map(256, 128, 0.0, 8.0)
    _, across = keeper.lane_points(labels, LaneGuide(target_offset_m=1.75, span_width_m=8.0, lane_width_m=3.5))
    assert np.allclose(across, -1.75, atol=1e-6)  # the lane lies left: its centre is at -1.75 m (right is +)


def test_one_edge_in_view_places_the_centre_half_a_span_from_it():
    """A road wider than the near rows' view on the left: only its right edge is seen there."""
    keeper = keeper_for(SMALL)
    labels = road_map(64, 32, -3.0, 8.0)
    assert labels[31, 0] == 0 and labels[31, 63] != 0  # the nearest row: road to the image's left border
    _, across = keeper.lane_points(labels, GUIDE)
    assert len(across) >= 3 and np.allclose(across, -3.0, atol=0.3)


@pytest.mark.parametrize("config", [SimConfig(), SMALL])
def test_steer_sign_follows_the_road_centre(config):
    w, h = config.width, config.height
    assert keeper_for(config).control(road_map(w, h, 0.0, 8.0), GUIDE).steer == 0.0
    right = keeper_for(config).control(road_map(w, h, 1.0, 8.0), GUIDE)
    left = keeper_for(config).control(road_map(w, h, -1.0, 8.0), GUIDE)
    assert right.steer > 0.01 and left.steer < -0.01  # CARLA: positive steers right, towards the road
    assert right.steer == pytest.approx(-left.steer, rel=0.2)


def test_a_lane_left_of_the_road_centre_steers_left():
    keeper = keeper_for(SimConfig())
    steer = keeper.control(road_map(256, 128, 0.0, 8.0), LaneGuide(1.75, 8.0, 3.5)).steer
    assert steer < -0.01


def test_smoothing_mixes_the_new_command_with_the_last():
    labels = road_map(256, 128, 1.0, 8.0)
    raw = keeper_for(SimConfig(), LaneKeeperConfig(smoothing=1.0)).control(labels, GUIDE).steer
    keeper = keeper_for(SimConfig(), LaneKeeperConfig(smoothing=0.5))
    first, second = keeper.control(labels, GUIDE).steer, keeper.control(labels, GUIDE).steer
    assert raw > 0
    assert first == pytest.approx(0.5 * raw, abs=2e-6) and second == pytest.approx(0.75 * raw, abs=2e-6)
    assert keeper.frames == 2 and keeper.blind_frames == 0


def test_a_map_without_road_is_blind_and_the_last_command_decays():
    keeper = keeper_for(SimConfig(), LaneKeeperConfig(blind_decay=0.8))
    steer = keeper.control(road_map(256, 128, 1.5, 8.0), GUIDE).steer
    assert steer > 0 and keeper.blind_frames == 0
    before = keeper.steer
    sky = np.full((128, 256), SKY, np.uint8)
    assert keeper.lane_points(sky, GUIDE)[0].size == 0
    first = keeper.control(sky, GUIDE).steer
    second = keeper.control(sky, GUIDE).steer
    assert keeper.steer == pytest.approx(before * 0.8 ** 2)
    assert first == pytest.approx(before * 0.8, abs=1e-6) and second == pytest.approx(before * 0.64, abs=1e-6)
    assert keeper.blind_frames == 2 and keeper.frames == 3


def test_a_road_much_wider_than_the_map_span_is_not_followed():
    """A cross street (or a prediction that paints everything road): blind, not steered by."""
    keeper = keeper_for(SimConfig())
    ahead, _ = keeper.lane_points(road_map(256, 128, 2.0, 16.0), GUIDE)
    assert len(ahead) == 0
    keeper.control(road_map(256, 128, 2.0, 16.0), GUIDE)
    assert keeper.blind_frames == 1 and keeper.steer == 0.0


def test_only_road_pixels_count_as_drivable():
    """Sidewalk (1) in place of the road gives nothing to follow."""
    labels = road_map(256, 128, 1.0, 8.0)
    sidewalk = np.where(labels == 0, 1, labels).astype(np.uint8)
    keeper = keeper_for(SimConfig())
    assert len(keeper.lane_points(sidewalk, GUIDE)[0]) == 0
    assert len(keeper.lane_points(labels, GUIDE)[0]) > 0


def test_a_label_map_of_the_wrong_size_is_refused():
    keeper = keeper_for(SMALL)
    with pytest.raises(ValueError, match=r"expected \(32, 64\)"):
        keeper.lane_points(np.zeros((64, 32), np.uint8), GUIDE)


# ---- the ego in the World -------------------------------------------------------------------------
def test_apply_control_is_refused_while_the_autopilot_drives():
    world = World(SMALL, seed=0)
    with pytest.raises(SimError, match="set_autopilot"):
        world.ego.apply_control(VehicleControl(steer=0.1))
    world.ego.set_autopilot(False)
    with pytest.raises(SimError, match="VehicleControl"):
        world.ego.apply_control(0.1)  # type: ignore[arg-type]
    world.ego.apply_control(VehicleControl(steer=0.1))
    assert world.ego.get_control().steer == 0.1
    world.ego.set_autopilot(True)
    assert world.ego.get_control() == VehicleControl()  # handing back resets the command
    with pytest.raises(SimError, match="autopilot"):
        world.ego.apply_control(VehicleControl(steer=0.1))


def test_open_loop_keeps_no_driving_record():
    world = World(SMALL, seed=0)
    for _ in range(20):
        world.tick()
    assert world.driving.as_dict()["controlled_frames"] == 0 and world.driving.lane_departures == 0


def lateral_after(steer: float, ticks: int, seed: int = 0) -> float:
    """The ego's lateral offset from its lane's centre (m, positive left) after ``ticks`` of a constant steer."""
    world = World(replace_town(SMALL, "newtown"), seed=seed)
    world.ego.set_autopilot(False)
    world.ego.apply_control(VehicleControl(steer=steer))
    for _ in range(ticks):
        world.tick()
    return world._lat - world._ego_lane


def test_positive_steer_moves_the_car_right_and_negative_left():
    right, straight, left = lateral_after(0.3, 8), lateral_after(0.0, 8), lateral_after(-0.3, 8)
    assert right < -1.0  # lateral position is left-positive: a right turn makes it fall
    assert left > 1.0
    assert right < straight < left
    assert abs(straight) < 0.3  # straight ahead stays about where the autopilot handed over


def test_the_heading_follows_the_steer():
    world = World(replace_town(SMALL, "newtown"), seed=0)
    world.ego.set_autopilot(False)
    yaw0 = world.ego.get_transform().rotation.yaw
    world.ego.apply_control(VehicleControl(steer=0.3))
    for _ in range(3):
        world.tick()
    assert world._psi < 0  # clockwise: to the right
    route_yaw = math.degrees(world.route.point(np.array([world._ego_s]), world._lat)[2][0])
    assert world.ego.get_transform().rotation.yaw == pytest.approx(route_yaw + math.degrees(world._psi))
    assert world.ego.get_transform().rotation.yaw != pytest.approx(yaw0)


def drive(seed: int, controls: list[float]) -> tuple[dict, float]:
    world = World(replace_town(SMALL, "newtown"), seed=seed)
    world.ego.set_autopilot(False)
    for steer in controls:
        world.ego.apply_control(VehicleControl(steer=steer))
        world.tick()
    return world.driving.as_dict(), world._lat


def test_same_seed_same_controls_same_driving_record():
    controls = [round(0.25 * math.sin(i / 6.0), 6) for i in range(80)]
    a, b = drive(3, controls), drive(3, controls)
    assert a == b
    assert a[0]["controlled_frames"] == 80
    other = drive(3, [round(0.25 * math.sin(i / 6.0 + 1.0), 6) for i in range(80)])
    assert other != a  # the record does depend on the controls


def test_same_seed_same_predictions_same_closed_loop():
    def run() -> tuple[dict, int, list[float]]:
        world = World(SMALL, seed=5)
        world.ego.set_autopilot(False)
        keeper = keeper_for(SMALL)
        seg = world.spawn_actor(world.get_blueprint_library().find("sensor.camera.semantic_segmentation"),
                                attach_to=world.ego)
        images: deque = deque()
        seg.listen(images.append)
        world.tick()
        steers = []
        for _ in range(60):
            control = keeper.control(images[-1].array, world.lane_guide())
            world.ego.apply_control(control)
            steers.append(control.steer)
            world.tick()
        return world.driving.as_dict(), keeper.blind_frames, steers

    first = run()
    assert first == run()
    assert any(s != 0.0 for s in first[2])  # it did steer


@pytest.mark.parametrize("town", TOWN_NAMES)
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_the_lane_guide_puts_the_ego_lane_inside_its_span(town, seed):
    world = World(replace_town(SimConfig(width=8, height=4), town), seed=seed)
    guide = world.lane_guide()
    style = get_town(town)
    assert guide.lane_width_m == style.lane_width
    assert abs(guide.target_offset_m) + guide.lane_width_m / 2 <= guide.span_width_m / 2 + 1e-6
    if style.median_width > 0:
        assert guide.span_width_m == pytest.approx(style.road_half_width - style.median_width / 2)
    else:
        assert guide.span_width_m == pytest.approx(2 * style.road_half_width)


# ---- the closed loop over the real world ------------------------------------------------------------
def closed_loop(seed: int, labels_of, frames: int = 300, town: str = "newtown", see: bool = True) -> tuple[dict, LaneKeeper]:
    """Steer the ego ``frames`` ticks at the default image size by ``labels_of(ground truth)``
    (``see=False``: no camera is rendered and ``labels_of`` gets None)."""
    config = replace_town(SimConfig(), town)
    world = World(config, seed=seed)
    world.ego.set_autopilot(False)
    keeper = keeper_for(config)
    images: deque = deque()
    if see:
        seg = world.spawn_actor(world.get_blueprint_library().find("sensor.camera.semantic_segmentation"),
                                attach_to=world.ego)
        seg.listen(images.append)
    tick = world.tick()
    for _ in range(frames):
        truth = None
        if see:
            image = images.popleft()
            assert image.frame == tick  # the segmentation of this very tick
            truth = image.array
        world.ego.apply_control(keeper.control(labels_of(truth), world.lane_guide()))
        tick = world.tick()
    return world.driving.as_dict(), keeper


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_steering_by_ground_truth_keeps_the_car_in_its_lane(seed):
    driving, keeper = closed_loop(seed, lambda truth: truth)
    assert driving["controlled_frames"] == 301  # every tick with the autopilot off, the first one too
    assert driving["lane_departures"] == 0 and driving["seconds_off_road"] == 0.0
    assert driving["seconds_out_of_lane"] == 0.0 and driving["max_lane_offset_m"] < 0.5
    assert keeper.frames == 300 and keeper.blind_frames < 75  # it mostly saw the road


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_steering_blind_or_by_noise_leaves_the_road(seed):
    sky = np.full((128, 256), SKY, np.uint8)
    blind, keeper = closed_loop(seed, lambda _: sky, see=False)
    assert keeper.blind_frames == 300
    assert blind["seconds_off_road"] > 0 and blind["lane_departures"] >= 1
    rng = np.random.default_rng(seed)
    noise, _ = closed_loop(seed, lambda _: rng.integers(0, 19, (128, 256), dtype=np.uint8), see=False)
    assert noise["seconds_off_road"] > 0 and noise["lane_departures"] >= 1
