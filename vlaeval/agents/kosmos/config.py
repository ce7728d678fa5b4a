"""Architecture description of the Kosmos-2 VLA (torch-free, so configs load without torch).

One frozen dataclass holds every architectural choice, the way RoboVLMs' JSON configs do, so a
checkpoint's ``config.json`` is enough to rebuild the exact network that produced its weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from vlaeval.conventions import AgentSpec
from vlaeval.errors import VlaevalError

HEADS = ("lstm", "fc", "gpt")
ACTION_SPACES = ("continuous", "discrete")
FEATURE_NORMS = ("none", "batch")
CAMERAS = ("rgb_static", "rgb_gripper")
#: Proprioception observation read with ``use_state`` (CALVIN's robot_obs) and its width.
STATE_KEY = "robot_obs"
STATE_DIMS = 15

#: Hub id of the pretrained backbone used by the full-size preset.
KOSMOS2_HUB_ID = "microsoft/kosmos-2-patch14-224"


class WeightsNotAvailableError(VlaevalError):
    """Pretrained weights (or tokenizer files) are not in the local Hugging Face cache."""


@dataclass(frozen=True)
class KosmosVLAConfig:
    """A Kosmos-2 backbone, a learnable action token and a policy head over a history window.

    Attributes:
        backbone: keyword overrides for ``transformers.Kosmos2Config`` (``text_config``,
            ``vision_config``, ``latent_query_num``); empty means the kosmos-2-patch14-224
            architecture, which is ``Kosmos2Config()``'s default.
        pretrained: hub id to initialise the backbone from with ``from_pretrained``; ``None``
            initialises randomly (tiny preset, or when weights come from a vlaeval checkpoint).
        tokenizer: hub id of the tokenizer, or ``None`` for the locally trained byte-level BPE.
        image_size: side of the square image fed to the vision tower; camera frames are resized
            to it inside the network so every runtime sees raw uint8 frames.
        cameras: observation keys encoded, each as its own block of image tokens.
        use_state: also read the proprioceptive state (:data:`STATE_KEY`, RoboVLMs' ``use_state``),
            embedded and added to each step's feature. It tells the head where the gripper is
            without having to read that off the image, which a backbone trained from scratch
            on a few hundred demos does poorly.
        head: policy head, one of :data:`HEADS`; ``fc`` is memoryless (looks at the current step
            only), ``lstm`` and ``gpt`` model the history window.
        head_hidden_size: width of the per-step feature and of the head.
        feature_norm: ``batch`` standardises each feature dimension over the batch in training
            (running statistics at inference, so runtimes see a fixed affine map) before the
            head. A randomly initialised backbone's feature is a large constant plus a small
            input-dependent part; that saturates the LSTM's gates so it learns nothing (it fails
            to overfit 32 windows), and centring the feature lets it learn. ``none`` feeds the
            projection as is (a pretrained backbone).
        head_layers: LSTM layers or transformer blocks of the head.
        head_attention_heads: attention heads of the ``gpt`` head.
        action_space: ``continuous`` (tanh regression of the arm) or ``discrete`` (``n_bins``-way
            classification per arm dim); the gripper is a binary logit in both.
        n_bins: bins per arm dim in the discrete action space.
        history: if False the window is a single step (RoboVLMs' one-step models).
        window_size: number of steps the head sees, current step included.
        chunk_size: actions predicted per step (RoboVLMs' ``fwd_pred_next_n``).
        arm_dims: continuous arm dims (CALVIN: xyz + Euler xyz).
        arm_gripper_loss_ratio: weight of the gripper loss relative to the arm loss.
        max_text_tokens: instruction tokens kept; longer instructions are truncated.
    """

    backbone: Mapping[str, Any] = field(default_factory=dict)
    pretrained: str | None = None
    tokenizer: str | None = None
    image_size: int = 224
    cameras: tuple[str, ...] = ("rgb_static",)
    use_state: bool = False
    head: str = "lstm"
    head_hidden_size: int = 512
    feature_norm: str = "none"
    head_layers: int = 2
    head_attention_heads: int = 4
    action_space: str = "continuous"
    n_bins: int = 256
    history: bool = True
    window_size: int = 16
    chunk_size: int = 10
    arm_dims: int = 6
    arm_gripper_loss_ratio: float = 0.01
    max_text_tokens: int = 32

    def __post_init__(self) -> None:
        object.__setattr__(self, "cameras", tuple(self.cameras))
        object.__setattr__(self, "backbone", dict(self.backbone))
        if self.head not in HEADS:
            raise ValueError(f"head={self.head!r} is not one of {', '.join(HEADS)}")
        if self.feature_norm not in FEATURE_NORMS:
            raise ValueError(f"feature_norm={self.feature_norm!r} is not one of {', '.join(FEATURE_NORMS)}")
        if self.action_space not in ACTION_SPACES:
            raise ValueError(f"action_space={self.action_space!r} is not one of {', '.join(ACTION_SPACES)}")
        unknown = [c for c in self.cameras if c not in CAMERAS]
        if not self.cameras or unknown:
            raise ValueError(f"cameras={self.cameras!r}: choose one or more of {', '.join(CAMERAS)}")
        for name in ("image_size", "head_hidden_size", "head_layers", "n_bins", "window_size", "chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        vision_size = self.backbone.get("vision_config", {}).get("image_size", 224)  # Kosmos2VisionConfig default
        if vision_size != self.image_size:
            raise ValueError(f"image_size={self.image_size} differs from the vision tower's image_size={vision_size}")
        if self.head_hidden_size % self.head_attention_heads:
            raise ValueError("head_hidden_size must be divisible by head_attention_heads")

    @property
    def observation_keys(self) -> tuple[str, ...]:
        """Observations the network reads each step, in the order of its inputs."""
        return (*self.cameras, STATE_KEY) if self.use_state else self.cameras

    @property
    def effective_window(self) -> int:
        """Steps the head actually sees: the window, or just the current step without history."""
        return self.window_size if self.history else 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["cameras"] = list(self.cameras)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "KosmosVLAConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error so typos in configs surface."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown KosmosVLAConfig field(s): {', '.join(unknown)}")
        return cls(**data)


#: Tiny backbone (cf. cpu-performance.md §2.4): 2+2 layers of width 64, about 0.3M params.
TINY_BACKBONE: Mapping[str, Any] = {
    "text_config": {
        "vocab_size": 512,
        "embed_dim": 64,
        "layers": 2,
        "ffn_dim": 128,
        "attention_heads": 2,
        "max_position_embeddings": 512,
    },
    "vision_config": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "patch_size": 14,
        "image_size": 84,
    },
    "latent_query_num": 64,
}

#: The tiny backbone as the CPU training recipe uses it: 16 latent queries instead of 64 cut the
#: text decoder's sequence from 136 to 40 tokens with two cameras (2.6x faster training steps,
#: measured), and no dropout (a fifth of a step's CPU time; random-shift augmentation regularises).
CPU_BACKBONE: Mapping[str, Any] = {
    "text_config": {**TINY_BACKBONE["text_config"], "dropout": 0.0, "attention_dropout": 0.0},
    "vision_config": dict(TINY_BACKBONE["vision_config"]),
    "latent_query_num": 16,
}

PRESETS: Mapping[str, KosmosVLAConfig] = {
    "kosmos-lstm": KosmosVLAConfig(
        pretrained=KOSMOS2_HUB_ID, tokenizer=KOSMOS2_HUB_ID, image_size=224, head_hidden_size=1024
    ),
    "kosmos-lstm-tiny": KosmosVLAConfig(backbone=TINY_BACKBONE, image_size=84, head_hidden_size=64, feature_norm="batch"),
    # The committed CALVIN recipe (README, Training): both cameras and the proprioceptive state
    # (never scene_obs), an 8-step history and 10-action chunks, trainable in an hour on 2 cores.
    "kosmos-lstm-cpu": KosmosVLAConfig(backbone=CPU_BACKBONE, image_size=84, cameras=CAMERAS, use_state=True,
                                       head_hidden_size=128, feature_norm="batch", window_size=8, chunk_size=10),
}


def get_preset(name: str, **overrides: Any) -> KosmosVLAConfig:
    """A preset's config, optionally with fields replaced (e.g. ``head="gpt"``)."""
    try:
        config = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}") from None
    return dataclasses.replace(config, **overrides)


def agent_spec(config: KosmosVLAConfig) -> AgentSpec:
    """Conventions of a Kosmos VLA: CALVIN's relative end-effector actions, reading the config's cameras."""
    return AgentSpec(
        action_type="relative_ee", rotation="euler_xyz", gripper="open_positive",
        observation_keys=config.observation_keys,
    )
