"""The ``vlaeval`` command line.

Only click, pluggy and the plugin modules load at start-up: everything heavy (pandas, simulators,
deep-learning stacks) is imported inside the command that needs it, so ``vlaeval --help`` and the
listing commands answer at once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from vlaeval.version import __version__
from vlaeval.agents.remote.limits import DEFAULT_IDLE_TIMEOUT_S, DEFAULT_MAX_AGENTS, DEFAULT_MAX_BATCH
from vlaeval.errors import VlaevalError
from vlaeval.options import parse_options


class _Group(click.Group):
    """Adds plugin-provided commands on first use (``vlaeval_register_commands``)."""

    _plugins_added = False

    def _add_plugin_commands(self) -> None:
        if not self._plugins_added:
            self._plugins_added = True
            from vlaeval.plugins.manager import add_plugin_commands

            add_plugin_commands(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        self._add_plugin_commands()
        return super().get_command(ctx, name)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="vlaeval")
def cli() -> None:
    """Evaluate vision-language-action robot policies on simulated suites.

    \b
    Typical use:
      vlaeval run --agent expert --suite calvin --episodes 20
      vlaeval report runs/<run>            # success rates with 95% intervals
      vlaeval gate runs/<run> --baseline results/<baseline>
    """


@cli.command()
@click.option("--agent", "-a", help="Registered agent name or agent URI (ws://host:port, package.module:Class).")
@click.option("--suite", "-s", help="Registered suite name (see `vlaeval suites`).")
@click.option("--setting", help="Generalization setting (default: the suite's first).")
@click.option("--episodes", "-n", type=click.IntRange(min=1), help="Evaluate the first N episodes (default: all).")
@click.option("--seed", type=int, help="Base seed (default: the suite protocol's).")
@click.option("--workers", "-w", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes (or Ray tasks with --executor ray); results do not depend on it.")
@click.option("--out", "-o", type=click.Path(file_okay=False), default="runs", show_default=True, help="Parent folder of run directories.")
@click.option("--resume", type=click.Path(exists=True, file_okay=False),
              help="Finish an interrupted run directory (with --episodes N: extend it to the first N episodes).")
@click.option("--agent-opt", "agent_opts", multiple=True, metavar="KEY=VALUE", help="Agent constructor option (repeatable).")
@click.option("--checkpoint", type=click.Path(), help="Agent checkpoint (shorthand for --agent-opt checkpoint=PATH).")
@click.option("--runtime", type=click.Choice(["auto", "torch", "onnx", "tensorrt"]),
              help="Inference runtime for agents that have several (shorthand for --agent-opt runtime=NAME).")
@click.option("--step-timeout", type=click.FloatRange(min=0), default=60.0, show_default=True, help="Seconds one agent call may take (0 = unlimited).")
@click.option("--setup-timeout", type=click.FloatRange(min=0), default=600.0, show_default=True,
              help="Seconds agent construction and bind() may each take in a worker (0 = unlimited).")
@click.option("--run-id", help="Name of the run directory (default: time, suite and agent).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option("--envs-per-worker", type=click.IntRange(min=1), default=1, show_default=True,
              help="Environments each worker steps in lock-step, with one batched agent call per step (act_batch).")
@click.option("--env-mode", type=click.Choice(["auto", "sync", "async"]), default="auto", show_default=True,
              help="With --envs-per-worker > 1: envs in the worker process (sync) or one subprocess each (async).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: worker processes on this machine; ray: Ray tasks (pip install 'vlaeval[ray]').")
@click.option("--address", metavar="auto|HOST:PORT", help="Ray cluster to join with --executor ray (default: a new local instance).")
@click.option("--until", type=click.Choice(["all", "decided"]), default="all", show_default=True,
              help="decided: play episodes in seeded order and stop as soon as a sequential test (--against or --threshold) decides.")
@click.option("--against", type=click.Path(exists=True, file_okay=False),
              help="With --until decided: is this run better or worse than RUN (paired on identical episodes)?")
@click.option("--threshold", type=float, help="With --until decided: is this run's success rate above or below RATE?")
@click.option("--alpha", type=float, help="With --until decided: the chance of any wrong verdict  [default: 0.05]")
@click.option("--delta", type=float, help="With --against: also stop once this run is shown less than DELTA worse than RUN.")
@click.option("--video", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
              help="Film the first N episodes of each task to RUN_DIR/videos (pip install 'vlaeval[video]'); results do not change.")
def run(agent: str | None, suite: str | None, setting: str | None, episodes: int | None, seed: int | None, workers: int,
        out: str, resume: str | None, agent_opts: tuple[str, ...], checkpoint: str | None, runtime: str | None, step_timeout: float,
        setup_timeout: float, run_id: str | None, no_progress: bool, envs_per_worker: int, env_mode: str, executor: str, address: str | None,
        until: str, against: str | None, threshold: float | None, alpha: float | None, delta: float | None, video: int) -> None:
    """Evaluate an agent on a suite; results go to a run directory."""
    from vlaeval.evaluators.runner import evaluate
    from vlaeval.results.sequential import StoppingRule

    if agent is None and resume is None:
        raise click.UsageError("pass --agent (see `vlaeval agents`) or --resume RUN_DIR")
    rule = None
    if until == "decided":
        rule = StoppingRule(0.05 if alpha is None else alpha, against, threshold, delta)
    elif any(v is not None for v in (against, threshold, alpha, delta)):
        raise click.UsageError("--against, --threshold, --alpha and --delta set the test of --until decided; pass it too")
    options = parse_options(agent_opts, "--agent-opt")
    options.update({k: v for k, v in (("checkpoint", checkpoint), ("runtime", runtime)) if v})
    result = evaluate(agent, suite, setting=setting, episodes=episodes, seed=seed, workers=workers, out=out, resume=resume,
                      agent_options=options, step_timeout=step_timeout, progress=not no_progress, run_id=run_id,
                      envs_per_worker=envs_per_worker, executor=executor, address=address, env_mode=env_mode,
                      setup_timeout=setup_timeout, until=rule, video=video)
    summary = ", ".join(f"{k}={v:.3f}" if k != "episodes" else f"{k}={int(v)}" for k, v in result.summary().items())
    errors = int(result.results.groupby("episode")["error"].apply(lambda e: e.notna().any()).sum()) if not result.results.empty else 0
    click.echo(f"{result.run_dir}: {summary}" + (f" ({errors} episodes errored: see the error column)" if errors else ""))
    if result.decision is not None:
        decision = result.decision
        click.echo(f"decided ({decision.verdict}): {decision.reason}" if decision.decided else decision.reason)
    click.echo(f"report: vlaeval report {result.run_dir}")


@cli.command()
@click.option("--suite", "-s", required=True, help="Registered suite name.")
@click.option("--setting", help="Generalization setting (default: the suite's first).")
@click.option("--seed", type=int, help="Base seed (default: the suite protocol's).")
@click.option("--episodes", "-n", type=click.IntRange(min=1), help="Only the first N episodes.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="json: one object per line.")
def episodes(suite: str, setting: str | None, seed: int | None, episodes: int | None, fmt: str) -> None:
    """List a suite's evaluation episodes without running them."""
    from vlaeval.plugins.manager import load_suite, suite_spec

    spec = suite_spec(suite)
    name = spec.setting(setting).name
    listed = list(load_suite(spec).episodes(name, spec.protocol.seed if seed is None else seed))[:episodes]
    for ep in listed:
        if fmt == "json":
            click.echo(ep.to_json())
        else:
            click.echo(f"{ep.index:5d}  seed={ep.seed:<11d} {' -> '.join(ep.tasks)}")


