"""The HTML report: one self-contained page to paste into a paper draft or attach to a pull request.

The page opens with the protocol facts a reader needs before trusting a number (suite version,
setting, episodes run of planned, seed, agent, runtime, code revision), read from each run's
manifest.  Every run of a suite then shares each plot, so runs are compared by eye rather than
across pages, and tasks are sorted worst first because failures are what a reader looks for.
Plots are matplotlib PNGs embedded as base64: the page is one file that survives being mailed.

Rollout videos follow a small convention shared with whatever records them: a run directory may
hold ``videos/episode-<index>.<mp4|webm|gif>``, the index being the ``episode`` column with any
zero padding (``videos/episode-000012.mp4``).  Videos are linked by a path relative to the page
rather than embedded, which would make the page as large as the videos; keep the page where the
run directories stay reachable by that path.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import quote

from vlaeval.version import __version__
from vlaeval.durable import write_text
from vlaeval.errors import VlaevalError
from vlaeval.results.report import SETTING_LEVEL_TASK, MetricResult, Report, RunSummary, counted_results
from vlaeval.results.plan import detectable_lines
from vlaeval.results.stats import Estimate, Proportion
from vlaeval.results.store import read_manifest

#: Figure width in inches, drawn at CSS_PX_PER_INCH: exactly the page's content width.
FIG_WIDTH = 11.0
CSS_PX_PER_INCH = 100
#: 1.5 image pixels per CSS pixel: sharp on high-density screens, still small enough to embed.
DPI = 150
VIDEOS_DIR = "videos"
VIDEO_NAME = re.compile(r"episode-(\d+)\.(mp4|webm|gif)")
#: Heatmap panels per row before wrapping; more would squeeze the cells below readable size.
BREAK_PANELS_PER_ROW = 3

CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bar:#dbe8f5;--warn:#9a3412}
*{box-sizing:border-box}
body{margin:0;color:var(--fg);background:#fff;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1140px;margin:0 auto;padding:24px 20px 48px}
h1{font-size:1.6em;margin:0 0 .2em}h2{font-size:1.3em;margin:1.8em 0 .5em;padding-bottom:.2em;border-bottom:1px solid var(--line)}
h3{font-size:1.05em;margin:1.2em 0 .4em}
p,figcaption,.muted{color:var(--muted)}.lead{margin:0 0 1em}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums}
th,td{border:1px solid var(--line);padding:3px 8px;text-align:left;white-space:nowrap;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
td.num{text-align:right}td.bar{background:linear-gradient(90deg,var(--bar) var(--v),transparent var(--v))}
.ci{color:var(--muted);font-size:11px}.warn{color:var(--warn);font-weight:600}
.note{color:var(--warn);background:#fff7ed;border-left:4px solid var(--warn);padding:6px 10px;margin:0 0 12px;overflow-wrap:anywhere}
.tag{display:inline-block;border:1px solid var(--line);border-radius:3px;padding:0 4px;font-size:11px;color:var(--muted)}
.panels{display:flex;flex-wrap:wrap;gap:8px 28px}.panels>div{flex:1 1 420px;min-width:0}
figure{margin:1em 0}img,video{max-width:100%;height:auto}
.videos{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:12px}
.videos figure{margin:0}.videos img,.videos video{width:100%;background:#f6f8fa}.videos figcaption{font-size:12px}
footer{margin-top:2.5em;font-size:13px;color:var(--muted)}
"""


@dataclass(frozen=True)
class RunFacts:
    """Provenance of one run from its manifest beyond what :class:`RunSummary` carries; None where
    the manifest does not say."""

    seed: int | None
    agent_options: Mapping[str, Any]
    privileged: bool
    runtime: str | None
    vlaeval_version: str | None
    revision: str | None


