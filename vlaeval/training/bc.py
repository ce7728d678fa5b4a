"""Behaviour cloning of the Kosmos VLA agents (``vlaeval train bc``).

RoboVLMs' recipe: every window position predicts the next ``chunk_size`` actions; the loss is
MSE on the normalised arm dims plus ``gripper_loss_weight`` x BCE on the gripper (continuous
action space) or cross-entropy over bins (discrete), AdamW, linear warm-up then cosine decay,
gradient-norm clipping, autocast mixed precision where the device supports it.

A run directory holds::

    RUN/train_config.json        the BCConfig (also printed at the start)
    RUN/checkpoints/step-NNNNNN  agent checkpoints (``vlaeval run --checkpoint`` loads them)
    RUN/last                     the newest checkpoint, and RUN/trainer_state.safetensors to resume from it
    RUN/tb/                      TensorBoard logs (loss, lr, grad norm, validation loss, eval success)
    RUN/eval/step-NNNNNN, RUN/eval.csv   periodic suite evaluations (optional)

Running the same command again resumes from ``RUN/last`` (optimizer, schedule and RNG included).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import click

from vlaeval.errors import VlaevalError


@dataclass(frozen=True)
class BCConfig:
    """Everything a BC run depends on (saved as ``RUN/train_config.json``)."""

    data: str
    out: str
    agent: str = "kosmos-lstm-tiny"  # architecture preset
    init_checkpoint: str | None = None  # start from these weights instead of the preset's init
    model_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # KosmosVLAConfig fields
    window: int | None = None  # history length H (default: the preset's window_size)
    chunk: int | None = None  # action chunk K (default: the preset's chunk_size)
    action_space: str | None = None  # continuous / discrete (default: the preset's)
    gripper_loss_weight: float = 0.1
    shift: int = 4  # random-shift augmentation in pixels at the network's image size (0 = off)
    image_projection_gain: float = 10.0  # init gain of the image-to-text projection (fresh models only)
    steps: int = 2000
    batch_size: int = 8
    lr: float = 5e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16
    device: str = "cpu"
    threads: int | None = None
    train_split: str = "train"
    valid_split: str = "valid"
    valid_windows: int = 64
    log_every: int = 20
    save_every: int = 500
    eval_every: int = 0  # 0 = no periodic suite evaluation
    eval_suite: str = "calvin"
    eval_setting: str = "ABC->D"
    eval_episodes: int = 20
    eval_workers: int = 1
    seed: int = 0


def model_config(cfg: BCConfig) -> Any:
    from vlaeval.agents.kosmos.config import PRESETS, get_preset

    if cfg.agent not in PRESETS:
        raise VlaevalError(f"--agent {cfg.agent!r} is not a kosmos preset; choose one of {', '.join(PRESETS)}")
    over = dict(cfg.model_overrides)
    if cfg.window is not None:
        over["window_size"] = cfg.window
    if cfg.chunk is not None:
        over["chunk_size"] = cfg.chunk
    if cfg.action_space is not None:
        over["action_space"] = cfg.action_space
    over["arm_gripper_loss_ratio"] = cfg.gripper_loss_weight
    try:
        return get_preset(cfg.agent, **over)
    except (TypeError, ValueError) as exc:
        raise VlaevalError(f"invalid model settings: {exc}") from exc


def scale_image_projection(model: Any, gain: float) -> None:
    """Multiply the weights of Kosmos-2's image-to-text projection (dense, value and output
    projections) by ``gain``.

    With a randomly initialised backbone (std 0.02 everywhere) the three stacked projections
    shrink the image tokens to about 1% of the word embeddings' scale, and the action token then
    barely depends on the image (measured: feature std across frames 2e-4 vs 5e-2 across
    instructions).  A gain of 10 brings both to the same scale, so the image reaches the head
    from the first step.  Applied once, at initialisation; checkpoints hold the trained weights.
    """
    import torch

    proj = model.backbone.image_to_text_projection
    with torch.no_grad():
        for linear in (proj.dense, proj.x_attn.v_proj, proj.x_attn.out_proj):
            linear.weight.mul_(gain)


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_ratio`` at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def batch_loss(model: Any, batch: Mapping[str, Any], text: Any, codec: Any) -> Any:
    """RoboVLMs loss of a collated :class:`WindowDataset` batch; only real (unpadded) steps are encoded."""
    import numpy as np
    import torch

    from vlaeval.agents.kosmos.model import action_loss

    config = model.config
    mask = batch["mask"]  # (B, W)
    b, w = mask.shape
    flat = mask.reshape(-1) > 0.5
    obs = {k: batch[f"obs/{k}"].reshape(b * w, *batch[f"obs/{k}"].shape[2:])[flat] for k in config.observation_keys}
    ids, attn = text(batch["instruction"])
    rows = torch.arange(b).repeat_interleave(w)[flat]
    feats = model.encode(obs, torch.from_numpy(ids)[rows], torch.from_numpy(attn)[rows])
    window = feats.new_zeros(b * w, feats.shape[-1])
    window[flat] = feats
    arm, grip = model.predict(window.view(b, w, -1), mask.to(feats.dtype))
    target = batch["actions"]  # (B, W, K, A+1) normalised
    arm_target = target[..., :-1]
    if config.action_space == "discrete":
        arm_target = torch.from_numpy(codec.to_bins(arm_target.numpy()).astype(np.int64))
    return action_loss(arm.float(), grip.float(), arm_target, target[..., -1], batch["valid"], config)


class _Autocast:
    def __init__(self, precision: str, device: str) -> None:
        import torch

        kind = "cuda" if device.startswith("cuda") else "cpu"
        if precision == "auto":
            precision = "bf16" if kind == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
        if precision == "fp16" and kind != "cuda":
            raise VlaevalError("--precision fp16 needs a CUDA device (use bf16 or fp32 on the CPU)")
        self.precision, self.kind = precision, kind
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None

    def __call__(self) -> Any:
        import contextlib

        import torch

        return torch.autocast(self.kind, dtype=self.dtype) if self.dtype is not None else contextlib.nullcontext()


def train_bc(cfg: BCConfig, *, progress: bool = True, echo: Any = print) -> dict[str, Any]:
    """Run (or resume) behaviour cloning; returns a summary (final step, losses, checkpoint)."""
    import numpy as np
    import torch
    from torch.utils.tensorboard import SummaryWriter

    from vlaeval.agents.checkpoint import load_checkpoint, save_checkpoint
    from vlaeval.agents.kosmos.model import build_model
    from vlaeval.agents.kosmos.text import TextEncoder, load_tokenizer
    from vlaeval.training.common import config_text, open_run
    from vlaeval.training.dataset import WindowDataset, collate, load_or_compute_stats
    from vlaeval.training.state import load_state, restore_rng_states, rng_states, save_state

    run_dir = open_run(cfg, ("data", "agent", "window", "chunk", "action_space", "batch_size", "lr", "seed", "model_overrides", "shift"), echo,
                       "--init-checkpoint")
    run, state_file, last, resuming = run_dir.path, run_dir.state_file, run_dir.last, run_dir.resuming
    mconf = model_config(cfg)
    codec, stats = load_or_compute_stats(cfg.data, cfg.train_split, mconf.n_bins)
    if resuming:
        model, mconf, codec = load_checkpoint(last)
    elif cfg.init_checkpoint:
        model, loaded, codec = load_checkpoint(cfg.init_checkpoint)
        if dataclasses.replace(loaded, arm_gripper_loss_ratio=mconf.arm_gripper_loss_ratio) != mconf:
            raise VlaevalError(f"--init-checkpoint {cfg.init_checkpoint} has a different architecture than {cfg.agent}")
    else:
        model = build_model(mconf, seed=cfg.seed)
        if mconf.pretrained is None and cfg.image_projection_gain != 1.0:
            scale_image_projection(model, cfg.image_projection_gain)
    device = torch.device(cfg.device)
    model.to(device).train()
    text = TextEncoder(load_tokenizer(mconf), mconf, model.latent_query_num)
    window = mconf.effective_window
    train_set = WindowDataset(cfg.data, split=cfg.train_split, window=window, chunk=mconf.chunk_size,
                              keys=mconf.observation_keys, image_size=mconf.image_size, codec=codec, seed=cfg.seed,
                              shift=cfg.shift)
    valid_batch = None
    try:
        valid_set = WindowDataset(cfg.data, split=cfg.valid_split, window=window, chunk=mconf.chunk_size,
                                  keys=mconf.observation_keys, image_size=mconf.image_size, codec=codec, seed=cfg.seed + 1)
        pick = np.random.default_rng(cfg.seed).choice(len(valid_set), min(cfg.valid_windows, len(valid_set)), replace=False)
        valid_batch = collate([valid_set[int(i)] for i in sorted(pick)])
    except VlaevalError:
        echo(f"no {cfg.valid_split!r} demos: validation loss is not reported")
    echo(f"data: {train_set.demos} demos, {len(train_set)} windows (H={window}, K={mconf.chunk_size}); "
         f"model: {sum(p.numel() for p in model.parameters()):,} parameters")

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    optim = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                              lr=cfg.lr, betas=tuple(cfg.betas))
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: lr_factor(s, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio))
    amp = _Autocast(cfg.precision, cfg.device)
    step = 0
    sampler_rng = np.random.default_rng(cfg.seed)
    if resuming:
        state = load_state(state_file, restart_hint=f"delete it to restart from {last}'s weights")
        meta = json.loads((last / "config.json").read_text())["metadata"]
        if meta.get("step") != state["step"]:
            raise VlaevalError(f"{state_file} (step {state['step']}) does not match {last} (step {meta.get('step')}); "
                               f"the run was interrupted while saving: delete {state_file} to restart from {last}'s weights")
        optim.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step = int(state["step"])
        sampler_rng.bit_generator.state = state["sampler_rng"]
        train_set._rng.bit_generator.state = state["instruction_rng"]
        restore_rng_states(state["rng"])
        echo(f"resumed at step {step}")

    writer = SummaryWriter(str(run / "tb"))
    if not resuming:
        writer.add_text("config", f"```\n{config_text(cfg)}\n```", 0)

    def save(at: int) -> Path:
        meta = {"step": at, "trainer": "bc", "data": str(cfg.data), "dataset_stats": {k: stats[k] for k in ("split", "demos", "actions")}}
        ckpt = save_checkpoint(run / "checkpoints" / f"step-{at:06d}", model, mconf, codec, metadata=meta, overwrite=True)
        state = {"step": at, "optimizer": optim.state_dict(), "scheduler": sched.state_dict(),
                 "sampler_rng": sampler_rng.bit_generator.state, "instruction_rng": train_set._rng.bit_generator.state,
                 "rng": rng_states()}
        save_state(state_file, state)
        save_checkpoint(last, model, mconf, codec, metadata=meta, overwrite=True)
        return ckpt

    def valid_loss() -> float | None:
        if valid_batch is None:
            return None
        model.eval()
        with torch.no_grad(), amp():
            loss = float(batch_loss(model, valid_batch, text, codec))
        model.train()
        return loss

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=step, unit="step", desc="bc", file=sys.stderr, dynamic_ncols=True)
    history: list[float] = []
    started = time.perf_counter()
    first_step = step
    try:
        while step < cfg.steps:
            idx = sampler_rng.integers(len(train_set), size=cfg.batch_size)
            batch = collate([train_set[int(i)] for i in idx])
            with amp():
                loss = batch_loss(model, batch, text, codec)
            optim.zero_grad(set_to_none=True)
            if amp.scaler is not None:
                amp.scaler.scale(loss).backward()
                amp.scaler.unscale_(optim)
            else:
                loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
            if amp.scaler is not None:
                amp.scaler.step(optim)
                amp.scaler.update()
            else:
                optim.step()
            sched.step()
            step += 1
            history.append(float(loss.detach()))
            if step % cfg.log_every == 0 or step == cfg.steps:
                writer.add_scalar("train/loss", float(np.mean(history[-cfg.log_every:])), step)
                writer.add_scalar("train/lr", sched.get_last_lr()[0], step)
                writer.add_scalar("train/grad_norm", grad_norm, step)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"loss={np.mean(history[-20:]):.4f} lr={sched.get_last_lr()[0]:.2e}", refresh=False)
            if step % cfg.save_every == 0 or step == cfg.steps:
                ckpt = save(step)
                vl = valid_loss()
                if vl is not None:
                    writer.add_scalar("valid/loss", vl, step)
                msg = f"step {step}: train loss {np.mean(history[-cfg.save_every:]):.4f}" + (f", valid loss {vl:.4f}" if vl is not None else "")
                (bar.write if bar is not None else echo)(msg + f" -> {ckpt}")
                if cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps):
                    summary = periodic_eval(cfg, ckpt, step)
                    for k, v in summary.items():
                        if isinstance(v, float):
                            writer.add_scalar(f"eval/{k}", v, step)
                    (bar.write if bar is not None else echo)(f"step {step}: eval {summary}")
    finally:
        if bar is not None:
            bar.close()
        writer.close()
    seconds = time.perf_counter() - started
    return {"step": step, "checkpoint": str(last), "final_loss": float(np.mean(history[-50:])) if history else None,
            "valid_loss": valid_loss(), "steps_run": step - first_step, "seconds": round(seconds, 1)}


def periodic_eval(cfg: BCConfig, checkpoint: Path, step: int) -> dict[str, Any]:
    """Evaluate a checkpoint in the suite through the Python API; rows appended to ``RUN/eval.csv``."""
    import pandas as pd

    from vlaeval.agents.kosmos.agent import KosmosLSTMAgent
    from vlaeval.evaluators.runner import evaluate

    run = Path(cfg.out)
    run_id = f"step-{step:06d}"
    if (run / "eval" / run_id / "manifest.json").exists():
        return {}
    agent = KosmosLSTMAgent(checkpoint=str(checkpoint), runtime="torch", num_threads=cfg.threads)
    try:
        result = evaluate(agent, cfg.eval_suite, setting=cfg.eval_setting, episodes=cfg.eval_episodes,
                          workers=cfg.eval_workers, out=run / "eval", run_id=run_id, progress=False)
    finally:
        agent.close()
    frame = result.results
    summary: dict[str, Any] = {"step": step, **result.summary()}
    first = frame[frame["position"] == 1]
    summary["success_position_1"] = float(first["success"].mean()) if len(first) else 0.0
    summary["run_dir"] = str(result.run_dir)
    path = run / "eval.csv"
    row = pd.DataFrame([summary])
    row.to_csv(path, mode="a", header=not path.exists(), index=False)
    return summary


@click.command(name="bc")
@click.option("--agent", "-a", default="kosmos-lstm-tiny", show_default=True, help="Kosmos architecture preset to train.")
@click.option("--data", "-d", required=True, type=click.Path(exists=True), help="Dataset directory (vlaeval record) or demos.hdf5.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Run directory (re-run to resume).")
@click.option("--init-checkpoint", type=click.Path(exists=True, file_okay=False), help="Start from these weights.")
@click.option("--model-opt", "model_opts", multiple=True, metavar="KEY=VALUE", help="KosmosVLAConfig override (repeatable).")
@click.option("--window", type=click.IntRange(min=1), help="History length H (default: the preset's).")
@click.option("--chunk", type=click.IntRange(min=1), help="Action chunk length K (default: the preset's).")
@click.option("--action-space", type=click.Choice(["continuous", "discrete"]), help="Default: the preset's.")
@click.option("--steps", type=click.IntRange(min=1), default=2000, show_default=True, help="Optimizer steps.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--lr", type=float, default=5e-4, show_default=True, help="Peak learning rate (AdamW).")
@click.option("--weight-decay", type=float, default=0.01, show_default=True)
@click.option("--warmup-steps", type=click.IntRange(min=0), default=100, show_default=True)
@click.option("--grad-clip", type=float, default=1.0, show_default=True)
@click.option("--gripper-loss-weight", type=float, default=0.1, show_default=True)
@click.option("--shift", type=click.IntRange(min=0), default=4, show_default=True,
              help="Random-shift augmentation: pad and re-crop each window's frames by up to N pixels (0 = off).")
@click.option("--image-projection-gain", type=float, default=10.0, show_default=True,
              help="Init gain of the image-to-text projection of randomly initialised backbones (1 = plain init).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), help="torch intra-op threads.")
@click.option("--save-every", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--log-every", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--eval-every", type=click.IntRange(min=0), default=0, show_default=True, help="Evaluate in the suite every N steps (0 = never).")
@click.option("--eval-suite", default="calvin", show_default=True)
@click.option("--eval-setting", default="ABC->D", show_default=True)
@click.option("--eval-episodes", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--eval-workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-progress", is_flag=True)
def bc_command(agent: str, data: str, out: str, init_checkpoint: str | None, model_opts: tuple[str, ...], window: int | None,
               chunk: int | None, action_space: str | None, steps: int, batch_size: int, lr: float, weight_decay: float,
               warmup_steps: int, grad_clip: float, gripper_loss_weight: float, shift: int, image_projection_gain: float, precision: str, device: str, threads: int | None,
               save_every: int, log_every: int, eval_every: int, eval_suite: str, eval_setting: str, eval_episodes: int,
               eval_workers: int, seed: int, no_progress: bool) -> None:
    """Behaviour cloning of a kosmos agent on recorded demonstrations (resumable)."""
    from vlaeval.options import parse_options

    cfg = BCConfig(data=data, out=out, agent=agent, init_checkpoint=init_checkpoint, model_overrides=parse_options(model_opts, "--model-opt"),
                   window=window, chunk=chunk, action_space=action_space, gripper_loss_weight=gripper_loss_weight, shift=shift,
                   image_projection_gain=image_projection_gain, steps=steps,
                   batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps, grad_clip=grad_clip,
                   precision=precision, device=device, threads=threads, save_every=save_every, log_every=log_every,
                   eval_every=eval_every, eval_suite=eval_suite, eval_setting=eval_setting, eval_episodes=eval_episodes,
                   eval_workers=eval_workers, seed=seed)
    summary = train_bc(cfg, progress=not no_progress, echo=click.echo)
    click.echo(f"done: {summary}")
    click.echo(f"evaluate: vlaeval run --agent {agent} --checkpoint {summary['checkpoint']} --suite calvin --setting ABC->D")
