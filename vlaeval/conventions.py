"""I/O conventions shared by agents and suites.

Most "0 % success" reproduction reports in the field are convention mismatches (inverted gripper
polarity, delta actions sent to an absolute controller, Euler angles read as axis-angle).  Agents
and suites therefore both *declare* their conventions and the runner compares them before the
first step, failing with a message that names every mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Accepted by an agent to mean "I adapt to whatever the suite uses".
ANY = "any"

ACTION_TYPES = ("relative_ee", "absolute_ee", "joint")
ROTATION_FORMATS = ("euler_xyz", "quaternion_xyzw", "axis_angle", "none")
GRIPPER_POLARITIES = ("open_positive", "close_positive")


class ConventionError(ValueError):
    """The agent's declared conventions do not match what the suite provides or expects."""


@dataclass(frozen=True)
class AgentSpec:
    """What an agent emits and what it needs to see.

    Attributes:
        action_type: one of :data:`ACTION_TYPES` or ``"any"``.
        rotation: rotation format of the action's orientation part, or ``"any"``.
        gripper: gripper polarity (``"open_positive"``: +1 opens, -1 closes) or ``"any"``.
        observation_keys: observation entries the agent reads; suites render only these, so
            an agent that needs no camera makes the simulator skip rendering.
        privileged: True if the agent reads simulator state (scripted experts); recorded in
            the results so privileged runs are never mistaken for policy results.
    """

    action_type: str = ANY
    rotation: str = ANY
    gripper: str = ANY
    observation_keys: tuple[str, ...] = ()
    privileged: bool = False

    def __post_init__(self) -> None:
        _check_choice("action_type", self.action_type, ACTION_TYPES + (ANY,))
        _check_choice("rotation", self.rotation, ROTATION_FORMATS + (ANY,))
        _check_choice("gripper", self.gripper, GRIPPER_POLARITIES + (ANY,))
        object.__setattr__(self, "observation_keys", tuple(self.observation_keys))


@dataclass(frozen=True)
class SuiteConventions:
    """What a suite's environments accept and provide.

    Attributes:
        action_types: action types the environment can be configured for (first = default).
        rotation: rotation format of orientation actions.
        gripper: gripper polarity the environment expects.
        observation_keys: every observation entry the environment can provide.
    """

    action_types: tuple[str, ...] = ("relative_ee",)
    rotation: str = "euler_xyz"
    gripper: str = "open_positive"
    observation_keys: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for a in self.action_types:
            _check_choice("action_types", a, ACTION_TYPES)
        _check_choice("rotation", self.rotation, ROTATION_FORMATS)
        _check_choice("gripper", self.gripper, GRIPPER_POLARITIES)
        object.__setattr__(self, "action_types", tuple(self.action_types))
        object.__setattr__(self, "observation_keys", tuple(self.observation_keys))


def negotiate(agent: AgentSpec, suite: SuiteConventions, *, agent_name: str, suite_name: str) -> str:
    """Return the action type both sides agree on, or raise :class:`ConventionError`.

    Every mismatch is listed at once so a user fixes them in one go.
    """
    problems: list[str] = []
    if agent.action_type == ANY:
        action_type = suite.action_types[0]
    elif agent.action_type in suite.action_types:
        action_type = agent.action_type
    else:
        action_type = ""
        problems.append(
            f"action type: agent emits {agent.action_type!r}, suite accepts {', '.join(suite.action_types)}"
        )
    if agent.rotation not in (ANY, suite.rotation):
        problems.append(f"rotation: agent emits {agent.rotation!r}, suite expects {suite.rotation!r}")
    if agent.gripper not in (ANY, suite.gripper):
        problems.append(f"gripper polarity: agent uses {agent.gripper!r}, suite expects {suite.gripper!r}")
    missing = [k for k in agent.observation_keys if k not in suite.observation_keys]
    if missing:
        problems.append(
            f"observations: agent needs {', '.join(missing)}, suite provides {', '.join(suite.observation_keys) or 'none'}"
        )
    if problems:
        raise ConventionError(
            f"agent {agent_name!r} does not fit suite {suite_name!r}:\n  - "
            + "\n  - ".join(problems)
            + "\nConvert the agent's outputs (or declare the conventions it really uses in its AgentSpec)."
        )
    return action_type


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{what}={value!r} is not one of {', '.join(choices)}")
