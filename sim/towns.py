"""Town styles: the palette and the layout statistics of each procedural town.

A town is not a fixed map: :class:`~sim.world.World` grows the road, buildings, trees and
traffic from a seed, and a :class:`TownStyle` says which distributions to draw from. The two
towns differ in palette (brick and red-brown vs white and glass, dark vs light asphalt, round
green trees vs dark conifers and hedges) and in layout (narrow two-lane streets with parked
cars, dense facades and short blocks vs a four-lane avenue with a grass median, verges,
set-back towers and long blocks).

Example:
    >>> style = get_town("oldtown")
    >>> style.lanes_per_side, style.facade
    (1, 'brick')
    >>> sorted(TOWNS)
    ['newtown', 'oldtown']
    >>> get_town("atlantis")
    Traceback (most recent call last):
    ...
    ValueError: unknown town 'atlantis'; valid towns: newtown, oldtown
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RGB = tuple[int, int, int]  # sRGB 0..255


def srgb_to_linear(colour: RGB | np.ndarray) -> np.ndarray:
    """Convert sRGB 0..255 colours to linear 0..1 (the renderer shades in linear light).

    Shape:
        (..., 3) -> (..., 3) float64

    Example:
        >>> srgb_to_linear((255, 0, 128)).round(3).tolist()
        [1.0, 0.0, 0.216]
    """
    c = np.asarray(colour, dtype=np.float64) / 255.0  # (..., 3)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


@dataclass(frozen=True)
class TownStyle:
    """What one town looks like and how it is laid out (all lengths in metres).

    Example:
        >>> s = get_town("newtown")
        >>> s.road_half_width > get_town("oldtown").road_half_width
        True
    """

    name: str
    # --- road cross-section -------------------------------------------------------------
    lanes_per_side: int  # travel lanes in each direction
    lane_width: float  # one travel lane
    parking_width: float  # kerbside parking strip each side (0 = none)
    median_width: float  # grass median between the carriageways (0 = painted centre line)
    verge_width: float  # grass strip between kerb and sidewalk (0 = none)
    sidewalk_width: tuple[float, float]  # drawn per chunk from this range
    cross_lanes_per_side: int  # lanes of the cross streets
    # --- route shape ----------------------------------------------------------------------
    straight_length: tuple[float, float]  # length of a straight piece
    curve_radius: tuple[float, float]  # radius of a bend
    curve_angle_deg: tuple[float, float]  # how far a bend turns
    block_length: tuple[float, float]  # distance between intersections on straights
    # --- buildings ------------------------------------------------------------------------
    facade: str  # "brick" or "modern": selects the facade texture
    setback: tuple[float, float]  # gap between sidewalk and facade
    building_length: tuple[float, float]  # frontage along the street
    building_depth: tuple[float, float]
    building_height: tuple[float, float]
    gap_probability: float  # chance of an empty lot after a building
    gap_length: tuple[float, float]
    park_probability: float  # chance that a lot is a small park (grass and trees)
    park_length: tuple[float, float]
    floor_height: float  # storey height (window rows)
    window_spacing: tuple[float, float]  # window columns
    background_height: tuple[float, float]  # the second row that fills the skyline
    # --- street furniture and vegetation ----------------------------------------------------
    tree_kind: str  # "round" (deciduous) or "conifer" (stacked dark spheres)
    tree_spacing: tuple[float, float]
    hedge_probability: float  # chance of a hedge along a set-back lot
    lamp_spacing: float  # street lights (both sides, staggered)
    sign_probability: float  # chance of a traffic sign per 40 m chunk and side
    parked_probability: float  # chance a parking slot holds a car
    # --- people and traffic -----------------------------------------------------------------
    pedestrian_density: float  # pedestrians per 100 m of sidewalk (both sides together)
    crossing_probability: float  # chance a crosswalk has a pedestrian waiting to cross
    traffic_density: float  # moving cars per 100 m of road (all lanes together)
    # --- palette (sRGB) -------------------------------------------------------------------
    facade_colours: tuple[RGB, ...]
    roof_colour: RGB
    ground_floor_colours: tuple[RGB, ...]
    asphalt: RGB
    marking: RGB
    centre_marking: RGB
    paving: tuple[RGB, ...]
    kerb: RGB
    grass: tuple[RGB, RGB]  # two tones mixed by low-frequency noise
    foliage: tuple[RGB, ...]
    trunk: RGB
    hedge: RGB

    @property
    def carriageway_width(self) -> float:
        """Width of one direction's asphalt (lanes + parking)."""
        return self.lanes_per_side * self.lane_width + self.parking_width

    @property
    def road_half_width(self) -> float:
        """Distance from the route centreline to the kerb."""
        return self.median_width / 2.0 + self.carriageway_width

    @property
    def cross_half_width(self) -> float:
        """Half the width of a cross street's asphalt."""
        return self.cross_lanes_per_side * self.lane_width


