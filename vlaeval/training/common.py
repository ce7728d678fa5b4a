"""Pieces shared by the trainers: configs on disk, windows over features, a batched torch policy."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from vlaeval.durable import write_text
from vlaeval.errors import VlaevalError


def config_to_dict(config: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config), default=list))


def config_text(config: Any) -> str:
    """A trainer config as aligned ``key = value`` lines (printed at the start of a run)."""
    d = config_to_dict(config)
    width = max(len(k) for k in d)
    return "\n".join(f"  {k:<{width}} = {v!r}" for k, v in d.items())


def save_config(config: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps({"trainer": type(config).__name__, "config": config_to_dict(config)}, indent=2) + "\n")


def load_config(cls: type, path: Path) -> Any:
    data = json.loads(path.read_text())["config"]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in fields}
    return cls(**kwargs)


@dataclasses.dataclass(frozen=True)
class RunDir:
    """A trainer's run directory: where the last checkpoint and the trainer state live."""

    path: Path
    last: Path
    state_file: Path
    resuming: bool


def open_run(cfg: Any, compare: Sequence[str], echo: Any, weights_option: str) -> RunDir:
    """Start or resume the run in ``cfg.out``: seed, print and save the config.

    A run resumes when it holds both its last checkpoint and the trainer state; resuming with
    different values of the ``compare`` fields would silently mix two experiments, so it fails.
    A pickled trainer state from before :mod:`vlaeval.training.state` is refused unread (loading
    it could run code); ``weights_option`` is the trainer's flag that starts a new run from the
    run's last weights, which the error suggests instead.
    """
    from vlaeval.training.state import LEGACY_STATE_FILE, STATE_FILE

    if getattr(cfg, "threads", None):
        torch.set_num_threads(cfg.threads)
    path = Path(cfg.out)
    state_file = path / STATE_FILE
    if (path / LEGACY_STATE_FILE).exists() and not state_file.exists():
        raise VlaevalError(f"{path / LEGACY_STATE_FILE} is a pickled trainer state, a format vlaeval no longer reads "
                           f"(unpickling can run code); start a new run with another --out, from this run's weights "
                           f"with {weights_option} {path / 'last'}")
    run = RunDir(path, path / "last", state_file, (path / "last").is_dir() and state_file.is_file())
    if run.resuming:
        saved = load_config(type(cfg), path / "train_config.json")
        differs = sorted(k for k in compare if getattr(saved, k) != getattr(cfg, k))
        if differs:
            raise VlaevalError(f"{path} was trained with different {', '.join(differs)}; resume with the same "
                               f"settings or pick another --out")
    echo(f"{type(cfg).__name__} ({'resuming' if run.resuming else 'new run'} in {path}):\n{config_text(cfg)}")
    save_config(cfg, path / "train_config.json")
    seed_everything(cfg.seed)
    return run


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def unfold_windows(features: torch.Tensor, starts: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-step windows over a sequence of features, left-padded at segment starts.

    Args:
        features: (T, H) per-step features of consecutive steps.
        starts: (T,) index of the first step of the segment each step belongs to (the agent's
            history is cleared at every subtask start).
        window: steps per window (the current step last).

    Returns:
        windows (T, window, H) and mask (T, window), 1 where the position holds a real step:
        exactly the (history, history_mask) the agent carries when it reaches step t.
    """
    t = features.shape[0]
    idx = torch.arange(t, device=features.device)[:, None] - (window - 1) + torch.arange(window, device=features.device)[None]
    mask = (idx >= starts[:, None]) & (idx >= 0)
    windows = features[idx.clamp_min(0)] * mask[..., None].to(features.dtype)
    return windows, mask.to(features.dtype)


class BatchedPolicy:
    """The agent's per-step computation in torch (with or without gradients) for B parallel envs.

    Mirrors :meth:`KosmosLSTMAgent.act_batch` (window carried explicitly, first action of the
    predicted chunk) so rollouts collected here behave like ``vlaeval run`` with the same
    checkpoint, but exposes the raw outputs (normalised arm mean, gripper logit) RL needs.
    """

    def __init__(self, model: Any, config: Any, codec: Any) -> None:
        from vlaeval.agents.kosmos.text import TextEncoder, load_tokenizer

        self.model, self.config, self.codec = model, config, codec
        self.text = TextEncoder(load_tokenizer(config), config, model.latent_query_num)
        self.history: torch.Tensor | None = None
        self.history_mask: torch.Tensor | None = None

    def reset(self, batch: int) -> None:
        w, h = self.config.effective_window, self.config.head_hidden_size
        self.history = torch.zeros(batch, w, h)
        self.history_mask = torch.zeros(batch, w)

    def reset_slot(self, slot: int) -> None:
        assert self.history is not None and self.history_mask is not None
        self.history[slot] = 0
        self.history_mask[slot] = 0

    @torch.no_grad()
    def step(self, observations: Sequence[Mapping[str, Any]], instructions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Normalised arm mean (B, arm_dims) and gripper logit (B,) of the first chunk action."""
        if self.history is None or self.history.shape[0] != len(observations):
            self.reset(len(observations))
        from vlaeval.agents.kosmos.model import observation_inputs

        obs = observation_inputs(self.config, observations)
        ids, mask = self.text(instructions)
        arm, grip, self.history, self.history_mask = self.model.step(
            *(torch.from_numpy(obs[k]) for k in self.config.observation_keys), torch.from_numpy(ids), torch.from_numpy(mask), self.history, self.history_mask
        )
        if self.config.action_space == "discrete":
            arm = torch.from_numpy(self.codec.from_bins(arm.argmax(-1).numpy()))
        return arm[:, 0].float().numpy(), grip[:, 0].float().numpy()

    def to_env(self, arm: np.ndarray, grip_logit: np.ndarray) -> np.ndarray:
        """Normalised arm + gripper logit/sign -> physical env actions (B, arm_dims + 1)."""
        return self.codec.denormalize(np.concatenate([arm, np.asarray(grip_logit)[:, None]], axis=-1))
