"""The snapshot of the current physics state, whose contacts and block velocities are read from
pybullet only when something asks for them.

Every step the env judges the current subtask on a fresh snapshot, but most predicates decide on
desk joints, lights or block poses alone (a drawer task never looks at contacts; a rotation task
only once the block has turned), and the contact query is the costliest read of a step after the
IK.  So a :class:`LiveSnapshot` reads the always-needed state at once and the rest on first use.

A live snapshot is only valid until the next physics step: reading it later would report a later
state.  The env therefore :meth:`~LiveSnapshot.freeze` s it into a plain
:class:`~vlaeval.envs.calvin.predicates.Snapshot` before keeping it (as a subtask's start, or for
a caller of ``snapshot()``) and expires it before stepping, after which a deferred read raises.
"""

from __future__ import annotations

from vlaeval.envs.calvin.bullet import pb
from vlaeval.envs.calvin.predicates import BlockState, Contact, Snapshot

Vector = tuple[float, float, float]


class _DeferredReads:
    """The contact table and block velocities of one physics state, each read in one pass on
    first use.  Expiring it makes a later read fail loudly instead of reading a later state."""

    def __init__(self, client: int, tracked_bodies: tuple[int, ...]) -> None:
        self._client: int | None = client
        self._tracked = tracked_bodies
        self._contacts: dict[int, frozenset[Contact]] | None = None
        self._velocities: dict[int, tuple[Vector, Vector]] = {}

    def expire(self) -> None:
        self._client = None

    def _live_client(self) -> int:
        if self._client is None:
            raise RuntimeError(
                "this snapshot's physics state has been stepped past and its contacts/velocities were never "
                "read; keep snapshot.freeze() instead of the live snapshot"
            )
        return self._client

    def contacts(self, body: int) -> frozenset[Contact]:
        """(other body, other link) over the body's contact points of the last substep: one query
        of all contact points, split by body (not one query per body)."""
        if self._contacts is None:
            touching: dict[int, set[Contact]] = {tracked: set() for tracked in self._tracked}
            get = touching.get
            for point in pb.getContactPoints(physicsClientId=self._live_client()):
                pairs = get(point[1])
                if pairs is not None:
                    pairs.add((point[2], point[4]))
                pairs = get(point[2])
                if pairs is not None:
                    pairs.add((point[1], point[3]))
            self._contacts = {tracked: frozenset(pairs) for tracked, pairs in touching.items()}
        return self._contacts[body]

    def velocity(self, body: int) -> tuple[Vector, Vector]:
        """Linear and angular velocity of a body's base."""
        velocity = self._velocities.get(body)
        if velocity is None:
            velocity = self._velocities[body] = pb.getBaseVelocity(body, physicsClientId=self._live_client())
        return velocity


class LiveBlockState(BlockState):
    """A block of the current physics state: pose read at once, velocities and contacts deferred."""

    def __init__(self, body_id: int, position: Vector, orientation: tuple[float, float, float, float],
                 reads: _DeferredReads) -> None:
        # BlockState is frozen: its fields go straight into the instance dict (one call per
        # object, since a snapshot is built every step).
        self.__dict__.update(body_id=body_id, position=position, orientation=orientation, _reads=reads)

    @property
    def linear_velocity(self) -> Vector:  # type: ignore[override]
        return self._reads.velocity(self.body_id)[0]

    @property
    def angular_velocity(self) -> Vector:  # type: ignore[override]
        return self._reads.velocity(self.body_id)[1]

    @property
    def contacts(self) -> frozenset[Contact]:  # type: ignore[override]
        return self._reads.contacts(self.body_id)

    def freeze(self) -> BlockState:
        return BlockState(self.body_id, self.position, self.orientation, self.linear_velocity,
                          self.angular_velocity, self.contacts)


class LiveSnapshot(Snapshot):
    """The §C.1 snapshot of the current physics state, with contacts and velocities read on demand.

    Args:
        client: the pybullet client whose state this is.
        robot_id, desk_id: body ids of the robot and the desk.
        blocks: (colour, body id) in the scene's block order.
        joints: (slide, drawer, button, switch) positions, already read for the button/switch logic.
        lightbulb, led: logical light states.
    """

    def __init__(self, client: int, robot_id: int, desk_id: int, blocks: tuple[tuple[str, int], ...],
                 joints: tuple[float, float, float, float], lightbulb: int, led: int) -> None:
        reads = _DeferredReads(client, (robot_id, *(body for _, body in blocks)))
        pose = pb.getBasePositionAndOrientation
        states = tuple([(colour, LiveBlockState(body, *pose(body, physicsClientId=client), reads))
                        for colour, body in blocks])
        slide, drawer, button, switch = joints
        self.__dict__.update(robot_id=robot_id, desk_id=desk_id, blocks=states, slide=slide, drawer=drawer,
                             button=button, switch=switch, lightbulb=lightbulb, led=led, _reads=reads, _frozen=None)

    @property
    def robot_contacts(self) -> frozenset[Contact]:  # type: ignore[override]
        return self._reads.contacts(self.robot_id)

    def expire(self) -> None:
        """Mark the physics state as stepped past: deferred reads now raise (a frozen copy taken
        before stays valid)."""
        self._reads.expire()

    def freeze(self) -> Snapshot:
        """A plain snapshot with every value read now (the same object on every call)."""
        if self._frozen is None:
            blocks = tuple([(colour, state.freeze()) for colour, state in self.blocks])
            self.__dict__["_frozen"] = Snapshot(
                self.robot_id, self.desk_id, self.robot_contacts, blocks, self.slide, self.drawer,
                self.button, self.switch, self.lightbulb, self.led,
            )
        return self._frozen
