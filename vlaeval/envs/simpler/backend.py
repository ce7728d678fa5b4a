"""Which ManiSkill sim backend the ``simpler`` suite uses, and a clear error when it cannot.

``VLAEVAL_SIMPLER_SIM_BACKEND`` (``auto``, ``cpu`` or ``gpu``; default ``auto``) chooses it for
``vlaeval run`` and :func:`vlaeval.evaluate`, which have no per-suite option: ``auto`` takes the
GPU when torch sees CUDA.  With the GPU backend and more than one environment per worker the
runner steps them all in one batched ManiSkill env (:mod:`vlaeval.envs.simpler.pool`).
"""

from __future__ import annotations

import os

from vlaeval.errors import VlaevalError

SIM_BACKEND_VAR = "VLAEVAL_SIMPLER_SIM_BACKEND"
SIM_BACKENDS = ("auto", "cpu", "gpu")


def requested_sim_backend() -> str:
    """The backend asked for through :data:`SIM_BACKEND_VAR` (not yet resolved)."""
    return os.environ.get(SIM_BACKEND_VAR, "auto").strip().lower() or "auto"


def resolve_sim_backend(requested: str) -> str:
    """``auto`` -> ``gpu`` or ``cpu`` by CUDA availability; ``gpu`` without CUDA is an error
    (ManiSkill's own failure deep inside SAPIEN does not say what to change)."""
    import torch

    name = {"physx_cuda": "gpu", "physx_cpu": "cpu"}.get(requested, requested)
    if name not in SIM_BACKENDS:
        raise VlaevalError(f"simpler sim backend must be one of {', '.join(SIM_BACKENDS)}, not {requested!r} "
                           f"(set by {SIM_BACKEND_VAR} or sim_backend=)")
    cuda = torch.cuda.is_available()
    if name == "auto":
        return "gpu" if cuda else "cpu"
    if name == "gpu" and not cuda:
        raise VlaevalError(
            "the simpler suite's GPU sim backend needs CUDA, but torch.cuda.is_available() is False "
            f"(torch {torch.__version__}; a CPU-only torch build or no NVIDIA driver); "
            f"use the CPU backend ({SIM_BACKEND_VAR}=cpu or sim_backend='cpu')"
        )
    return name
