"""Data-loss faults in the results store: damaged logs, lost files, edited manifests, incomplete runs.

Each test reproduces one way a run directory used to lose or mix results silently.  The runs
use the toy suites and an agent instance, which plays in-process, so they take milliseconds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import vlaeval
from tests.conftest import run_cli, write_run
from vlaeval.errors import VlaevalError
from vlaeval.results.gate import run_gate
from vlaeval.results.report import build_report
from vlaeval.results.store import COLUMNS, EPISODES_FILE, PARQUET_FILE, ResultStore, load_results, read_manifest, write_manifest


def _agent() -> Any:
    from vlaeval_toy.agents import Solver

    return Solver(skill=0.5)


def _run(tmp_path: Path, episodes: int, run_id: str = "r", suite: str = "toy-chain") -> Path:
    return vlaeval.evaluate(_agent(), suite, episodes=episodes, out=tmp_path, run_id=run_id, progress=False).run_dir


def _resume(run_dir: Path, **kw: Any) -> Any:
    return vlaeval.evaluate(_agent(), resume=run_dir, progress=False, **kw)


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir())}


def _played(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Indices of the episodes the runner plays from now on."""
    from vlaeval.plugins.manager import plugin_manager

    played: list[int] = []

    class Observer:
        @vlaeval.hookimpl
        def vlaeval_episode_finished(self, run: Any, record: Any) -> None:
            played.append(record.episode)

    plugin_manager().register(Observer(), name="played")
    return played


def _lines(run_dir: Path) -> list[bytes]:
    return (run_dir / EPISODES_FILE).read_bytes().splitlines(keepends=True)


def _write_lines(run_dir: Path, lines: list[bytes]) -> None:
    (run_dir / EPISODES_FILE).write_bytes(b"".join(lines))


def _edit_line(line: bytes, edit: Any) -> bytes:
    record = json.loads(line)
    edit(record)
    return json.dumps(record).encode() + b"\n"


# --- 1. damaged records -------------------------------------------------------------------------


def test_a_damaged_middle_line_stops_resume_with_its_line_number_and_changes_nothing(tmp_path: Path) -> None:
    run = _run(tmp_path, 6)
    lines = _lines(run)
    lines[2] = lines[2][:40] + b"\n"  # damaged in place: the records after it are intact
    _write_lines(run, lines)
    before = _snapshot(run)
    with pytest.raises(VlaevalError, match=rf"{EPISODES_FILE}, line 3: damaged record"):
        _resume(run, episodes=8)
    assert _snapshot(run) == before  # log, parquet and manifest byte for byte


