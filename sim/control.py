"""Closing the loop: a lateral controller that steers the ego from a predicted label map.

Open loop, the world drives the ego along its lane whatever the perception sees. Closed
loop, :class:`LaneKeeper` reads the *predicted* road pixels of each frame (the student's,
never the ground truth), estimates where the car stands across its road and where the road
heads, and steers through the CARLA-shaped ``vehicle.apply_control(VehicleControl(steer=...))``;
:class:`sim.world.World` then moves the car by a kinematic bicycle model.

How one frame becomes a steering command (pure pursuit on the predicted road):

1. Rows of the label map that see the ground ``near_m`` .. ``far_m`` ahead are back-projected
   onto a flat road (pinhole camera of known field of view, height and mount: what any car
   knows of its own camera). Row ``v`` below the horizon sees the ground ``Z = h f / (v - v0)``
   ahead.
2. In each row, the run of road pixels under the car's forward column gives the road's edges
   in metres; an edge against a car or a person (a parked car hides the kerb) counts as
   unseen. Where both edges are seen and the span's width is near the map's, the span's
   centre is their middle; where one is unseen, the centre lies half the map's width from the
   edge seen.
3. The lane's centre lies ``target`` metres from the span's centre (the map's
   :class:`LaneGuide`, static per town and lane: HD-map knowledge, not per-frame truth). Each
   row's lane-centre point gives a pure-pursuit curvature ``2 x / (x^2 + d^2)`` (``x`` across,
   ``d`` ahead of the rear axle); the median over the rows is the path to steer, and the wheel
   angle is ``atan(wheelbase * curvature)``.

A frame with too few usable rows is *blind*: the last command decays towards straight.

Example:
    >>> import numpy as np
    >>> keeper = LaneKeeper(LaneKeeperConfig(), fov_deg=90.0, camera_height=1.4, width=64, height=32)
    >>> guide = LaneGuide(target_offset_m=0.0, span_width_m=8.0, lane_width_m=3.5)
    >>> road = np.full((32, 64), 10, np.uint8); road[17:, :] = 0   # sky above, road below: nothing to follow
    >>> keeper.control(road, guide).steer, keeper.blind_frames
    (0.0, 1)
    >>> VehicleControl(steer=1.5)
    Traceback (most recent call last):
    ...
    ValueError: VehicleControl.steer must be a number in [-1, 1] (positive turns right), got 1.5
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

# trainIds of the canonical label space (the sim renders them; sim imports none of our packages)
ROAD = 0
ON_THE_ROAD = (11, 12, 13, 14, 15, 16, 17, 18)  # person, rider, car, truck, bus, train, motorcycle, bicycle
DRIVABLE = np.zeros(256, bool)  # what the road's edges are found around: the road, and what stands on it
DRIVABLE[ROAD] = True
OCCLUDES = np.zeros(256, bool)  # a road edge against one of these is the thing's edge, not the kerb
OCCLUDES[list(ON_THE_ROAD)] = True
MAX_STEER_DEG = 35.0  # the wheel angle of steer = 1 (CARLA's default cars: about 35 to 70 degrees)
WHEELBASE_M = 2.7


@dataclass(frozen=True)
class VehicleControl:
    """CARLA's ``carla.VehicleControl``: the lateral part is what the built-in world obeys.

    ``steer`` in [-1, 1], positive to the right (CARLA's sign); throttle and brake are
    accepted and the world's own speed control keeps driving the ego.

    Example:
        >>> VehicleControl(steer=-0.2).steer
        -0.2
    """

    throttle: float = 0.0
    steer: float = 0.0
    brake: float = 0.0
    hand_brake: bool = False
    reverse: bool = False

    def __post_init__(self) -> None:
        value = self.steer
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not -1.0 <= value <= 1.0:
            raise ValueError(f"VehicleControl.steer must be a number in [-1, 1] (positive turns right), got {value!r}")
        for name in ("throttle", "brake"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise ValueError(f"VehicleControl.{name} must be a number in [0, 1], got {value!r}")


@dataclass(frozen=True)
class LaneGuide:
    """Where the ego's lane lies across the road it drives on (the map's knowledge).

    Attributes:
        target_offset_m: the lane's centre from the centre of the drivable span the car is in,
            metres, positive to the left (the span is the whole road where no median splits
            it, else the car's own carriageway).
        span_width_m: that span's width, kerb to kerb (or kerb to median).
        lane_width_m: the lane's width.
    """

    target_offset_m: float
    span_width_m: float
    lane_width_m: float


@dataclass(frozen=True)
class LaneKeeperConfig:
    """Settings of :class:`LaneKeeper`.

    Example:
        >>> LaneKeeperConfig(near_m=12.0, far_m=8.0)
        Traceback (most recent call last):
        ...
        ValueError: LaneKeeperConfig needs 0 < near_m < far_m, got near_m=12.0, far_m=8.0
    """

    near_m: float = 4.0  # the nearest ground the rows see (m ahead of the camera)
    far_m: float = 14.0  # the farthest
    span_tolerance: float = 0.15  # a row's span may differ from the map's width by this fraction at most
    min_rows: int = 3  # usable rows a frame needs, else it is blind
    outlier_m: float = 1.0  # a row whose lane centre is this far from the rows' median is dropped
    max_curvature: float = 0.05  # 1/m: a sharper path than this is not a road's (radius 20 m)
    smoothing: float = 0.5  # weight of the new command against the last (1 = no smoothing)
    blind_decay: float = 0.8  # a blind frame keeps this fraction of the last command

    def __post_init__(self) -> None:
        if not 0.0 < self.near_m < self.far_m:
            raise ValueError(f"LaneKeeperConfig needs 0 < near_m < far_m, got near_m={self.near_m}, far_m={self.far_m}")
        if not 0.0 < self.span_tolerance < 1.0:
            raise ValueError(f"LaneKeeperConfig.span_tolerance must be in (0, 1), got {self.span_tolerance}")
        if not isinstance(self.min_rows, int) or self.min_rows < 2:
            raise ValueError(f"LaneKeeperConfig.min_rows must be an int >= 2, got {self.min_rows!r}")
        if self.outlier_m <= 0 or self.max_curvature <= 0:
            raise ValueError(f"LaneKeeperConfig outlier_m and max_curvature must be > 0, got {self.outlier_m}, {self.max_curvature}")
        if not 0.0 < self.smoothing <= 1.0:
            raise ValueError(f"LaneKeeperConfig.smoothing must be in (0, 1], got {self.smoothing}")
        if not 0.0 <= self.blind_decay <= 1.0:
            raise ValueError(f"LaneKeeperConfig.blind_decay must be in [0, 1], got {self.blind_decay}")


class LaneKeeper:
    """Steers from predicted label maps (module docstring); one per camera.

    Args:
        config: the controller's settings.
        fov_deg: the camera's horizontal field of view.
        camera_height: the camera above the road (m).
        width, height: the label maps' size (pixels).
        camera_forward: the camera ahead of the car's centre (m).
    """

    def __init__(self, config: LaneKeeperConfig, fov_deg: float, camera_height: float, width: int, height: int,
                 camera_forward: float = 1.0) -> None:
        self.config = config
        self.rear_axle_m = camera_forward + WHEELBASE_M / 2  # the camera ahead of the rear axle
        self.width, self.height = width, height
        self.focal = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)  # pixels
        horizon = height / 2.0  # the optical axis is level
        first = horizon + camera_height * self.focal / config.far_m
        last = horizon + camera_height * self.focal / config.near_m
        self.rows = np.arange(max(int(math.ceil(first - 0.5)), 0), min(int(last - 0.5), height - 1) + 1)  # (R,)
        self.ground_m = camera_height * self.focal / np.maximum(self.rows + 0.5 - horizon, 1e-6)  # (R,) metres ahead
        self.steer = 0.0
        self.frames = 0
        self.blind_frames = 0

    def lane_points(self, labels: np.ndarray, guide: LaneGuide) -> tuple[np.ndarray, np.ndarray]:
        """The lane centre seen in each usable row: (metres ahead of the camera (N,), metres
        to the right of the camera (N,)).

        Shape:
            labels (H, W) uint8 canonical trainIds
        """
        if labels.shape != (self.height, self.width):
            raise ValueError(f"LaneKeeper: label map of shape {labels.shape}, expected {(self.height, self.width)}")
        centre_col = self.width // 2
        drivable = DRIVABLE[labels[self.rows]]  # (R, W)
        span = guide.span_width_m
        lo, hi = (1.0 - self.config.span_tolerance) * span, (1.0 + self.config.span_tolerance) * span
        rows: list[tuple[float, float, bool]] = []  # (metres ahead, lane centre across, both edges seen)
        for r, row in enumerate(drivable):
            if not row[centre_col]:
                continue
            left_seen = not row[: centre_col + 1].all()
            right_seen = not row[centre_col:].all()
            z = float(self.ground_m[r])
            scale = z / self.focal  # metres per pixel across, at this row
            left = (centre_col - int(np.argmin(row[centre_col::-1])) + 1) if left_seen else 0
            right = (centre_col + int(np.argmin(row[centre_col:]))) if right_seen else self.width
            x_left = (left - self.width / 2.0) * scale  # metres, positive right
            x_right = (right - self.width / 2.0) * scale
            if x_right - x_left > hi:
                continue  # wider than the road even where in view: a cross street, or a broken prediction
            label_row = labels[self.rows[r]]
            left_seen = left_seen and not OCCLUDES[label_row[left - 1]]  # a car at the edge hides the kerb
            right_seen = right_seen and not OCCLUDES[label_row[right]]
            if left_seen and right_seen:
                if x_right - x_left < lo:
                    continue
                centre = 0.5 * (x_left + x_right)
            elif right_seen:
                centre = x_right - span / 2
            elif left_seen:
                centre = x_left + span / 2
            else:
                continue
            rows.append((z, centre - guide.target_offset_m, left_seen and right_seen))  # the lane lies target left of the span's centre
        if sum(both for _, _, both in rows) >= self.config.min_rows:  # both edges in view: no use for the map's width
            rows = [row for row in rows if row[2]]
        ahead = np.asarray([z for z, _, _ in rows])  # (N,)
        across = np.asarray([x for _, x, _ in rows])  # (N,)
        if len(across):
            keep = np.abs(across - np.median(across)) <= self.config.outlier_m  # rows that disagree with the rest
            ahead, across = ahead[keep], across[keep]
        return ahead, across

    def control(self, labels: np.ndarray, guide: LaneGuide, speed: float = 0.0) -> VehicleControl:
        """The steering command for one predicted label map (a blind frame decays the last).
        ``speed`` (m/s) is accepted for controllers that use it; pure pursuit does not."""
        self.frames += 1
        ahead, across = self.lane_points(labels, guide)
        if len(ahead) < self.config.min_rows:
            self.blind_frames += 1
            self.steer *= self.config.blind_decay
        else:
            behind = ahead + self.rear_axle_m  # (N,) metres ahead of the rear axle
            curvature = float(np.median(2.0 * across / (across * across + behind * behind)))  # 1/m, > 0 turns right
            curvature = float(np.clip(curvature, -self.config.max_curvature, self.config.max_curvature))
            wanted = math.degrees(math.atan(WHEELBASE_M * curvature)) / MAX_STEER_DEG
            mix = self.config.smoothing
            self.steer = float(np.clip(mix * wanted + (1.0 - mix) * self.steer, -1.0, 1.0))
        return VehicleControl(steer=round(self.steer, 6) if abs(self.steer) > 1e-9 else 0.0)
