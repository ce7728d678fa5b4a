"""Checkpoints: round trip, every validation failure, no unpickling, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.agents.kosmos_helpers import tiny_config, tiny_model  # noqa: F401 (fixtures)
from vlaeval.agents.checkpoint import CheckpointError, load_checkpoint, read_manifest, save_checkpoint
from vlaeval.agents.codec import ActionCodec
from vlaeval.agents.kosmos.export import example_inputs
from vlaeval.agents.kosmos.model import step_input_names

CODEC = ActionCodec((-0.1, -0.2, -0.3, -0.4, -0.5, -0.6), (0.1, 0.2, 0.3, 0.4, 0.5, 0.6))


@pytest.fixture()
def saved(tmp_path, tiny_model, tiny_config) -> Path:
    return save_checkpoint(tmp_path / "ckpt", tiny_model, tiny_config, CODEC, metadata={"step": 7})


def _edit_manifest(path: Path, **changes) -> None:
    manifest = json.loads((path / "config.json").read_text())
    for key, value in changes.items():
        target = manifest
        *parents, leaf = key.split("__")
        for p in parents:
            target = target[p]
        target[leaf] = value
    (path / "config.json").write_text(json.dumps(manifest))


def test_round_trip_restores_weights_config_codec_and_outputs(saved, tiny_model, tiny_config) -> None:
    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "model.safetensors"]
    manifest = read_manifest(saved)
    assert manifest["format_version"] == 1 and manifest["vlaeval_version"]
    assert manifest["agent_spec"]["observation_keys"] == ["rgb_static"] and manifest["metadata"] == {"step": 7}
    model, config, codec = load_checkpoint(saved)
    assert config == tiny_config and codec == CODEC
    for (k, a), (k2, b) in zip(tiny_model.state_dict().items(), model.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    inputs = example_inputs(model, batch=1)
    args = [torch.from_numpy(inputs[n]) for n in step_input_names(config)]
    with torch.no_grad():
        for a, b in zip(tiny_model.step(*args), model.step(*args)):
            assert torch.equal(a, b)


def test_loading_never_unpickles(saved, monkeypatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("checkpoint loading must not unpickle")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr("pickle.load", forbidden)
    monkeypatch.setattr("pickle.loads", forbidden)
    load_checkpoint(saved)


def test_missing_directory_and_files(tmp_path, saved) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint directory"):
        load_checkpoint(tmp_path / "nope")
    (saved / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        load_checkpoint(saved)
    (saved / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_checkpoint(saved)


def test_truncated_weights(saved) -> None:
    weights = saved / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt.*copy the checkpoint again"):
        load_checkpoint(saved)


def test_malformed_json(saved) -> None:
    (saved / "config.json").write_text('{"format_version": 1, "model": ')
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(saved)


@pytest.mark.parametrize(("version", "hint"), [(2, "upgrade vlaeval"), ("one", "re-save")])
def test_unknown_format_version(saved, version, hint) -> None:
    _edit_manifest(saved, format_version=version)
    with pytest.raises(CheckpointError, match=f"unknown checkpoint format version.*{hint}"):
        load_checkpoint(saved)


def test_shape_mismatch_against_config(saved) -> None:
    _edit_manifest(saved, model__chunk_size=5)
    with pytest.raises(CheckpointError, match=r"shape mismatch.*arm_out\.weight") as info:
        load_checkpoint(saved)
    assert "different models" in str(info.value)


def test_key_mismatch_against_config(saved) -> None:
    _edit_manifest(saved, model__head="gpt")
    with pytest.raises(CheckpointError, match=r"tensor\(s\) missing: head\.blocks") as info:
        load_checkpoint(saved)
    assert "unexpected tensor(s): head.cells" in str(info.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model__heed": "lstm"}, "unknown KosmosVLAConfig field.*heed"),
        ({"model__head": "transformer"}, "head='transformer' is not one of"),
        ({"codec__n_bins": 64}, "does not fit the model"),
        ({"agent_spec__gripper": "sideways"}, "gripper='sideways'"),
        ({"architecture": "octo"}, "architecture 'octo'"),
    ],
)
def test_invalid_config_codec_spec_and_architecture(saved, changes, message) -> None:
    _edit_manifest(saved, **changes)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(saved)


def test_refuses_to_overwrite_unless_asked(saved, tiny_model, tiny_config) -> None:
    with pytest.raises(CheckpointError, match="already exists"):
        save_checkpoint(saved, tiny_model, tiny_config, CODEC)
    other = ActionCodec.symmetric(0.65)
    save_checkpoint(saved, tiny_model, tiny_config, other, overwrite=True)
    assert load_checkpoint(saved)[2] == other
    assert sorted(p.name for p in saved.parent.iterdir()) == ["ckpt"]


def test_crash_mid_save_leaves_no_partial_checkpoint(tmp_path, saved, tiny_model, tiny_config, monkeypatch) -> None:
    def crash(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half")
        raise KeyboardInterrupt("simulated crash while writing weights")

    monkeypatch.setattr("safetensors.torch.save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "fresh", tiny_model, tiny_config, CODEC)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(saved, tiny_model, tiny_config, ActionCodec.symmetric(0.65), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no "fresh", no temp dirs
    assert load_checkpoint(saved)[2] == CODEC  # the previous checkpoint is intact


def test_codec_must_fit_model_when_saving(tmp_path, tiny_model, tiny_config) -> None:
    with pytest.raises(CheckpointError, match="does not fit"):
        save_checkpoint(tmp_path / "c", tiny_model, tiny_config, ActionCodec.symmetric(1.0, arm_dims=3))
    assert not (tmp_path / "c").exists()
    assert np.isfinite(CODEC.low).all()
