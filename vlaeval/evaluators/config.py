"""A run's configuration: what ``vlaeval run`` resolved, as its manifest saves it and as its rows are stamped.

:class:`RunConfig` is what ``--resume`` reuses; :func:`_fingerprint` hashes the fields that decide
which episodes a run plays and what can happen in them, so rows of two configurations never mix
in one run (:mod:`vlaeval.evaluators.resume` checks them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from vlaeval.envs.suite import SuiteSpec
from vlaeval.evaluators.guards import DEFAULT_STEP_TIMEOUT
from vlaeval.results.sequential import StoppingRule
from vlaeval.results.store import config_hash


@dataclass(frozen=True)
class RunConfig:
    """The resolved configuration of a run, saved in its manifest and reused by ``--resume``."""

    agent: str
    suite: str
    setting: str
    episodes: int
    seed: int
    step_timeout: float = DEFAULT_STEP_TIMEOUT
    agent_options: Mapping[str, Any] = field(default_factory=dict)
    until: StoppingRule | None = None  # --until decided: the sequential test that may end the run early


#: The JSON type of each saved config field.
_CONFIG_TYPES: Mapping[str, type | tuple[type, ...]] = {
    "agent": str, "suite": str, "setting": str, "episodes": int, "seed": int, "step_timeout": (int, float), "agent_options": dict,
    "until": (dict, type(None)),
}


def _config_dict(config: RunConfig) -> dict[str, Any]:
    """The config as the manifest saves it; ``until`` only when set, so runs without a stopping
    rule keep the manifest (and config hash) they always had."""
    saved = dataclasses.asdict(config)
    if config.until is None:
        del saved["until"]
    return saved


def _fingerprint(config: RunConfig, spec: SuiteSpec) -> dict[str, Any]:
    """The fields that decide which episodes a run plays and what can happen in them, and their hash.

    Stored in the manifest and stamped in every stored record, so a resume can tell rows of this
    configuration from rows of another.  The episode count is not one of them: ``--resume RUN
    --episodes N`` legitimately extends a run.
    """
    fields = {
        "agent": config.agent, "agent_options": dict(config.agent_options), "suite": config.suite, "suite_version": spec.version,
        "setting": config.setting, "seed": config.seed, "step_timeout": float(config.step_timeout),
    }
    if config.until is not None:  # a stopping rule decides how many episodes are played; absent, older hashes stay valid
        fields["until"] = dataclasses.asdict(config.until)
    return {"config_hash": config_hash(fields), "fields": fields}
