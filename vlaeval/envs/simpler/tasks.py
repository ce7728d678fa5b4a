"""The rules of each task family in plain Python: where its objects go, what holds at a step, and
how an episode is judged (SimplerEnv's rules, rebuilt for the Panda and primitive objects).

One object per family of :data:`~vlaeval.envs.simpler.spec.TASK_INFO` holds all of a task's
rules, so changing what a task asks means reading one class, not a scene method, an evaluation
branch and a special case in the episode bookkeeping.  The scene calls :meth:`TaskRules.setup`
at a reset and :meth:`TaskRules.predicates` after every step, through a
:class:`~vlaeval.envs.simpler.view.SceneView`; :class:`~vlaeval.envs.simpler.tracker.EpisodeTracker`
calls :meth:`~TaskRules.events`, :meth:`~TaskRules.stage` and :meth:`~TaskRules.success`.

Predicates are plain numbers and booleans: ``success_now`` (the success condition holds at this
step) and ``grasped`` (the task's source object is in the gripper) for every task, plus the
family's own fields.  Events are what an episode remembers across steps (``partial``: partial
success at this step).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from vlaeval.envs.simpler.catalogue import CABINET_POSE, DRAWER_FLOOR_Z, DRAWER_INNER, OBJECTS, RECEPTACLES
from vlaeval.envs.simpler.spec import TASK_INFO
from vlaeval.envs.simpler.view import SceneEpisode, SceneView, put, quat_z

_LAY_DOWN = [math.cos(math.pi / 4), 0.0, math.sin(math.pi / 4), 0.0]  # a can laid down: its axis (local z) along x


class TaskRules:
    """What every family shares: partial success = the source object grasped at some step,
    success = the step's success predicate, a single stage."""

    def setup(self, view: SceneView, episode: SceneEpisode) -> dict[str, Any]:
        """Place the task's objects for ``episode.layout``; return what evaluation needs later
        (``source``/``target`` names, start state)."""
        raise NotImplementedError

    def predicates(self, view: SceneView, episode: SceneEpisode) -> dict[str, Any]:
        """This step's predicates of the episode."""
        raise NotImplementedError

    def events(self, task: str, ev: Mapping[str, Any]) -> tuple[str, ...]:
        """What of this step an episode keeps count of."""
        return ("partial",) if ev.get("grasped") else ()

    def stage(self, task: str, stage: int, steps: int, ev: Mapping[str, Any]) -> int:
        """The stage after ``steps`` steps, this one with predicates ``ev``."""
        return stage

    def success(self, task: str, ev: Mapping[str, Any], held: Mapping[str, int], stage: int) -> bool:
        """Whether the episode counts as solved at this step; ``held`` counts the steps each event held."""
        return bool(ev["success_now"])


def _grasp(view: SceneView, episode: SceneEpisode) -> dict[str, Any]:
    """The predicates every task has, before its own."""
    out: dict[str, Any] = {"success_now": False, "grasped": False}
    src = episode.active.get("source")
    if src is not None:
        out["grasped"] = view.grasped(src)
    return out


class Pick(TaskRules):
    """``pick_coke_can``: the can upright or laid along y ("horizontal") or x ("vertical").

    Success (SimplerEnv): grasped, off the table and 1 cm above its start at the step, or lifted
    more than 2 cm on at least 5 steps of the episode.
    """

    def setup(self, view: SceneView, episode: SceneEpisode) -> dict[str, Any]:
        lay = episode.layout
        xy = lay["obj_xy"]
        orientation = lay["orientation"]
        if orientation == "upright":
            put(view, "coke_can", xy)
        else:
            r = OBJECTS["coke_can"][1][0]
            yaw = math.pi / 2 if orientation == "horizontal" else 0.0
            view.place("coke_can", [xy[0], xy[1], r + 0.001], _qmul(quat_z(yaw), _LAY_DOWN))
        return {"source": "coke_can", "z0": float(view.position("coke_can")[2])}

    def predicates(self, view: SceneView, episode: SceneEpisode) -> dict[str, Any]:
        out = _grasp(view, episode)
        act = episode.active
        src = act["source"]
        z = float(view.position(src)[2])
        touching = view.contact(src, "table") > 1e-6
        out["lift"] = z - act["z0"]
        out["success_now"] = out["grasped"] and not touching and z > act["z0"] + 0.01
        return out

    def events(self, task: str, ev: Mapping[str, Any]) -> tuple[str, ...]:
        return super().events(task, ev) + (("lifted",) if ev["lift"] > 0.02 else ())

    def success(self, task: str, ev: Mapping[str, Any], held: Mapping[str, int], stage: int) -> bool:
        return bool(ev["success_now"] or held.get("lifted", 0) >= 5)


