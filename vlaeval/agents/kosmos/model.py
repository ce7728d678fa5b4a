"""The Kosmos-2 VLA network: RoboVLMs' "policy head, continuous, post-history" design.

Each step, the backbone reads the camera image(s) and the instruction with a learnable action
token appended; that token's last hidden state, projected, is the step's feature.  A policy
head reads the window of the last ``window_size`` features and predicts an action chunk.

The per-step network (:meth:`KosmosVLA.step`) is a pure function of its inputs: the state
carried between steps is the feature window itself (plus its validity mask), passed in and
returned explicitly.  Carrying LSTM ``(h, c)`` instead would give an unbounded history, which is
not the windowed model the head is trained as; carrying the window keeps torch, ONNX Runtime and
TensorRT numerically the same model and lets every head type share one interface.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vlaeval.agents.kosmos.config import STATE_DIMS, STATE_KEY, KosmosVLAConfig, WeightsNotAvailableError
from vlaeval.agents.kosmos.hub import not_available_message

# CLIP normalisation, which Kosmos-2's image processor uses (transformers' OPENAI_CLIP_MEAN/STD).
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: Names of the per-step network's outputs, in order (the ONNX graph uses the same names).
STEP_OUTPUTS = ("arm", "gripper_logit", "next_history", "next_history_mask")


def step_input_names(config: KosmosVLAConfig) -> tuple[str, ...]:
    """Names of the per-step network's inputs, in order: observations, text, carried window."""
    return (*config.observation_keys, "input_ids", "attention_mask", "history", "history_mask")


