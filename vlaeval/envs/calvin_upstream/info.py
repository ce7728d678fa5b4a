"""Upstream's info dicts (``PlayTableSimEnv.get_info()``) read as vlaeval's snapshots.

Upstream hands its oracle one dict per step: ``robot_info`` (uid, TCP pose, contacts) and
``scene_info`` (blocks as ``movable_objects["block_<colour>"]`` with pose, velocities and
pybullet contact points, the desk as ``fixed_objects["table"]`` with its link map, door, button
and switch joints, logical light states).  Two readers of upstream's state use our
:class:`~vlaeval.envs.calvin.predicates.Snapshot` type:

* :func:`snapshot_of` converts the dict alone: what the scripted expert sees of upstream's
  scene (block poses and contacts, desk joints, lights), never our simulator;
* :func:`live_snapshot` takes only ids, desk joints and lights from the dict and reads poses,
  contacts and velocities from upstream's pybullet client the way the ``calvin`` suite reads
  its own (:class:`~vlaeval.envs.calvin.live_snapshot.LiveSnapshot`): what the predicate
  cross-check judges with our predicates, so that it tests the suite's reading path too.
"""

from __future__ import annotations

from typing import Any, Mapping

from vlaeval.envs.calvin.live_snapshot import LiveSnapshot
from vlaeval.envs.calvin.predicates import BlockState, Contact, Snapshot
from vlaeval.envs.calvin.tasks import COLOURS

Info = Mapping[str, Any]


def block_key(colour: str) -> str:
    """Upstream's name of a block (``block_red``)."""
    return f"block_{colour}"


def desk_joints(info: Info) -> tuple[float, float, float, float]:
    """(slide, drawer, button, switch) joint positions."""
    scene = info["scene_info"]
    return (float(scene["doors"]["base__slide"]["current_state"]), float(scene["doors"]["base__drawer"]["current_state"]),
            float(scene["buttons"]["base__button"]["joint_state"]), float(scene["switches"]["base__switch"]["joint_state"]))


def lights(info: Info) -> dict[str, int]:
    """Logical light states: ``{"led": 0/1, "lightbulb": 0/1}``."""
    scene_lights = info["scene_info"]["lights"]
    return {name: int(scene_lights[name]["logical_state"]) for name in ("led", "lightbulb")}


def body_ids(info: Info) -> dict[str, int]:
    """Body ids of ``robot``, ``desk`` and the block colours."""
    scene = info["scene_info"]
    return {"robot": int(info["robot_info"]["uid"]), "desk": int(scene["fixed_objects"]["table"]["uid"]),
            **{colour: int(scene["movable_objects"][block_key(colour)]["uid"]) for colour in COLOURS}}


def _pairs(contacts: Any) -> frozenset[Contact]:
    """(other body, other link) of pybullet contact points queried with ``bodyA=`` the body."""
    return frozenset((int(c[2]), int(c[4])) for c in contacts)


def snapshot_of(info: Info) -> Snapshot:
    """The state an info dict describes, as a plain snapshot (no pybullet query)."""
    scene, ids = info["scene_info"], body_ids(info)
    blocks = []
    for colour in COLOURS:
        block = scene["movable_objects"][block_key(colour)]
        blocks.append((colour, BlockState(ids[colour], tuple(block["current_pos"]), tuple(block["current_orn"]),
                                          tuple(block["current_lin_vel"]), tuple(block["current_ang_vel"]),
                                          _pairs(block["contacts"]))))
    light = lights(info)
    return Snapshot(ids["robot"], ids["desk"], _pairs(info["robot_info"]["contacts"]), tuple(blocks),
                    *desk_joints(info), light["lightbulb"], light["led"])


def live_snapshot(client: int, info: Info) -> LiveSnapshot:
    """Our live snapshot of upstream's current physics state (``client`` is upstream's pybullet
    client, ``info`` its info dict of that same state), built as the ``calvin`` suite builds its
    own: the logical lights come from upstream (our button/switch logic is tested on our env)."""
    ids, light = body_ids(info), lights(info)
    return LiveSnapshot(client, ids["robot"], ids["desk"], tuple((c, ids[c]) for c in COLOURS), desk_joints(info),
                        light["lightbulb"], light["led"])