class MoveNear(TaskRules):
    """``move_near``: three objects in a row; move the source next to the target.

    Success: nothing fell over (dropped > 15 cm for source and target, > 2 cm for the other), the
    source moved at least 3 cm and more than any other object, it ends within 10 cm (edge to edge,
    by half diagonals) of the target and closer to it than to the other object by 1 cm.
    """

    def setup(self, view: SceneView, episode: SceneEpisode) -> dict[str, Any]:
        lay = episode.layout
        for name, xy in zip(lay["objects"], lay["xy"]):
            put(view, name, xy)
        return {
            "objects": list(lay["objects"]),
            "source": lay["objects"][lay["source"]],
            "target": lay["objects"][lay["target"]],
            "start": {n: view.position(n).copy() for n in lay["objects"]},
        }

    def predicates(self, view: SceneView, episode: SceneEpisode) -> dict[str, Any]:
        out = _grasp(view, episode)
        out["success_now"] = self._near(view, episode.active)
        return out

    @staticmethod
    def _near(view: SceneView, act: Mapping[str, Any]) -> bool:
        pos = {n: view.position(n) for n in act["objects"]}
        start = act["start"]
        src, tgt = act["source"], act["target"]
        moved = {n: float(np.linalg.norm(pos[n][:2] - start[n][:2])) for n in pos}
        for n in pos:
            drop = start[n][2] - pos[n][2]
            if drop > (0.15 if n in (src, tgt) else 0.02):
                return False
        if moved[src] < 0.03 or any(moved[src] <= moved[n] for n in pos if n != src):
            return False
        diag = {n: _half_diag(n) for n in pos}
        d_tgt = float(np.linalg.norm(pos[src][:2] - pos[tgt][:2]))
        if d_tgt > diag[src] + diag[tgt] + 0.10:
            return False
        others = [float(np.linalg.norm(pos[src][:2] - pos[n][:2])) for n in pos if n not in (src, tgt)]
        return all(d_tgt < d - 0.01 for d in others)


class Drawer(TaskRules):
    """The cabinet tasks: ``open_drawer``, ``close_drawer`` and the two-stage
    ``place_apple_in_closed_drawer``.

    Open: the drawer at least 15 cm out; close: at most 5 cm.  Partial success of both: the drawer
    moved at least 2 cm the right way at some step.  The apple task switches to its second
    instruction once the drawer is 15 cm open or at the task's ``stage2_at`` step, and succeeds in
    stage 2 with the drawer open at least 5 cm, the apple inside the tray, and the apple having
    touched the drawer at some step.
    """

    def setup(self, view: SceneView, episode: SceneEpisode) -> dict[str, Any]:
        lay = episode.layout
        view.set_cabinet(CABINET_POSE, float(lay.get("drawer_qpos", 0.0)))
        if episode.task != "place_apple_in_closed_drawer":
            return {}
        put(view, "apple", lay["apple_xy"])
        return {"source": "apple"}

    def predicates(self, view: SceneView, episode: SceneEpisode) -> dict[str, Any]:
        out = _grasp(view, episode)
        task = episode.task
        q = view.drawer_qpos()
        out["drawer_qpos"] = q
        q0 = float(episode.layout.get("drawer_qpos", 0.0))
        # partial success of open/close: the drawer moved >= 2 cm the right way
        out["drawer_moved"] = (q - q0 >= 0.02) if task != "close_drawer" else (q0 - q >= 0.02)
        if task == "open_drawer":
            out["success_now"] = q >= 0.15
        elif task == "close_drawer":
            out["success_now"] = q <= 0.05
        else:
            apple = view.position("apple")
            out["apple_on_drawer_floor"] = view.contact("apple", "drawer") > 1e-6
            x0 = CABINET_POSE[0] + DRAWER_INNER[0] - q
            x1 = CABINET_POSE[0] + DRAWER_INNER[1] - q
            out["apple_in_drawer"] = bool(x0 <= apple[0] <= x1 and abs(apple[1] - CABINET_POSE[1]) <= DRAWER_INNER[2]
                                          and apple[2] < CABINET_POSE[2] + DRAWER_FLOOR_Z + 0.06)
            out["success_now"] = q >= 0.05 and out["apple_in_drawer"]
        return out

    def events(self, task: str, ev: Mapping[str, Any]) -> tuple[str, ...]:
        if task in ("open_drawer", "close_drawer"):
            return ("partial",) if ev.get("drawer_moved") else ()
        return super().events(task, ev) + (("apple_on_drawer_floor",) if ev.get("apple_on_drawer_floor") else ())

    def stage(self, task: str, stage: int, steps: int, ev: Mapping[str, Any]) -> int:
        info = TASK_INFO[task]
        if info.stage2_instruction and stage == 1 and (ev.get("drawer_qpos", 0.0) >= 0.15 or steps >= info.stage2_at):
            return 2
        return stage

    def success(self, task: str, ev: Mapping[str, Any], held: Mapping[str, int], stage: int) -> bool:
        if task == "place_apple_in_closed_drawer":
            return bool(stage == 2 and ev["success_now"] and held.get("apple_on_drawer_floor", 0) > 0)
        return bool(ev["success_now"])


