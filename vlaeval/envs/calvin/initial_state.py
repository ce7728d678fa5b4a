"""Physical reset vectors for a symbolic initial state (spec calvin.md Part B).

CALVIN resets its environment from two flat vectors, ``robot_obs`` (15) and ``scene_obs`` (24),
which are also what the environment reports as state observations. The evaluation derives them
from a symbolic state with a little randomness (which table spot each block gets, block yaws)
seeded by a hash of the state's text, so every method sees the same physical start for a given
chain. Reproducing that hash exactly (FNV-1/32 with a zero basis over UTF-16-LE text, as pyhash
computed it) is what makes our starts bit-identical to upstream's.

Layout constants here are the single source of truth for the environment's state vectors.
Pure numpy: no simulator is imported.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from vlaeval.envs.calvin.tasks import COLOURS, STATE_KEYS

# --- robot_obs (15) layout, §B.1 -------------------------------------------------------------
ROBOT_OBS_SIZE = 15
ROBOT_OBS_TCP_POS = slice(0, 3)  # world x, y, z
ROBOT_OBS_TCP_ORN = slice(3, 6)  # Euler x, y, z, pybullet convention (R = Rz.Ry.Rx)
ROBOT_OBS_GRIPPER_WIDTH = 6  # sum of both finger joints, 0 .. 0.08
ROBOT_OBS_ARM_JOINTS = slice(7, 14)  # joints 1..7
ROBOT_OBS_GRIPPER_ACTION = 14  # last gripper command, -1 close / +1 open

#: Name -> slice of every robot_obs field.
ROBOT_OBS_LAYOUT: dict[str, slice] = {
    "tcp_pos": ROBOT_OBS_TCP_POS,
    "tcp_orn": ROBOT_OBS_TCP_ORN,
    "gripper_width": slice(ROBOT_OBS_GRIPPER_WIDTH, ROBOT_OBS_GRIPPER_WIDTH + 1),
    "arm_joints": ROBOT_OBS_ARM_JOINTS,
    "gripper_action": slice(ROBOT_OBS_GRIPPER_ACTION, ROBOT_OBS_GRIPPER_ACTION + 1),
}

# --- scene_obs (24) layout, §B.1 (scene D block order) -----------------------------------------
SCENE_OBS_SIZE = 24
SCENE_OBS_SLIDER = 0  # sliding-door joint, 0 .. 0.28
SCENE_OBS_DRAWER = 1  # drawer joint, 0 .. 0.22
SCENE_OBS_BUTTON = 2  # button joint, 0 .. 0.02
SCENE_OBS_SWITCH = 3  # switch joint, 0 .. 0.088
SCENE_OBS_LIGHTBULB = 4  # lightbulb logical state 0/1
SCENE_OBS_LED = 5  # LED logical state 0/1
SCENE_OBS_BLOCK_SIZE = 6  # x, y, z, Euler x, y, z per block
#: Colour -> slice of that block's 6 values.
SCENE_OBS_BLOCK: dict[str, slice] = {
    c: slice(6 + SCENE_OBS_BLOCK_SIZE * i, 6 + SCENE_OBS_BLOCK_SIZE * (i + 1)) for i, c in enumerate(COLOURS)
}
SCENE_OBS_RED_BLOCK = SCENE_OBS_BLOCK["red"]
SCENE_OBS_BLUE_BLOCK = SCENE_OBS_BLOCK["blue"]
SCENE_OBS_PINK_BLOCK = SCENE_OBS_BLOCK["pink"]

#: Name -> slice of every scene_obs field (blocks as ``<colour>_block``).
SCENE_OBS_LAYOUT: dict[str, slice] = {
    "slider": slice(SCENE_OBS_SLIDER, SCENE_OBS_SLIDER + 1),
    "drawer": slice(SCENE_OBS_DRAWER, SCENE_OBS_DRAWER + 1),
    "button": slice(SCENE_OBS_BUTTON, SCENE_OBS_BUTTON + 1),
    "switch": slice(SCENE_OBS_SWITCH, SCENE_OBS_SWITCH + 1),
    "lightbulb": slice(SCENE_OBS_LIGHTBULB, SCENE_OBS_LIGHTBULB + 1),
    "led": slice(SCENE_OBS_LED, SCENE_OBS_LED + 1),
    **{f"{c}_block": s for c, s in SCENE_OBS_BLOCK.items()},
}

# --- joint values of the symbolic states, §B.3 -------------------------------------------------
SLIDER_LEFT_POSITION = 0.28  # door moved fully left (slider = left)
DRAWER_OPEN_POSITION = 0.22  # drawer fully out (drawer = open)
SWITCH_ON_POSITION = 0.088  # switch fully up (lightbulb = 1)

#: Neutral robot state shared by all 1000 evaluation episodes (§B.2).
NEUTRAL_ROBOT_OBS: tuple[float, ...] = (
    0.02586889, -0.2313129, 0.5712808,
    3.09045411, -0.02908596, 1.50013585,
    0.07999963,
    -1.21779124, 1.03987629, 2.11978254, -2.34205014, -0.87015899, 1.64119093, 0.55344928,
    1.0,
)  # fmt: skip

#: Block placement spots (x, y, z) used by the evaluation reset (§B.3).
SPOT_SLIDER_LEFT = (-0.240851662, 0.0924044687, 0.460990009)
SPOT_SLIDER_RIGHT = (0.070341633, 0.0924044687, 0.460990009)
SPOT_TABLE_0 = (0.0500000896, -0.120000177, 0.459990009)
SPOT_TABLE_1 = (0.229995412, -0.11999514, 0.45999001)

#: Range of the random block yaw: a quarter turn, +- 22.5 degrees.
BLOCK_YAW_RANGE = (math.pi / 2 - math.pi / 8, math.pi / 2 + math.pi / 8)

_FNV_32_PRIME = 16777619


def neutral_robot_obs() -> np.ndarray:
    """The evaluation's robot reset vector (15,), a fresh array each call."""
    return np.array(NEUTRAL_ROBOT_OBS, dtype=np.float64)


