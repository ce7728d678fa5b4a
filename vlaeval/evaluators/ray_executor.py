"""``--executor ray``: the runner's shards as Ray tasks, streamed back to a single-writer driver.

Each shard (the pending episodes dealt round-robin, as for local workers) becomes one Ray task
that builds its own environments and agent (the same :func:`~vlaeval.evaluators.executors.play_shard`
a local worker runs, so ``--envs-per-worker`` batching works inside Ray workers too) and is a
*streaming generator*: every finished episode reaches the driver as soon as it ends.  The driver
(:func:`vlaeval.evaluate`) is the only process that writes the results store, and it drops an
episode it has already stored.

When a task is lost (its worker process or node died, its object was lost), the driver submits a
new task for the episodes of that shard it has not received, up to ``MAX_RETRIES`` times per
shard; Ray places it on any live worker.  An exception *raised* by the shard (a suite that cannot
start, a bad agent option) is not retried: it fails the run as it would locally.

Ray runs tasks in its worker processes' main thread, so the SIGALRM step timeout applies; in a
threaded actor the watchdog fallback of :func:`~vlaeval.evaluators.guards.deadline` takes over.
"""

from __future__ import annotations

import dataclasses
import os
import queue as queue_mod
import sys
import threading
from typing import Any, Iterator, Sequence

from vlaeval.errors import VlaevalError
from vlaeval.evaluators.executors import Event, EventMerge, Shard, play_shard

#: New tasks submitted for one shard after it was lost, before the run fails.
MAX_RETRIES = 3
#: Ray resources one shard task asks for.
TASK_CPUS = 1


def import_ray(address: str | None = None) -> Any:
    """``import ray`` or a one-line error saying how to install it."""
    if address is None and "ray" not in sys.modules and not os.environ.get("RAY_ADDRESS"):
        # A local instance started by us stays on the loopback interface (read at import time).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError as exc:
        raise VlaevalError(f"--executor ray needs Ray ({exc}): pip install 'vlaeval[ray]'") from None
    return ray


def shard_task(shard: Shard) -> Iterator[Event]:
    """The body of one Ray task: a local worker's shard loop, each event yielded to the driver."""
    yield from play_shard(shard)


class RaySession:
    """A connection to Ray made before the run directory exists; shut down only if we started it."""

    def __init__(self, address: str | None = None) -> None:
        self.ray = ray = import_ray(address)
        self.started_here = False
        if not ray.is_initialized():
            try:
                ray.init(address=address, include_dashboard=False, logging_level="WARNING")
            except Exception as exc:  # ConnectionError, ValueError, ...
                where = f"the Ray cluster at {address}" if address else "a local Ray instance"
                raise VlaevalError(f"cannot start or join {where}: {type(exc).__name__}: {exc}") from exc
            self.started_here = True

    def close(self) -> None:
        if self.started_here and self.ray.is_initialized():
            self.ray.shutdown()
        self.started_here = False


class RayExecutor:
    """Shards as Ray tasks on the session's cluster; a lost task's unfinished episodes are resubmitted."""

    def __init__(self, session: RaySession) -> None:
        self.session = session

    def run(self, shards: Sequence[Shard]) -> Iterator[Event]:
        if shards:
            yield from _execute(shards, self.session)


def _execute(jobs: Sequence[Shard], session: RaySession) -> Iterator[Event]:
    ray = session.ray
    remote = ray.remote(num_cpus=TASK_CPUS, max_retries=0)(shard_task)
    events: queue_mod.Queue[tuple[str, int, Any]] = queue_mod.Queue()
    remaining = {job.worker: list(job.episodes) for job in jobs}
    by_worker = {job.worker: job for job in jobs}
    merge = EventMerge()
    received = merge.done
    attempts = {w: 0 for w in by_worker}
    generators: dict[int, Any] = {}

    def submit(worker: int) -> None:
        job = dataclasses.replace(by_worker[worker], episodes=tuple(e for e in remaining[worker] if e.index not in received))
        generators[worker] = gen = remote.remote(job)
        threading.Thread(target=_pump, args=(ray, worker, gen, events), daemon=True, name=f"vlaeval-ray-{worker}").start()

    for w in by_worker:
        submit(w)
    running = set(by_worker)
    try:
        while running:
            try:
                kind, worker, payload = events.get(timeout=0.5)
            except queue_mod.Empty:
                continue
            if kind == "event":
                event, body = payload
                if event != "started" and merge.accept(event, body):  # ("started", index) matters only locally
                    yield event, body
            elif kind == "done":
                running.discard(worker)
            elif kind == "fatal":
                raise VlaevalError(payload)
            elif kind == "lost":
                left = [e.index for e in remaining[worker] if e.index not in received]
                attempts[worker] += 1
                if attempts[worker] > MAX_RETRIES:
                    raise VlaevalError(
                        f"shard {worker} was lost {attempts[worker]} times (last: {payload}); "
                        f"finished episodes are saved, resume the run with --resume"
                    )
                if not left:
                    running.discard(worker)
                    continue
                yield "retry", (f"shard {worker} was lost ({payload}); retrying its {len(left)} unfinished "
                                f"episode(s) on another worker (attempt {attempts[worker] + 1})")
                submit(worker)
    finally:
        for gen in generators.values():
            try:
                ray.cancel(gen, force=True)
            except Exception:
                pass


def _pump(ray: Any, worker: int, gen: Any, events: queue_mod.Queue[tuple[str, int, Any]]) -> None:
    """Move one streaming task's items onto the driver's queue; classify how it ended."""
    try:
        for ref in gen:
            events.put(("event", worker, ray.get(ref)))
        events.put(("done", worker, None))
    except ray.exceptions.RayTaskError as exc:  # the shard raised: not a lost worker
        cause = getattr(exc, "cause", None)
        if isinstance(cause, VlaevalError):
            events.put(("fatal", worker, str(cause)))
        else:
            events.put(("fatal", worker, f"shard {worker} crashed on Ray:\n{exc}"))
    except ray.exceptions.TaskCancelledError:
        pass
    except ray.exceptions.RayError as exc:  # worker or node died, object lost
        events.put(("lost", worker, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))
    except BaseException as exc:  # noqa: BLE001 - reported to the driver
        events.put(("fatal", worker, f"shard {worker}: {type(exc).__name__}: {exc}"))
