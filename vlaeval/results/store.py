"""Durable per-episode results and the run manifest.

A run directory holds:

* ``episodes.jsonl`` — the source of truth: one line per finished episode (a chain for chained
  suites), appended and fsync'ed as soon as the episode ends.  One line per episode makes the
  write atomic at episode granularity: a crash can only leave a torn *last* line, which is not a
  finished episode, so readers ignore it and resume cuts it off.  Damage anywhere else cannot come
  from a crash; silently dropping it (or everything after it) would lose finished results, so it
  is an error naming the line, and nothing is changed until a person has looked.  Each line also
  carries the ``config_hash`` of the configuration that played it (see :func:`config_hash`).
* ``episodes.parquet`` — the same table materialised when the run finishes, for fast loading.
  Readers use the union of both files, so losing either one loses nothing.
* ``manifest.json`` — resolved config, its fingerprint, versions, git revision, seeds, host,
  times, status.

The tidy table has one row per episode, or per attempted subtask of a chain.  Every file here is
replaced atomically (temporary file, fsync, rename, fsync of the directory) or appended one
fsync'ed line at a time, so it is readable after a crash at any byte.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterable, Mapping

from vlaeval.durable import read_json_object, replace_durably
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


def canonical_json(value: Any) -> str:
    """One spelling per value (sorted keys, no spaces, tuples as lists), so equal configs hash equally
    whether they come from the command line, a Python caller or a manifest read back from disk."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(fields: Mapping[str, Any]) -> str:
    """Fingerprint of the configuration fields that decide which episodes a run plays and how."""
    return hashlib.sha256(canonical_json(fields).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class EpisodeRecord:
    """One finished episode: its index and seed plus one tidy row per (sub)task attempted.

    ``config_hash`` is the fingerprint of the run configuration that played it, stamped by the
    store; ``None`` for records written by older versions or rebuilt from the parquet table.
    """

    episode: int
    seed: int
    rows: tuple[Mapping[str, Any], ...]
    config_hash: str | None = None

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
        stamp = {} if self.config_hash is None else {"config_hash": self.config_hash}
        return json.dumps({"episode": self.episode, "seed": self.seed, **stamp, "rows": list(self.rows)}, allow_nan=False)

    @classmethod
    def from_json(cls, line: str) -> "EpisodeRecord":
        """Parse one log line; a ``ValueError`` says what is wrong with a damaged one."""
        d = json.loads(line)
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        episode, seed, rows, stamp = d.get("episode"), d.get("seed"), d.get("rows"), d.get("config_hash")
        if type(episode) is not int or type(seed) is not int:
            raise ValueError("'episode' and 'seed' must be integers")
        if not isinstance(rows, list) or not all(isinstance(r, dict) and r.keys() >= set(COLUMNS) for r in rows):
            raise ValueError("'rows' must be a list of rows with every column of the results table")
        if stamp is not None and not isinstance(stamp, str):
            raise ValueError("'config_hash' must be a string")
        return cls(episode, seed, tuple(rows), stamp)


@dataclass(frozen=True)
class _Log:
    """What ``episodes.jsonl`` holds: its finished records and how many bytes they span."""

    records: dict[int, EpisodeRecord]
    good_bytes: int  # the complete lines; anything after them is a torn last record
    size: int


class ResultStore:
    """Append-only episode log of one run directory.

    With ``config_hash`` every appended record is stamped with it, so a later resume can tell
    whether the rows were played under the configuration it is about to continue with.
    """

    def __init__(self, run_dir: str | os.PathLike[str], *, config_hash: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / EPISODES_FILE
        self.parquet = self.run_dir / PARQUET_FILE
        self.config_hash = config_hash

    def completed(self) -> dict[int, EpisodeRecord]:
        """Finished episodes by index: the log's records united with the parquet copy's.

        Read-only.  A torn last line is not a finished episode and is skipped.  Damaged lines
        elsewhere, an episode stored twice with different results (identical copies, e.g. from
        concatenating a log with itself, are read once) and an episode on which the two files
        disagree are :class:`VlaevalError` s: which copy is right is for a person to decide.
        """
        records = dict(self._read_log().records)
        for index, rec in self._read_parquet().items():
            kept = records.setdefault(index, rec)
            if _tidy(kept.rows) != _tidy(rec.rows):
                raise VlaevalError(
                    f"{self.path} and {self.parquet}: episode {index} has different results in the two files; "
                    f"delete the wrong copy (the parquet is rebuilt from {EPISODES_FILE} when the run finishes)"
                )
        return records

    def repair(self, records: Mapping[int, EpisodeRecord]) -> None:
        """Prepare the log for appending: cut a torn last line and write back every record of
        ``records`` it lacks (e.g. episodes only the parquet copy still holds).

        Without this, appending to a log that lost records would make the parquet written at the
        end of the run, from the log, drop them.  Rewriting is atomic: a crash leaves the old log.
        """
        log = self._read_log()
        missing = [rec for index, rec in sorted(records.items()) if index not in log.records]
        if missing:

            def rebuild(out: IO[bytes]) -> None:
                if log.good_bytes:
                    with open(self.path, "rb") as old:
                        out.write(old.read(log.good_bytes))
                out.write("".join(rec.to_json() + "\n" for rec in missing).encode())

            replace_durably(self.path, rebuild)
        elif log.good_bytes < log.size:
            with open(self.path, "r+b") as fh:
                fh.truncate(log.good_bytes)
                os.fsync(fh.fileno())

    def append(self, record: EpisodeRecord) -> None:
        """Store one episode durably before returning."""
        if self.config_hash is not None:
            record = dataclasses.replace(record, config_hash=self.config_hash)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(record.to_json() + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def write_parquet(self) -> Path:
        """Materialise every finished episode as parquet, atomically (a crash leaves the old copy)."""
        frame = records_frame(self.completed().values())
        replace_durably(self.parquet, lambda out: frame.to_parquet(out, index=False))
        return self.parquet

    def _read_log(self) -> _Log:
        records: dict[int, EpisodeRecord] = {}
        first_line: dict[int, int] = {}
        good_bytes = 0
        damaged: tuple[int, str] | None = None
        if not self.path.exists():
            return _Log(records, 0, 0)
        with open(self.path, "rb") as fh:
            for number, raw in enumerate(fh, 1):
                if damaged is not None:  # a line follows the damaged one: it is not a torn write
                    line, reason = damaged
                    raise VlaevalError(
                        f"{self.path}, line {line}: damaged record ({reason}), with finished records after it, so not a "
                        f"crash mid-write; repair or delete that line by hand, then retry (nothing was changed)"
                    )
                try:
                    if not raw.endswith(b"\n"):
                        raise ValueError("no end of line")
                    rec = EpisodeRecord.from_json(raw.decode())
                except (ValueError, RecursionError) as exc:
                    damaged = (number, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                    continue
                good_bytes += len(raw)
                if rec.episode not in records:
                    records[rec.episode], first_line[rec.episode] = rec, number
                elif records[rec.episode] != rec:
                    raise VlaevalError(
                        f"{self.path}: episode {rec.episode} is stored twice with different results "
                        f"(lines {first_line[rec.episode]} and {number}); delete the wrong line, then retry (nothing was changed)"
                    )
        return _Log(records, good_bytes, self.path.stat().st_size)

    def _read_parquet(self) -> dict[int, EpisodeRecord]:
        if not self.parquet.exists():
            return {}
        import pandas as pd

        try:
            frame = pd.read_parquet(self.parquet)
        except Exception as exc:
            raise VlaevalError(f"cannot read {self.parquet}: {exc}; restore the file or delete it if {EPISODES_FILE} is complete") from exc
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise VlaevalError(f"{self.parquet} lacks the columns {', '.join(missing)}; it is not a vlaeval results table")
        frame = frame[list(COLUMNS)]
        cells = frame.astype(object).where(frame.notna(), None)  # as the log spells them: None, not NaN, for no error
        records = {}
        for episode, rows in cells.groupby("episode", sort=True):
            tidy = tuple(rows.sort_values("position").to_dict("records"))
            records[int(episode)] = EpisodeRecord(int(episode), int(tidy[0]["seed"]), tidy)
        return records


def _tidy(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows as the results table sees them: only its columns, by chain position."""
    return sorted(({c: row[c] for c in COLUMNS} for row in rows), key=lambda r: r["position"])


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

    Every finished episode in the JSONL log (complete even for an interrupted run) or the
    parquet copy (e.g. a baseline committed as parquet only) is included; a damaged log or
    files that disagree are an error rather than a silently smaller table (see
    :meth:`ResultStore.completed`).
    """
    import pandas as pd

    frames = []
    for run_dir in run_dirs:
        path = Path(run_dir)
        if not path.is_dir():
            raise VlaevalError(f"{path} is not a run directory (expected a folder with {EPISODES_FILE} or {PARQUET_FILE})")
        store = ResultStore(path)
        if not (store.path.exists() or store.parquet.exists()):
            raise VlaevalError(f"{path} holds no results (no {EPISODES_FILE} or {PARQUET_FILE}); is it a vlaeval run directory?")
        frames.append(records_frame(store.completed().values()))
    if not frames:
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.concat(frames, ignore_index=True)


def read_manifest(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    return read_json_object(Path(run_dir) / MANIFEST_FILE, missing=f"{run_dir} is not a vlaeval run directory")


def write_manifest(run_dir: str | os.PathLike[str], manifest: Mapping[str, Any]) -> None:
    """Replace the manifest atomically, so a crash never leaves it half-written."""
    text = json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n"
    replace_durably(Path(run_dir) / MANIFEST_FILE, lambda out: out.write(text.encode()))