def state_seed(state: Mapping[str, int | str]) -> int:
    """The hash upstream seeds a state's randomness with (§B.4).

    The text is what Python prints for the state's ``dict_values`` (plain ints, quoted strings),
    hashed as pyhash did: FNV-1/32 with initial value 0 (not the standard offset basis) over the
    UTF-16-LE bytes.
    """
    rendered = "dict_values([" + ", ".join(_render(state[k]) for k in STATE_KEYS) + "])"
    return fnv1_32(rendered.encode("utf-16-le"))


def fnv1_32(data: bytes) -> int:
    """32-bit FNV-1 (multiply, then XOR) with initial value 0, pyhash's ``fnv1_32()`` default."""
    h = 0
    for byte in data:
        h = ((h * _FNV_32_PRIME) & 0xFFFFFFFF) ^ byte
    return h


def _render(value: int | str) -> str:
    """repr() of the plain Python value, so numpy scalars cannot change the text (and the seed)."""
    return repr(str(value)) if isinstance(value, str) else repr(int(value))


def scene_obs_for(state: Mapping[str, int | str]) -> np.ndarray:
    """The evaluation's scene reset vector (24,) for a symbolic initial state (§B.3-§B.4).

    Only table, slider_right and slider_left block positions occur in initial states.
    """
    # A private legacy RandomState gives the same draws as upstream's temporarily re-seeded global
    # one, without touching the caller's global RNG.
    rng = np.random.RandomState(state_seed(state))
    table_spots = [SPOT_TABLE_0, SPOT_TABLE_1]
    rng.shuffle(table_spots)
    yaws = [rng.uniform(*BLOCK_YAW_RANGE) for _ in COLOURS]

    obs = np.zeros(SCENE_OBS_SIZE, dtype=np.float64)
    obs[SCENE_OBS_SLIDER] = SLIDER_LEFT_POSITION if state["slider"] == "left" else 0.0
    obs[SCENE_OBS_DRAWER] = DRAWER_OPEN_POSITION if state["drawer"] == "open" else 0.0
    obs[SCENE_OBS_SWITCH] = SWITCH_ON_POSITION if int(state["lightbulb"]) == 1 else 0.0
    obs[SCENE_OBS_LIGHTBULB] = int(state["lightbulb"])
    obs[SCENE_OBS_LED] = int(state["led"])
    # Upstream's table rule, kept literally: red takes the first shuffled table spot, pink the
    # second, blue whichever red leaves free.
    a0, a1 = table_spots
    table_spot = {"red": a0, "blue": a1 if state["red_block"] == "table" else a0, "pink": a1}
    for colour, yaw in zip(COLOURS, yaws):
        where = state[f"{colour}_block"]
        if where == "slider_right":
            position = SPOT_SLIDER_RIGHT
        elif where == "slider_left":
            position = SPOT_SLIDER_LEFT
        elif where == "table":
            position = table_spot[colour]
        else:
            raise ValueError(f"{colour}_block={where!r} does not occur in an initial state")
        block = SCENE_OBS_BLOCK[colour]
        obs[block.start : block.start + 3] = position
        obs[block.start + 5] = yaw
    return obs
