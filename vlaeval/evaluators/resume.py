"""Resuming a run: its saved config, the checks a resume makes, and the finished rows' checks.

The manifest is a file people edit, and its finished rows were played under one configuration:
a resume reuses the saved config (extended to more episodes at most) and refuses to add episodes
to rows that were played under another.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Sequence

from vlaeval.envs.suite import EpisodeSpec
from vlaeval.errors import VlaevalError
from vlaeval.evaluators.config import _CONFIG_TYPES, RunConfig, _config_dict
from vlaeval.plugins.manager import suite_spec
from vlaeval.results.sequential import StoppingRule
from vlaeval.results.store import EpisodeRecord, canonical_json, read_manifest


def _resumed_run(run_dir: Path, agent: Any, suite: str | None, until: StoppingRule | None,
                 episodes: int | None) -> tuple[dict[str, Any], RunConfig]:
    """The manifest and saved config of the run to resume, checked against what the caller asked for.

    The agent, suite and stopping test cannot change mid-run; ``episodes`` may only extend it.
    """
    manifest = read_manifest(run_dir)
    config = _config_from_manifest(manifest, run_dir)
    for given, saved, what in ((agent if isinstance(agent, str) else None, config.agent, "agent"), (suite, config.suite, "suite")):
        if given is not None and given != saved:
            raise VlaevalError(f"{run_dir} is a run of {what} {saved!r}, not {given!r}; drop --{what} or start a new run")
    if until is not None and until != config.until:
        started = f"with a {config.until.describe()}" if config.until else "without --until decided"
        raise VlaevalError(f"{run_dir} was started {started}; its test cannot change mid-run: drop --until and its options to resume it")
    if episodes is not None and episodes != config.episodes:
        available = suite_spec(config.suite).protocol.episodes
        if not config.episodes < episodes <= available:
            raise VlaevalError(
                f"{run_dir} evaluates {config.episodes} episodes; --resume can extend it to more "
                f"(up to {available}), not change it to {episodes}"
            )
        config = dataclasses.replace(config, episodes=episodes)
        manifest["config"] = _config_dict(config)
    return manifest, config


def _config_from_manifest(manifest: Mapping[str, Any], run_dir: Path) -> RunConfig:
    try:
        config = RunConfig(**manifest["config"])
    except (KeyError, TypeError) as exc:
        raise VlaevalError(f"{run_dir}/manifest.json has no valid run config ({exc}); it cannot be resumed") from exc
    for name, kind in _CONFIG_TYPES.items():  # the manifest is a file people edit
        value = getattr(config, name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise VlaevalError(f"{run_dir}/manifest.json: config.{name} cannot be {value!r}; restore it to resume the run")
    if config.until is not None:
        config = dataclasses.replace(config, until=StoppingRule.from_config(config.until, f"{run_dir}/manifest.json"))
    return config


def _check_finished(run_dir: Path, manifest: Mapping[str, Any], fingerprint: Mapping[str, Any], done: Mapping[int, EpisodeRecord],
                    episodes: Sequence[EpisodeSpec]) -> None:
    """Refuse to add episodes to rows that were played under another configuration.

    The manifest is an editable file: resuming after changing its agent, setting or seed would mix
    rows of two configurations in one run.  The rows are the ground truth, so their own columns
    and episode seeds are checked first (all that runs from older versions have), then the
    fingerprint recorded in the manifest (which names the field that changed) and the one stamped
    in each row (which catches a manifest edited together with its fingerprint).
    """
    if not done:
        return  # nothing to mix: the configuration as it stands becomes the run's
    fields, fix = fingerprint["fields"], "restore manifest.json or start a new run"
    seeds = {e.index: e.seed for e in episodes}
    for rec in done.values():
        for row in rec.rows:
            for column in ("agent", "suite", "suite_version", "setting"):
                if row[column] != fields[column]:
                    remedy = f"install version {row[column]!r} of the suite or start a new run" if column == "suite_version" else fix
                    raise VlaevalError(f"{run_dir}: {column} differs: episode {rec.episode} was played with {column} "
                                       f"{row[column]!r}, the run would now use {fields[column]!r}; {remedy}")
        if rec.episode not in seeds:
            raise VlaevalError(f"{run_dir}: episode {rec.episode} is finished but the manifest plans {len(seeds)} episodes; {fix}")
        if rec.seed != seeds[rec.episode]:
            raise VlaevalError(f"{run_dir}: seed differs: episode {rec.episode} was played with episode seed {rec.seed}, "
                               f"the manifest's seed {fields['seed']} gives it {seeds[rec.episode]}; {fix}")
    recorded = manifest.get("fingerprint")
    before = recorded.get("fields") if isinstance(recorded, dict) else None
    if isinstance(before, dict):
        checked = [k for k in {**before, **fields} if k in before or k == "until"]  # not fields older versions lacked
        changed = [k for k in checked if canonical_json(before.get(k)) != canonical_json(fields.get(k))]
        if changed:
            raise VlaevalError(f"{run_dir}: {changed[0]} differs: the finished episodes were played with {changed[0]} "
                               f"{canonical_json(before.get(changed[0]))}, the manifest now says {canonical_json(fields.get(changed[0]))}; {fix}")
    for rec in done.values():
        if rec.config_hash is not None and rec.config_hash != fingerprint["config_hash"]:
            raise VlaevalError(f"{run_dir}: episode {rec.episode} was played with a different configuration (config_hash "
                               f"{rec.config_hash}, the manifest gives {fingerprint['config_hash']}): the agent options or step "
                               f"timeout differ; {fix}")
