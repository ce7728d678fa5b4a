"""The numbers of the ``simpler`` scene (pure data, no simulator).

Where the robot, table, cabinet and parked objects are, what every object is made of, and what
each variant value looks like.  The scene builder, the task rules, the variants and the scripted
expert all read them from here, so a number exists once and the plain-Python parts of the suite
need no simulator to know it.  Changing any number changes results: bump ``SIMPLER_VERSION`` in
:mod:`vlaeval.envs.simpler.spec`.

World frame: table top at z = 0, robot base at ``ROBOT_XY`` facing +x.
"""

from __future__ import annotations

ROBOT_XY = (-0.615, 0.0)
FLOOR_Z = -0.76
CABINET_POSE = (0.30, 0.0, -0.04)  # cabinet origin in drawer tasks (front face at x = 0.15; base sunk 4 cm)
CABINET_PARK = (3.0, 3.0, FLOOR_Z)  # the cabinet's place when the task has no drawer (outside every view)
PARK = (3.0, 0.0)  # parked objects rest on the floor behind the cameras (outside every view frustum)
SIM_FREQ, CONTROL_FREQ = 100, 5
MAX_INSTRUCTION_LENGTH = 256
AMBIENT = 0.3  # ambient light intensity at the base lighting (scaled by LIGHTING)

# ---- appearance tables (variant axis value -> parameters) -----------------------------------

BACKGROUNDS = {
    "base": {"wall": (0.82, 0.82, 0.78), "floor": (0.45, 0.42, 0.40)},
    "alt_background_1": {"wall": (0.35, 0.45, 0.65), "floor": (0.30, 0.30, 0.35)},
    "alt_background_2": {"wall": (0.55, 0.70, 0.45), "floor": (0.60, 0.52, 0.38)},
}
LIGHTING = {"base": 1.0, "brighter": 1.64, "darker": 0.36}  # SimplerEnv 2.2 -> 3.6 / 0.8
TABLES = {
    "base": (0.62, 0.50, 0.38),
    "alt_table_1": (0.28, 0.28, 0.30),
    "alt_table_2": (0.86, 0.86, 0.90),
}
CABINETS = {
    "base": (0.55, 0.40, 0.28),
    "alt_cabinet_1": (0.90, 0.90, 0.88),
    "alt_cabinet_2": (0.20, 0.25, 0.35),
}
DISTRACTOR_COUNT = {"none": 0, "less": 3, "more": 5}
CAMERAS = {  # eye, target
    "base": ((0.50, 0.30, 0.80), (-0.25, 0.0, 0.0)),
    "alt_camera_1": ((0.50, -0.36, 0.72), (-0.25, 0.0, 0.0)),
    "alt_camera_2": ((0.62, 0.05, 1.00), (-0.25, 0.0, 0.0)),
}

# ---- bodies -----------------------------------------------------------------------------------

#: name -> (shape, size, colour); sizes are half-extents / radii (metres).
OBJECTS: dict[str, tuple[str, tuple[float, ...], tuple[float, float, float]]] = {
    "coke_can": ("can", (0.033, 0.061), (0.80, 0.05, 0.05)),
    "pepsi_can": ("can", (0.033, 0.061), (0.10, 0.20, 0.75)),
    "sevenup_can": ("can", (0.033, 0.061), (0.15, 0.65, 0.20)),
    "apple": ("sphere", (0.03,), (0.75, 0.12, 0.10)),
    "orange": ("sphere", (0.032,), (0.95, 0.55, 0.05)),
    "sponge": ("box", (0.045, 0.03, 0.022), (0.20, 0.75, 0.65)),
    "green_cube": ("box", (0.02, 0.02, 0.02), (0.10, 0.70, 0.15)),
    "yellow_cube": ("box", (0.02, 0.02, 0.02), (0.95, 0.85, 0.10)),
    "spoon": ("box", (0.06, 0.012, 0.008), (0.75, 0.75, 0.78)),
    "carrot": ("capsule", (0.016, 0.04), (0.95, 0.45, 0.05)),
    "eggplant": ("capsule", (0.024, 0.045), (0.35, 0.10, 0.45)),
}
#: kinematic receptacles: name -> (half extents or radius/half height, colour)
RECEPTACLES = {
    "towel": ((0.07, 0.07, 0.003), (0.30, 0.45, 0.80)),
    "plate": ((0.075, 0.006), (0.95, 0.95, 0.95)),
    "basket": ((0.10, 0.09, 0.035), (0.95, 0.80, 0.15)),
}
DISTRACTORS = [
    ("box", (0.025, 0.025, 0.03), (0.6, 0.2, 0.6)),
    ("can", (0.028, 0.05), (0.9, 0.9, 0.2)),
    ("box", (0.04, 0.02, 0.015), (0.2, 0.5, 0.9)),
    ("sphere", (0.028,), (0.9, 0.4, 0.6)),
    ("can", (0.03, 0.04), (0.3, 0.8, 0.8)),
]
DISTRACTOR_NAMES = tuple(f"distractor_{i}" for i in range(len(DISTRACTORS)))
#: body -> its parking spot (index into a grid of 8 per row from ``PARK``): objects from 0,
#: distractors from 20, receptacles from 40
PARK_SLOTS: dict[str, int] = {
    **{name: i for i, name in enumerate(OBJECTS)},
    **{name: 20 + i for i, name in enumerate(DISTRACTOR_NAMES)},
    **{name: 40 + i for i, name in enumerate(RECEPTACLES)},
}

# cabinet geometry (origin: centre of the footprint at table height; drawer slides towards -x)
DRAWER_LIMIT = 0.22
HANDLE_X, HANDLE_Z = -0.21, 0.17  # handle bar centre at qpos 0 (cabinet frame)
DRAWER_FLOOR_Z = 0.115
DRAWER_INNER = (-0.14, 0.11, 0.16)  # x from, x to (qpos 0), |y| bound of the tray interior