def test_report_refuses_a_damaged_middle_line_instead_of_using_the_records_before_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path, 5)
    lines = _lines(run)
    lines[1] = b"not json\n"
    _write_lines(run, lines)
    with pytest.raises(VlaevalError, match=r"line 2: damaged record"):
        load_results(run)
    assert run_cli("report", str(run)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "line 2" in err and len(err.splitlines()) == 1


def test_a_damaged_middle_line_is_a_one_line_cli_error_on_resume(tmp_path: Path) -> None:
    import subprocess
    import sys

    run = vlaeval.evaluate("toy-solver", "toy", episodes=4, out=tmp_path, run_id="named", progress=False).run_dir
    lines = _lines(run)
    lines[0] = b'{"episode": 0, "seed"\n'
    _write_lines(run, lines)
    before = _snapshot(run)
    proc = subprocess.run([sys.executable, "-m", "vlaeval", "run", "--resume", str(run), "--episodes", "6", "--no-progress"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "line 1: damaged record" in proc.stderr
    assert _snapshot(run) == before


@pytest.mark.parametrize("torn", [b'{"episode": 5, "se', b'{"episode": 5, "se\n', b"\0\0\0\0"], ids=["no-newline", "unparsable", "zeros"])
def test_a_torn_last_line_is_still_dropped_and_replayed(tmp_path: Path, torn: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _run(tmp_path, 6)
    lines = _lines(run)
    (run / PARQUET_FILE).unlink()  # the run died before finishing: no parquet yet
    _write_lines(run, lines[:5] + [torn])
    assert sorted(load_results(run)["episode"].unique()) == [0, 1, 2, 3, 4]  # report ignores the unfinished record
    played = _played(monkeypatch)
    _resume(run)
    assert played == [5]
    assert _lines(run)[:5] == lines[:5] and len(_lines(run)) == 6


def test_identical_duplicates_are_read_once_and_conflicting_ones_are_an_error(tmp_path: Path) -> None:
    run = _run(tmp_path, 4)
    lines = _lines(run)
    (run / PARQUET_FILE).unlink()
    _write_lines(run, lines + lines)  # e.g. `cat run/episodes.jsonl >> run/episodes.jsonl`
    frame = load_results(run)
    assert sorted(frame["episode"].unique()) == [0, 1, 2, 3] and not frame.duplicated(["episode", "position"]).any()

    def slower(record: dict[str, Any]) -> None:
        record["rows"][0]["steps"] += 1

    _write_lines(run, lines + [_edit_line(lines[1], slower)])
    with pytest.raises(VlaevalError, match=r"episode 1 is stored twice with different results \(lines 2 and 5\)"):
        load_results(run)
    before = _snapshot(run)
    with pytest.raises(VlaevalError, match=r"lines 2 and 5"):
        _resume(run, episodes=6)
    assert _snapshot(run) == before


# --- 2. the parquet copy ------------------------------------------------------------------------


def test_a_run_with_only_its_parquet_resumes_without_replaying_or_overwriting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _run(tmp_path, 6)
    before = pd.read_parquet(run / PARQUET_FILE)
    (run / EPISODES_FILE).unlink()
    played = _played(monkeypatch)
    result = _resume(run, episodes=9)
    assert played == [6, 7, 8]
    after = pd.read_parquet(run / PARQUET_FILE)
    assert sorted(after["episode"].unique()) == list(range(9))
    pd.testing.assert_frame_equal(after[after["episode"] < 6].reset_index(drop=True), before)  # same wall times: kept, not replayed
    pd.testing.assert_frame_equal(result.results, after)
    assert len(_lines(run)) == 9  # the log was rebuilt from the parquet before appending


def test_resume_uses_the_union_of_log_and_parquet_and_refuses_a_conflict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _run(tmp_path, 6)
    before = pd.read_parquet(run / PARQUET_FILE)
    lines = _lines(run)

    def failed(record: dict[str, Any]) -> None:
        record["rows"][0]["success"] = not record["rows"][0]["success"]

    _write_lines(run, lines[:2] + [_edit_line(lines[2], failed)])
    snapshot = _snapshot(run)
    with pytest.raises(VlaevalError, match=r"episode 2 .*different results"):
        _resume(run, episodes=8)
    with pytest.raises(VlaevalError, match=r"episode 2 .*different results"):
        load_results(run)
    assert _snapshot(run) == snapshot

    _write_lines(run, lines[:3])  # lines lost, e.g. by an older vlaeval's resume
    played = _played(monkeypatch)
    _resume(run, episodes=8)
    assert played == [6, 7]
    frame = load_results(run)
    pd.testing.assert_frame_equal(frame[frame["episode"] < 6].reset_index(drop=True), before)


def test_the_parquet_is_replaced_atomically_and_durably(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _run(tmp_path, 3)
    before = _snapshot(run)

    def crash(self: Any, path: Any, *args: Any, **kwargs: Any) -> None:
        (open(path, "wb") if isinstance(path, (str, os.PathLike)) else path).write(b"PAR1 half a file")
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(pd.DataFrame, "to_parquet", crash)
        with pytest.raises(OSError, match="disk full"):
            ResultStore(run).write_parquet()
    assert _snapshot(run) == before  # the old copy is intact and no temporary file is left behind

    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append(("replace", os.fspath(src)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    ResultStore(run).write_parquet()
    moved = [path for kind, path in events if kind == "replace"]
    assert len(moved) == 1 and ("fsync", moved[0]) in events[: events.index(("replace", moved[0]))]
    assert ("fsync", str(run)) in events  # the rename itself is made durable
    pd.testing.assert_frame_equal(pd.read_parquet(run / PARQUET_FILE), load_results(run))


# --- 3. the configuration fingerprint -----------------------------------------------------------


def test_every_record_carries_the_fingerprint_in_the_manifest(tmp_path: Path) -> None:
    run = _run(tmp_path, 3)
    manifest = read_manifest(run)
    fingerprint = manifest["fingerprint"]
    assert fingerprint["fields"] == {"agent": "Solver", "agent_options": {}, "suite": "toy-chain", "suite_version": "1",
                                     "setting": "default", "seed": 0, "step_timeout": 60.0}
    assert {json.loads(line)["config_hash"] for line in _lines(run)} == {fingerprint["config_hash"]}
    assert list(load_results(run).columns) == list(COLUMNS)  # the tidy table is unchanged
    extended = _resume(run, episodes=5)  # the episode count is not part of it
    assert read_manifest(run)["fingerprint"] == fingerprint and len(extended.results["episode"].unique()) == 5


@pytest.mark.parametrize(
    "field, value",
    [("agent", "toy-crash"), ("setting", "broken"), ("seed", 7), ("agent_options", {"skill": 0.9}), ("step_timeout", 5.0)],
)
def test_resume_refuses_an_edited_manifest(tmp_path: Path, field: str, value: Any) -> None:
    run = _run(tmp_path, 4)
    manifest = read_manifest(run)
    manifest["config"][field] = value
    write_manifest(run, manifest)
    before = _snapshot(run)
    with pytest.raises(VlaevalError, match=rf"\b{field}\b") as info:
        _resume(run, episodes=6)
    assert "\n" not in str(info.value)
    assert _snapshot(run) == before


def test_resume_refuses_rows_of_another_configuration_even_with_a_consistent_manifest(tmp_path: Path) -> None:
    run = _run(tmp_path, 4)
    manifest = read_manifest(run)
    manifest["config"]["agent_options"] = {"skill": 0.9}
    del manifest["fingerprint"]  # edited thoroughly: only the rows remember
    write_manifest(run, manifest)
    with pytest.raises(VlaevalError, match=r"episode 0 was played with a different configuration.*agent options or step timeout"):
        _resume(run, episodes=6)


def test_resume_refuses_rows_of_another_suite_version_and_episodes_beyond_the_plan(tmp_path: Path) -> None:
    run = _run(tmp_path, 4)
    (run / PARQUET_FILE).unlink()
    lines = _lines(run)
    older = _edit_line(lines[0], lambda r: [row.update(suite_version="0") for row in r["rows"]])
    _write_lines(run, [older, *lines[1:]])
    with pytest.raises(VlaevalError, match=r"suite_version differs: .* install version '0' of the suite"):
        _resume(run, episodes=6)

    shrunk = _run(tmp_path, 4, run_id="shrunk")
    manifest = read_manifest(shrunk)
    manifest["config"]["episodes"] = 2
    write_manifest(shrunk, manifest)
    with pytest.raises(VlaevalError, match=r"episode 2 is finished but the manifest plans 2 episodes"):
        _resume(shrunk)


def _make_old_style(run: Path) -> list[bytes]:
    """What an older vlaeval left behind: no fingerprint anywhere, an unfinished run without parquet."""
    lines = [_edit_line(line, lambda r: r.pop("config_hash", None)) for line in _lines(run)]
    _write_lines(run, lines)
    (run / PARQUET_FILE).unlink()
    manifest = read_manifest(run)
    manifest.pop("fingerprint", None)
    manifest["status"] = "interrupted"
    write_manifest(run, manifest)
    return lines


def test_an_old_run_without_fingerprints_still_resumes_and_is_checked_by_its_columns(tmp_path: Path) -> None:
    run = _run(tmp_path, 4)
    old = _make_old_style(run)
    _resume(run, episodes=6)
    lines = _lines(run)
    assert lines[:4] == old
    fingerprint = read_manifest(run)["fingerprint"]["config_hash"]
    assert [json.loads(line)["config_hash"] for line in lines[4:]] == [fingerprint] * 2

    other = _run(tmp_path, 4, run_id="other")
    _make_old_style(other)
    manifest = read_manifest(other)
    manifest["config"]["seed"] = 3
    write_manifest(other, manifest)
    with pytest.raises(VlaevalError, match=r"\bseed\b"):
        _resume(other, episodes=6)


# --- 4. incomplete runs in report and gate ------------------------------------------------------


def _episodic(run_dir: Path, successes: int, n: int, *, planned: int, status: str) -> Path:
    write_run(run_dir, [[{"task": "reach_left", "success": i < successes}] for i in range(n)], suite="toy", chain_length=1)
    manifest = read_manifest(run_dir)
    write_manifest(run_dir, {**manifest, "status": status, "config": {"episodes": planned}})
    return run_dir


def test_gate_fails_on_an_incomplete_run_unless_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = _episodic(tmp_path / "base", 27, 30, planned=30, status="finished")
    cur = _episodic(tmp_path / "cur", 9, 10, planned=30, status="interrupted")
    assert run_cli("gate", str(cur), "--baseline", str(base)) == 1
    out = capsys.readouterr().out
    verdict = out.strip().splitlines()[-1]
    assert verdict.startswith("gate: FAIL: the run") and "incomplete (10 of 30 episodes, status interrupted)" in verdict
    assert "--allow-incomplete" in verdict and "p(worse)" in out  # the comparison is still shown

    assert run_cli("gate", str(cur), "--baseline", str(base), "--allow-incomplete") == 0
    out = capsys.readouterr().out
    assert "gate: PASS" in out and "note: the run" in out and "10 of 30 episodes" in out

    assert run_cli("gate", str(base), "--baseline", str(cur)) == 1
    assert "gate: FAIL: the baseline" in capsys.readouterr().out
    assert not run_gate(cur, base).passed and run_gate(cur, base, allow_incomplete=True).passed
    running = _episodic(tmp_path / "running", 30, 30, planned=30, status="running")  # killed before it could say "finished"
    assert not run_gate(running, base).passed


def test_report_says_when_a_run_is_incomplete(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cur = _episodic(tmp_path / "cur", 9, 10, planned=30, status="interrupted")
    done = _episodic(tmp_path / "done", 27, 30, planned=30, status="finished")
    report = build_report([cur, done])
    assert [r.incomplete for r in report.runs] == [True, False]
    assert len(report.notes) == 1 and "10 of 30 episodes, status interrupted" in report.notes[0]

    assert run_cli("report", str(cur), str(done)) == 0
    out = capsys.readouterr()
    assert "incomplete (10 of 30 episodes, status interrupted)" in out.out
    assert run_cli("report", str(cur), "--format", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["runs"][0]["incomplete"] and data["runs"][0]["planned"] == 30 and "incomplete" in data["notes"][0]
    assert run_cli("report", str(cur), "--format", "csv") == 0
    out = capsys.readouterr()
    assert "incomplete" not in out.out and "warning: " in out.err and "10 of 30 episodes" in out.err
    assert run_cli("report", str(done)) == 0
    assert "incomplete" not in capsys.readouterr().out


def test_a_real_interrupted_run_is_reported_incomplete(tmp_path: Path) -> None:
    run = _run(tmp_path, 4)
    manifest = read_manifest(run)
    write_manifest(run, {**manifest, "status": "interrupted", "config": {**manifest["config"], "episodes": 10}})
    assert "4 of 10 episodes, status interrupted" in build_report([run]).notes[0]
