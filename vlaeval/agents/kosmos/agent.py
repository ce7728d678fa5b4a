"""``KosmosLSTMAgent``: the Kosmos-2 VLA as a vlaeval agent.

Closed-loop control: the network runs every step (it has to, to keep the feature window made
of consecutive frames, which is what the head was trained on) and predicts a chunk of
``chunk_size`` actions.  By default the first action of each new chunk is executed (RoboVLMs'
CALVIN evaluation does the same: re-planning each step is the most reactive and needs no
ensembling).  ``action_horizon=k`` instead executes the first ``k`` actions of a chunk open
loop before taking the next chunk, the ACT-style alternative that smooths motion.
"""

from __future__ import annotations

import collections
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from vlaeval.agents.base import Agent, AgentContext
from vlaeval.agents.checkpoint import load_checkpoint, save_checkpoint
from vlaeval.agents.codec import ActionCodec
from vlaeval.agents.kosmos.config import PRESETS, agent_spec, get_preset
from vlaeval.agents.kosmos.export import CALVIN_FRAME_SIZES
from vlaeval.agents.kosmos.model import build_model, observation_inputs
from vlaeval.agents.kosmos.runtime import (
    RUNTIMES,
    ModelLoadError,
    StepRunner,
    create_runner,
    exported_frame_sizes,
    require_runtime,
)
from vlaeval.agents.kosmos.text import TextEncoder, load_tokenizer
from vlaeval.conventions import AgentSpec

log = logging.getLogger(__name__)

#: Codec used without a checkpoint: CALVIN datasets already store relative actions in [-1, 1].
DEFAULT_CODEC = ActionCodec.symmetric(1.0)


