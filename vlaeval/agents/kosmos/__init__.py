"""Kosmos-2 vision-language-action agents (RoboVLMs' policy-head design).

Importing this package is cheap (no torch); the agent and model load torch on first access.
The registered factories live here rather than next to the agent so that ``kosmos-lstm`` can
check the Hugging Face cache before torch is imported: a missing download fails in a fraction
of a second instead of after seconds of imports (and, online, the hub client's retries).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vlaeval.agents.kosmos.config import KOSMOS2_HUB_ID, PRESETS, KosmosVLAConfig, WeightsNotAvailableError, agent_spec, get_preset

if TYPE_CHECKING:
    from vlaeval.agents.kosmos.agent import KosmosLSTMAgent

__all__ = ["PRESETS", "KosmosLSTMAgent", "KosmosVLAConfig", "WeightsNotAvailableError", "agent_spec", "get_preset",
           "kosmos_lstm", "kosmos_lstm_cpu", "kosmos_lstm_tiny"]


def __getattr__(name: str) -> Any:
    if name == "KosmosLSTMAgent":
        from vlaeval.agents.kosmos.agent import KosmosLSTMAgent

        return KosmosLSTMAgent
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def kosmos_lstm(**options: Any) -> KosmosLSTMAgent:
    """The ``kosmos-lstm`` agent: Kosmos-2 (``microsoft/kosmos-2-patch14-224``) + LSTM head."""
    _require_backbone(options)
    from vlaeval.agents.kosmos.agent import KosmosLSTMAgent

    return KosmosLSTMAgent(preset="kosmos-lstm", **options)


def _require_backbone(options: dict[str, Any]) -> None:
    """Without a checkpoint the backbone comes from the hub cache, so that is probed first; a
    checkpoint holds the whole network and needs only the tokenizer, which the agent loads itself."""
    if options.get("checkpoint") is None and options.get("local_files_only", True):
        from vlaeval.agents.kosmos.hub import require_weights

        require_weights(KOSMOS2_HUB_ID)


kosmos_lstm.preflight = _require_backbone  # type: ignore[attr-defined]  # the runner's cheap check before a worker starts


def kosmos_lstm_tiny(**options: Any) -> KosmosLSTMAgent:
    """The ``kosmos-lstm-tiny`` agent: the same architecture, tiny and CPU-trainable."""
    from vlaeval.agents.kosmos.agent import KosmosLSTMAgent

    return KosmosLSTMAgent(**{"preset": "kosmos-lstm-tiny", **options})


def kosmos_lstm_cpu(**options: Any) -> KosmosLSTMAgent:
    """The ``kosmos-lstm-cpu`` agent: the tiny architecture as the CPU training recipe configures it
    (both cameras, robot_obs); meant to run a trained ``--checkpoint``."""
    return kosmos_lstm_tiny(**{"preset": "kosmos-lstm-cpu", **options})
