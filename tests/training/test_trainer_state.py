"""Trainer state without pickle: round trips exactly, survives torn writes, and never unpickles a run directory."""

from __future__ import annotations

import dataclasses
import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.helpers import make_dataset
from vlaeval.errors import VlaevalError
from vlaeval.training.bc import BCConfig, train_bc
from vlaeval.training.state import LEGACY_STATE_FILE, STATE_FILE, TrainerStateError, load_state, rng_states, save_state


class _Payload:
    """Unpickling this writes a marker file: proof that a loader executed the pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def _cfg(tmp_path: Path, **kw) -> BCConfig:
    base = dict(data=str(make_dataset(tmp_path / "data")), out=str(tmp_path / "run"), window=2, chunk=2, steps=2,
                batch_size=2, warmup_steps=1, save_every=2, log_every=1, threads=1, valid_windows=4)
    base.update(kw)
    return BCConfig(**base)


def test_state_tree_round_trips_exactly(tmp_path) -> None:
    model = torch.nn.Linear(3, 2)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.8, 0.95))
    model(torch.randn(4, 3)).sum().backward()
    optim.step()
    tree = {"step": 7, "optimizer": optim.state_dict(), "rng": np.random.default_rng(3).bit_generator.state,
            "global": rng_states(), "none": None, "inf": float("inf")}
    save_state(tmp_path / STATE_FILE, tree)
    back = load_state(tmp_path / STATE_FILE, restart_hint="")
    assert back["step"] == 7 and back["none"] is None and back["inf"] == float("inf")
    assert back["rng"] == tree["rng"]  # 128-bit ints survive JSON
    assert list(back["optimizer"]["state"]) == [0, 1]  # parameter indices stay ints
    assert back["optimizer"]["param_groups"] == optim.state_dict()["param_groups"]
    for i, entry in optim.state_dict()["state"].items():
        for k, v in entry.items():
            torch.testing.assert_close(back["optimizer"]["state"][i][k], v, rtol=0, atol=0)
    fresh = torch.optim.AdamW(model.parameters(), lr=1.0)
    fresh.load_state_dict(back["optimizer"])
    assert fresh.param_groups[0]["betas"] == (0.8, 0.95)
    assert back["global"]["python"] == random.getstate()
    np.testing.assert_array_equal(back["global"]["numpy"][1], np.random.get_state()[1])


def test_a_torn_write_leaves_the_previous_state_readable(tmp_path, monkeypatch) -> None:
    path = tmp_path / STATE_FILE
    save_state(path, {"step": 1, "w": torch.ones(4)})

    def killed(src, dst):  # the process dies after writing the temporary file, before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        save_state(path, {"step": 2, "w": torch.zeros(4)})
    monkeypatch.undo()
    assert load_state(path, restart_hint="")["step"] == 1
    data = path.read_bytes()
    for cut in (0, 7, len(data) // 2, len(data) - 1):  # damage from outside: a clear error, never garbage
        path.write_bytes(data[:cut])
        with pytest.raises(TrainerStateError, match=f"cannot read trainer state {path}.*delete it"):
            load_state(path, restart_hint="delete it")


@pytest.mark.parametrize("name", [LEGACY_STATE_FILE, STATE_FILE], ids=["legacy-name", "current-name"])
def test_a_crafted_pickle_in_the_run_directory_is_never_executed(tmp_path, name) -> None:
    cfg = _cfg(tmp_path)
    train_bc(cfg, progress=False, echo=lambda *_: None)
    run = Path(cfg.out)
    (run / STATE_FILE).unlink()
    marker = tmp_path / "marker"
    (run / name).write_bytes(pickle.dumps({"step": 2, "optimizer": _Payload(marker)}))
    expected = "pickled trainer state.*no longer reads.*--init-checkpoint" if name == LEGACY_STATE_FILE else "cannot read trainer state"
    with pytest.raises(VlaevalError, match=expected) as info:
        train_bc(dataclasses.replace(cfg, steps=4), progress=False, echo=lambda *_: None)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_rl_refuses_a_legacy_pickle_before_loading_anything(tmp_path) -> None:
    from vlaeval.training.rl import RLConfig, train_rl

    run = tmp_path / "rl"
    (run / "last").mkdir(parents=True)
    marker = tmp_path / "marker"
    (run / LEGACY_STATE_FILE).write_bytes(pickle.dumps({"optimizer": _Payload(marker)}))
    cfg = RLConfig(checkpoint=str(tmp_path / "missing"), out=str(run), task="open_drawer")
    with pytest.raises(VlaevalError, match=rf"no longer reads.*--checkpoint {run / 'last'}"):
        train_rl(cfg, progress=False, echo=lambda *_: None)
    assert not marker.exists()
