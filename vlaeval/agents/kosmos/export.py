"""Export of the per-step network to ONNX, and TensorRT engine building from that ONNX.

The exported graph is :meth:`KosmosVLA.step`: raw uint8 camera frames (and the robot state
with ``use_state``), token ids and the
carried feature window in; the action chunk and the updated window out.  Batch size and text
length are dynamic; image sizes are fixed to the suite's camera sizes given at export.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from vlaeval.agents.kosmos.config import STATE_DIMS, STATE_KEY
from vlaeval.agents.kosmos.model import STEP_OUTPUTS, KosmosVLA, StepModule, step_input_names
from vlaeval.errors import VlaevalError

log = logging.getLogger(__name__)

#: Camera frame sizes of CALVIN (static 200x200, gripper 84x84).
CALVIN_FRAME_SIZES: Mapping[str, int] = {"rgb_static": 200, "rgb_gripper": 84}

#: Opset with Resize/LayerNorm semantics that ONNX Runtime and TensorRT 10 both implement.
OPSET = 17


class TensorRTUnavailableError(VlaevalError):
    """The ``tensorrt`` Python package (and an NVIDIA GPU) is needed for this path."""


def example_inputs(
    model: KosmosVLA, batch: int = 2, text_len: int = 8, frame_sizes: Mapping[str, int] = CALVIN_FRAME_SIZES
) -> dict[str, np.ndarray]:
    """Random but well-formed per-step inputs (ids in the vocabulary, a partly filled window)."""
    rng = np.random.default_rng(0)
    cfg = model.config
    ids_len = 1 + len(cfg.cameras) * (model.latent_query_num + 2) + text_len
    vocab = model.backbone.config.text_config.vocab_size
    window, hidden = cfg.effective_window, cfg.head_hidden_size
    inputs: dict[str, np.ndarray] = {
        cam: rng.integers(0, 256, (batch, frame_sizes[cam], frame_sizes[cam], 3), dtype=np.uint8) for cam in cfg.cameras
    }
    if cfg.use_state:
        inputs[STATE_KEY] = rng.standard_normal((batch, STATE_DIMS)).astype(np.float32)
    inputs["input_ids"] = rng.integers(3, vocab, (batch, ids_len), dtype=np.int64)
    inputs["attention_mask"] = np.ones((batch, ids_len), dtype=np.int64)
    inputs["history"] = rng.standard_normal((batch, window, hidden)).astype(np.float32)
    mask = np.zeros((batch, window), dtype=np.float32)
    mask[:, window // 2 :] = 1.0
    inputs["history_mask"] = mask
    return inputs


def export_onnx(
    model: KosmosVLA, path: str | os.PathLike[str], *, frame_sizes: Mapping[str, int] = CALVIN_FRAME_SIZES
) -> Path:
    """Write the per-step network to ``path`` as ONNX and return the path.

    Uses the TorchScript exporter (``dynamo=False``): it takes about a second where the dynamo
    exporter takes 10-20 s on this class of machine (cpu-performance.md §2.2), and it traces
    the Kosmos-2 backbone without graph breaks.  The example batch is 2 so the batch dimension
    is not specialised to 1.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = step_input_names(model.config)
    inputs = example_inputs(model, frame_sizes=frame_sizes)
    args = tuple(torch.from_numpy(inputs[n]) for n in names)
    dynamic = {n: {0: "batch"} for n in (*names, *STEP_OUTPUTS)}
    dynamic["input_ids"] = dynamic["attention_mask"] = {0: "batch", 1: "tokens"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(
            StepModule(model).eval(), args, str(path), input_names=list(names), output_names=list(STEP_OUTPUTS),
            dynamic_axes=dynamic, opset_version=OPSET, dynamo=False,
        )
    log.info("exported the per-step network to %s", path)
    return path


def import_tensorrt() -> object:
    """``tensorrt``, imported only when a TensorRT path is actually used."""
    try:
        import tensorrt  # type: ignore[import-not-found]
    except ImportError as exc:
        raise TensorRTUnavailableError(
            f"TensorRT is not importable ({exc}). It needs an NVIDIA GPU with CUDA and `pip install tensorrt` "
            "from NVIDIA's index; use runtime='onnx' or runtime='torch' elsewhere."
        ) from exc
    return tensorrt


def build_tensorrt_engine(
    onnx_path: str | os.PathLike[str], engine_path: str | os.PathLike[str], *, fp16: bool = False,
    max_batch: int = 8, max_tokens: int = 256, workspace_bytes: int = 1 << 30,
) -> Path:
    """Build and serialise a TensorRT engine from the exported ONNX.

    One optimisation profile covers batch 1..``max_batch`` (optimised for 1, the closed-loop
    case) and text length up to ``max_tokens``.  ``fp16`` lets TensorRT pick half-precision
    kernels; check parity against the FP32 engine before trusting it.
    """
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = list(tensor.shape)  # -1 marks the dynamic axes: batch (axis 0) and text length

        def bounded(batch: int, tokens: int, dims: list[int] = dims) -> list[int]:
            return [batch if j == 0 else tokens if d == -1 else d for j, d in enumerate(dims)]

        profile.set_shape(tensor.name, bounded(1, 1), bounded(1, max_tokens // 2), bounded(max_batch, max_tokens))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}; see the log above")
    engine_path = Path(engine_path)
    engine_path.write_bytes(bytes(serialized))
    return engine_path
