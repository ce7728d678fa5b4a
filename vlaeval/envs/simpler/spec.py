"""The frozen spec of the ``simpler`` suite (no simulator import).

Tasks follow SimplerEnv's list (spec simpler.md §1.1) rebuilt from primitives for the Panda that
ships with ManiSkill3; budgets are SimplerEnv's.  Variants follow §1.3 (variant aggregation):
base, 2 backgrounds, 2 lightings, 2 distractor sets, 2 table textures (drawer tasks: 2 cabinet
appearances instead of distractors/table textures); camera poses are a separate setting.
"""

from __future__ import annotations

from dataclasses import dataclass

from vlaeval.conventions import SuiteConventions
from vlaeval.envs.suite import Protocol, Setting, SuiteSpec

#: Version of the task definitions and the episode lists; bump whenever results can move.
SIMPLER_VERSION = "2"


@dataclass(frozen=True)
class TaskInfo:
    """One task: its instruction(s), step budget and family (which variant axes apply)."""

    name: str
    instruction: str
    budget: int
    family: str  # "pick", "move_near", "drawer", "bridge"
    stage2_instruction: str = ""  # two-stage tasks: instruction after the first stage
    stage2_at: int = 0  # step at which the env force-advances to stage 2 (SimplerEnv: 100)


TASK_INFO: dict[str, TaskInfo] = {
    t.name: t
    for t in (
        TaskInfo("pick_coke_can", "pick coke can", 80, "pick"),
        TaskInfo("move_near", "move {source} near {target}", 80, "move_near"),
        TaskInfo("open_drawer", "open top drawer", 113, "drawer"),
        TaskInfo("close_drawer", "close top drawer", 113, "drawer"),
        TaskInfo("place_apple_in_closed_drawer", "open top drawer", 200, "drawer",
                 stage2_instruction="place apple into top drawer", stage2_at=100),
        TaskInfo("put_spoon_on_towel", "put the spoon on the towel", 60, "bridge"),
        TaskInfo("put_carrot_on_plate", "put carrot on plate", 60, "bridge"),
        TaskInfo("stack_green_on_yellow", "stack the green block on the yellow block", 60, "bridge"),
        TaskInfo("put_eggplant_in_basket", "put eggplant into yellow basket", 120, "bridge"),
    )
}
TASKS: tuple[str, ...] = tuple(TASK_INFO)
MAX_BUDGET = max(t.budget for t in TASK_INFO.values())

#: Variant axes -> values; "base" is the canonical appearance (every axis at its first value).
AXES: dict[str, tuple[str, ...]] = {
    "background": ("base", "alt_background_1", "alt_background_2"),
    "lighting": ("base", "brighter", "darker"),
    "distractors": ("none", "less", "more"),
    "table": ("base", "alt_table_1", "alt_table_2"),
    "cabinet": ("base", "alt_cabinet_1", "alt_cabinet_2"),
    "camera": ("base", "alt_camera_1", "alt_camera_2"),
}


def _variant(name: str, **axes: str) -> tuple[str, dict[str, str]]:
    return name, {axis: values[0] for axis, values in AXES.items()} | axes


BASE_VARIANT = _variant("base")[1]

#: Variant lists per task family (name -> full axis assignment), as averaged by SimplerEnv.
_COMMON = [
    _variant("base"),
    _variant("background=alt_background_1", background="alt_background_1"),
    _variant("background=alt_background_2", background="alt_background_2"),
    _variant("lighting=brighter", lighting="brighter"),
    _variant("lighting=darker", lighting="darker"),
]
VARIANTS: dict[str, tuple[tuple[str, dict[str, str]], ...]] = {
    "tabletop": tuple(
        _COMMON
        + [
            _variant("distractors=less", distractors="less"),
            _variant("distractors=more", distractors="more"),
            _variant("table=alt_table_1", table="alt_table_1"),
            _variant("table=alt_table_2", table="alt_table_2"),
        ]
    ),
    "drawer": tuple(
        _COMMON
        + [
            _variant("cabinet=alt_cabinet_1", cabinet="alt_cabinet_1"),
            _variant("cabinet=alt_cabinet_2", cabinet="alt_cabinet_2"),
        ]
    ),
    "camera": (
        _variant("camera=alt_camera_1", camera="alt_camera_1"),
        _variant("camera=alt_camera_2", camera="alt_camera_2"),
    ),
}


def variants_for(task: str, protocol: str) -> tuple[tuple[str, dict[str, str]], ...]:
    """The (variant name, axis values) pairs a task is evaluated under in a protocol."""
    if protocol == "visual-matching":
        return (("visual-matching", dict(BASE_VARIANT)),)
    if protocol == "variant-aggregation":
        return VARIANTS["drawer" if TASK_INFO[task].family == "drawer" else "tabletop"]
    if protocol == "camera-variants":
        return VARIANTS["camera"]
    raise ValueError(f"unknown protocol {protocol!r}")


SIMPLER_SPEC = SuiteSpec(
    name="simpler",
    version=SIMPLER_VERSION,
    target="vlaeval.envs.simpler.suite:SimplerSuite",
    description="SimplerEnv-style tabletop tasks on ManiSkill3 (Panda, primitives) with visual-matching and variant-aggregation protocols",
    tasks=TASKS,
    settings=(
        Setting(
            "visual-matching",
            "canonical appearance per task with the greenscreen background overlay",
            env_kwargs={"overlay": True},
            options={"protocol": "visual-matching"},
        ),
        Setting(
            "variant-aggregation",
            "average over base, 2 backgrounds, 2 lightings, 2 distractor sets, 2 table textures (drawer tasks: 2 cabinet appearances)",
            env_kwargs={"overlay": False},
            options={"protocol": "variant-aggregation"},
        ),
        Setting(
            "camera-variants",
            "2 alternative camera poses, reported separately from the aggregate",
            env_kwargs={"overlay": False},
            options={"protocol": "camera-variants"},
        ),
    ),
    # episodes: the longest setting's list (variant-aggregation: 972; visual-matching has 114,
    # camera-variants 228; the runner takes the first N of a setting's list).  One env truncates
    # each task at its own budget; the runner's step limit is the largest budget.
    protocol=Protocol(episodes=972, max_steps=MAX_BUDGET, seed=0, chain_length=1),
    env_ids=("vlaeval/Simpler-v0",),
    conventions=SuiteConventions(
        action_types=("relative_ee",),
        rotation="axis_angle",
        gripper="open_positive",
        observation_keys=("rgb", "robot_state"),
    ),
)