def observation_inputs(config: KosmosVLAConfig, observations: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """The network's observation inputs for a batch of env observations, checked.

    Camera frames stay raw uint8 (the network resizes and normalises in-graph); the state is
    float32.  Wrong shapes or dtypes are rejected here, where the message can name the key,
    rather than deep inside a runtime.
    """
    out: dict[str, np.ndarray] = {}
    for key in config.observation_keys:
        if any(key not in o for o in observations):
            raise ValueError(f"observation has no {key!r}, which this network reads (it reads {', '.join(config.observation_keys)})")
        values = [np.asarray(o[key]) for o in observations]
        for v in values:
            if key == STATE_KEY:
                if v.shape != (STATE_DIMS,):
                    raise ValueError(f"{key}: expected shape ({STATE_DIMS},), got {v.shape}")
            elif v.ndim != 3 or v.shape[-1] != 3 or v.shape[0] != v.shape[1]:
                raise ValueError(f"{key}: expected a square (H, W, 3) image, got shape {v.shape}")
            elif v.dtype != np.uint8:
                raise ValueError(f"{key}: expected uint8 pixels, got {v.dtype}")
        out[key] = np.stack(values).astype(np.float32) if key == STATE_KEY else np.stack(values)
    return out


def state_features(state: torch.Tensor) -> torch.Tensor:
    """CALVIN robot_obs (N, 15) -> (N, 18): the TCP Euler angles as sin/cos pairs.

    The gripper points down, so roll sits at +-pi and wraps between the two from one step to
    the next; sin/cos keep nearby orientations nearby.
    """
    return torch.cat([state[:, :3], torch.sin(state[:, 3:6]), torch.cos(state[:, 3:6]), state[:, 6:]], dim=1)


class LSTMHead(nn.Module):
    """Stacked LSTM cells over the window; masked steps leave the state untouched.

    The window is left-padded at the start of an episode; skipping padded steps makes a
    half-filled window give exactly what a shorter sequence would.
    """

    def __init__(self, hidden: int, layers: int) -> None:
        super().__init__()
        self.cells = nn.ModuleList(nn.LSTMCell(hidden, hidden) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        zeros = x.new_zeros(x.shape[0], x.shape[2])
        h = [zeros] * len(self.cells)
        c = [zeros] * len(self.cells)
        outputs = []
        for t in range(x.shape[1]):
            valid = mask[:, t, None] > 0.5
            inp = x[:, t]
            for layer, cell in enumerate(self.cells):
                h_new, c_new = cell(inp, (h[layer], c[layer]))
                h[layer] = torch.where(valid, h_new, h[layer])
                c[layer] = torch.where(valid, c_new, c[layer])
                inp = h[layer]
            outputs.append(inp)
        return torch.stack(outputs, dim=1)


class FCHead(nn.Module):
    """A per-step MLP: the memoryless baseline (history is kept but not read)."""

    def __init__(self, hidden: int, layers: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(*(m for _ in range(layers) for m in (nn.Linear(hidden, hidden), nn.GELU())))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class _CausalBlock(nn.Module):
    """Pre-norm transformer block with explicit attention (exports to plain ONNX ops)."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, hidden))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, w, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, w, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // self.heads) + bias, dim=-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(b, w, d))
        return x + self.mlp(self.norm2(x))


class GPTHead(nn.Module):
    """A small causal transformer over the window (RoboVLMs' GPT decoder, minus GPT-2 weights)."""

    def __init__(self, hidden: int, layers: int, heads: int, window: int) -> None:
        super().__init__()
        self.position = nn.Parameter(torch.randn(window, hidden) * 0.02)
        self.blocks = nn.ModuleList(_CausalBlock(hidden, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w = x.shape[1]
        idx = torch.arange(w, device=x.device)
        causal, itself = idx[None, :] <= idx[:, None], idx[None, :] == idx[:, None]
        # Padded keys are hidden; a padded query still sees itself so its (unused) row is finite.
        allowed = causal[None] & ((mask[:, None, :] > 0.5) | itself[None])
        bias = torch.where(allowed, 0.0, torch.finfo(x.dtype).min)[:, None]
        x = x + self.position[:w]
        for block in self.blocks:
            x = block(x, bias)
        return self.norm(x)


class KosmosVLA(nn.Module):
    """Kosmos-2 backbone + action token + policy head.  Build it with :func:`build_model`."""

    def __init__(self, config: KosmosVLAConfig, backbone: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        text_dim = backbone.config.text_config.embed_dim
        self.latent_query_num = int(backbone.config.latent_query_num)
        self.padding_idx = int(backbone.config.text_config.pad_token_id)
        self.action_token = nn.Parameter(torch.randn(text_dim) * 0.02)
        hidden = config.head_hidden_size
        self.feature_proj = nn.Linear(text_dim, hidden)
        self.feature_norm: nn.Module = nn.BatchNorm1d(hidden) if config.feature_norm == "batch" else nn.Identity()
        # BatchNorm first: the state's entries differ in scale by orders of magnitude (metres,
        # radians, a gripper width of centimetres); the running statistics fix it at inference.
        self.state_encoder: nn.Module | None = (
            nn.Sequential(nn.BatchNorm1d(STATE_DIMS + 3), nn.Linear(STATE_DIMS + 3, hidden)) if config.use_state else None
        )
        if config.head == "lstm":
            self.head: nn.Module = LSTMHead(hidden, config.head_layers)
        elif config.head == "fc":
            self.head = FCHead(hidden, config.head_layers)
        else:
            self.head = GPTHead(hidden, config.head_layers, config.head_attention_heads, config.effective_window)
        per_dim = config.n_bins if config.action_space == "discrete" else 1
        self.arm_out = nn.Linear(hidden, config.chunk_size * config.arm_dims * per_dim)
        self.gripper_out = nn.Linear(hidden, config.chunk_size)
        self.register_buffer("pixel_mean", torch.tensor(_CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(_CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def _pixels(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) frames -> normalised (N, 3, S, S); in-graph so runtimes take raw frames."""
        size = self.config.image_size
        x = frames.permute(0, 3, 1, 2).float() / 255.0
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
        return (x - self.pixel_mean) / self.pixel_std

    def freeze_normalisation(self) -> None:
        """Put every BatchNorm in eval mode (running statistics), e.g. while RL fine-tunes the rest."""
        for module in self.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.eval()

    def encode(self, observations: Mapping[str, torch.Tensor], input_ids: torch.Tensor,
               attention_mask: torch.Tensor) -> torch.Tensor:
        """Per-step features (N, head_hidden_size) from the observations (keyed as
        ``config.observation_keys``: one frame per camera, and the state) and the token ids."""
        n, q = input_ids.shape[0], self.latent_query_num
        frames = [observations[c] for c in self.config.cameras]
        pixels = torch.cat([self._pixels(f) for f in frames])
        image_embeds = self.backbone.get_image_features(pixel_values=pixels).pooler_output
        text = self.backbone.text_model.model
        embeds = text.embed_tokens(input_ids)
        pieces, start = [], 0
        for cam in range(len(frames)):
            slot = 2 + cam * (q + 2)  # after <s> and this camera's <image>
            pieces += [embeds[:, start:slot], image_embeds[cam * n : (cam + 1) * n]]
            start = slot + q
        pieces += [embeds[:, start:], self.action_token.expand(n, 1, -1)]
        mask = torch.cat([attention_mask, attention_mask.new_ones(n, 1)], dim=1)
        # Positions count real tokens only, so right padding never changes a row's result.
        positions = torch.cumsum(mask, dim=1) * mask + self.padding_idx
        hidden = text(inputs_embeds=torch.cat(pieces, dim=1), attention_mask=mask, position_ids=positions)
        feature = self.feature_proj(hidden.last_hidden_state[:, -1])
        if self.state_encoder is not None:
            feature = feature + self.state_encoder(state_features(observations[STATE_KEY].float()))
        return self.feature_norm(feature)

    def predict(self, window: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Head outputs at every window position: arm (B, W, C, A[, bins]) and gripper logits (B, W, C).

        Every position predicts the chunk that follows it, which is what training supervises.
        """
        cfg = self.config
        feats = self.head(window, mask)
        b, w = feats.shape[:2]
        arm = self.arm_out(feats)
        if cfg.action_space == "discrete":
            arm = arm.view(b, w, cfg.chunk_size, cfg.arm_dims, cfg.n_bins)
        else:
            arm = torch.tanh(arm.view(b, w, cfg.chunk_size, cfg.arm_dims))
        return arm, self.gripper_out(feats)

    def step(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One control step; inputs/outputs as named by :func:`step_input_names` / :data:`STEP_OUTPUTS`.

        history (B, W, H) float and history_mask (B, W) float (1 = valid) go in, the window
        shifted by one with this step's feature appended comes out, with the chunk predicted
        at the newest position: arm (B, C, A[, bins]) and gripper_logit (B, C).
        """
        keys = self.config.observation_keys
        observations, (input_ids, attention_mask, history, history_mask) = dict(zip(keys, inputs)), inputs[len(keys):]
        feature = self.encode(observations, input_ids, attention_mask)
        history = torch.cat([history[:, 1:], feature[:, None]], dim=1)
        history_mask = torch.cat([history_mask[:, 1:], history_mask.new_ones(history_mask.shape[0], 1)], dim=1)
        arm, gripper = self.predict(history, history_mask)
        return arm[:, -1], gripper[:, -1], history, history_mask


class StepModule(nn.Module):
    """``forward`` = :meth:`KosmosVLA.step`, the form exporters and ``torch.jit`` trace."""

    def __init__(self, model: KosmosVLA) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model.step(*inputs)


def action_loss(
    arm: torch.Tensor, gripper_logit: torch.Tensor, arm_target: torch.Tensor, gripper_target: torch.Tensor,
    valid: torch.Tensor, config: KosmosVLAConfig,
) -> torch.Tensor:
    """RoboVLMs' loss: arm MSE (continuous) or cross-entropy over bins (discrete) + weighted gripper BCE.

    Args:
        arm, gripper_logit: outputs of :meth:`KosmosVLA.predict`.
        arm_target: normalised arm actions (B, W, C, A) in [-1, 1], or bin indices (discrete).
        gripper_target: gripper actions (B, W, C), +1 open / -1 close.
        valid: (B, W, C) 1 where a target exists (window step valid and chunk not past the end).
    """
    valid = valid.float()
    denom = valid.sum().clamp_min(1.0)
    if config.action_space == "discrete":
        per = F.cross_entropy(arm.flatten(0, -2), arm_target.long().flatten(), reduction="none")
        arm_loss = (per.view(arm_target.shape).mean(-1) * valid).sum() / denom
    else:
        arm_loss = (((arm - arm_target) ** 2).mean(-1) * valid).sum() / denom
    grip = F.binary_cross_entropy_with_logits(gripper_logit, (gripper_target > 0).float(), reduction="none")
    return arm_loss + config.arm_gripper_loss_ratio * (grip * valid).sum() / denom


def build_model(
    config: KosmosVLAConfig, *, load_pretrained: bool = True, local_files_only: bool = False, seed: int = 0
) -> KosmosVLA:
    """The network a config describes.

    With ``config.pretrained`` and ``load_pretrained`` the backbone comes from
    ``Kosmos2Model.from_pretrained`` (raises :class:`WeightsNotAvailableError` when the weights
    are not cached locally); otherwise everything is initialised randomly from ``seed``, so two
    builds of the same config are identical (checkpoint loading overwrites the weights anyway).
    """
    from transformers import Kosmos2Config, Kosmos2Model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if config.pretrained and load_pretrained:
            try:
                backbone = Kosmos2Model.from_pretrained(config.pretrained, local_files_only=local_files_only)
            except (OSError, ValueError) as exc:
                raise WeightsNotAvailableError(not_available_message(config.pretrained, "model weights", exc)) from exc
        else:
            backbone = Kosmos2Model(Kosmos2Config(**config.backbone))
        model = KosmosVLA(config, backbone)
    return model.eval()
