"""The cameras (spec calvin.md §D.8): the static camera's cached-background rendering
(cameras.StaticCamera) against full renders, and the gripper camera's pose."""

from __future__ import annotations

import numpy as np
import pybullet as pb
import pytest

from vlaeval.envs.calvin.cameras import GRIPPER, STATIC, gripper_view, render, static_view
from vlaeval.envs.calvin.env import CalvinEnv
from vlaeval.envs.calvin.predicates import DESK_DRAWER, DESK_SLIDE
from vlaeval.envs.calvin.robot import GRIPPER_CAM_LINK

SIZE = 96


def full_render(env: CalvinEnv) -> tuple[np.ndarray, np.ndarray]:
    """What TinyRenderer draws with every body rasterised, the reference StaticCamera must match."""
    rgb, depth = render(env.client_id, SIZE, static_view(), STATIC.projection(), STATIC, rgb=True, depth=True)
    return rgb, depth


def colours(env: CalvinEnv) -> list[tuple]:
    """The colour of every visual shape of every body, in pybullet's order."""
    return [shape[7] for body in env.body_ids.values()
            for shape in pb.getVisualShapeData(body, physicsClientId=env.client_id)]


@pytest.fixture(scope="module")
def env() -> CalvinEnv:
    env = CalvinEnv(cameras=("rgb_static", "depth_static"), static_size=SIZE, gripper_size=32)
    yield env
    env.close()


def test_static_camera_equals_a_full_render_while_things_move(env: CalvinEnv) -> None:
    obs, _ = env.reset(seed=2)
    rng = np.random.default_rng(2)
    desk = env.body_ids["desk"]
    differing, layered = [], []
    for step in range(40):
        if step == 20:  # open the drawer and the door: moving desk links in front of fixed ones
            for joint in (DESK_DRAWER, DESK_SLIDE):
                pb.resetJointState(desk, joint, 0.2, 0.0, physicsClientId=env.client_id)
        obs = env.step(rng.uniform(-1, 1, size=7).astype(np.float32))[0]
        rgb, depth = full_render(env)
        differing.append(int((obs["rgb_static"] != rgb).any(axis=-1).sum()))
        # Where the colours agree, depth agrees to the z-buffer's resolution at 4 m (~0.1 mm): the
        # cached layer holds resting props up to PROP_TOLERANCE from where they have crept since.
        same_colour = (obs["rgb_static"] == rgb).all(axis=-1)
        np.testing.assert_allclose(obs["depth_static"][same_colour], depth[same_colour], rtol=0, atol=1e-3)
        layered.append(env._static_camera._layer is not None and env._static_camera._same(
            env._static_camera._layer_state, env._static_camera._previous))
    # Only pixels where a moving and a fixed surface lie at the same depth to float32 precision
    # (a block's edge on the table) may pick the other of the two colours.
    assert max(differing) <= 0.002 * SIZE * SIZE
    # Most frames drew only the arm over the cached props; the teleported desk joints (step 20)
    # were drawn in full until they were still again.
    assert sum(layered) >= 30 and not layered[20]


def test_rendering_leaves_every_colour_as_it_was(env: CalvinEnv) -> None:
    env.reset(seed=3)
    before = colours(env)
    env.step(np.zeros(7, dtype=np.float32))
    assert colours(env) == before  # the gripper camera and other clients of the world see all bodies


def scene_obs(lights_on: bool) -> np.ndarray:
    """Door and drawer closed, the three blocks on the table, LED and bulb (with the switch up
    for the bulb) on or off."""
    obs = np.zeros(24)
    obs[3:6] = (0.088, 1, 1) if lights_on else (0.0, 0, 0)  # switch, lightbulb, LED
    for slot, x in enumerate((0.05, 0.15, 0.25)):
        obs[6 + 6 * slot : 9 + 6 * slot] = (x, -0.1, 0.46)
    return obs


def test_static_camera_follows_the_lights(env: CalvinEnv) -> None:
    # The LED and bulb change colour, so they must not be part of the cached background.
    images = {}
    for lights_on in (False, True):
        env.reset(seed=4, options={"scene_obs": scene_obs(lights_on)})
        images[lights_on] = env.step(np.zeros(7, dtype=np.float32))[0]["rgb_static"]
        assert env.light_states() == {"led": int(lights_on), "lightbulb": int(lights_on)}
        rgb, _ = full_render(env)
        assert (images[lights_on] != rgb).any(axis=-1).sum() <= 0.002 * SIZE * SIZE
    assert (images[False] != images[True]).any(axis=-1).sum() > 10


def test_gripper_camera_looks_from_the_camera_link() -> None:
    env = CalvinEnv(cameras=("rgb_gripper", "depth_gripper"), gripper_size=48)
    env.reset(seed=5)
    obs = env.step(np.array([0.3, 0.2, -0.4, 0.0, 0.2, 0.0, 1.0], dtype=np.float32))[0]
    link = pb.getLinkState(env.body_ids["robot"], GRIPPER_CAM_LINK, computeForwardKinematics=True,
                           physicsClientId=env.client_id)
    rgb, depth = render(env.client_id, 48, gripper_view(link[4], link[5]), GRIPPER.projection(), GRIPPER,
                        rgb=True, depth=True)
    np.testing.assert_array_equal(obs["rgb_gripper"], rgb)
    np.testing.assert_array_equal(obs["depth_gripper"], depth)
    env.close()
