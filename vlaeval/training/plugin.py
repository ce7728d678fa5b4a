"""Built-in plugin: the ``bc`` and ``rl`` trainers and the ``record`` / ``offline`` commands.

Only click is imported here; torch and h5py load inside the command bodies, so ``vlaeval --help``
stays instant.
"""

from __future__ import annotations

from typing import Any, Callable

import click

from vlaeval.plugins.hookspecs import hookimpl


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


@hookimpl
def vlaeval_register_trainers(register: Callable[..., None]) -> None:
    register("bc", "vlaeval.training.bc:bc_command",
             description="behaviour cloning of a kosmos agent on a recorded dataset (RoboVLMs losses)")
    register("rl", "vlaeval.training.rl:rl_command",
             description="RL fine-tuning of a BC checkpoint on a suite's success signal (GRPO, group-relative advantages)")


@hookimpl
def vlaeval_register_commands(cli: Any) -> None:
    cli.add_command(record_command)
    cli.add_command(offline_command)
    cli.add_command(convert_dataset_command)


@click.command(name="record")
@click.option("--agent", "-a", required=True, help="Agent whose rollouts are recorded (e.g. expert).")
@click.option("--suite", "-s", default="calvin", show_default=True, help="Registered suite.")
@click.option("--setting", help="Generalization setting (instruction set; default: the suite's first).")
@click.option("--scenes", help="calvin: comma list of scenes (A,B,C); chains are sampled per scene from random resets.")
@click.option("--episodes", "-n", type=click.IntRange(min=1), default=10, show_default=True,
              help="Episodes per scene (with --scenes), else the suite's first N episodes.")
@click.option("--tasks", help="calvin: comma list of allowed tasks, or 'articulated' (drawer, slider, LED, light bulb).")
@click.option("--chain-length", type=click.IntRange(1, 5), default=1, show_default=True, help="Subtasks per sampled chain.")
@click.option("--balance/--no-balance", default=True, show_default=True,
              help="calvin --scenes: draw chains so every task gets about as many demos (else uniform over what applies).")
@click.option("--cameras", default="rgb_static", show_default=True, help="Comma list of camera observations to store.")
@click.option("--seed", type=int, default=0, show_default=True, help="Base seed of the sampled episodes.")
@click.option("--max-steps", type=click.IntRange(min=1), help="Step limit per subtask (default: the suite's).")
@click.option("--valid-fraction", type=click.FloatRange(0, 0.9), default=0.1, show_default=True,
              help="Share of successful demos held out in mask/valid.")
@click.option("--workers", "-w", type=click.IntRange(min=1), default=1, show_default=True, help="Recording processes.")
@click.option("--agent-opt", "agent_opts", multiple=True, metavar="KEY=VALUE", help="Agent constructor option (repeatable).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Dataset directory (demos.hdf5, or the LeRobotDataset with --format lerobot).")
@click.option("--format", "data_format", type=click.Choice(["hdf5", "lerobot"]), default="hdf5", show_default=True,
              help="hdf5: robomimic layout; lerobot: a LeRobotDataset of the successful demos (needs the lerobot extra).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def record_command(agent: str, suite: str, setting: str | None, scenes: str | None, episodes: int, tasks: str | None,
                   chain_length: int, balance: bool, cameras: str, seed: int, max_steps: int | None, valid_fraction: float, workers: int,
                   agent_opts: tuple[str, ...], out: str, data_format: str, no_progress: bool) -> None:
    """Record an agent's rollouts as a demonstration dataset (HDF5 in the robomimic layout, or a LeRobotDataset)."""
    from vlaeval.options import parse_options
    from vlaeval.training.record import TASK_GROUPS, RecordConfig, record

    task_list: tuple[str, ...] = ()
    for t in _csv(tasks):
        task_list += TASK_GROUPS.get(t, (t,))
    config = RecordConfig(agent=agent, suite=suite, setting=setting, scenes=_csv(scenes), episodes=episodes,
                          tasks=task_list, chain_length=chain_length, balance=balance, cameras=_csv(cameras), seed=seed, max_steps=max_steps,
                          valid_fraction=valid_fraction, workers=workers, agent_options=parse_options(agent_opts, "--agent-opt"))
    if data_format == "lerobot":
        from vlaeval.training.lerobot_dataset import record_lerobot

        summary = record_lerobot(config, out, progress=not no_progress)
    else:
        summary = record(config, out, progress=not no_progress)
    click.echo(f"{out}: " + ", ".join(f"{k}={v}" for k, v in summary.items()))


@click.command(name="convert-dataset")
@click.argument("data", type=click.Path(exists=True))
@click.option("--to", "to_format", type=click.Choice(["lerobot"]), required=True, help="Target format.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="New dataset directory.")
@click.option("--split", default="successful", show_default=True, help="HDF5 filter key to convert (successful, train, valid, all).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def convert_dataset_command(data: str, to_format: str, out: str, split: str, no_progress: bool) -> None:
    """Convert a recorded dataset (DATA/demos.hdf5) into a LeRobotDataset that lerobot-train reads."""
    from vlaeval.training.lerobot_dataset import convert_dataset

    summary = convert_dataset(data, out, split=split, progress=not no_progress)
    click.echo(f"{out}: " + ", ".join(f"{k}={v}" for k, v in summary.items()))


@click.command(name="offline")
@click.option("--agent", "-a", default="kosmos-lstm-tiny", show_default=True, help="Agent family of the checkpoint.")
@click.option("--checkpoint", "-c", required=True, type=click.Path(exists=True, file_okay=False), help="Agent checkpoint.")
@click.option("--data", "-d", required=True, type=click.Path(exists=True), help="Dataset directory or demos.hdf5.")
@click.option("--split", default="valid", show_default=True, help="Filter key of the held-out demos (valid, train, all, ...).")
@click.option("--max-demos", type=click.IntRange(min=1), help="Only the first N demos of the split.")
@click.option("--out", "-o", type=click.Path(dir_okay=False), help="Write the JSON report here (default: CHECKPOINT/offline-SPLIT.json).")
def offline_command(agent: str, checkpoint: str, data: str, split: str, max_demos: int | None, out: str | None) -> None:
    """Open-loop evaluation on held-out demonstrations: MAE, RMSE, R² per action dim, gripper accuracy."""
    import json
    from pathlib import Path

    from vlaeval.durable import write_text
    from vlaeval.training.offline import format_table, offline_eval

    report = offline_eval(checkpoint, data, split=split, max_demos=max_demos)
    click.echo(format_table(report))
    path = Path(out) if out else Path(checkpoint) / f"offline-{split}.json"
    write_text(path, json.dumps(report, indent=2) + "\n")
    click.echo(f"report: {path}")