class KosmosLSTMAgent(Agent):
    """RoboVLMs-style Kosmos-2 policy-head VLA (LSTM head by default), on torch, ONNX Runtime or TensorRT.

    Args:
        preset: architecture preset (see :data:`PRESETS`) used when no checkpoint is given.
            ``kosmos-lstm-tiny`` without a checkpoint runs with random weights: it exercises
            the whole pipeline for smoke tests, and its actions mean nothing.
        checkpoint: a vlaeval checkpoint directory; its config and codec override ``preset``.
        runtime: ``auto`` (TensorRT, else ONNX Runtime, else torch), ``torch``, ``onnx`` or ``tensorrt``.
        device: torch device for the torch runtime and TensorRT (``cuda``); ONNX Runtime uses
            CUDA when asked and available, otherwise the CPU.
        action_horizon: chunk actions executed before the next chunk is taken (1 = re-plan every step).
        num_threads: intra-op threads for torch and ONNX Runtime; 1 avoids oversubscription
            when simulators share the cores (cpu-performance.md §2.3).
        local_files_only: read the pretrained backbone/tokenizer from the local Hugging Face cache
            only (the default: see :mod:`vlaeval.agents.kosmos.hub`); ``False`` lets the hub client
            download what is missing.

    The network is deterministic, so :meth:`seed` has nothing to seed.  With ONNX Runtime or
    TensorRT the per-step graph is exported on the first step (about a second for the tiny
    preset) into a temporary directory removed by :meth:`close`.  An exported checkpoint's graph
    is loaded at construction instead, so a damaged file fails the agent once, with what to do,
    rather than the first step of every episode.
    """

    spec = agent_spec(PRESETS["kosmos-lstm-tiny"])

    def __init__(
        self,
        preset: str = "kosmos-lstm-tiny",
        checkpoint: str | None = None,
        runtime: str = "auto",
        device: str = "cpu",
        *,
        action_horizon: int = 1,
        num_threads: int | None = None,
        local_files_only: bool = True,
    ) -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime={runtime!r} is not one of {', '.join(RUNTIMES)}")
        if runtime != "auto":
            require_runtime(runtime, device)  # fail at construction, not at the first step
        if num_threads:
            torch.set_num_threads(num_threads)
        if checkpoint is not None:
            model, config, codec = load_checkpoint(checkpoint)
            log.info("loaded checkpoint %s", checkpoint)
        else:
            config = get_preset(preset)
            model, codec = build_model(config, local_files_only=local_files_only), DEFAULT_CODEC
            log.warning(
                "no checkpoint: %s runs with %s and a randomly initialised policy head; "
                "its actions are meaningless (fine for smoke tests)",
                preset, "random backbone weights" if config.pretrained is None else f"the {config.pretrained} backbone",
            )
        if not 1 <= action_horizon <= config.chunk_size:
            raise ValueError(f"action_horizon must be in 1..{config.chunk_size}, got {action_horizon}")
        self.config, self.codec, self.model = config, codec, model
        # Per instance: the observation keys follow the checkpoint's cameras.
        self.spec: AgentSpec = agent_spec(config)  # type: ignore[misc]
        self.runtime, self.device, self.num_threads, self.action_horizon = runtime, device, num_threads, action_horizon
        tokenizer = load_tokenizer(config, local_files_only=local_files_only)
        self._text = TextEncoder(tokenizer, config, model.latent_query_num)
        # An exported checkpoint (``vlaeval export``) already holds the per-step graph/engine.
        exported = checkpoint is not None and any(Path(checkpoint).glob("step-*.onnx"))
        self._tmp = None if exported else tempfile.TemporaryDirectory(prefix="vlaeval-kosmos-")
        self._workdir = Path(checkpoint) if exported else Path(self._tmp.name)
        self._runner: StepRunner | None = None
        self._runner_sizes: dict[str, int] = {}
        self.reset()
        if exported and runtime != "torch":
            for sizes in exported_frame_sizes(checkpoint, config.cameras):
                try:
                    self._runner_for(sizes)
                except ModelLoadError as exc:
                    raise ModelLoadError(
                        f"{exc}; export the agent again: vlaeval export --agent {checkpoint} --out {checkpoint}"
                    ) from exc

    @property
    def runtime_name(self) -> str | None:
        """The runtime actually in use (known after the first step, when frame sizes are known)."""
        return None if self._runner is None else self._runner.name

    def bind(self, context: AgentContext) -> None:
        super().bind(context)
        shape = getattr(context.action_space, "shape", None)
        if shape is not None and tuple(shape) != (self.config.arm_dims + 1,):
            raise ValueError(
                f"{type(self).__name__} emits {self.config.arm_dims + 1}-d actions; the suite's action space is {shape}"
            )

    def reset(self) -> None:
        """Empty the feature window and the action queues; the batch size is set by the next call."""
        self._history: np.ndarray | None = None
        self._history_mask: np.ndarray | None = None
        self._queues: list[collections.deque[np.ndarray]] = []

    def reset_slot(self, slot: int) -> None:
        """Empty the feature window and action queue of batch slot ``slot`` only (batched runs)."""
        if self._history is not None:
            self._history, self._history_mask = np.array(self._history), np.array(self._history_mask)  # runtime outputs may be read-only
            self._history[slot] = 0.0
            self._history_mask[slot] = 0.0
            self._queues[slot].clear()

    def act(self, observation: Mapping[str, Any], instruction: str) -> np.ndarray:
        return self.act_batch([observation], [instruction])[0]

    def act_batch(self, observations: Sequence[Mapping[str, Any]], instructions: Sequence[str]) -> np.ndarray:
        """One forward pass for the batch; slot ``i`` keeps its own window and queue until :meth:`reset`."""
        batch = len(observations)
        if self._history is None:
            w, h = self.config.effective_window, self.config.head_hidden_size
            self._history = np.zeros((batch, w, h), dtype=np.float32)
            self._history_mask = np.zeros((batch, w), dtype=np.float32)
            self._queues = [collections.deque() for _ in range(batch)]
        elif self._history.shape[0] != batch:
            raise ValueError(f"batch size changed from {self._history.shape[0]} to {batch} without reset()")
        inputs = observation_inputs(self.config, observations)
        inputs["input_ids"], inputs["attention_mask"] = self._text(instructions)
        inputs["history"], inputs["history_mask"] = self._history, self._history_mask
        out = self._runner_for({cam: inputs[cam].shape[1] for cam in self.config.cameras})(inputs)
        self._history, self._history_mask = out["next_history"], out["next_history_mask"]
        chunks = self.decode(out["arm"], out["gripper_logit"])
        actions = np.empty((batch, self.config.arm_dims + 1), dtype=np.float32)
        for slot, queue in enumerate(self._queues):
            if not queue:
                queue.extend(chunks[slot, : self.action_horizon])
            actions[slot] = queue.popleft()
        return actions

    def decode(self, arm: np.ndarray, gripper_logit: np.ndarray) -> np.ndarray:
        """Network outputs -> physical action chunks (B, C, arm_dims + 1), gripper ±1."""
        if self.config.action_space == "discrete":
            arm = self.codec.from_bins(np.argmax(arm, axis=-1))
        return self.codec.denormalize(np.concatenate([arm, gripper_logit[..., None]], axis=-1))

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None
        if self._tmp is not None:
            self._tmp.cleanup()

    def export(self, out_dir: str | os.PathLike[str], fmt: str = "onnx", *, fp16: bool = False,
               frame_sizes: Mapping[str, int] = CALVIN_FRAME_SIZES) -> list[Path]:
        """Write a self-contained exported agent to ``out_dir``: the checkpoint plus the per-step
        ONNX graph (and, for ``tensorrt``, the engine built from it).

        Running ``--agent kosmos-lstm-tiny --checkpoint OUT_DIR --runtime onnx`` (or ``--agent
        OUT_DIR``) then uses these files instead of exporting again.
        """
        if fmt not in ("onnx", "tensorrt"):
            raise ValueError(f"export format must be 'onnx' or 'tensorrt', not {fmt!r}")
        out = Path(out_dir)
        save_checkpoint(out, self.model, self.config, self.codec, spec=self.spec, overwrite=True)
        sizes = {cam: frame_sizes[cam] for cam in self.config.cameras}
        create_runner(self.model, fmt, workdir=out, device=self.device, frame_sizes=sizes, fp16=fp16).close()
        return sorted(p for p in out.iterdir() if p.is_file())

    def _runner_for(self, sizes: dict[str, int]) -> StepRunner:
        """The runner, built on first use because exported graphs fix the camera frame sizes."""
        if self._runner is None or (self._runner.name != "torch" and sizes != self._runner_sizes):
            if self._runner is not None:
                self._runner.close()
            self._runner = create_runner(
                self.model, self.runtime, workdir=self._workdir, device=self.device,
                num_threads=self.num_threads, frame_sizes=sizes,
            )
            self._runner_sizes = sizes
        return self._runner

