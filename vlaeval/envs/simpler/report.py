"""Reports of ``simpler`` runs: per task, per protocol, per variant and per variant axis, and the
sim-vs-real comparison (Pearson, MMRV).  No simulator import.

    python -m vlaeval.envs.simpler.report RUN_DIR [RUN_DIR ...] [--real REAL.csv]

Runs store tidy rows (task, episode index, success, ...); the suite joins each episode's variant
(:func:`~vlaeval.envs.simpler.suite.annotate`).  Variant aggregation = per task, the mean over
variants of each variant's success rate (SimplerEnv's ``calc_metrics_evaluation_videos.py``);
each axis row is the mean over that axis's non-base variants.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vlaeval.envs.simpler.suite import annotate


def variant_table(rows: Any) -> Any:
    """Success rate per (agent, setting, task, variant)."""
    rows = annotate(rows) if "variant" not in rows else rows
    return (rows.groupby(["agent", "setting", "task", "variant"])["success"].agg(["mean", "count"])
            .rename(columns={"mean": "success_rate", "count": "episodes"}).reset_index())


def task_table(rows: Any) -> Any:
    """Per (agent, setting, task): the protocol's success (mean over variants) and one column per
    variant axis (mean over that axis's non-base variants)."""
    per_variant = variant_table(rows)
    per_variant["axis"] = per_variant["variant"].str.split("=").str[0]
    keys = ["agent", "setting", "task"]
    out = per_variant.groupby(keys)["success_rate"].mean().rename("success").reset_index()
    varied = per_variant[~per_variant["axis"].isin(("base", "visual-matching"))]
    if len(varied):
        axes = varied.pivot_table(index=keys, columns="axis", values="success_rate", aggfunc="mean").reset_index()
        axes.columns.name = None
        out = out.merge(axes, on=keys, how="left")
    return out


def realsim_table(rows: Any, real_csv: str | Path) -> list[dict[str, Any]]:
    """Pearson and MMRV per task between the runs' agents (variant-averaged sim success) and a CSV
    of real-world success rates (columns ``agent, task, success``)."""
    from vlaeval.results.realsim import compare, read_real_table, sim_rates

    rows = annotate(rows) if "variant" not in rows else rows
    return compare(sim_rates(rows.to_dict("records")), read_real_table(real_csv))


def main(argv: list[str] | None = None) -> None:
    import pandas as pd

    parser = argparse.ArgumentParser(description="simpler suite report")
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--real", type=Path, help="CSV of real-world success rates: agent,task,success")
    args = parser.parse_args(argv)
    rows = pd.concat([pd.read_parquet(r / "episodes.parquet") for r in args.runs], ignore_index=True)
    rows = annotate(rows[rows["suite"] == "simpler"])
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 30)
    print(task_table(rows).round(3).to_string(index=False))
    if args.real:
        print()
        print(pd.DataFrame(realsim_table(rows, args.real)).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