OLDTOWN = TownStyle(
    name="oldtown",
    lanes_per_side=1,
    lane_width=3.1,
    parking_width=2.2,
    median_width=0.0,
    verge_width=0.0,
    sidewalk_width=(2.6, 3.6),
    cross_lanes_per_side=1,
    straight_length=(50.0, 140.0),
    curve_radius=(70.0, 160.0),
    curve_angle_deg=(12.0, 35.0),
    block_length=(60.0, 100.0),
    facade="brick",
    setback=(0.0, 0.6),
    building_length=(7.0, 15.0),
    building_depth=(9.0, 14.0),
    building_height=(8.0, 17.0),
    gap_probability=0.12,
    gap_length=(1.5, 5.0),
    park_probability=0.1,
    park_length=(14.0, 28.0),
    floor_height=3.1,
    window_spacing=(2.4, 3.2),
    background_height=(12.0, 22.0),
    tree_kind="round",
    tree_spacing=(9.0, 15.0),
    hedge_probability=0.0,
    lamp_spacing=25.0,
    sign_probability=0.8,
    parked_probability=0.55,
    pedestrian_density=12.0,
    crossing_probability=0.5,
    traffic_density=4.0,
    facade_colours=(
        (150, 72, 52), (128, 58, 44), (170, 96, 66), (112, 62, 50), (160, 110, 80),
        (138, 80, 60), (186, 120, 86), (120, 48, 40),
    ),
    roof_colour=(95, 55, 45),
    ground_floor_colours=((70, 52, 44), (90, 70, 56), (60, 58, 62)),
    asphalt=(62, 62, 66),
    marking=(215, 215, 205),
    centre_marking=(215, 215, 205),
    paving=((150, 128, 118), (138, 132, 128), (160, 140, 124)),
    kerb=(172, 168, 160),
    grass=((70, 115, 45), (98, 120, 58)),
    foliage=((58, 104, 40), (76, 120, 46), (46, 90, 36), (90, 126, 52)),
    trunk=(84, 64, 48),
    hedge=(54, 96, 44),
)

NEWTOWN = TownStyle(
    name="newtown",
    lanes_per_side=2,
    lane_width=3.5,
    parking_width=0.0,
    median_width=3.0,
    verge_width=2.0,
    sidewalk_width=(2.6, 3.4),
    cross_lanes_per_side=2,
    straight_length=(110.0, 260.0),
    curve_radius=(180.0, 380.0),
    curve_angle_deg=(10.0, 28.0),
    block_length=(120.0, 190.0),
    facade="modern",
    setback=(4.0, 12.0),
    building_length=(18.0, 36.0),
    building_depth=(14.0, 24.0),
    building_height=(14.0, 42.0),
    gap_probability=0.4,
    gap_length=(6.0, 18.0),
    park_probability=0.12,
    park_length=(20.0, 40.0),
    floor_height=3.7,
    window_spacing=(1.6, 2.2),
    background_height=(25.0, 60.0),
    tree_kind="conifer",
    tree_spacing=(11.0, 17.0),
    hedge_probability=0.6,
    lamp_spacing=25.0,
    sign_probability=0.75,
    parked_probability=0.0,
    pedestrian_density=9.0,
    crossing_probability=0.4,
    traffic_density=10.0,
    facade_colours=(
        (226, 226, 222), (236, 234, 228), (206, 212, 218), (190, 200, 206), (240, 240, 240),
        (214, 208, 196),
    ),
    roof_colour=(150, 150, 150),
    ground_floor_colours=((60, 70, 80), (200, 200, 196), (90, 96, 104)),
    asphalt=(112, 112, 116),
    marking=(236, 236, 236),
    centre_marking=(230, 190, 60),
    paving=((178, 176, 170), (190, 188, 182), (168, 168, 166)),
    kerb=(200, 198, 194),
    grass=((110, 140, 60), (150, 150, 80)),
    foliage=((34, 72, 48), (40, 82, 56), (28, 64, 44)),
    trunk=(96, 78, 60),
    hedge=(44, 86, 50),
)

TOWNS: dict[str, TownStyle] = {OLDTOWN.name: OLDTOWN, NEWTOWN.name: NEWTOWN}
TOWN_NAMES: tuple[str, ...] = tuple(sorted(TOWNS))


def get_town(name: str) -> TownStyle:
    """Look up a town by name; unknown names raise ValueError listing the valid ones."""
    if not isinstance(name, str) or name not in TOWNS:
        raise ValueError(f"unknown town {name!r}; valid towns: {', '.join(TOWN_NAMES)}")
    return TOWNS[name]