class _TrainGroup(click.Group):
    """``vlaeval train NAME``: one sub-command per registered trainer, imported only when run."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from vlaeval.plugins.manager import registries

        return [e.name for e in registries().trainer]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        from vlaeval.plugins.manager import registries

        command = registries().trainer.get(name).load()
        if not isinstance(command, click.Command):
            raise VlaevalError(f"trainer {name!r} must register a click command, not {type(command).__name__}")
        return command


@cli.group(cls=_TrainGroup)
def train() -> None:
    """Train agents (registered trainers; see `vlaeval trainers`)."""


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", default="table", show_default=True, help="A registered reporter: table, markdown, csv, json, html, ...")
@click.option("--out", "-o", type=click.Path(dir_okay=False), help="Write to this file instead of printing.")
@click.option("--real", type=click.Path(exists=True, dir_okay=False),
              help="CSV of real-world success rates (agent,task,success): add Pearson and MMRV of sim vs real per task.")
def report(run_dirs: tuple[str, ...], fmt: str, out: str | None, real: str | None) -> None:
    """Success rates with 95% intervals for one run, or side by side for several."""
    from vlaeval.plugins.manager import registries
    from vlaeval.results.report import build_report

    reporter = registries().reporter.get(fmt).load()
    built = build_report(run_dirs)
    text = reporter(built, Path(out) if out else None)
    shown = text if out is None or fmt == "html" else ""
    if shown:
        click.echo(shown, nl=False)
    for note in built.notes:  # e.g. an incomplete run, which the format (csv, a plugin's, a file) may not show
        if note not in shown:
            click.echo(f"warning: {note}", err=True)
    if real:
        from vlaeval.results.realsim import realsim_report

        click.echo(realsim_report(run_dirs, real))


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--baseline", "-b", required=True, type=click.Path(exists=True, file_okay=False), help="Baseline run directory.")
@click.option("--alpha", type=float, default=0.05, show_default=True, help="Significance level of the one-sided tests.")
@click.option("--correction", type=click.Choice(["holm", "none"]), default="holm", show_default=True,
              help="Multiple-comparison correction across metrics.")
@click.option("--allow-incomplete", is_flag=True, help="Gate on an unfinished run or baseline instead of failing.")
@click.option("--paired", is_flag=True, help="Runs on identical episodes: paired one-sided tests (more power per episode).")
@click.option("--accept", multiple=True, metavar="FIELD",
              help="Gate although the protocol fingerprints differ in FIELD or fields under it (repeatable; e.g. versions.pybullet).")
def gate(run_dir: str, baseline: str, alpha: float, correction: str, allow_incomplete: bool, paired: bool, accept: tuple[str, ...]) -> None:
    """Exit 1 when RUN_DIR is significantly worse than the baseline on any metric, or either is incomplete;
    exit 2 when their protocol fingerprints differ in a field not accepted."""
    from vlaeval.results.gate import run_gate

    result = run_gate(run_dir, baseline, alpha=alpha, correction=correction, allow_incomplete=allow_incomplete, paired=paired,
                      accept=accept)
    click.echo(result.table())
    for note in result.notes:
        click.echo(f"note: {note}")
    click.echo(result.verdict())
    sys.exit(0 if result.passed else 1)


@cli.command()
@click.argument("run_a", type=click.Path(exists=True, file_okay=False))
@click.argument("run_b", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "json", "html"]), default="table", show_default=True)
@click.option("--out", "-o", type=click.Path(dir_okay=False), help="Write to this file instead of printing (html: compare.html by default).")
@click.option("--alpha", type=float, default=0.05, show_default=True, help="Level of the verdict line (two-sided, Holm-adjusted).")
def compare(run_a: str, run_b: str, fmt: str, out: str | None, alpha: float) -> None:
    """Run B against run A on identical episodes: paired differences B - A with 95% intervals and exact tests."""
    from vlaeval.results.compare import compare_runs, render

    text = render(compare_runs(run_a, run_b, alpha=alpha), fmt)
    if out is None and fmt != "html":
        click.echo(text, nl=False)
        return
    path = Path(out or "compare.html")
    path.write_text(text)
    click.echo(f"wrote {path}")


@cli.command()
@click.option("--agent", "-a", required=True, help="Registered agent name (e.g. kosmos-lstm-tiny).")
@click.option("--checkpoint", type=click.Path(exists=True, file_okay=False), help="Checkpoint to export (default: the preset's weights).")
@click.option("--format", "fmt", type=click.Choice(["onnx", "tensorrt"]), default="onnx", show_default=True)
@click.option("--fp16", is_flag=True, help="TensorRT: allow half-precision kernels.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Directory for the exported agent.")
def export(agent: str, checkpoint: str | None, fmt: str, fp16: bool, out: str) -> None:
    """Export an agent's network for ONNX Runtime or TensorRT; run it with --agent OUT."""
    from vlaeval.agents.resolve import make_agent

    instance = make_agent(agent, {"runtime": "torch", **({"checkpoint": checkpoint} if checkpoint else {})})
    if not callable(getattr(instance, "export", None)):
        raise VlaevalError(f"agent {agent!r} ({type(instance).__name__}) has no export(); only agents with a network can be exported")
    try:
        files = instance.export(out, fmt, fp16=fp16)
    finally:
        instance.close()
    for path in files:
        click.echo(f"wrote {path}")
    click.echo(f"run it: vlaeval run --agent {out} --runtime {fmt} --suite calvin")


