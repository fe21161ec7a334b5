"""Shared layout of the render kernels: class ids, texture kinds, and the columns of every table.

The scene tables (decals, boxes, spheres, lamps), the camera array, the environment array
(filled by :func:`sim.weather.environment`) and the town palette are plain float64 arrays;
these constants name their columns so the kernels and the Python side agree.

Example:
    >>> from sim.render.layout import BOX_COLS, B_EMIT, CAM_SIZE, C_FAR
    >>> B_EMIT == BOX_COLS - 1 and C_FAR == CAM_SIZE - 1
    True
"""
from __future__ import annotations

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

# --- ground kinds for snow cover (the surface record's snow_kind; 0: not ground) -----------
SNOW_TERRAIN, SNOW_SIDEWALK, SNOW_ROAD = 1, 2, 3

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

__all__ = [name for name in dir() if name.isupper()]
