"""LeRobot policies as vlaeval agents (``--agent lerobot:DIR``).

Importing this package imports neither lerobot nor torch (``vlaeval agents`` stays instant and works
in the Python 3.11 venv, where LeRobot cannot be installed); the policy loads when the agent is
bound to its environment.
"""

from __future__ import annotations

from vlaeval.agents.lerobot.agent import LeRobotAgent
from vlaeval.agents.lerobot.meta import ActionConventions, PolicyInfo

__all__ = ["ActionConventions", "LeRobotAgent", "PolicyInfo"]
