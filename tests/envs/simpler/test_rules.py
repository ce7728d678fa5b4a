"""The simpler suite's rules without a simulator: task families, episode bookkeeping, variants.

The rules act on a :class:`~vlaeval.envs.simpler.view.SceneView`; here a stand-in scene holds
positions, grasps and contacts that each test sets, so every threshold of SimplerEnv's rules is
checked directly (the ManiSkill tests check that the real scene feeds them the same way).
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from vlaeval.envs.simpler.appearance import apply_appearance, place_distractors
from vlaeval.envs.simpler.catalogue import (
    CABINET_POSE,
    CAMERAS,
    DISTRACTOR_NAMES,
    DISTRACTORS,
    LIGHTING,
    OBJECTS,
    RECEPTACLES,
    TABLES,
)
from vlaeval.envs.simpler.episodes import task_layouts
from vlaeval.envs.simpler.options import scene_episode_options
from vlaeval.envs.simpler.spec import BASE_VARIANT, TASK_INFO
from vlaeval.envs.simpler.tasks import rules_for
from vlaeval.envs.simpler.tracker import EpisodeTracker
from vlaeval.envs.simpler.view import SceneEpisode


def _resting_half_height(shape: str, size: tuple[float, ...]) -> float:
    return size[1] if shape == "can" else size[0] if shape in ("sphere", "capsule") else size[2]


class FakeScene:
    """One sub-environment as plain data: what the rules write is recorded, what they read is set."""

    def __init__(self) -> None:
        self.poses: dict[str, tuple[np.ndarray, list[float]]] = {}
        self.held: set[str] = set()
        self.forces: dict[frozenset[str], float] = {}
        self.qpos = 0.0
        self.cabinet: tuple[list[float], float] | None = None
        self.colours: dict[str, tuple[float, ...]] = {}
        self.light: tuple[float, float] | None = None
        self.camera: tuple[tuple[float, ...], tuple[float, ...]] | None = None
        bodies = {**OBJECTS, **dict(zip(DISTRACTOR_NAMES, DISTRACTORS))}
        self.heights = {n: _resting_half_height(shape, size) for n, (shape, size, _) in bodies.items()}
        self.heights |= {n: size[1] if n == "plate" else size[2] for n, (size, _) in RECEPTACLES.items()}

    def place(self, name, p, q):
        self.poses[name] = (np.array(p, dtype=np.float32), list(q))

    def position(self, name):
        return self.poses[name][0].copy()

    def move(self, name, dx=0.0, dy=0.0, dz=0.0):
        p, q = self.poses[name]
        self.poses[name] = (p + np.array([dx, dy, dz], dtype=np.float32), q)

    def half_height(self, name):
        return self.heights[name]

    def grasped(self, name):
        return name in self.held

    def contact(self, a, b):
        return self.forces.get(frozenset((a, b)), 0.0)

    def drawer_qpos(self):
        return self.qpos

    def set_cabinet(self, p, qpos):
        self.cabinet = (list(p), qpos)
        self.qpos = qpos

    def set_colour(self, part, rgb):
        self.colours[part] = tuple(rgb)

    def set_lighting(self, ambient, directional):
        self.light = (ambient, directional)

    def set_camera(self, eye, target):
        self.camera = (tuple(eye), tuple(target))


def _start(task: str, layout: dict | None = None) -> tuple[FakeScene, SceneEpisode]:
    scene = FakeScene()
    episode = SceneEpisode(task, layout or task_layouts(task)[0])
    episode.active = rules_for(task).setup(scene, episode)
    return scene, episode


def _ev(scene: FakeScene, episode: SceneEpisode) -> dict:
    return rules_for(episode.task).predicates(scene, episode)


def test_rules_import_no_simulator():
    code = ("import sys, vlaeval.envs.simpler.tasks, vlaeval.envs.simpler.tracker, vlaeval.envs.simpler.appearance,"
            " vlaeval.envs.simpler.options, vlaeval.envs.simpler.observation, vlaeval.envs.simpler.pool;"
            "bad=[m for m in ('mani_skill','sapien','torch') if m in sys.modules]; print(bad); assert not bad")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("orientation, z, axis", [("upright", 0.062, 2), ("horizontal", 0.034, 1), ("vertical", 0.034, 0)])
def test_pick_places_the_can_standing_or_on_its_side(orientation, z, axis):
    layout = next(lay for lay in task_layouts("pick_coke_can") if lay["orientation"] == orientation)
    scene, episode = _start("pick_coke_can", layout)
    p, (w, x, y, qz) = scene.poses["coke_can"]
    np.testing.assert_allclose(p, [*layout["obj_xy"], z], atol=1e-6)
    # the can's own axis (local z) in the world frame, from the wxyz quaternion
    can_axis = [2 * (x * qz + w * y), 2 * (y * qz - w * x), 1 - 2 * (x * x + y * y)]
    assert abs(can_axis[axis]) == pytest.approx(1.0, abs=1e-6)
    assert episode.active == {"source": "coke_can", "z0": pytest.approx(z)}


def test_pick_succeeds_when_held_off_the_table_and_counts_lifted_steps():
    scene, episode = _start("pick_coke_can")
    scene.held.add("coke_can")
    scene.forces[frozenset(("coke_can", "table"))] = 0.5
    assert not _ev(scene, episode)["success_now"]  # held, but still on the table
    scene.forces.clear()
    scene.move("coke_can", dz=0.011)
    ev = _ev(scene, episode)
    assert ev["success_now"] and ev["grasped"] and rules_for("pick_coke_can").events("pick_coke_can", ev) == ("partial",)
    scene.move("coke_can", dz=0.02)
    assert rules_for("pick_coke_can").events("pick_coke_can", _ev(scene, episode)) == ("partial", "lifted")


def test_pick_counts_as_solved_after_five_lifted_steps_even_if_dropped_at_the_end():
    tracker = EpisodeTracker("pick_coke_can")
    lifted = {"success_now": False, "grasped": True, "lift": 0.03}
    dropped = {"success_now": False, "grasped": False, "lift": 0.0}
    results = [tracker.advance(lifted if step < 5 else dropped, "last_step") for step in range(80)]
    assert results[-1] == (True, True) and not any(success for success, _ in results[:-1])
    four = EpisodeTracker("pick_coke_can")
    for step in range(80):
        success, truncated = four.advance(lifted if step < 4 else dropped, "last_step")
    assert (success, truncated) == (False, True)


def test_move_near_needs_the_source_next_to_the_target_and_nothing_knocked_over():
    scene, episode = _start("move_near")
    src, tgt = episode.active["source"], episode.active["target"]
    assert (src, tgt) == ("coke_can", "sponge")
    other = next(n for n in episode.active["objects"] if n not in (src, tgt))
    assert not _ev(scene, episode)["success_now"]  # nothing moved yet
    scene.move(src, dy=0.09)  # next to the sponge, far from the pepsi can
    assert _ev(scene, episode)["success_now"]
    scene.move(other, dz=-0.03)  # the other can fell over
    assert not _ev(scene, episode)["success_now"]
    scene.move(other, dz=0.03)
    scene.move(other, dy=-0.1)  # another object moved more than the source
    assert not _ev(scene, episode)["success_now"]


def test_open_and_close_drawer_thresholds_and_partial_success():
    scene, episode = _start("open_drawer")
    assert scene.cabinet == ([*CABINET_POSE], 0.0) and episode.active == {}
    rules = rules_for("open_drawer")
    scene.qpos = 0.019
    assert rules.events("open_drawer", _ev(scene, episode)) == ()
    scene.qpos = 0.149
    ev = _ev(scene, episode)
    assert not ev["success_now"] and rules.events("open_drawer", ev) == ("partial",)
    scene.qpos = 0.15
    assert _ev(scene, episode)["success_now"]

    scene, episode = _start("close_drawer")
    assert scene.qpos == 0.2
    scene.qpos = 0.18
    assert rules.events("close_drawer", _ev(scene, episode)) == ("partial",)  # moved 2 cm the right way
    scene.qpos = 0.05
    assert _ev(scene, episode)["success_now"]


def test_apple_in_drawer_has_two_stages_and_needs_the_apple_inside():
    scene, episode = _start("place_apple_in_closed_drawer")
    info = TASK_INFO["place_apple_in_closed_drawer"]
    tracker = EpisodeTracker("place_apple_in_closed_drawer")
    assert tracker.current_instruction == info.instruction
    scene.qpos = 0.16
    tracker.advance(_ev(scene, episode), "first_step")
    assert tracker.stage == 2 and tracker.current_instruction == info.stage2_instruction
    scene.place("apple", [0.05, 0.0, 0.10], [1.0, 0.0, 0.0, 0.0])  # inside the open drawer's tray
    ev = _ev(scene, episode)
    assert ev["apple_in_drawer"] and ev["success_now"]
    assert tracker.advance(ev, "first_step") == (False, False)  # the apple never touched the drawer
    scene.forces[frozenset(("apple", "drawer"))] = 1.0
    assert tracker.advance(_ev(scene, episode), "first_step") == (True, False)
    scene.place("apple", [0.30, 0.0, 0.10], [1.0, 0.0, 0.0, 0.0])  # behind the tray
    assert not _ev(scene, episode)["apple_in_drawer"]


def test_apple_task_moves_to_stage_two_at_its_step_even_with_the_drawer_shut():
    tracker = EpisodeTracker("place_apple_in_closed_drawer")
    shut = {"success_now": False, "grasped": False, "drawer_qpos": 0.0}
    stage2_at = TASK_INFO["place_apple_in_closed_drawer"].stage2_at
    stages = [(tracker.advance(shut, "last_step"), tracker.stage)[1] for _ in range(stage2_at)]
    assert stages[-2:] == [1, 2]


@pytest.mark.parametrize("task, released_at", [("put_carrot_on_plate", 0.029), ("put_spoon_on_towel", 0.0125)])
def test_bridge_object_resting_on_its_target(task, released_at):
    scene, episode = _start(task)
    src, tgt = episode.active["source"], episode.active["target"]
    assert not _ev(scene, episode)["success_now"]
    tx, ty, _ = scene.position(tgt)
    scene.place(src, [tx + 0.01, ty, released_at], [1.0, 0.0, 0.0, 0.0])
    assert _ev(scene, episode)["success_now"]
    scene.move(src, dz=0.03)  # hovering above it
    assert not _ev(scene, episode)["success_now"]


def test_carrot_touching_the_table_is_not_on_the_plate():
    scene, episode = _start("put_carrot_on_plate")
    tx, ty, _ = scene.position("plate")
    scene.place("carrot", [tx, ty, 0.029], [1.0, 0.0, 0.0, 0.0])
    scene.forces[frozenset(("carrot", "table"))] = 0.2
    assert not _ev(scene, episode)["success_now"]


def test_eggplant_in_the_basket():
    scene, episode = _start("put_eggplant_in_basket")
    bx, by, bz = scene.position("basket")
    scene.place("eggplant", [bx + 0.05, by, 0.03], [1.0, 0.0, 0.0, 0.0])
    assert _ev(scene, episode)["success_now"]
    scene.move("eggplant", dx=0.06)  # over the rim
    assert not _ev(scene, episode)["success_now"]


def test_tracker_reads_success_at_the_last_step_and_keeps_partial_success():
    tracker = EpisodeTracker("put_carrot_on_plate", "put the carrot on the plate, please")
    on = {"success_now": True, "grasped": True}
    off = {"success_now": False, "grasped": False}
    assert tracker.advance(on, "last_step") == (False, False)  # success before the budget is not final
    for _ in range(tracker.budget - 2):
        tracker.advance(off, "last_step")
    assert tracker.advance(on, "last_step") == (True, True)
    info = tracker.info(on, True, BASE_VARIANT)
    assert info == {"is_success": True, "success_now": True, "partial_success": True, "task": "put_carrot_on_plate",
                    "stage": 1, "variant": BASE_VARIANT, "steps": 60, "budget": 60}
    assert tracker.current_instruction == "put the carrot on the plate, please"
    assert EpisodeTracker("put_carrot_on_plate").advance(on, "first_step") == (True, False)


def test_appearance_of_a_variant():
    scene = FakeScene()
    variant = BASE_VARIANT | {"table": "alt_table_2", "lighting": "darker", "camera": "alt_camera_1"}
    apply_appearance(scene, variant)
    assert scene.colours["table"] == TABLES["alt_table_2"]
    assert scene.light == (pytest.approx(0.3 * LIGHTING["darker"]), LIGHTING["darker"])
    assert scene.camera == CAMERAS["alt_camera_1"]


def test_distractors_are_seeded_and_keep_clear_of_the_task():
    def placed(task: str, distractors: str, seed: int) -> dict:
        scene, _ = _start(task)
        for name in (*OBJECTS, *RECEPTACLES):  # everything not in the task is parked on the floor
            scene.poses.setdefault(name, (np.array([3.0, 0.0, -0.7], dtype=np.float32), [1.0, 0.0, 0.0, 0.0]))
        place_distractors(scene, task, BASE_VARIANT | {"distractors": distractors}, np.random.default_rng(seed))
        return {n: scene.position(n) for n in DISTRACTOR_NAMES if n in scene.poses}, scene

    (first, scene), (again, _) = placed("put_carrot_on_plate", "more", 7), placed("put_carrot_on_plate", "more", 7)
    assert len(first) == 5 and all(np.array_equal(first[n], again[n]) for n in first)
    assert placed("put_carrot_on_plate", "more", 8)[0]["distractor_0"].tolist() != first["distractor_0"].tolist()
    taken = [scene.position(n)[:2] for n in ("carrot", "plate", *first)]
    assert min(np.linalg.norm(a - b) for i, a in enumerate(taken) for b in taken[i + 1:]) > 0.12
    assert len(placed("put_carrot_on_plate", "less", 7)[0]) == 3 and not placed("pick_coke_can", "none", 7)[0]
    drawer = placed("open_drawer", "more", 7)[0]
    assert all(np.linalg.norm(p[:2] - [-0.2, 0.0]) > 0.12 for p in drawer.values())


def test_unknown_task_or_variant_is_refused_before_any_simulation():
    assert scene_episode_options(3, {"task": "move_near"}) == {
        "task": "move_near", "layout": None, "variant": BASE_VARIANT, "placement_seed": 3}
    with pytest.raises(ValueError, match="unknown simpler task 'fly'"):
        scene_episode_options(0, {"task": "fly"})
    with pytest.raises(ValueError, match="unknown variant lighting='disco'"):
        scene_episode_options(0, {"variant": {"lighting": "disco"}})


def test_every_task_has_rules_that_place_its_objects():
    for task in TASK_INFO:
        scene, episode = _start(task)
        ev = _ev(scene, episode)
        assert {"success_now", "grasped"} <= set(ev) and not ev["success_now"], task
        assert all(not math.isnan(float(p[2])) for p, _ in scene.poses.values())
