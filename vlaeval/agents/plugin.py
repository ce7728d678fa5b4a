"""Built-in plugin: the agents shipped with vlaeval and the agent URI schemes they understand."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from vlaeval.plugins.hookspecs import hookimpl


@hookimpl
def vlaeval_register_agents(register: Callable[..., None]) -> None:
    register("random", "vlaeval.agents.random:RandomAgent", description="uniform samples of the suite's action space (seeded)")
    register("replay", "vlaeval.agents.replay:ReplayAgent",
             description="plays back recorded demonstrations open loop (--agent-opt data=DIR [demo=NAME])")
    register("expert", "vlaeval.agents.expert.agent:CalvinExpert", description="scripted CALVIN expert reading the simulator state (privileged)")
    register("simpler-expert", "vlaeval.agents.simpler_expert.agent:SimplerExpert",
             description="scripted expert for the simpler suite reading the simulator state (privileged)")
    register("kosmos-lstm", "vlaeval.agents.kosmos:kosmos_lstm",
             description="RoboVLMs-style VLA: pretrained Kosmos-2 backbone + LSTM policy head (torch/ONNX/TensorRT)")
    register("kosmos-lstm-tiny", "vlaeval.agents.kosmos:kosmos_lstm_tiny",
             description="the kosmos-lstm architecture, tiny and randomly initialised: trains and runs on a CPU")
    register("kosmos-lstm-cpu", "vlaeval.agents.kosmos:kosmos_lstm_cpu",
             description="kosmos-lstm-tiny with both cameras and robot_obs: the preset of the CPU training recipe (--checkpoint)")
    register("lerobot", "vlaeval.agents.lerobot.agent:LeRobotAgent",
             description="a policy saved by LeRobot (ACT, diffusion, ...): --agent-opt path=DIR, or --agent lerobot:DIR")


@hookimpl(trylast=True)
def vlaeval_resolve_agent(uri: str, options: dict[str, Any]) -> Any:
    """Built-in agent references beyond registered names.

    * ``ws://host:port``: a policy served with ``vlaeval serve`` (or any server of that protocol);
    * ``lerobot:DIR``: a policy directory LeRobot saved (``PreTrainedPolicy.save_pretrained``);
    * ``package.module:AgentClass``: an unregistered agent class, straight from its import path;
    * a checkpoint or exported-agent directory (``vlaeval export`` output): the agent it holds.
    """
    from vlaeval.agents.remote import resolve_uri
    from vlaeval.agents.resolve import construct

    if uri.startswith("lerobot:"):
        from vlaeval.agents.lerobot.agent import LeRobotAgent

        return construct(LeRobotAgent, {"path": uri.removeprefix("lerobot:"), **options}, f"agent {uri!r}")
    remote = resolve_uri(uri, options)
    if remote is not None:
        return remote

    if Path(uri).is_dir() and (Path(uri) / "config.json").is_file():
        from vlaeval.agents.checkpoint import ARCHITECTURE, read_manifest

        if read_manifest(uri).get("architecture") == ARCHITECTURE:
            from vlaeval.agents.kosmos.agent import KosmosLSTMAgent

            return construct(KosmosLSTMAgent, {"checkpoint": uri, **options}, f"agent checkpoint {uri!r}")
        return None
    if "://" in uri or ":" not in uri:
        return None
    from vlaeval.plugins.registry import import_target

    return construct(import_target(uri, what="agent"), options, f"agent {uri!r}")
