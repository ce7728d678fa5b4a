"""ONNX export and runtimes: per-step parity with torch, agent parity over a rollout, runtime choice.

Tolerance: ONNX Runtime must reproduce torch's per-step outputs within atol 1e-4 (measured
differences are around 1e-6: both run the same FP32 graph, only kernel order differs).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from tests.agents.kosmos_helpers import random_observations
from vlaeval.agents.kosmos import KosmosLSTMAgent, get_preset
from vlaeval.agents.kosmos.export import TensorRTUnavailableError, example_inputs, export_onnx
from vlaeval.agents.kosmos.model import STEP_OUTPUTS, build_model
from vlaeval.agents.kosmos.runtime import OnnxRunner, TorchRunner, create_runner

pytest.importorskip("onnxruntime", reason="ONNX Runtime is needed for the ONNX path (pip install vlaeval[onnx])")

ATOL = 1e-4


@pytest.mark.parametrize(
    "overrides",
    [{}, {"head": "gpt", "action_space": "discrete", "cameras": ("rgb_static", "rgb_gripper")},
     {"head": "fc", "use_state": True}],
    ids=["lstm-continuous-static", "gpt-discrete-two-cameras", "fc-with-state"],
)
def test_onnx_runtime_matches_torch_per_step(tmp_path, overrides) -> None:
    model = build_model(get_preset("kosmos-lstm-tiny", **overrides))
    path = export_onnx(model, tmp_path / "step.onnx")
    onnx, reference = OnnxRunner(path), TorchRunner(model)
    for batch, text_len in [(1, 4), (3, 11)]:  # batch and text length are dynamic axes
        inputs = example_inputs(model, batch=batch, text_len=text_len)
        got, want = onnx(inputs), reference(inputs)
        for name in STEP_OUTPUTS:
            assert got[name].shape == want[name].shape, name
            np.testing.assert_allclose(got[name], want[name], atol=ATOL, rtol=0, err_msg=name)


def test_agent_actions_agree_across_runtimes_over_a_rollout() -> None:
    instructions = ["open the drawer", "push the blue block to the left"]
    steps = [random_observations(2, seed=s) for s in range(6)]
    rollouts = {}
    for runtime in ("torch", "onnx"):
        agent = KosmosLSTMAgent(runtime=runtime)
        rollouts[runtime] = np.stack([agent.act_batch(obs, instructions) for obs in steps])
        assert agent.runtime_name == runtime
        agent.close()
    np.testing.assert_allclose(rollouts["onnx"], rollouts["torch"], atol=ATOL, rtol=0)
    np.testing.assert_array_equal(rollouts["onnx"][..., 6], rollouts["torch"][..., 6])


def test_auto_prefers_tensorrt_then_onnx_and_says_why(tmp_path, caplog) -> None:
    model = build_model(get_preset("kosmos-lstm-tiny"))
    with caplog.at_level(logging.INFO, logger="vlaeval.agents.kosmos.runtime"):
        runner = create_runner(model, "auto", workdir=tmp_path)
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert runner.name == "onnx"
        assert "skipping tensorrt (TensorRT is not importable" in caplog.text
    assert f"using {runner.name}" in caplog.text


def test_explicit_tensorrt_without_tensorrt_raises_clearly(tmp_path) -> None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tensorrt is importable here; the GPU tests cover this path")
    with pytest.raises(TensorRTUnavailableError, match="TensorRT is not importable.*runtime='onnx'"):
        create_runner(build_model(get_preset("kosmos-lstm-tiny")), "tensorrt", workdir=tmp_path)
    with pytest.raises(TensorRTUnavailableError, match="NVIDIA GPU"):
        KosmosLSTMAgent(runtime="tensorrt")  # at construction, before any export


@pytest.mark.gpu
@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_tensorrt_engine_matches_torch(tmp_path, fp16) -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (needs an NVIDIA GPU and NVIDIA's wheels)")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA device")
    model = build_model(get_preset("kosmos-lstm-tiny"))
    runner = create_runner(model, "tensorrt", workdir=tmp_path, device="cuda", fp16=fp16)
    inputs = example_inputs(model, batch=2)
    got, want = runner(inputs), TorchRunner(build_model(get_preset("kosmos-lstm-tiny")))(inputs)
    for name in STEP_OUTPUTS:
        np.testing.assert_allclose(got[name], want[name], atol=5e-2 if fp16 else 1e-3, rtol=0, err_msg=name)