def run_facts(run_dir: str | os.PathLike[str]) -> RunFacts:
    """Read the facts leniently: a hand-made or older run directory still gets a page."""
    try:
        manifest = read_manifest(run_dir)
    except VlaevalError:
        manifest = {}
    config, agent, git = (_mapping(manifest.get(k)) for k in ("config", "agent", "git"))
    options = _mapping(config.get("agent_options"))
    revision = git.get("revision")
    return RunFacts(
        seed=_mapping(manifest.get("seeds")).get("base", config.get("seed")),
        agent_options={k: v for k, v in options.items() if k != "runtime"},
        privileged=bool(_mapping(agent.get("spec")).get("privileged")),
        runtime=options.get("runtime"),
        vlaeval_version=manifest.get("vlaeval_version"),
        revision=f"{revision[:10]}{'+dirty' if git.get('dirty') else ''}" if revision else None,
    )


def chain_breaks(rows: Any) -> tuple[int, dict[tuple[str, int], int]]:
    """Chains counted, and chains by (task, position) of their first failure.

    This shows what the average chain length hides: whether a policy fails early on hard tasks
    or late on compounding error.  Chains that ran to the end are counted but have no break.
    """
    failed = rows[~rows["success"].astype(bool)].sort_values(["episode", "position"]).drop_duplicates("episode")
    counts = failed.groupby(["task", "position"]).size()
    return int(rows["episode"].nunique()), {(str(t), int(p)): int(c) for (t, p), c in counts.items()}


def task_order(per_run: Iterable[Mapping[str, Estimate]], higher_is_better: bool = True) -> list[str]:
    """Tasks worst first by their mean over the runs (each a task -> estimate mapping).

    The mean rather than one run's value keeps a task where any run struggles near the top; ties
    go by name so the order is stable from one report to the next.
    """
    values: dict[str, list[float]] = {}
    for per_task in per_run:
        for task, est in per_task.items():
            values.setdefault(task, []).append(est.value)
    sign = 1 if higher_is_better else -1
    return sorted(values, key=lambda t: (sign * sum(values[t]) / len(values[t]), t))


def find_videos(run_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """(episode index, file) of every rollout video in ``RUN_DIR/videos``, by episode."""
    folder = Path(run_dir) / VIDEOS_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := VIDEO_NAME.fullmatch(p.name))]
    return sorted(found, key=lambda item: (item[0], item[1].name))


def html_page(report: Report, out: Path | None = None) -> str:
    """Write the page (``report.html`` when no path is given) and say where it went."""
    out = Path(out or "report.html")
    write_text(out, render(report, out.parent))
    return f"wrote {out}\n"


def render(report: Report, page_dir: Path) -> str:
    """The page's HTML; ``page_dir`` is where it will live, for the relative video links."""
    frames = {run_dir: counted_results(run_dir) for run_dir in dict.fromkeys(r.run_dir for r in report.runs)}
    colors = {label: f"C{i % 10}" for i, label in enumerate(dict.fromkeys(r.label for r in report.runs))}
    suites = dict.fromkeys(suite for suite, _ in report.groups())
    parts = ["<!doctype html><html lang='en'><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width,initial-scale=1'>",
             f"<title>vlaeval report: {_esc(', '.join(suites))}</title><style>{CSS}</style><main>",
             _header(report)]
    for suite in suites:
        parts.append(_suite_section(report, suite, frames, colors, several_suites=len(suites) > 1))
    parts.append(_videos_section(report, frames, page_dir))
    parts.append("<footer>Intervals are 95 %: Wilson for proportions, percentile bootstrap (10,000 resamples, "
                 f"fixed seed) for means. Made by vlaeval {_esc(__version__)} "
                 "(<code>vlaeval report RUN_DIR ... --format html</code>).</footer></main></html>")
    return "\n".join(p for p in parts if p)


