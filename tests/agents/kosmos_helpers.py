"""Fixtures for the Kosmos agent tests: tiny VLAs built locally (random weights, local tokenizer).

Imported explicitly by the test modules (not a conftest) so they apply only where asked.
Torch runs single-threaded: the machine is shared with simulators, and 2 threads under
foreign load run up to 10x slower (cpu-performance.md §2.3).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_config():
    from vlaeval.agents.kosmos.config import get_preset

    return get_preset("kosmos-lstm-tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_config):
    from vlaeval.agents.kosmos.model import build_model

    return build_model(tiny_config)


def random_observations(n: int, seed: int = 0, cameras: tuple[str, ...] = ("rgb_static",)) -> list[dict[str, np.ndarray]]:
    """CALVIN-shaped observations: 200x200 static and 84x84 gripper uint8 frames, and robot_obs."""
    rng = np.random.default_rng(seed)
    sizes = {"rgb_static": 200, "rgb_gripper": 84}
    return [
        {**{cam: rng.integers(0, 256, (sizes[cam], sizes[cam], 3), dtype=np.uint8) for cam in cameras},
         "robot_obs": rng.uniform(-1, 1, 15).astype(np.float32)}
        for _ in range(n)
    ]
