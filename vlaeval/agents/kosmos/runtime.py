"""Runtimes for the per-step network: torch eager, ONNX Runtime and TensorRT, one interface.

A runner maps the named step inputs (numpy) to the named step outputs (numpy), so the agent
never knows which engine ran; the carried feature window is an explicit input and output of
every runtime.  :func:`create_runner` with ``runtime="auto"`` tries TensorRT, then ONNX Runtime,
then torch, and logs why each skipped one was skipped; a graph on disk that cannot be loaded is
not skipped but raised (:class:`ModelLoadError`), since falling back would hide a broken export.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping, Protocol, Sequence

import numpy as np
import torch

from vlaeval.agents.kosmos.export import CALVIN_FRAME_SIZES, build_tensorrt_engine, export_onnx, import_tensorrt
from vlaeval.agents.kosmos.model import STEP_OUTPUTS, KosmosVLA, step_input_names
from vlaeval.errors import VlaevalError

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "onnx", "tensorrt")
_AUTO_ORDER = ("tensorrt", "onnx", "torch")


class ModelLoadError(VlaevalError):
    """An exported step graph on disk cannot be loaded (damaged, truncated, not a model)."""


class StepRunner(Protocol):
    """Anything that runs one control step of the network."""

    name: str

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


class TorchRunner:
    """The reference runtime: the model itself, eager, under ``inference_mode``."""

    name = "torch"

    def __init__(self, model: KosmosVLA, device: str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self._names = step_input_names(model.config)

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            args = (torch.from_numpy(np.ascontiguousarray(inputs[n])).to(self.device) for n in self._names)
            outs = self.model.step(*args)
        return {name: o.float().cpu().numpy() for name, o in zip(STEP_OUTPUTS, outs)}

    def close(self) -> None:
        pass


class OnnxRunner:
    """An ONNX Runtime session over an exported step graph (see :func:`export_onnx`)."""

    name = "onnx"

    def __init__(
        self, onnx_path: str | os.PathLike[str], *, device: str = "cpu", num_threads: int | None = None
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if num_threads:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        except Exception as exc:  # onnxruntime's load errors (InvalidProtobuf, NoSuchFile, ...) share no public base
            reason = str(exc).strip().partition("\n")[0]
            raise ModelLoadError(f"cannot load {onnx_path} ({reason})") from exc
        self._names = [i.name for i in self.session.get_inputs()]

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.session.run(list(STEP_OUTPUTS), {n: inputs[n] for n in self._names})
        return dict(zip(STEP_OUTPUTS, outs))

    def close(self) -> None:
        self.session = None


class TensorRTRunner:
    """A deserialised TensorRT engine; device buffers are torch CUDA tensors (no pycuda needed)."""

    name = "tensorrt"

    def __init__(self, engine_path: str | os.PathLike[str], *, device: str = "cuda") -> None:
        trt = import_tensorrt()
        self._trt = trt
        self.device = torch.device(device)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT could not deserialise {engine_path}; rebuild it for this GPU and TensorRT")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(device=self.device)

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        keep = []
        for name, value in inputs.items():
            t = torch.from_numpy(np.ascontiguousarray(value)).to(self.device)
            keep.append(t)
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
        outs = {}
        for name in STEP_OUTPUTS:
            dtype = torch.from_numpy(np.empty(0, dtype=self._trt.nptype(self.engine.get_tensor_dtype(name)))).dtype
            outs[name] = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=dtype, device=self.device)
            self.context.set_tensor_address(name, outs[name].data_ptr())
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed; see the TensorRT log")
        self.stream.synchronize()
        return {name: t.float().cpu().numpy() for name, t in outs.items()}

    def close(self) -> None:
        self.context = self.engine = None


def create_runner(
    model: KosmosVLA, runtime: str = "auto", *, workdir: str | os.PathLike[str], device: str = "cpu",
    num_threads: int | None = None, frame_sizes: Mapping[str, int] = CALVIN_FRAME_SIZES, fp16: bool = False,
) -> StepRunner:
    """A runner for ``model``; exported artefacts (ONNX, engines) go to ``workdir``.

    An explicitly requested runtime that cannot run raises; ``auto`` falls back and logs why.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime={runtime!r} is not one of {', '.join(RUNTIMES)}")
    candidates = _AUTO_ORDER if runtime == "auto" else (runtime,)
    for name in candidates[:-1]:
        try:
            runner = _build(name, model, Path(workdir), device, num_threads, frame_sizes, fp16)
        except ModelLoadError:
            raise  # the runtime works but the file is broken: the user's to fix, not a reason to fall back
        except Exception as exc:  # noqa: BLE001 - auto mode reports every reason and moves on
            log.info("runtime auto: skipping %s (%s)", name, str(exc).splitlines()[0])
            continue
        log.info("runtime auto: using %s", name)
        return runner
    # The last candidate (torch for auto, else the one requested) raises if it cannot run.
    runner = _build(candidates[-1], model, Path(workdir), device, num_threads, frame_sizes, fp16)
    log.info("runtime %s: using %s", runtime, runner.name)
    return runner


def require_runtime(name: str, device: str = "cpu") -> None:
    """Raise now, with the reason, if runtime ``name`` cannot run here (before any export)."""
    if name == "tensorrt":
        import_tensorrt()
        if not device.startswith("cuda") or not torch.cuda.is_available():
            cuda = torch.cuda.is_available()
            raise RuntimeError(f"TensorRT needs a CUDA device (device={device!r}, CUDA available: {cuda})")
    elif name == "onnx":
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise RuntimeError(f"ONNX Runtime is not importable ({exc}); pip install 'vlaeval[onnx]'") from exc


def exported_frame_sizes(workdir: str | os.PathLike[str], cameras: Sequence[str]) -> list[dict[str, int]]:
    """The camera frame sizes of each step graph in ``workdir``, read from the file names that
    :func:`create_runner` gives them (``step-200.onnx``, ``step-200-84.onnx``: one size per camera)."""
    found = []
    for path in sorted(Path(workdir).glob("step-*.onnx")):
        sizes = path.stem.split("-")[1:]
        if len(sizes) == len(cameras) and all(size.isdigit() for size in sizes):
            found.append(dict(zip(cameras, map(int, sizes))))
    return found


def _build(name: str, model: KosmosVLA, workdir: Path, device: str, num_threads: int | None,
           frame_sizes: Mapping[str, int], fp16: bool) -> StepRunner:
    if name == "torch":
        return TorchRunner(model, device)
    require_runtime(name, device)
    sizes = "-".join(f"{frame_sizes[c]}" for c in model.config.cameras)
    onnx_path = workdir / f"step-{sizes}.onnx"
    if not onnx_path.exists():
        export_onnx(model, onnx_path, frame_sizes=frame_sizes)
    if name == "onnx":
        return OnnxRunner(onnx_path, device=device, num_threads=num_threads)
    engine = workdir / f"step-{sizes}{'-fp16' if fp16 else ''}.engine"
    if not engine.exists():
        build_tensorrt_engine(onnx_path, engine, fp16=fp16)
    return TensorRTRunner(engine, device=device)
