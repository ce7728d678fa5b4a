"""Open-loop evaluation on held-out demonstrations (``vlaeval offline``).

The recorded frames are fed through the checkpoint exactly as the agent would see them (history
window cleared at every subtask start), and the first action of each predicted chunk is compared
with the recorded action, in the env's action units: MAE, RMSE and R² per arm dimension and
the gripper's open/close accuracy.  Open-loop numbers say how well the policy imitates; only a
closed-loop run (``vlaeval run``) says whether it solves tasks.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

ARM_NAMES = ("x", "y", "z", "roll", "pitch", "yaw")


def predict_demo(model: Any, text: Any, codec: Any, observations: dict[str, np.ndarray], subtask: np.ndarray,
                 instructions: list[str], batch: int = 256) -> np.ndarray:
    """Physical first-of-chunk actions (T, A+1) predicted at every recorded step of one demo."""
    import torch

    from vlaeval.training.common import unfold_windows

    config = model.config
    t = len(subtask)
    with torch.no_grad():
        feats = []
        for s in range(0, t, batch):
            ids, attn = text([instructions[int(k)] for k in subtask[s : s + batch]])
            obs = {k: torch.from_numpy(np.ascontiguousarray(observations[k][s : s + batch])) for k in config.observation_keys}
            feats.append(model.encode(obs, torch.from_numpy(ids), torch.from_numpy(attn)))
        features = torch.cat(feats)
        starts = np.zeros(t, dtype=np.int64)
        for k in np.unique(subtask):
            idx = np.flatnonzero(subtask == k)
            starts[idx] = idx[0]
        windows, mask = unfold_windows(features, torch.from_numpy(starts), config.effective_window)
        arm, grip = model.predict(windows, mask)
        arm, grip = arm[:, -1, 0], grip[:, -1, 0]
        if config.action_space == "discrete":
            arm = torch.from_numpy(codec.from_bins(arm.argmax(-1).numpy()))
    return codec.denormalize(np.concatenate([arm.numpy(), grip.numpy()[:, None]], axis=-1))


def action_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, Any]:
    """MAE, RMSE, R² per arm dim (and their means) plus gripper accuracy, for (N, A+1) actions."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    arm_p, arm_t = pred[:, :-1], true[:, :-1]
    err = arm_p - arm_t
    mae = np.abs(err).mean(0)
    rmse = np.sqrt((err**2).mean(0))
    ss_res = (err**2).sum(0)
    ss_tot = ((arm_t - arm_t.mean(0)) ** 2).sum(0)
    r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), np.nan)
    names = ARM_NAMES[: arm_t.shape[1]] if arm_t.shape[1] <= len(ARM_NAMES) else tuple(f"a{i}" for i in range(arm_t.shape[1]))
    per_dim = {n: {"mae": float(mae[i]), "rmse": float(rmse[i]), "r2": float(r2[i])} for i, n in enumerate(names)}
    grip_acc = float(((pred[:, -1] >= 0) == (true[:, -1] >= 0)).mean())
    return {
        "steps": int(true.shape[0]),
        "per_dim": per_dim,
        "mean": {"mae": float(mae.mean()), "rmse": float(rmse.mean()), "r2": float(np.nanmean(r2)) if np.isfinite(r2).any() else float("nan")},
        "gripper_accuracy": grip_acc,
    }


def offline_eval(checkpoint: str | os.PathLike[str], data: str | os.PathLike[str], *, split: str = "valid",
                 max_demos: int | None = None) -> dict[str, Any]:
    """Metrics of a checkpoint over the demos of a split (successful ones only)."""
    import json

    import h5py

    from vlaeval.agents.checkpoint import load_checkpoint
    from vlaeval.agents.kosmos.text import TextEncoder, load_tokenizer
    from vlaeval.errors import VlaevalError
    from vlaeval.training.demos import demo_path, read_mask

    model, config, codec = load_checkpoint(checkpoint)
    text = TextEncoder(load_tokenizer(config), config, model.latent_query_num)
    preds, trues, per_task = [], [], {}
    with h5py.File(demo_path(data), "r") as f:
        names = read_mask(f, split)[:max_demos]
        if not names:
            raise VlaevalError(f"split {split!r} of {data} holds no demos")
        for name in names:
            g = f["data"][name]
            missing = [k for k in config.observation_keys if k not in g["obs"]]
            if missing:
                raise VlaevalError(f"{name} has no {', '.join(missing)} observations, which the checkpoint reads")
            sub = g["subtask"][()].astype(np.int64)
            p = predict_demo(model, text, codec, {k: g["obs"][k][()] for k in config.observation_keys}, sub,
                             json.loads(g.attrs["instructions"]))
            a = g["actions"][()]
            preds.append(p)
            trues.append(a)
            tasks = json.loads(g.attrs["tasks"])
            for k in np.unique(sub):
                per_task.setdefault(tasks[int(k)], []).append((p[sub == k], a[sub == k]))
    report = {"checkpoint": str(checkpoint), "data": str(data), "split": split, "demos": len(names),
              **action_metrics(np.concatenate(preds), np.concatenate(trues))}
    report["per_task"] = {
        t: {k: v for k, v in action_metrics(np.concatenate([x for x, _ in rows]), np.concatenate([y for _, y in rows])).items()
            if k in ("steps", "mean", "gripper_accuracy")}
        for t, rows in sorted(per_task.items())
    }
    return report


def format_table(report: dict[str, Any]) -> str:
    """The per-dimension table printed by ``vlaeval offline``."""
    lines = [f"open-loop on {report['split']} split: {report['demos']} demos, {report['steps']} steps ({report['checkpoint']})",
             f"{'dim':<8}{'MAE':>10}{'RMSE':>10}{'R2':>10}"]
    for name, m in report["per_dim"].items():
        lines.append(f"{name:<8}{m['mae']:>10.4f}{m['rmse']:>10.4f}{m['r2']:>10.3f}")
    m = report["mean"]
    lines.append(f"{'mean':<8}{m['mae']:>10.4f}{m['rmse']:>10.4f}{m['r2']:>10.3f}")
    lines.append(f"gripper accuracy: {report['gripper_accuracy']:.3f}")
    return "\n".join(lines)