def _header(report: Report) -> str:
    suites = dict.fromkeys(f"{r.suite} v{r.suite_version}" for r in report.runs)
    settings = dict.fromkeys(r.setting for r in report.runs)
    episodes = sum(r.episodes for r in report.runs)
    rows = []
    for run in report.runs:
        facts = run_facts(run.run_dir)
        agent = _esc(run.agent) + (" <span class='tag'>privileged</span>" if facts.privileged else "")
        if facts.agent_options:
            agent += "<br><span class='ci'>" + _esc(", ".join(f"{k}={v}" for k, v in facts.agent_options.items())) + "</span>"
        done = f"{run.episodes} of {run.planned}" if run.planned is not None else str(run.episodes)
        rows.append([
            _esc(run.label) + (f"<br><span class='ci'>{_esc(run.run_id)}</span>" if run.run_id not in run.label else ""),
            agent,
            _esc(facts.runtime or "—"),
            _esc(f"{run.suite} v{run.suite_version}"),
            _esc(run.setting),
            f"<span class='warn'>{done}</span>" if run.incomplete else done,
            f"<span class='warn'>{run.errors}</span>" if run.errors else "0",
            _esc("—" if facts.seed is None else facts.seed),
            f"<span class='warn'>{_esc(run.status or '—')}</span>" if run.incomplete else _esc(run.status or "—"),
            _esc(facts.vlaeval_version or "—"),
            f"<code>{_esc(facts.revision)}</code>" if facts.revision else "—",
        ])
    table = _table(["run", "agent", "runtime", "suite", "setting", "episodes", "errored", "seed", "status", "vlaeval", "git"], rows)
    # the report's caveats (incomplete runs) come first: they change how every number below reads
    notes = "".join(f"<p class='note'>{_code_spans(note)}</p>" for note in report.notes)
    # what a difference between these numbers would have to be to show: read before comparing them
    detectable = "".join(f"<p class='muted'>Detectable: {_esc(line)}.</p>" for line in detectable_lines(report))
    return (f"<header><h1>{_esc(', '.join(suites))}</h1>"
            f"<p class='lead'>{len(report.runs)} run{'s' if len(report.runs) != 1 else ''} · "
            f"setting{'s' if len(settings) != 1 else ''} {_esc(', '.join(settings))} · {episodes} episodes</p>{notes}{table}"
            f"{detectable}</header>")


def _suite_section(report: Report, suite: str, frames: Mapping[str, Any], colors: Mapping[str, str], several_suites: bool) -> str:
    settings = [setting for s, setting in report.groups() if s == suite]
    metrics = {setting: [m for m in report.metrics if (m.suite, m.setting) == (suite, setting)] for setting in settings}
    runs = {setting: [r for r in report.runs if (r.suite, r.setting) == (suite, setting)] for setting in settings}
    prefix = f"{suite} · " if several_suites else ""
    parts = [f"<section><h2>{_esc(prefix)}Overview</h2>"]
    parts.append(_panels([(setting, _metric_table(runs[setting], [m for m in metrics[setting] if m.task == SETTING_LEVEL_TASK]))
                          for setting in settings]))
    chain = _chain_figure(settings, metrics, runs, colors)
    if chain is not None:
        parts.append(_figure("Chain success: share of chains completing at least k subtasks in a row (95 % Wilson intervals)", chain))
        parts.append(f"<h2>{_esc(prefix)}Where chains break</h2>")
        parts.append(_breaks(suite, settings, runs, frames))
    parts.append(f"<h2>{_esc(prefix)}Per task, worst first</h2>")
    suite_metrics = [m for setting in settings for m in metrics[setting] if m.task != SETTING_LEVEL_TASK]
    for name in dict.fromkeys(m.metric for m in suite_metrics):
        named = [m for m in suite_metrics if m.metric == name]
        by_run = _estimates_by_run(named)
        order = task_order(by_run.values(), all(m.higher_is_better for m in named))
        if name == "task_success":
            parts.append(_figure("Per-task success (95 % Wilson intervals; for chains: attempts up to the first failure)",
                                 _task_figure(settings, runs, by_run, order, colors)))
        else:
            parts.append(f"<h3>{_esc(name)}</h3>")
        parts.append(_panels([(setting, _task_table(runs[setting], [m for m in named if m.setting == setting], order))
                              for setting in settings]))
    parts.append("</section>")
    return "\n".join(parts)


