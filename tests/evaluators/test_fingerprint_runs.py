"""Runs record their protocol and render fingerprints; report and gate compare them (issue 16)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import vlaeval
from tests.conftest import run_cli
from vlaeval.agents.random import RandomAgent
from vlaeval.conventions import AgentSpec
from vlaeval.errors import VlaevalError
from vlaeval.results.fingerprint import diff_fingerprints, episodes_hash, fingerprint_hash
from vlaeval.results.gate import run_gate
from vlaeval.results.report import build_report
from vlaeval.results.store import read_manifest, write_manifest


class CameraRandom(RandomAgent):
    """The random agent, declared to read the static camera: enough to make a run take a render fingerprint."""

    spec = AgentSpec(observation_keys=("rgb_static",))


def _run(tmp_path: Path, agent: Any = "toy-solver", suite: str = "toy-chain", **kw: Any) -> Path:
    return vlaeval.evaluate(agent, suite, out=tmp_path, progress=False, **kw).run_dir


def test_a_run_records_its_protocol_apart_from_its_config_fingerprint(tmp_path: Path) -> None:
    from vlaeval_toy.suite import ToyChainSuite

    manifest = read_manifest(_run(tmp_path, episodes=6, run_id="r"))
    protocol = manifest["protocol"]
    assert manifest["protocol_hash"] == fingerprint_hash(protocol)
    assert set(manifest["fingerprint"]["fields"]) == {"agent", "agent_options", "suite", "suite_version", "setting", "seed", "step_timeout"}
    assert protocol["suite"] == {"name": "toy-chain", "version": "1", "setting": "default", "env_ids": ["vlaeval_toy/ToyReach-v0"]}
    every = ToyChainSuite().episodes("default", 0)
    assert protocol["episodes"] == {"count": 6, "indices": "0-5", "sha256": episodes_hash(every[:6]), "protocol_sha256": episodes_hash(every)}
    assert protocol["agent"]["options"] == {"skill": 1.0, "checkpoint": None}  # Solver's defaults, filled in
    assert protocol["observations"] == {"state": [2]}  # from the worker's environment
    assert protocol["action"]["type"] == "relative_ee" and protocol["termination"]["max_steps"] == 30
    assert protocol["control_hz"] is None and protocol["env"] == {} and protocol["renderer"] == {}
    assert "render" not in manifest  # the agent reads no camera
    assert "env" not in manifest["agent"]  # the environment's facts went into the protocol only


def test_the_protocol_does_not_depend_on_workers_batching_or_extension(tmp_path: Path) -> None:
    one = read_manifest(_run(tmp_path, episodes=8, run_id="one"))
    two = read_manifest(_run(tmp_path, episodes=8, run_id="two", workers=2))
    batched = read_manifest(_run(tmp_path, episodes=8, run_id="batched", envs_per_worker=3, env_mode="sync"))
    assert one["protocol_hash"] == two["protocol_hash"] == batched["protocol_hash"]

    short = _run(tmp_path, episodes=4, run_id="short")
    vlaeval.evaluate("toy-solver", resume=short, episodes=8, progress=False)
    extended = read_manifest(short)
    assert extended["protocol"] == one["protocol"] and "protocol_differences" not in extended["sessions"][-1]


def test_a_session_under_another_protocol_is_warned_recorded_and_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path, episodes=4, run_id="r")
    manifest = read_manifest(run)
    manifest["protocol"]["versions"]["numpy"] = "1.0.0"  # as if numpy was upgraded since the first session
    write_manifest(run, manifest)
    vlaeval.evaluate("toy-solver", resume=run, episodes=6, progress=False)
    assert "warning: this session's protocol differs from the run's: versions.numpy: \"1.0.0\" in the finished episodes" in capsys.readouterr().err
    after = read_manifest(run)
    assert after["sessions"][-1]["protocol_differences"] == ["versions.numpy"]
    assert after["protocol"]["versions"]["numpy"] != "1.0.0"  # the protocol in force now
    assert any("resumed under another protocol (it differed in versions.numpy)" in n for n in build_report([run]).notes)


def test_gate_compares_real_runs_by_protocol(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = _run(tmp_path, "toy-solver", "toy", episodes=30, run_id="base")
    smaller = _run(tmp_path, "toy-solver", "toy", episodes=12, run_id="small")  # the first 12 of the same list
    assert run_gate(smaller, baseline).passed
    other_seed = _run(tmp_path, "toy-solver", "toy", episodes=12, seed=5, run_id="seed5")
    with pytest.raises(VlaevalError, match=r"protocol differs from the run's: episodes\.count: 30 in the baseline, 12 in the run; .*episodes\.protocol_sha256"):
        run_gate(other_seed, baseline)
    with pytest.raises(VlaevalError, match=r"--accept episodes\.count"):
        run_gate(other_seed, baseline)
    assert run_gate(other_seed, baseline, accept=["episodes"]).notes  # accepted: gated, the differences as notes
    # The agent is what a gate compares: a changed option is shown, not refused.
    skilled = _run(tmp_path, "toy-solver", "toy", episodes=12, run_id="skill", agent_options={"skill": 0.95})
    assert run_cli("gate", str(skilled), "--baseline", str(baseline)) in (0, 1)
    assert ("note: protocol differs (the agent under test): agent.options.skill: 1.0 in the baseline, 0.95 in the run"
            in capsys.readouterr().out)


def test_a_camera_reading_run_takes_one_render_fingerprint_and_warns_on_a_difference(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from vlaeval.envs import fingerprint
    from vlaeval.evaluators import manifest as run_manifest

    reference = fingerprint.load_reference("calvin")
    assert reference is not None
    moved = {**reference, "renderer": {**reference["renderer"], "device": "NVIDIA RTX (a test)"}}
    monkeypatch.setattr(fingerprint, "load_reference", lambda suite: moved)
    started = []
    check = run_manifest._RenderCheck
    monkeypatch.setattr(run_manifest, "_RenderCheck", lambda suite: started.append(suite) or check(suite))

    run = _run(tmp_path, CameraRandom(), "calvin", episodes=1, run_id="cam")
    err = capsys.readouterr().err
    manifest = read_manifest(run)
    render = manifest["render"]
    device_line = (f"renderer changed: device 'NVIDIA RTX (a test)' in the reference, {reference['renderer']['device']!r} here")
    assert render["reference"] is True and device_line in render["differences"]
    assert f"warning: render fingerprint of 'calvin' differs from its reference: {device_line}" in err
    assert [(f["episode"], f["camera"]) for f in render["frames"]] == [(e, c) for e in (0, 500, 999) for c in ("rgb_static", "rgb_gripper")]
    assert all("thumbnail_png" not in f and len(f["sha256"]) == 64 for f in render["frames"])  # no bulky thumbnails
    if reference["renderer"] == render["renderer"]:  # this is the reference machine: bit-identical frames, one difference
        assert [f["sha256"] for f in render["frames"]] == [f["sha256"] for f in reference["frames"]]
        assert render["differences"] == [device_line]
    assert manifest["protocol"]["renderer"] == render["renderer"] and manifest["protocol_hash"] == fingerprint_hash(manifest["protocol"])
    assert manifest["protocol"]["observations"]["rgb_static"] == [200, 200, 3] and manifest["protocol"]["control_hz"] == 30
    assert manifest["protocol"]["env"]["cameras"] == ["rgb_static"]

    vlaeval.evaluate(CameraRandom(), resume=run, episodes=2, progress=False)  # a resumed session keeps the recorded one
    assert started == ["calvin"]
    after = read_manifest(run)
    assert after["render"] == render
    assert [d[0] for d in diff_fingerprints(manifest["protocol"], after["protocol"])] == ["episodes.count", "episodes.indices", "episodes.sha256"]
