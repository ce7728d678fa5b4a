"""Durable per-episode results and the run manifest.

A run directory holds:

* ``episodes.jsonl`` — the source of truth: one line per finished episode (a chain for chained
  suites), appended and fsync'ed as soon as the episode ends.  One line per episode makes the
  write atomic at episode granularity: a crash can only leave a torn *last* line, which is
  detected and cut off on resume, so nothing is lost (beyond episodes in flight) or duplicated.
* ``episodes.parquet`` — the same table materialised when the run finishes, for fast loading.
* ``manifest.json`` — resolved config, versions, git revision, seeds, host, times, status.

The tidy table has one row per episode, or per attempted subtask of a chain.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from vlaeval.errors import VlaevalError

EPISODES_FILE = "episodes.jsonl"
PARQUET_FILE = "episodes.parquet"
MANIFEST_FILE = "manifest.json"

#: Columns of the tidy per-episode table, in order.
COLUMNS: tuple[str, ...] = (
    "run_id",
    "agent",
    "suite",
    "suite_version",
    "setting",
    "task",
    "episode",
    "position",
    "seed",
    "success",
    "steps",
    "wall_time",
    "error",
    "instruction",
)


@dataclass(frozen=True)
class EpisodeRecord:
    """One finished episode: its index and seed plus one tidy row per (sub)task attempted."""

    episode: int
    seed: int
    rows: tuple[Mapping[str, Any], ...]

    @property
    def success(self) -> bool:
        """Whether every attempted (sub)task succeeded (for a chain: it ran to the end)."""
        return bool(self.rows) and all(r["success"] for r in self.rows)

    @property
    def chain_length(self) -> int:
        """Consecutive successes from the start (CALVIN's per-sequence result)."""
        n = 0
        for r in self.rows:
            if not r["success"]:
                break
            n += 1
        return n

    @property
    def error(self) -> str | None:
        return next((r["error"] for r in self.rows if r.get("error")), None)

    def to_json(self) -> str:
        return json.dumps({"episode": self.episode, "seed": self.seed, "rows": list(self.rows)}, allow_nan=False)

    @classmethod
    def from_json(cls, line: str) -> "EpisodeRecord":
        d = json.loads(line)
        return cls(int(d["episode"]), int(d["seed"]), tuple(d["rows"]))


class ResultStore:
    """Append-only episode log of one run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / EPISODES_FILE

    def completed(self, *, repair: bool = False) -> dict[int, EpisodeRecord]:
        """Episodes already stored, by index.

        With ``repair`` a torn last line (the process died mid-write) is cut off so appends
        continue on a clean line boundary.
        """
        records: dict[int, EpisodeRecord] = {}
        if not self.path.exists():
            return records
        good_bytes = 0
        with open(self.path, "rb") as fh:
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break  # torn tail
                try:
                    rec = EpisodeRecord.from_json(raw.decode())
                except (ValueError, KeyError, TypeError):
                    break
                good_bytes += len(raw)
                if rec.episode in records:
                    warnings.warn(f"{self.path}: episode {rec.episode} stored twice; keeping the first", stacklevel=2)
                    continue
                records[rec.episode] = rec
        size = self.path.stat().st_size
        if good_bytes < size:
            if repair:
                with open(self.path, "r+b") as fh:
                    fh.truncate(good_bytes)
            else:
                warnings.warn(f"{self.path}: ignoring {size - good_bytes} bytes of an unfinished last record", stacklevel=2)
        return records

    def append(self, record: EpisodeRecord) -> None:
        """Store one episode durably before returning."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(record.to_json() + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def write_parquet(self) -> Path:
        frame = records_frame(self.completed().values())
        out = self.run_dir / PARQUET_FILE
        tmp = out.with_suffix(".parquet.tmp")
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, out)
        return out


def records_frame(records: Iterable[EpisodeRecord]) -> Any:
    """The tidy table of some records, sorted by episode and chain position."""
    import pandas as pd

    rows = [row for rec in records for row in rec.rows]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    if frame.empty:
        return frame
    frame = frame.astype({"episode": "int64", "position": "int64", "seed": "int64", "success": "bool", "steps": "int64"})
    return frame.sort_values(["run_id", "episode", "position"], kind="stable").reset_index(drop=True)


def load_results(*run_dirs: str | os.PathLike[str]) -> Any:
    """Load the per-episode table of one or more run directories as a ``pandas.DataFrame``.

    The JSONL log is authoritative (it is complete even for an interrupted run); the parquet copy
    is used when the log is absent, e.g. for a baseline committed as parquet only.
    """
    import pandas as pd

    frames = []
    for run_dir in run_dirs:
        path = Path(run_dir)
        if not path.is_dir():
            raise VlaevalError(f"{path} is not a run directory (expected a folder with {EPISODES_FILE} or {PARQUET_FILE})")
        store = ResultStore(path)
        if store.path.exists():
            frames.append(records_frame(store.completed().values()))
        elif (path / PARQUET_FILE).exists():
            try:
                frames.append(pd.read_parquet(path / PARQUET_FILE))
            except Exception as exc:
                raise VlaevalError(f"cannot read {path / PARQUET_FILE}: {exc}; re-run or restore the file") from exc
        else:
            raise VlaevalError(f"{path} holds no results (no {EPISODES_FILE} or {PARQUET_FILE}); is it a vlaeval run directory?")
    if not frames:
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.concat(frames, ignore_index=True)


def read_manifest(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise VlaevalError(f"{path} not found: {run_dir} is not a vlaeval run directory") from None
    except (OSError, ValueError) as exc:
        raise VlaevalError(f"cannot read {path}: {exc}") from exc


def write_manifest(run_dir: str | os.PathLike[str], manifest: Mapping[str, Any]) -> None:
    """Replace the manifest atomically, so a crash never leaves it half-written."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=".manifest.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(manifest, fh, indent=2, sort_keys=False, default=str)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, run_dir / MANIFEST_FILE)