def _panels(panels: Sequence[tuple[str, str]]) -> str:
    """Settings side by side (wrapping on narrow screens), each under its name."""
    return "<div class='panels'>" + "".join(f"<div><h3>{_esc(title)}</h3>{body}</div>" for title, body in panels) + "</div>"


def _metric_table(runs: Sequence[RunSummary], metrics: Sequence[MetricResult]) -> str:
    names = list(dict.fromkeys(m.metric for m in metrics))
    cells = {(m.metric, m.run): m for m in metrics}
    return _table(["metric"] + [r.label for r in runs],
                  [[_esc(name)] + [_cell(cells.get((name, r.label))) for r in runs] for name in names])


def _task_table(runs: Sequence[RunSummary], metrics: Sequence[MetricResult], order: Sequence[str]) -> str:
    cells = {(m.task, m.run): m for m in metrics}
    present = [task for task in order if any((task, r.label) in cells for r in runs)]
    return _table(["task"] + [r.label for r in runs], [[_esc(task)] + [_cell(cells.get((task, r.label))) for r in runs] for task in present])


def _estimates_by_run(metrics: Sequence[MetricResult]) -> dict[tuple[str, str], dict[str, Estimate]]:
    """(setting, run) -> task -> estimate."""
    out: dict[tuple[str, str], dict[str, Estimate]] = {}
    for m in metrics:
        out.setdefault((m.setting, m.run), {})[m.task] = m.estimate
    return out


def _cell(metric: MetricResult | None) -> str:
    if metric is None:
        return ""
    est = metric.estimate
    if isinstance(metric.sample, Proportion):
        share = 0.0 if math.isnan(est.value) else est.value
        return (f"<td class='num bar' style='--v:{share:.1%}'><b>{est.value:.1%}</b> "
                f"<span class='ci'>[{est.low:.1%}, {est.high:.1%}] n={est.n}</span>")
    return f"<td class='num'><b>{est.value:.3f}</b> <span class='ci'>[{est.low:.3f}, {est.high:.3f}] n={est.n}</span>"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Cells are HTML already (escaped by the caller); a cell starting with ``<td`` brings its own tag."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _chain_figure(settings: Sequence[str], metrics: Mapping[str, Sequence[MetricResult]], runs: Mapping[str, Sequence[RunSummary]],
                  colors: Mapping[str, str]) -> Any:
    panels = [s for s in settings if any(m.metric.startswith("success@") for m in metrics[s])]
    if not panels:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), sharey=True, squeeze=False, figsize=(FIG_WIDTH, 3.6), layout="constrained")
    for ax, setting in zip(axes[0], panels):
        by_key = {(m.run, m.metric): m.estimate for m in metrics[setting]}
        ks = sorted(int(m.metric.split("@")[1]) for m in metrics[setting] if m.metric.startswith("success@") and m.run == runs[setting][0].label)
        labels = [r.label for r in runs[setting]]
        for i, label in enumerate(labels):
            est = [by_key[(label, f"success@{k}")] for k in ks]
            dodge = (i - (len(labels) - 1) / 2) * 0.08  # overlapping error bars stay readable
            ax.errorbar([k + dodge for k in ks], [e.value for e in est], yerr=_err(est), marker="o", capsize=3,
                        color=colors[label], label=label)
        ax.set(title=setting if len(settings) > 1 else None, xlabel="subtasks completed in a row (k)", xticks=ks, ylim=(-0.02, 1.02))
        _percent_axis(ax.yaxis)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("chains")
    _legend(fig, axes.flat)
    return fig


