"""The batched simpler pool (one ManiSkill env, ``num_envs`` slots) and the backend choice.

On CPU the pool runs with one slot (ManiSkill's CPU backend allows ``num_envs=1`` only) and is
checked step by step against :class:`SimplerEnv` for the same seeds and actions: observations,
images with the greenscreen overlay, success, truncation and partial success.  What needs
several slots (sub-environments independent of each other, per-slot variants, partial resets
while other slots run, the runner choosing the pool) is marked ``gpu`` and skips without CUDA.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mani_skill", reason="mani_skill not installed (pip install 'vlaeval[simpler]')")

import torch  # noqa: E402

from tests.envs.simpler.helpers import assert_same_obs, expert_run, protocol_episode  # noqa: E402
from vlaeval.conventions import AgentSpec  # noqa: E402
from vlaeval.envs.simpler.backend import SIM_BACKEND_VAR, resolve_sim_backend  # noqa: E402
from vlaeval.envs.simpler.pool import wants_batched_pool  # noqa: E402
from vlaeval.envs.simpler.suite import SimplerSuite  # noqa: E402
from vlaeval.errors import VlaevalError  # noqa: E402

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA for ManiSkill's GPU sim backend (num_envs > 1)")
HOLD = np.array([0, 0, 0, 0, 0, 0, 1.0])
CAMERA_AGENT = AgentSpec(action_type="relative_ee", rotation="axis_angle", gripper="open_positive",
                         observation_keys=("rgb", "robot_state"))


# ---- backend choice (no simulator) --------------------------------------------------------


def test_gpu_backend_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the error path, also on GPU machines
    with pytest.raises(VlaevalError, match=r"GPU sim backend needs CUDA.*torch.cuda.is_available\(\) is False.*=cpu"):
        resolve_sim_backend("gpu")
    assert resolve_sim_backend("auto") == "cpu" and resolve_sim_backend("physx_cpu") == "cpu"
    with pytest.raises(VlaevalError, match="must be one of auto, cpu, gpu, not 'vulkan'"):
        resolve_sim_backend("vulkan")
    monkeypatch.setenv(SIM_BACKEND_VAR, "gpu")
    with pytest.raises(VlaevalError, match="needs CUDA"):  # what `vlaeval run --envs-per-worker 4` reports
        SimplerSuite().batched_pool("visual-matching", CAMERA_AGENT, "relative_ee", 4, "auto")
    from vlaeval.envs.simpler.env import SimplerEnv

    with pytest.raises(VlaevalError, match="needs CUDA"):  # before ManiSkill starts
        SimplerEnv(render=False, sim_backend="gpu")


def test_the_batched_pool_is_chosen_only_for_gpu_several_envs_and_unprivileged_agents():
    assert wants_batched_pool("gpu", 4, "auto", privileged=False)
    assert wants_batched_pool("gpu", 4, "sync", privileged=False)
    assert not wants_batched_pool("gpu", 4, "async", privileged=False)  # subprocesses asked for explicitly
    assert not wants_batched_pool("gpu", 4, "auto", privileged=True)  # experts read sub-environment 0
    assert not wants_batched_pool("gpu", 1, "auto", privileged=False)
    assert not wants_batched_pool("cpu", 4, "auto", privileged=False)


def test_the_suite_offers_no_batched_pool_on_cpu(monkeypatch):
    monkeypatch.setenv(SIM_BACKEND_VAR, "cpu")
    assert SimplerSuite().batched_pool("visual-matching", CAMERA_AGENT, "relative_ee", 4, "auto") is None
    kwargs = SimplerSuite().env_kwargs(SimplerSuite.spec.setting("visual-matching"), CAMERA_AGENT, "relative_ee")
    assert kwargs["sim_backend"] == "cpu"


# ---- one slot on CPU: the same episodes as SimplerEnv -------------------------------------


@pytest.fixture(scope="module")
def state_envs():
    """A SimplerEnv that records the expert, and a SimplerEnv and a one-slot pool that replay it.

    The replaying two get the same calls, so they match step for step even without the rebuilt
    scene that makes an episode independent of the ones before it (``test_determinism.py``)."""
    from vlaeval.envs.simpler.env import SimplerEnv
    from vlaeval.envs.simpler.pool import SimplerBatchPool

    recorder = SimplerEnv(render=False, sim_backend="cpu")
    env = SimplerEnv(render=False, sim_backend="cpu")
    pool = SimplerBatchPool(1, render=False, sim_backend="cpu")
    yield recorder, env, pool
    pool.close()
    env.close()
    recorder.close()


@pytest.mark.parametrize("task, first", [("place_apple_in_closed_drawer", "pick_coke_can"), ("open_drawer", "put_carrot_on_plate")])
def test_one_slot_pool_plays_episodes_exactly_as_simpler_env(state_envs, task, first):
    """The expert's actions, replayed on SimplerEnv and on the pool: identical at every step, also
    after a partial reset in the middle of another episode and around a step that leaves the slot out."""
    recorder, env, pool = state_envs
    interrupted, episode = protocol_episode(first), protocol_episode(task)
    actions, steps = expert_run(recorder, episode)
    assert steps[-1][1]["is_success"] and steps[-1][1]["partial_success"]  # a real success to reproduce
    assert len(steps) == steps[-1][1]["budget"]  # success is read at the last step

    # each is mid-way through another episode when the reset arrives
    env.reset(seed=interrupted.seed, options=dict(interrupted.options))
    (ok, _), = pool.reset({0: (interrupted.seed, interrupted.options)}).values()
    assert ok
    detour = np.array([0.02, 0.0, -0.01, 0.0, 0.0, 0.1, -1.0])
    for _ in range(7):
        env.step(detour)
        pool.step({0: detour})
    want, _ = env.reset(seed=episode.seed, options=dict(episode.options))
    (ok, obs), = pool.reset({0: (episode.seed, episode.options)}).values()
    assert ok
    assert_same_obs(obs, want)
    tracker = pool.batch.trackers[0]
    outcomes = []
    for k, action in enumerate(actions):
        if k == 30:
            assert pool.step({}) == {} and tracker.steps == 30  # a slot left out does not advance
        want, _, _, want_truncated, info = env.step(action)
        (ok, (obs, success, terminated, truncated)), = pool.step({0: action}).values()
        assert ok
        assert_same_obs(obs, want)
        assert (success, terminated, truncated) == (info["is_success"], False, want_truncated)
        assert (tracker.steps, tracker.stage, tracker.ever_partial) == (info["steps"], info["stage"], info["partial_success"])
        outcomes.append(success)
    assert outcomes == [False] * (len(actions) - 1) + [True]  # solved, and read at the last step
    assert tracker.stage == (2 if task == "place_apple_in_closed_drawer" else 1)


def test_a_bad_episode_fails_only_its_slot(state_envs):
    *_, pool = state_envs
    (ok, message), = pool.reset({0: (0, {"task": "juggle"})}).values()
    assert not ok and message.startswith("ValueError: unknown simpler task 'juggle'")
    (ok, message), = pool.reset({0: (0, {"task": "open_drawer", "variant": {"lighting": "disco"}})}).values()
    assert not ok and message == "ValueError: unknown variant lighting='disco'"
    assert pool.size == 1 and pool.unwrapped(0) is None


def test_one_slot_pool_images_with_overlay_equal_simpler_env():
    from vlaeval.envs.simpler.env import SimplerEnv
    from vlaeval.envs.simpler.pool import SimplerBatchPool

    kwargs = dict(render=True, overlay=True, image_size=(64, 64), sim_backend="cpu")
    try:
        env = SimplerEnv(**kwargs)
    except Exception as exc:  # no Vulkan ICD / renderer
        pytest.skip(f"no working Vulkan renderer ({type(exc).__name__}: {exc}); install mesa-vulkan-drivers >= 24.3")
    pool = SimplerBatchPool(1, **kwargs)
    try:
        for episode in (protocol_episode("put_eggplant_in_basket"), protocol_episode("close_drawer", "variant-aggregation", "cabinet=alt_cabinet_2")):
            want, _ = env.reset(seed=episode.seed, options=dict(episode.options))
            (_, got), = pool.reset({0: (episode.seed, episode.options)}).values()
            assert_same_obs(got, want)
            assert not np.array_equal(got["rgb"], pool.batch.scene_env.get_obs()["sensor_data"]["camera"]["rgb"][0].numpy())
            for step in range(4):
                action = np.array([0.03, 0.01 * step, 0.0, 0.0, 0.05, 0.0, 1.0])
                want, _, _, _, _ = env.step(action)
                (_, (got, *_)), = pool.step({0: action}).values()
                assert_same_obs(got, want)  # composited the same way
    finally:
        pool.close()
        env.close()


# ---- several slots: GPU only --------------------------------------------------------------


@pytest.fixture
def gpu_pool():
    """Per test, so no two GPU simulators are alive at once (the runner test builds its own)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA for ManiSkill's GPU sim backend (num_envs > 1)")
    from vlaeval.envs.simpler.pool import SimplerBatchPool

    pool = SimplerBatchPool(2, render=True, overlay=False, image_size=(64, 64), sim_backend="gpu")
    yield pool
    pool.close()


