"""The live snapshot: deferred contact and velocity reads give the values an eager read gives, only
when asked, and never after the physics has moved on."""

from __future__ import annotations

import numpy as np
import pybullet as pb
import pytest

from vlaeval.envs.calvin.env import CalvinEnv
from vlaeval.envs.calvin.initial_state import neutral_robot_obs, scene_obs_for
from vlaeval.envs.calvin.live_snapshot import LiveSnapshot
from vlaeval.envs.calvin.predicates import DESK_DRAWER
from vlaeval.envs.calvin.tasks import STATE_KEYS

#: Evaluation state 190: two blocks on the shelf, one on the table, drawer open.
STATE_190 = dict(zip(STATE_KEYS, (1, 1, "left", "open", "slider_left", "table", "slider_right", 0)))


@pytest.fixture
def env():
    env = CalvinEnv(cameras=())
    env.reset(options={"robot_obs": neutral_robot_obs(), "scene_obs": scene_obs_for(STATE_190),
                       "tasks": ["close_drawer"], "instructions": ["close it"]})
    # Settle so that blocks rest with contacts and move a little (non-zero velocities).
    for _ in range(3):
        env.step(np.array([0.5, 0, -0.5, 0, 0, 0, 1], dtype=np.float32))
    yield env
    env.close()


def _contacts_of(client: int, body: int) -> frozenset[tuple[int, int]]:
    """(other body, other link) of a body's contacts, by a per-body query (independent of the
    snapshot's one-query split)."""
    pairs = set()
    for point in pb.getContactPoints(bodyA=body, physicsClientId=client):
        pairs.add((point[2], point[4]) if point[1] == body else (point[1], point[3]))
    return frozenset(pairs)


def test_frozen_snapshot_holds_what_direct_reads_give(env: CalvinEnv) -> None:
    client, ids = env.client_id, env.body_ids
    snap = env.snapshot()
    assert type(snap).__name__ == "Snapshot"  # a plain snapshot, safe to keep
    assert snap.robot_contacts == _contacts_of(client, ids["robot"])
    assert any(state.contacts for _, state in snap.blocks)
    for colour, state in snap.blocks:
        body = ids[colour]
        position, orientation = pb.getBasePositionAndOrientation(body, physicsClientId=client)
        linear, angular = pb.getBaseVelocity(body, physicsClientId=client)
        assert (state.body_id, state.position, state.orientation) == (body, position, orientation)
        assert (state.linear_velocity, state.angular_velocity) == (linear, angular)
        assert state.contacts == _contacts_of(client, body)
    assert snap.drawer == pb.getJointState(ids["desk"], DESK_DRAWER, physicsClientId=client)[0]
    assert env.snapshot() is snap  # one frozen copy per step


def test_deferred_reads_fail_once_the_physics_moved_on(env: CalvinEnv) -> None:
    ids = env.body_ids

    def live() -> LiveSnapshot:
        blocks = tuple((c, ids[c]) for c in ("red", "blue", "pink"))
        return LiveSnapshot(env.client_id, ids["robot"], ids["desk"], blocks, (0.0, 0.0, 0.0, 0.0), 0, 0)

    read_first = live()
    contacts = read_first.block("blue").contacts  # read while current: the whole table is kept
    velocity = read_first.block("blue").linear_velocity
    read_first.expire()
    assert read_first.block("blue").contacts == contacts and read_first.robot_contacts is not None
    assert read_first.block("blue").linear_velocity == velocity
    with pytest.raises(RuntimeError, match="stepped past"):
        read_first.block("red").linear_velocity  # never read before expiry

    unread = live()
    unread.expire()
    with pytest.raises(RuntimeError, match="stepped past"):
        unread.robot_contacts
    assert unread.block("red").position == pb.getBasePositionAndOrientation(ids["red"], physicsClientId=env.client_id)[0]


def test_a_step_reads_contacts_only_when_its_predicate_asks(env: CalvinEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    queries = []
    query = pb.getContactPoints
    monkeypatch.setattr(pb, "getContactPoints", lambda *a, **k: queries.append(1) or query(*a, **k))
    hold = np.array([0, 0, 0, 0, 0, 0, 1], dtype=np.float32)
    for _ in range(5):
        env.step(hold)
    assert queries == []  # close_drawer decides on the drawer joint alone
    env.snapshot()
    assert len(queries) == 1  # a caller who asks gets them, in one query