def _task_figure(settings: Sequence[str], runs: Mapping[str, Sequence[RunSummary]],
                 by_run: Mapping[tuple[str, str], Mapping[str, Estimate]], order: Sequence[str], colors: Mapping[str, str]) -> Any:
    """Horizontal bars, one row per task in ``order`` on every panel, so settings line up."""
    panels = [s for s in settings if any((s, r.label) in by_run for r in runs[s])]
    most_runs = max(len(runs[s]) for s in panels)
    plt = _pyplot()
    height = 1.3 + len(order) * (0.1 + 0.14 * most_runs)
    fig, axes = plt.subplots(1, len(panels), sharey=True, squeeze=False, figsize=(FIG_WIDTH, height), layout="constrained")
    for ax, setting in zip(axes[0], panels):
        labels = [r.label for r in runs[setting] if (setting, r.label) in by_run]
        width = 0.8 / len(labels)
        for i, label in enumerate(labels):
            per_task = by_run[(setting, label)]
            rows = [(row, per_task[task]) for row, task in enumerate(order) if task in per_task]
            offset = (i - (len(labels) - 1) / 2) * width
            ax.barh([row + offset for row, _ in rows], [e.value for _, e in rows], width, xerr=_err([e for _, e in rows]),
                    color=colors[label], alpha=0.6, label=label, error_kw={"elinewidth": 1, "capsize": 2, "ecolor": colors[label]})
        ax.set(xlim=(0, 1), title=setting if len(settings) > 1 else None, xlabel="success")
        _percent_axis(ax.xaxis)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(order)), order, fontsize=8 if len(order) > 20 else 9)
    axes[0][0].set_ylim(len(order) - 0.5, -0.5)
    _legend(fig, axes.flat)
    return fig


def _breaks(suite: str, settings: Sequence[str], runs: Mapping[str, Sequence[RunSummary]], frames: Mapping[str, Any]) -> str:
    chained = [(s, r) for s in settings for r in runs[s] if r.chain_length > 1]
    panels = []
    for setting, run in chained:
        frame = frames[run.run_dir]
        rows = frame[(frame["suite"] == suite) & (frame["setting"] == setting)]
        title = f"{run.label} · {setting}" if len(settings) > 1 else run.label
        panels.append((title, run.chain_length, *chain_breaks(rows)))
    caption = ("Where chains break: share of all chains whose first failure is at position k (column) on a task (row); "
               "under each position, the share of chains ending there")
    fig = _breaks_figure(panels)
    if fig is None:
        return f"<p>No chain broke: every chain ran all {chained[0][1].chain_length} subtasks.</p>"
    return _figure(caption, fig)