def _play(pool, episodes, actions):
    """Reset slot i to episodes[i], step every slot with actions[k][i]; each slot's observations."""
    obs = {slot: [payload] for slot, (ok, payload) in pool.reset(dict(enumerate(episodes))).items()}
    for step in actions:
        for slot, (ok, (o, *_)) in pool.step(dict(enumerate(step))).items():
            assert ok
            obs[slot].append(o)
    return obs


def _same_image(a, b) -> bool:
    """Equal up to GPU rasterisation noise: under 1 % of the pixels off by more than 8 levels."""
    return float((np.abs(a.astype(int) - b.astype(int)).max(axis=-1) > 8).mean()) < 0.01


def _actions(seed, n=12):
    rng = np.random.default_rng(seed)
    return [[np.r_[rng.uniform(-0.03, 0.03, 6), 1.0] for _ in range(2)] for _ in range(n)]


@pytest.mark.gpu
@needs_cuda
def test_gpu_slots_are_independent_and_variants_are_per_slot(gpu_pool):
    a = protocol_episode("pick_coke_can", "variant-aggregation", "base")
    b = protocol_episode("pick_coke_can", "variant-aggregation", "background=alt_background_1")
    c = protocol_episode("open_drawer", "variant-aggregation", "lighting=darker")
    same = _actions(0)
    same = [[s[0], s[0]] for s in same]
    twins = _play(gpu_pool, [(a.seed, a.options)] * 2, same)
    for x, y in zip(twins[0], twins[1]):  # the same episode and actions in two sub-scenes (at different offsets)
        np.testing.assert_allclose(x["robot_state"], y["robot_state"], atol=1e-4)
        assert _same_image(x["rgb"], y["rgb"])
    other = _actions(1)
    mixed = _play(gpu_pool, [(a.seed, a.options), (c.seed, c.options)], [[s[0], o[1]] for s, o in zip(same, other)])
    for x, y in zip(twins[0], mixed[0]):  # slot 0 unaffected by what slot 1 plays
        np.testing.assert_allclose(x["robot_state"], y["robot_state"], atol=1e-4)
        assert _same_image(x["rgb"], y["rgb"])
    recoloured = _play(gpu_pool, [(a.seed, a.options), (b.seed, b.options)], [])
    assert _same_image(recoloured[0][0]["rgb"], twins[0][0]["rgb"])  # slot 1's background stays in slot 1
    assert not _same_image(recoloured[0][0]["rgb"], recoloured[1][0]["rgb"])