@cli.command()
@click.option("--agent", "-a", required=True, help="Registered agent name or agent URI to serve.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind; the protocol has no authentication.")
@click.option("--port", "-p", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--agent-opt", "agent_opts", multiple=True, metavar="KEY=VALUE", help="Agent constructor option (repeatable).")
@click.option("--checkpoint", type=click.Path(), help="Agent checkpoint (shorthand for --agent-opt checkpoint=PATH).")
@click.option("--max-batch", type=click.IntRange(min=1), default=DEFAULT_MAX_BATCH, show_default=True, help="Largest batch of requests per forward pass.")
@click.option("--max-agents", type=click.IntRange(min=1), default=DEFAULT_MAX_AGENTS, show_default=True,
              help="Most agents held at once (one per open connection); further connections are refused.")
@click.option("--idle-timeout", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_IDLE_TIMEOUT_S, show_default=True,
              help="Seconds a connection may send nothing before it is closed and its agent freed.")
def serve(agent: str, host: str, port: int, agent_opts: tuple[str, ...], checkpoint: str | None, max_batch: int, max_agents: int,
          idle_timeout: float) -> None:
    """Serve an agent over a websocket (msgpack-numpy, openpi-compatible); evaluate it as ws://HOST:PORT."""
    from vlaeval.agents.remote.server import serve as serve_agent
    from vlaeval.agents.resolve import make_agent

    options = parse_options(agent_opts, "--agent-opt")
    if checkpoint:
        options["checkpoint"] = checkpoint
    make_agent(agent, options).close()  # fail now, not at the first connection, on a bad name or option
    click.echo(f"serving {agent} on ws://{host}:{port} (health: http://{host}:{port}/healthz); Ctrl-C stops", err=True)
    serve_agent(lambda: make_agent(agent, options), host=host, port=port, max_batch=max_batch, max_agents=max_agents,
                idle_timeout_s=idle_timeout)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """Installed plugins: name, version and the hooks each implements, or why it was skipped."""
    from vlaeval.plugins.manager import plugin_info, plugin_manager, skipped_plugins

    pm = plugin_manager()
    rows = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin) or repr(plugin)
        info = plugin_info(name)
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        rows.append({"name": name, "distribution": info.distribution, "version": info.version, "builtin": info.builtin, "hooks": hooks,
                     "status": "loaded", "error": None})
    for info in skipped_plugins():
        rows.append({"name": info.name, "distribution": info.distribution, "version": info.version, "builtin": info.builtin, "hooks": [],
                     "status": "skipped", "error": info.error})
    rows.sort(key=lambda r: (not r["builtin"], r["name"]))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        origin = "built-in" if r["builtin"] else f"{r['distribution']} {r['version']}"
        detail = f"hooks: {', '.join(r['hooks'])}" if r["error"] is None else f"skipped: {r['error']}"
        click.echo(f"{r['name']}  ({origin})\n    {detail}")