def _breaks_figure(panels: Sequence[tuple[str, int, int, Mapping[tuple[str, int], int]]]) -> Any:
    import numpy as np

    totals: dict[str, float] = {}
    for _, _, chains, counts in panels:
        for (task, _), n in counts.items():
            totals[task] = totals.get(task, 0.0) + n / chains
    if not totals:
        return None
    tasks = sorted(totals, key=lambda t: (-totals[t], t))
    length = max(p[1] for p in panels)
    vmax = max(n / chains for _, _, chains, counts in panels for n in counts.values())
    cols = min(BREAK_PANELS_PER_ROW, len(panels))
    rows = math.ceil(len(panels) / cols)
    plt = _pyplot()
    fig, axes = plt.subplots(rows, cols, sharey=True, squeeze=False, layout="constrained",
                             figsize=(min(FIG_WIDTH, 2.6 + 2.8 * cols), rows * (1.3 + 0.2 * len(tasks))))
    for ax, (title, _, chains, counts) in zip(axes.flat, panels):
        grid = np.full((len(tasks), length), np.nan)
        for (task, position), n in counts.items():
            grid[tasks.index(task), position - 1] = n / chains
        ax.imshow(np.ma.masked_invalid(grid), cmap="Reds", vmin=0, vmax=vmax, aspect="auto", interpolation="nearest")
        for (row, col), share in np.ndenumerate(grid):
            if not math.isnan(share):
                ax.text(col, row, f"{share:.0%}" if share >= 0.005 else "<1%", ha="center", va="center", fontsize=7,
                        color="white" if share > 0.6 * vmax else "black")
        ended = np.nansum(grid, axis=0)
        ax.set_xticks(range(length), [f"{k + 1}\n{ended[k]:.0%}" for k in range(length)], fontsize=8)
        ax.set_yticks(range(len(tasks)), tasks, fontsize=8)
        ax.set_xticks(np.arange(length + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(len(tasks) + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="#e5e5e5", linewidth=0.6)
        ax.tick_params(which="minor", length=0)
        completed = 1 - float(np.nansum(grid))
        ax.set_title(f"{title}\n{chains} chains, {completed:.0%} ran all {length}", fontsize=9)
        ax.set_xlabel("position of the first failure", fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    return fig


def _videos_section(report: Report, frames: Mapping[str, Any], page_dir: Path) -> str:
    blocks = []
    for run in {r.run_dir: r for r in report.runs}.values():
        videos = find_videos(run.run_dir)
        if not videos:
            continue
        frame = frames[run.run_dir]
        items = []
        for episode, path in videos:
            src = quote(Path(os.path.relpath(path.resolve(), page_dir.resolve())).as_posix())
            media = (f"<img src='{src}' alt='episode {episode}'>" if path.suffix == ".gif"
                     else f"<video controls muted preload='metadata' src='{src}'></video>")
            caption = _episode_caption(frame[frame["episode"] == episode], run.chain_length)
            items.append(f"<figure>{media}<figcaption>episode {episode} · {_esc(caption)}</figcaption></figure>")
        blocks.append(f"<h3>{_esc(run.label)}</h3><div class='videos'>{''.join(items)}</div>")
    if not blocks:
        return ""
    return ("<section><h2>Rollout videos</h2><p>Files <code>RUN_DIR/videos/episode-&lt;index&gt;.mp4|webm|gif</code>, "
            "linked relative to this page.</p>" + "".join(blocks) + "</section>")


def _episode_caption(rows: Any, chain_length: int) -> str:
    if rows.empty:
        return "no stored result"
    rows = rows.sort_values("position")
    failed = rows[~rows["success"].astype(bool)]
    if chain_length <= 1:
        return f"{rows['task'].iloc[0]} · {'failure' if len(failed) else 'success'}"
    done = int(rows["success"].astype(bool).cumprod().sum())
    return f"{done}/{chain_length}" + (f" · failed {failed['task'].iloc[0]}" if len(failed) else "")


def _figure(caption: str, fig: Any) -> str:
    """The figure as an embedded PNG shown at CSS_PX_PER_INCH, so every plot on the page has one scale."""
    plt = _pyplot()
    width = round(fig.get_figwidth() * CSS_PX_PER_INCH)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return (f"<figure><img width='{width}' alt='{_esc(caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


def _legend(fig: Any, axes: Any) -> None:
    """One legend for all panels, below them: it never covers data, whatever the values."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    fig.legend(entries.values(), entries.keys(), loc="outside lower center", ncols=min(4, len(entries)), frameon=False)


def _percent_axis(axis: Any) -> None:
    from matplotlib.ticker import PercentFormatter

    axis.set_major_formatter(PercentFormatter(1.0))


def _err(estimates: Sequence[Estimate]) -> list[list[float]]:
    return [[max(0.0, e.value - e.low) for e in estimates], [max(0.0, e.high - e.value) for e in estimates]]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # reports are written on headless machines
    import matplotlib.pyplot as plt

    return plt


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _code_spans(text: str) -> str:
    """Escaped text with its `backticked` commands set as code, as the text formats write them."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _esc(text))


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)
