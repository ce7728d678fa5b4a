"""Physical reset vectors against calvin.md Part B (§B.1-§B.4, verification values of §B.4/§B.6)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vlaeval.envs.calvin import initial_state as ist
from vlaeval.envs.calvin.sequences import initial_states
from vlaeval.envs.calvin.tasks import COLOURS


def _covered(layout: dict[str, slice], size: int) -> list[int]:
    return sorted(i for s in layout.values() for i in range(size)[s])


def test_layouts_partition_the_vectors():
    assert _covered(ist.ROBOT_OBS_LAYOUT, ist.ROBOT_OBS_SIZE) == list(range(15))
    assert _covered(ist.SCENE_OBS_LAYOUT, ist.SCENE_OBS_SIZE) == list(range(24))
    assert ist.SCENE_OBS_RED_BLOCK == slice(6, 12)
    assert ist.SCENE_OBS_BLUE_BLOCK == slice(12, 18)
    assert ist.SCENE_OBS_PINK_BLOCK == slice(18, 24)
    assert (ist.SCENE_OBS_SLIDER, ist.SCENE_OBS_DRAWER, ist.SCENE_OBS_BUTTON) == (0, 1, 2)
    assert (ist.SCENE_OBS_SWITCH, ist.SCENE_OBS_LIGHTBULB, ist.SCENE_OBS_LED) == (3, 4, 5)
    assert ist.ROBOT_OBS_ARM_JOINTS == slice(7, 14) and ist.ROBOT_OBS_GRIPPER_ACTION == 14


def test_neutral_robot_obs():
    obs = ist.neutral_robot_obs()
    assert obs.shape == (15,) and obs.dtype == np.float64
    assert obs[ist.ROBOT_OBS_TCP_POS].tolist() == [0.02586889, -0.2313129, 0.5712808]
    assert obs[ist.ROBOT_OBS_GRIPPER_WIDTH] == 0.07999963
    assert obs[ist.ROBOT_OBS_ARM_JOINTS].tolist() == [
        -1.21779124, 1.03987629, 2.11978254, -2.34205014, -0.87015899, 1.64119093, 0.55344928
    ]
    obs[0] = 99.0
    assert ist.neutral_robot_obs()[0] == 0.02586889


def test_fnv1_32_with_zero_basis():
    assert ist.fnv1_32(b"test") == 3698262380
    assert ist.fnv1_32("test".encode("utf-16-le")) == 3910690890


STATE_0 = {"led": 0, "lightbulb": 0, "slider": "right", "drawer": "closed",
           "red_block": "table", "blue_block": "table", "pink_block": "slider_right", "grasped": 0}  # fmt: skip
STATE_190 = {"led": 1, "lightbulb": 1, "slider": "left", "drawer": "open",
             "red_block": "slider_left", "blue_block": "table", "pink_block": "slider_right", "grasped": 0}  # fmt: skip


def test_state_seed_reference_values():
    assert ist.state_seed(STATE_0) == 432992106
    assert ist.state_seed(STATE_190) == 2138410836
    # numpy scalars must not change the rendered text, hence the seed.
    assert ist.state_seed({k: np.int64(v) if isinstance(v, int) else np.str_(v) for k, v in STATE_190.items()}) == 2138410836
    # The hash follows the normative key order, not the mapping's.
    assert ist.state_seed(dict(reversed(list(STATE_190.items())))) == 2138410836


@pytest.mark.parametrize(
    "state, expected",
    [
        (
            STATE_0,
            [0, 0, 0, 0, 0, 0,
             0.229995412, -0.11999514, 0.45999001, 0, 0, 1.4418709252147632,
             0.0500000896, -0.120000177, 0.459990009, 0, 0, 1.4098806994949187,
             0.070341633, 0.0924044687, 0.460990009, 0, 0, 1.5630616199523633],
        ),
        (
            STATE_190,
            [0.28, 0.22, 0, 0.088, 1, 1,
             -0.240851662, 0.0924044687, 0.460990009, 0, 0, 1.8859410064104645,
             0.229995412, -0.11999514, 0.45999001, 0, 0, 1.488143437705632,
             0.070341633, 0.0924044687, 0.460990009, 0, 0, 1.4683986863194542],
        ),
    ],
)  # fmt: skip
def test_scene_obs_reference_values_are_bit_identical(state, expected):
    obs = ist.scene_obs_for(state)
    assert obs.shape == (24,) and obs.dtype == np.float64
    assert obs.tolist() == expected


@pytest.mark.parametrize("state", initial_states(), ids=lambda s: "-".join(map(str, s.values())))
def test_scene_obs_rules_for_every_initial_state(state):
    obs = ist.scene_obs_for(state)
    assert obs[ist.SCENE_OBS_SLIDER] == (0.28 if state["slider"] == "left" else 0.0)
    assert obs[ist.SCENE_OBS_DRAWER] == (0.22 if state["drawer"] == "open" else 0.0)
    assert obs[ist.SCENE_OBS_BUTTON] == 0.0
    assert obs[ist.SCENE_OBS_SWITCH] == 0.088 * state["lightbulb"]
    assert (obs[ist.SCENE_OBS_LIGHTBULB], obs[ist.SCENE_OBS_LED]) == (state["lightbulb"], state["led"])
    spots = {"slider_left": ist.SPOT_SLIDER_LEFT, "slider_right": ist.SPOT_SLIDER_RIGHT}
    table = {ist.SPOT_TABLE_0, ist.SPOT_TABLE_1}
    positions = []
    for colour in COLOURS:
        block = obs[ist.SCENE_OBS_BLOCK[colour]]
        position = tuple(block[:3].tolist())
        where = state[f"{colour}_block"]
        assert (position == spots[where]) if where in spots else (position in table)
        assert block[3] == block[4] == 0.0
        assert math.pi / 2 - math.pi / 8 <= block[5] <= math.pi / 2 + math.pi / 8
        positions.append(position)
    assert len(set(positions)) == 3
    np.testing.assert_array_equal(ist.scene_obs_for(state), obs)  # seeded by the state alone


def test_pink_takes_the_second_table_spot_when_it_is_the_only_table_block():
    state = {**STATE_0, "red_block": "slider_right", "blue_block": "slider_left", "pink_block": "table"}
    rng = np.random.RandomState(ist.state_seed(state))
    spots = [ist.SPOT_TABLE_0, ist.SPOT_TABLE_1]
    rng.shuffle(spots)
    assert tuple(ist.scene_obs_for(state)[ist.SCENE_OBS_PINK_BLOCK][:3].tolist()) == spots[1]


def test_global_rng_is_untouched_and_non_initial_states_are_rejected():
    np.random.seed(7)
    expected = np.random.random_sample()
    np.random.seed(7)
    ist.scene_obs_for(STATE_190)
    assert np.random.random_sample() == expected
    with pytest.raises(ValueError, match="drawer"):
        ist.scene_obs_for({**STATE_0, "red_block": "drawer"})
