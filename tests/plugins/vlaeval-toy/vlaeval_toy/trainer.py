"""vlaeval-toy's trainer: ``vlaeval train toy --run RUN_DIR --out CHECKPOINT``."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command(name="toy")
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False), help="A finished run to imitate.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Checkpoint directory to write.")
def train_command(run_dir: str, out: str) -> None:
    """Fit a toy-solver checkpoint whose skill is the run's share of successful attempts.

    Run it with ``vlaeval run --agent toy-solver --checkpoint CHECKPOINT``.
    """
    import vlaeval

    skill = float(vlaeval.load_results(run_dir)["success"].mean())
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "toy.json").write_text(json.dumps({"skill": skill}))
    click.echo(f"{out}: skill={skill:.3f}")
