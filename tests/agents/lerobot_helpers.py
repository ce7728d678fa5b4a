"""A tiny ACT policy for the LeRobot tests: built and saved with LeRobot's own API, or trained
by ``lerobot-train`` with the same architecture flags.

ACT's vision backbone is a torchvision ResNet-18 (the smallest ACT accepts); ``pretrained_backbone_weights``
is None so nothing is downloaded, and the transformer is shrunk until a CPU trains it in minutes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

#: ACTConfig fields of the tiny policy; ``lerobot-train`` gets them as ``--policy.KEY=VALUE``.
TINY_ACT: dict[str, Any] = {
    "pretrained_backbone_weights": None, "dim_model": 64, "n_heads": 2, "dim_feedforward": 256,
    "n_encoder_layers": 1, "n_decoder_layers": 1, "use_vae": False, "chunk_size": 10, "n_action_steps": 10,
}


def save_tiny_act(dataset: Path, out: Path, *, action_dim: int | None = None) -> Path:
    """A randomly initialised tiny ACT for ``dataset``'s features, saved as ``lerobot-train`` saves
    one (``save_pretrained`` of the policy and of its pre- and post-processors).

    ``action_dim`` smaller than the dataset's makes a policy for another action space (its action
    statistics cut to match), which the agent must refuse.
    """
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors
    from lerobot.utils.feature_utils import dataset_to_policy_features

    meta = LeRobotDatasetMetadata("vlaeval/test", root=dataset)
    features = dataset_to_policy_features(meta.features)
    stats = {key: dict(value) for key, value in meta.stats.items()}
    if action_dim is not None:
        features["action"] = PolicyFeature(type=FeatureType.ACTION, shape=(action_dim,))
        stats["action"] = {k: v[:action_dim] if getattr(v, "ndim", 0) else v for k, v in stats["action"].items()}
    config = ACTConfig(device="cpu", **TINY_ACT,
                       input_features={k: f for k, f in features.items() if f.type is not FeatureType.ACTION},
                       output_features={"action": features["action"]})
    policy = get_policy_class(config.type)(config)
    preprocessor, postprocessor = make_pre_post_processors(config, dataset_stats=stats)
    for part in (policy, preprocessor, postprocessor):
        part.save_pretrained(out)
    return out


def lerobot_train_command(dataset: Path, out: Path, *, steps: int, batch_size: int) -> list[str]:
    """``lerobot-train`` (the venv's console script) on a local dataset, CPU only, no hub, no wandb."""
    flags = [f"--policy.{k}={'null' if v is None else str(v).lower() if isinstance(v, bool) else v}" for k, v in TINY_ACT.items()]
    return [str(Path(sys.executable).with_name("lerobot-train")), "--dataset.repo_id=vlaeval/calvin", f"--dataset.root={dataset}",
            "--policy.type=act", "--policy.device=cpu", "--policy.push_to_hub=false", *flags,
            f"--steps={steps}", f"--batch_size={batch_size}", "--num_workers=0", f"--save_freq={steps}", "--log_freq=50",
            "--seed=0", "--wandb.enable=false", f"--output_dir={out}"]
