"""The frozen spec of the ``calvin`` suite, importable without pybullet.

Listing suites and validating runs only needs this module; the simulator is imported by the
suite's environment when an episode actually runs.
"""

from __future__ import annotations

from vlaeval.conventions import SuiteConventions
from vlaeval.envs.calvin.tasks import TASKS
from vlaeval.envs.suite import Protocol, Setting, SuiteSpec


def _setting(name: str, description: str, train_scenes: tuple[str, ...], instructions: str) -> Setting:
    """Every setting evaluates in scene D, as CALVIN does; only the training scenes (recorded in
    the manifest) and the instruction set (``"train"`` or held-out ``"eval"`` wording) differ."""
    return Setting(
        name=name,
        description=description,
        train_scenes=train_scenes,
        env_kwargs={"scene": "D"},
        options={"instructions": instructions},
    )


CALVIN_SPEC = SuiteSpec(
    name="calvin",
    version="1",
    target="vlaeval.envs.calvin.suite:CalvinSuite",
    description="CALVIN long-horizon benchmark: the 1000 official chains of 5 language-conditioned tasks in scene D",
    tasks=TASKS,
    settings=(
        _setting("D->D", "trained on scene D, evaluated on scene D", ("D",), "train"),
        _setting("ABC->D", "trained on scenes A, B, C, evaluated on the unseen scene D", ("A", "B", "C"), "train"),
        _setting("ABCD->D", "trained on all four scenes, evaluated on scene D", ("A", "B", "C", "D"), "train"),
        _setting(
            "unseen-instructions",
            "trained on all four scenes, evaluated on scene D with held-out instruction wording",
            ("A", "B", "C", "D"),
            "eval",
        ),
    ),
    protocol=Protocol(episodes=1000, max_steps=360, seed=0, chain_length=5),
    env_ids=("vlaeval/Calvin-v0",),
    conventions=SuiteConventions(
        action_types=("relative_ee", "absolute_ee"),
        rotation="euler_xyz",
        gripper="open_positive",
        observation_keys=("rgb_static", "rgb_gripper", "depth_static", "depth_gripper", "robot_obs", "scene_obs"),
    ),
)