@pytest.mark.gpu
@needs_cuda
def test_gpu_slot_left_out_keeps_its_episode_and_partial_reset_keeps_others(gpu_pool):
    a, b = protocol_episode("put_carrot_on_plate"), protocol_episode("move_near")
    gpu_pool.reset({0: (a.seed, a.options), 1: (b.seed, b.options)})
    trackers = gpu_pool.batch.trackers
    for _ in range(5):
        assert set(gpu_pool.step({0: HOLD})) == {0}
    assert (trackers[0].steps, trackers[1].steps) == (5, 0)
    ((slot, (ok, (_, _, _, truncated))),) = gpu_pool.step({1: HOLD}).items()
    assert slot == 1 and ok
    assert trackers[1].steps == 1 and not truncated
    robot = gpu_pool.batch.scene_env.agent.robot
    before = robot.get_qpos().cpu().numpy()
    gpu_pool.reset({1: (a.seed, a.options)})
    after = robot.get_qpos().cpu().numpy()
    np.testing.assert_array_equal(before[0], after[0])  # slot 0 was not reset
    assert trackers[0].steps == 5 and trackers[1].steps == 0 and trackers[1].task == "put_carrot_on_plate"


class _Still:
    """A camera-reading, unprivileged agent that holds still (never solves a task)."""

    spec = CAMERA_AGENT

    def reset(self) -> None:
        pass

    def act(self, observation, instruction):
        return HOLD.copy()


@pytest.mark.gpu
@needs_cuda
def test_gpu_runner_steps_several_envs_in_one_batched_env(tmp_path, monkeypatch):
    import vlaeval
    from vlaeval.results.store import read_manifest

    monkeypatch.setenv(SIM_BACKEND_VAR, "gpu")
    result = vlaeval.evaluate(_Still(), "simpler", episodes=3, envs_per_worker=2, out=tmp_path, progress=False)
    assert read_manifest(result.run_dir)["agent"]["env_mode"] == "gpu-batched"
    frame = result.results
    assert len(frame) == 3 and frame["error"].isna().all() and not frame["success"].any()
    budgets = {"pick_coke_can": 80}
    assert list(frame["steps"]) == [budgets[t] for t in frame["task"]]  # every episode ran to its own budget