class Bridge(TaskRules):
    """The Bridge-style put-on tasks: the source on (or in) a target object or receptacle.

    Success: the source within the target's footprint and resting on it (its bottom at most 2 cm
    above the target's top; in the basket: inside it and at most 6 cm above its floor); on the
    plate and on the yellow cube it must also not touch the table.
    """

    def setup(self, view: SceneView, episode: SceneEpisode) -> dict[str, Any]:
        lay = episode.layout
        put(view, lay["target"], lay["target_xy"])
        put(view, lay["source"], lay["source_xy"], yaw=float(lay.get("source_yaw", 0.0)))
        return {"source": lay["source"], "target": lay["target"]}

    def predicates(self, view: SceneView, episode: SceneEpisode) -> dict[str, Any]:
        out = _grasp(view, episode)
        act = episode.active
        out["success_now"] = self._on_target(view, act["source"], act["target"])
        return out

    @staticmethod
    def _on_target(view: SceneView, src: str, tgt: str) -> bool:
        ps, pt = view.position(src), view.position(tgt)
        if tgt == "basket":
            hx, hy, hz = RECEPTACLES["basket"][0]
            inside = abs(ps[0] - pt[0]) <= hx and abs(ps[1] - pt[1]) <= hy
            return bool(inside and 0 < ps[2] - (pt[2] - hz) <= 0.06)
        if tgt == "plate":
            half_xy = RECEPTACLES["plate"][0][0]
            half_z = RECEPTACLES["plate"][0][1]
        elif tgt == "towel":
            half_xy = RECEPTACLES["towel"][0][0]
            half_z = RECEPTACLES["towel"][0][2]
        else:
            half_xy, half_z = 0.02, 0.02
        in_xy = np.all(np.abs(ps[:2] - pt[:2]) <= half_xy + 0.003)
        gap = ps[2] - pt[2] - half_z - view.half_height(src)
        on = bool(in_xy and 0 < gap + 0.005 <= 0.02)
        if tgt in ("plate", "yellow_cube"):  # must rest only on the target (SimplerEnv carrot/stack)
            on = on and view.contact(src, "table") <= 1e-6
        return on


#: family (``TaskInfo.family``) -> its rules.
FAMILIES: dict[str, TaskRules] = {"pick": Pick(), "move_near": MoveNear(), "drawer": Drawer(), "bridge": Bridge()}


def rules_for(task: str) -> TaskRules:
    """The rules of ``task``'s family."""
    return FAMILIES[TASK_INFO[task].family]


def _qmul(a: list[float], b: list[float]) -> list[float]:
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return [w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2]


def _half_diag(name: str) -> float:
    shape, size, _ = OBJECTS[name]
    if shape == "box":
        return float(np.hypot(size[0], size[1]))
    return float(size[0] * math.sqrt(2))
