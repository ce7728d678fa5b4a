"""Sim-vs-real agreement metrics (SimplerEnv's, spec simpler.md §1.4): Pearson and MMRV.

Argument order is **(sim, real)** everywhere, as in SimplerEnv's code
(``simpler_env/utils/metrics.py``); their README snippet passes (real, sim), which weights rank
violations by the *sim* gap instead of the real one.  MMRV is not symmetric, so the order matters:

    RV_i = max_j |real_i - real_j| * 1[(sim_i > sim_j) != (real_i > real_j)]   (0 if none)
    MMRV = mean_i RV_i

Both comparisons are strict, so a tie on one side against a strict order on the other counts as a
violation (as upstream).  Pearson centres both vectors, returns 1 if the centred vectors are
identical and otherwise ``sum(x*y) / (sqrt(sum(x^2) sum(y^2)) + 1e-8)`` (a constant vector gives 0).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np


def mmrv(sim: Sequence[float], real: Sequence[float]) -> float:
    """Mean maximum rank violation of sim success rates against real ones (lower is better)."""
    s, r = _pair(sim, real)
    n = len(s)
    if n == 0:
        return float("nan")
    violation = (s[:, None] > s[None, :]) != (r[:, None] > r[None, :])
    gaps = np.abs(r[:, None] - r[None, :]) * violation
    return float(gaps.max(axis=1).mean())


def pearson(sim: Sequence[float], real: Sequence[float]) -> float:
    """Pearson correlation between sim and real success rates, SimplerEnv's conventions."""
    s, r = _pair(sim, real)
    if len(s) == 0:
        return float("nan")
    x, y = s - s.mean(), r - r.mean()
    if np.array_equal(x, y):
        return 1.0
    return float((x * y).sum() / (np.sqrt((x**2).sum() * (y**2).sum()) + 1e-8))


def _pair(sim: Sequence[float], real: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(sim, dtype=np.float64).reshape(-1)
    r = np.asarray(real, dtype=np.float64).reshape(-1)
    if s.shape != r.shape:
        raise ValueError(f"sim and real need one value per agent each, got {s.size} and {r.size}")
    return s, r


def read_real_table(path: str | Path) -> dict[tuple[str, str], float]:
    """Real-world success rates from a CSV with columns ``agent``, ``task``, ``success``
    (a rate in [0, 1], or a percentage > 1 which is divided by 100)."""
    out: dict[tuple[str, str], float] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"agent", "task", "success"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))} (need agent, task, success)")
        for row in reader:
            value = float(row["success"])
            out[(row["agent"].strip(), row["task"].strip())] = value / 100.0 if value > 1.0 else value
    return out


def compare(sim: Mapping[tuple[str, str], float], real: Mapping[tuple[str, str], float]) -> list[dict[str, Any]]:
    """Per task: the agents present in both tables, their Pearson and MMRV (sim first).

    Both arguments map (agent, task) -> success rate.  Tasks with fewer than two common agents
    get NaN metrics (a ranking needs two).
    """
    tasks = sorted({t for _, t in sim} & {t for _, t in real})
    rows = []
    for task in tasks:
        agents = sorted(a for a, t in sim if t == task and (a, task) in real)
        s = [sim[(a, task)] for a in agents]
        r = [real[(a, task)] for a in agents]
        ok = len(agents) >= 2
        rows.append({
            "task": task,
            "agents": len(agents),
            "pearson": pearson(s, r) if ok else float("nan"),
            "mmrv": mmrv(s, r) if ok else float("nan"),
        })
    return rows


def sim_rates(rows: Iterable[Mapping[str, Any]], by_variant: bool = True) -> dict[tuple[str, str], float]:
    """(agent, task) -> sim success rate from tidy result rows.

    With ``by_variant`` and a ``variant`` field in the rows, the rate is the mean over variants of
    each variant's success rate (SimplerEnv's variant aggregation); otherwise the plain mean.
    """
    groups: dict[tuple[str, str], dict[str, list[float]]] = {}
    for row in rows:
        variant = str(row.get("variant", "")) if by_variant else ""
        groups.setdefault((row["agent"], row["task"]), {}).setdefault(variant, []).append(float(bool(row["success"])))
    return {key: float(np.mean([np.mean(v) for v in per.values()])) for key, per in groups.items()}


def realsim_report(run_dirs: Sequence[str | Path], real_csv: str | Path) -> str:
    """``vlaeval report --real``: per task, Pearson and MMRV between the runs' agents' simulated
    success (variant-aggregated where the suite annotates variants) and real-world rates."""
    import pandas as pd

    from vlaeval.errors import VlaevalError
    from vlaeval.plugins.manager import registries
    from vlaeval.plugins.registry import import_target
    from vlaeval.results.store import load_results

    frame = load_results(*run_dirs)
    parts = []
    for suite, rows in frame.groupby("suite", sort=False):
        spec = registries().suite.get(str(suite)).spec
        parts.append(import_target(spec.target, what=f"suite {suite!r}")().annotate_results(rows))
    try:
        real = read_real_table(real_csv)
    except (OSError, ValueError) as exc:
        raise VlaevalError(f"cannot read the real-world table {real_csv}: {exc}") from exc
    table = pd.DataFrame(compare(sim_rates(pd.concat(parts).to_dict("records")), real))
    if table.empty:
        return "sim vs real: no (agent, task) pair appears in both the runs and the real-world table\n"
    return "sim vs real (Pearson: higher is better; MMRV: lower is better)\n" + table.round(3).to_string(index=False) + "\n"
