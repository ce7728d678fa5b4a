"""The HTML report: its numbers and order on hand-built runs, and the page in a real browser.

The browser test drives Debian's headless Chromium directly (no Python browser bindings): once
with ``--dump-dom`` on a copy of the page carrying a small check script that writes its findings
into the DOM, once with ``--screenshot``.  ``VLAEVAL_UPDATE_SCREENSHOT=1`` copies the screenshot
to ``docs/report.png``, the picture in the README.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import chain, run_cli, write_run
from vlaeval.results.html import chain_breaks, find_videos, render, run_facts, task_order
from vlaeval.results.report import build_report
from vlaeval.results.stats import Estimate
from vlaeval.results.store import load_results, read_manifest, write_manifest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = REPO / "docs" / "report.png"
TASKS = ("reach_left", "reach_right", "reach_center")


def _est(value: float) -> Estimate:
    return Estimate(value, value, value, 10, "wilson")


def _task_rows(page: str) -> list[str]:
    """Task names of the task_success table (the first under "Per task"), in page order."""
    section = page[page.index("Per task, worst first"):]
    table = section[section.index("<table>"):section.index("</table>")]
    return re.findall(r"<tr><td>(reach_\w+)</td>", table)


def test_chain_breaks_counts_each_chain_at_its_first_failure(tmp_path: Path) -> None:
    run = write_run(tmp_path / "a", [chain(True, True, True), chain(True, False), chain(False), chain(True, False), chain(True, True, False)])
    chains, counts = chain_breaks(load_results(run))
    assert chains == 5
    assert counts == {("reach_right", 2): 2, ("reach_left", 1): 1, ("reach_center", 3): 1}


def test_task_order_puts_the_worst_mean_first_and_breaks_ties_by_name() -> None:
    runs = [{"b": _est(0.5), "a": _est(0.5), "c": _est(1.0)}, {"b": _est(0.1), "c": _est(0.0)}]
    # means: a 0.5, b 0.3, c 0.5
    assert task_order(runs) == ["b", "a", "c"]
    assert task_order(runs, higher_is_better=False) == ["a", "c", "b"]


def test_page_sorts_tasks_worst_first_and_shows_the_manifest_facts(tmp_path: Path) -> None:
    # reach_left 4/4, reach_right 1/4 (three chains end there), reach_center 1/1
    run = write_run(tmp_path / "cand", [chain(True, True, True), chain(True, False), chain(True, False), chain(True, False)])
    manifest = read_manifest(run)
    manifest.update({"config": {"episodes": 6, "seed": 7, "agent_options": {"runtime": "onnx", "checkpoint": "ckpt/"}},
                     "agent": {"class": "pkg.Policy", "spec": {"privileged": False}}, "status": "interrupted",
                     "vlaeval_version": "0.1.0", "git": {"revision": "0123456789abcdef", "dirty": True}})
    write_manifest(run, manifest)
    facts = run_facts(run)
    assert (facts.seed, facts.runtime, facts.revision, facts.privileged) == (7, "onnx", "0123456789+dirty", False)
    assert facts.agent_options == {"checkpoint": "ckpt/"}

    page = render(build_report([run]), tmp_path)
    assert _task_rows(page) == ["reach_right", "reach_center", "reach_left"]
    header = page[:page.index("</header>")]
    for fact in ("toy-chain v1", "<span class='warn'>4 of 6</span>", "onnx", "checkpoint=ckpt/", "0123456789+dirty",
                 "<span class='warn'>interrupted</span>", "is incomplete (4 of 6 episodes, status interrupted)",
                 f"<code>vlaeval run --resume {run}</code>"):
        assert fact in header
    # chain curve, where chains break, per-task bars
    assert page.count("data:image/png;base64,") == 3
    assert "Rollout videos" not in page


def test_a_run_without_a_full_manifest_still_gets_a_page(tmp_path: Path) -> None:
    run = write_run(tmp_path / "bare", [chain(True, True, True)] * 2)
    (run / "manifest.json").unlink()
    page = render(build_report([run]), tmp_path)
    assert "<td>2</td>" in page and "No chain broke: every chain ran all 3 subtasks." in page


def test_videos_are_listed_by_episode_and_linked_relative_to_the_page(tmp_path: Path) -> None:
    run = write_run(tmp_path / "runs" / "cand", [chain(True, True, True), chain(True, False)])
    videos = run / "videos"
    videos.mkdir()
    for name in ("episode-000001.webm", "episode-0.gif", "notes.txt", "episode-2.avi"):
        (videos / name).write_bytes(b"")
    assert [(i, p.name) for i, p in find_videos(run)] == [(0, "episode-0.gif"), (1, "episode-000001.webm")]

    page = render(build_report([run]), tmp_path / "pages")
    assert "<img src='../runs/cand/videos/episode-0.gif' alt='episode 0'>" in page
    assert "<video controls muted preload='metadata' src='../runs/cand/videos/episode-000001.webm'></video>" in page
    assert "episode 0 · 3/3</figcaption>" in page and "episode 1 · 1/3 · failed reach_right</figcaption>" in page


def _chromium(profile: Path, *args: str) -> str:
    done = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


CHECK_SCRIPT = """<script>
addEventListener('load', () => {
  const width = document.documentElement.clientWidth;
  const outside = [...document.querySelectorAll('main *')]
    .filter(e => !e.closest('.scroll') && e.getBoundingClientRect().right > width + 0.5)
    .map(e => e.tagName + (e.className ? '.' + e.className : ''));
  const out = document.createElement('pre');
  out.id = 'check';
  out.textContent = JSON.stringify({
    images: [...document.images].map(i => [i.alt, i.complete && i.naturalWidth > 0]),
    scrollWidth: document.documentElement.scrollWidth, innerWidth: innerWidth, outside,
    panelTops: [...document.querySelectorAll('.panels')].map(p => [...p.children].map(c => Math.round(c.getBoundingClientRect().top))),
    height: document.documentElement.scrollHeight,
  });
  document.body.append(out);
});
</script>"""


def _check_in_browser(page: Path, width: int, profile: Path) -> dict:
    probe = page.with_name(f"check-{width}.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</main>", "</main>" + CHECK_SCRIPT), encoding="utf-8")
    dom = _chromium(profile, f"--window-size={width},1000", "--dump-dom", probe.as_uri())
    found = re.search(r"<pre id=\"check\">(.*?)</pre>", dom, re.S)
    assert found, f"the check script did not run; DOM tail: {dom[-500:]}"
    return json.loads(html.unescape(found.group(1)))


@pytest.fixture
def real_runs(tmp_path: Path) -> list[Path]:
    """Real calvin runs: the committed expert run (50 chains, two break) and two quick random ones."""
    expert = tmp_path / "runs" / "expert"
    shutil.copytree(REPO / "results" / "calvin-expert-50", expert)
    from PIL import Image

    frames = [Image.new("RGB", (96, 72), color) for color in ("#2a6f97", "#f4a261")]
    (expert / "videos").mkdir()
    frames[0].save(expert / "videos" / "episode-000025.gif", save_all=True, append_images=frames[1:], duration=200, loop=0)
    runs = [expert]
    for setting, run_id in (("D->D", "random-D"), ("ABC->D", "random-ABC")):
        assert run_cli("run", "--agent", "random", "--suite", "calvin", "--setting", setting, "--episodes", "4",
                       "--workers", "1", "--out", str(tmp_path / "runs"), "--run-id", run_id, "--no-progress") == 0
        runs.append(tmp_path / "runs" / run_id)
    return runs


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs headless Chromium at /usr/bin/chromium (scripts/setup.sh dev installs it)")
def test_page_renders_in_chromium_without_broken_images_or_overflow(real_runs: list[Path], tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    assert run_cli("report", *map(str, real_runs), "--format", "html", "--out", str(page)) == 0
    profile = tmp_path / "chromium-profile"

    wide = _check_in_browser(page, 1280, profile)
    # three plots and the rollout GIF, all decoded by the browser
    assert len(wide["images"]) == 4 and all(ok for _, ok in wide["images"]), wide["images"]
    assert wide["scrollWidth"] <= wide["innerWidth"] and wide["outside"] == []
    # D->D and ABC->D panels side by side: every panel row starts at one height
    assert wide["panelTops"] and all(len(tops) == 2 and len(set(tops)) == 1 for tops in wide["panelTops"])

    narrow = _check_in_browser(page, 560, profile)
    assert narrow["scrollWidth"] <= narrow["innerWidth"] and narrow["outside"] == []
    assert all(len(set(tops)) == 2 for tops in narrow["panelTops"])  # wrapped under each other

    shot = tmp_path / "report.png"
    _chromium(profile, "--window-size=1280,1700", f"--screenshot={shot}", page.as_uri())
    assert shot.stat().st_size > 50_000  # a rendered page, not a blank one
    if os.environ.get("VLAEVAL_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
