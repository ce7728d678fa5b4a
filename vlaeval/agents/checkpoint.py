"""vlaeval checkpoints: a directory with ``model.safetensors`` and ``config.json``.

Only safetensors and JSON are read, never pickles, so loading a checkpoint from an untrusted
source cannot execute code.  ``config.json`` carries everything needed to rebuild and use the
network (architecture config, action codec statistics, the agent's I/O conventions), so weights
can never be paired with the wrong normalisation.  Every problem found while loading raises
:class:`CheckpointError` saying what is wrong and what to do.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from vlaeval.agents.codec import ActionCodec
from vlaeval.agents.kosmos.config import KosmosVLAConfig, agent_spec
from vlaeval.conventions import AgentSpec
from vlaeval.errors import VlaevalError
from vlaeval.version import __version__

if TYPE_CHECKING:
    from vlaeval.agents.kosmos.model import KosmosVLA

FORMAT_VERSION = 1
ARCHITECTURE = "kosmos-vla"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class CheckpointError(VlaevalError):
    """A checkpoint cannot be written or read; the message says why and what to do."""


def save_checkpoint(
    directory: str | os.PathLike[str],
    model: "KosmosVLA",
    config: KosmosVLAConfig,
    codec: ActionCodec,
    *,
    spec: AgentSpec | None = None,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a checkpoint atomically: into a temporary sibling directory, then renamed into place.

    A crash mid-save therefore leaves either no checkpoint or the previous one, never a
    half-written one.  ``spec`` defaults to the conventions implied by ``config``;
    ``metadata`` is free-form JSON (training step, dataset, ...).
    """
    from safetensors.torch import save_file

    _check_codec_fits(config, codec)
    target = Path(directory)
    if target.exists() and not overwrite:
        raise CheckpointError(f"{target} already exists; pass overwrite=True to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format_version": FORMAT_VERSION,
        "vlaeval_version": __version__,
        "architecture": ARCHITECTURE,
        "model": config.to_dict(),
        "codec": codec.to_dict(),
        "agent_spec": asdict(spec or agent_spec(config)),
        "metadata": dict(metadata or {}),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        for name in (WEIGHTS_FILE, CONFIG_FILE):
            with open(tmp / name, "rb") as f:
                os.fsync(f.fileno())
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(tmp, target)
            shutil.rmtree(old)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated ``config.json`` of a checkpoint, without touching the weights."""
    root = Path(directory)
    if not root.is_dir():
        raise CheckpointError(
            f"no checkpoint directory at {root}; check the path "
            f"(a checkpoint is a directory with {CONFIG_FILE} and {WEIGHTS_FILE})"
        )
    path = root / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{path} is missing; {root} is not a complete vlaeval checkpoint (re-save it with save_checkpoint)"
        )
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); restore it from the original checkpoint") from exc
    if not isinstance(manifest, dict) or "format_version" not in manifest:
        raise CheckpointError(f"{path} has no 'format_version'; it was not written by vlaeval's save_checkpoint")
    version = manifest["format_version"]
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        hint = "upgrade vlaeval" if newer else "re-save it with save_checkpoint"
        raise CheckpointError(
            f"{path}: unknown checkpoint format version {version!r} (this vlaeval reads {FORMAT_VERSION}); {hint}"
        )
    if manifest.get("architecture") != ARCHITECTURE:
        raise CheckpointError(
            f"{path}: architecture {manifest.get('architecture')!r} is not {ARCHITECTURE!r}; "
            "load it with the matching agent"
        )
    return manifest


def load_checkpoint(directory: str | os.PathLike[str]) -> tuple["KosmosVLA", KosmosVLAConfig, ActionCodec]:
    """Rebuild the network from ``config.json`` and load ``model.safetensors`` into it, strictly.

    Validated before any weight is read: both files present, JSON well formed, known format
    version, config/codec/spec valid, tensor names and shapes exactly those the config implies.
    """
    from safetensors import SafetensorError, safe_open

    from vlaeval.agents.kosmos.model import build_model

    root = Path(directory)
    manifest = read_manifest(root)
    try:
        config = KosmosVLAConfig.from_dict(manifest["model"])
        codec = ActionCodec.from_dict(manifest["codec"])
        AgentSpec(**manifest["agent_spec"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{root / CONFIG_FILE} is invalid ({type(exc).__name__}: {exc}); re-save the checkpoint"
        ) from exc
    _check_codec_fits(config, codec)

    weights = root / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing; copy the checkpoint again including its weights")
    model = build_model(config, load_pretrained=False)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    try:
        with safe_open(str(weights), framework="pt") as f:
            found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
            problems = _shape_problems(expected, found)
            if problems:
                raise CheckpointError(
                    f"{weights} does not match the architecture in {CONFIG_FILE}:\n  - " + "\n  - ".join(problems)
                    + "\nThe weights and config come from different models; "
                    "use the config.json saved with these weights."
                )
            state = {k: f.get_tensor(k) for k in found}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights} is truncated or corrupt ({exc}); copy the checkpoint again") from exc
    model.load_state_dict(state, strict=True)
    return model.eval(), config, codec


def _shape_problems(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]) -> list[str]:
    """Human-readable differences, a few of each kind (a wrong config produces hundreds)."""
    def few(keys: list[str]) -> str:
        return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shared = sorted(set(expected) & set(found))
    mismatched = [f"{k}: file {found[k]} vs config {expected[k]}" for k in shared if found[k] != expected[k]]
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing: {few(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s): {few(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {few(mismatched)}")
    return problems


def _check_codec_fits(config: KosmosVLAConfig, codec: ActionCodec) -> None:
    if codec.arm_dims != config.arm_dims or codec.n_bins != config.n_bins:
        raise CheckpointError(
            f"action codec ({codec.arm_dims} arm dims, {codec.n_bins} bins) does not fit the model "
            f"({config.arm_dims} arm dims, {config.n_bins} bins); fit the codec with the model's settings"
        )