@cli.command()
@click.option("--suite", "-s", "suites", multiple=True, help="Check only this suite (repeatable; default: every installed suite).")
def doctor(suites: tuple[str, ...]) -> None:
    """Check this machine for each suite: packages, Vulkan/renderer, render fingerprint, memory; exit 1 on a fail."""
    from vlaeval.doctor import failed, format_checks, run_doctor

    checks = run_doctor(suites or None)
    click.echo(format_checks(checks), nl=False)
    sys.exit(1 if failed(checks) else 0)


@cli.command()
@click.option("--agent", "-a", required=True, help="Registered agent name or agent URI with a runtime option (e.g. kosmos-lstm-tiny).")
@click.option("--runtimes", required=True, metavar="R1,R2[,...]", help="Runtimes to compare, the first being the reference (e.g. torch,onnx).")
@click.option("--suite", "-s", required=True, help="Registered suite name.")
@click.option("--setting", help="Generalization setting (default: the suite's first).")
@click.option("--episodes", "-n", type=click.IntRange(min=1), default=5, show_default=True, help="The first N episodes.")
@click.option("--seed", type=int, help="Base seed (default: the suite protocol's).")
@click.option("--out", "-o", type=click.Path(file_okay=False), help="Directory for one run per runtime and parity.json (default: runs/parity-<time>).")
@click.option("--agent-opt", "agent_opts", multiple=True, metavar="KEY=VALUE", help="Agent constructor option (repeatable).")
@click.option("--checkpoint", type=click.Path(), help="Agent checkpoint (shorthand for --agent-opt checkpoint=PATH).")
@click.option("--workers", "-w", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes per closed-loop run.")
@click.option("--step-timeout", type=click.FloatRange(min=0), default=60.0, show_default=True, help="Seconds one agent call may take (0 = unlimited).")
def parity(agent: str, runtimes: str, suite: str, setting: str | None, episodes: int, seed: int | None, out: str | None,
           agent_opts: tuple[str, ...], checkpoint: str | None, workers: int, step_timeout: float) -> None:
    """Closed-loop success and open-loop action differences of one agent across inference runtimes."""
    import datetime as dt

    from vlaeval.evaluators.parity import run_parity

    options = parse_options(agent_opts, "--agent-opt")
    if checkpoint:
        options["checkpoint"] = checkpoint
    out = out or str(Path("runs") / f"parity-{dt.datetime.now():%Y%m%d-%H%M%S}")
    result = run_parity(agent, [r.strip() for r in runtimes.split(",") if r.strip()], suite, out=out, setting=setting, episodes=episodes,
                        seed=seed, agent_options=options, workers=workers, step_timeout=step_timeout, progress=True)
    click.echo(result.table(), nl=False)


@cli.command()
@click.option("--suite", "-s", required=True, help="Registered suite name.")
@click.option("--baseline", "-b", required=True, type=click.Path(exists=True, file_okay=False), help="Baseline run directory.")
@click.option("--detect", type=float, required=True, help="Drop to detect, as a fraction (0.05 = 5 points of success rate).")
@click.option("--alpha", type=float, default=0.05, show_default=True, help="Significance level of the gate's one-sided tests.")
@click.option("--power", type=float, default=0.8, show_default=True, help="Required probability of detecting the drop.")
@click.option("--correction", type=click.Choice(["holm", "none"]), default="holm", show_default=True,
              help="The gate's multiple-comparison correction (holm: over every metric the baseline has).")
def plan(suite: str, baseline: str, detect: float, alpha: float, power: float, correction: str) -> None:
    """How many episodes a run needs for the gate to detect a given drop, from a baseline's rates."""
    from vlaeval.results.plan import plan_budget

    click.echo(plan_budget(suite, baseline, detect, alpha=alpha, power=power, correction=correction).table(), nl=False)


def _listing(kind: str, help_text: str) -> None:
    @cli.command(name=f"{kind}s", help=help_text)
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    def command(as_json: bool) -> None:
        from vlaeval.plugins.manager import plugin_info, registries

        rows = []
        registry = registries().of(kind)
        for e in registry.listing():
            info = plugin_info(e.plugin)
            row = {"name": e.name, "description": e.description, "plugin": e.plugin,
                   "origin": "built-in" if info.builtin else f"{info.distribution} {info.version}", "target": e.target}
            if kind == "suite":
                row |= {"version": e.spec.version, "settings": [s.name for s in e.spec.settings],
                        "episodes": e.spec.protocol.episodes, "tasks": len(e.spec.tasks)}
            if e.aliases:
                row["aliases"] = list(e.aliases)
            clash = registry.clash(e)
            if clash is not None:
                row["clash"] = str(clash)
            rows.append(row)
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        for r in rows:
            extra = f" v{r['version']}, {r['episodes']} episodes, {r['tasks']} tasks, settings: {', '.join(r['settings'])}" if kind == "suite" else ""
            click.echo(f"{r['name']:<22} {r['description']}\n{'':<22} from {r['plugin']} ({r['origin']}) -> {r['target']}{extra}")
            if "clash" in r:
                click.echo(f"{'':<22} clash: {r['clash']}")


for _kind, _help in (
    ("agent", "Registered agents and where they come from."),
    ("suite", "Registered suites, their versions, settings and sizes."),
    ("metric", "Registered metrics."),
    ("reporter", "Registered report formats."),
    ("trainer", "Registered trainers."),
):
    _listing(_kind, _help)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print one line and exit 2 instead of a traceback."""
    _log_to_stderr()
    try:
        cli.main(args=argv, prog_name="vlaeval", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:  # click's usage block would make these the only multi-line mistakes
        ctx = exc.ctx if isinstance(exc, click.UsageError) else None
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        click.echo(f"error: {exc.format_message().rstrip('.') if hint else exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except VlaevalError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def _log_to_stderr() -> None:
    """Show vlaeval's INFO messages (e.g. which runtime an agent chose, and why) on stderr."""
    import logging

    logger = logging.getLogger("vlaeval")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
