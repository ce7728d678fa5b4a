"""Local worker processes that keep an agent's faults inside its episode.

Agent code is untrusted and runs only here, in spawned worker processes, never in the driver
that owns the results store and the manifest (:func:`vlaeval.evaluate` is the driver).  Each
worker plays a shard with :func:`~vlaeval.evaluators.executors.play_shard` and sends the driver
its events over its own pipe, synchronously: an episode's ``started`` event is in the pipe before
any agent or env code touches the episode, so it survives the worker dying an instant later.

Whatever ends a worker (SIGKILL, a segfault, ``os._exit``, ``SystemExit`` or
``KeyboardInterrupt`` raised by the agent), the driver charges the episodes it had in flight,
stores nothing for them yet, and starts a fresh worker for the rest of the shard.  An episode
that has now killed :data:`MAX_DEATHS` workers is stored as failed with the cause in its
``error`` column; any other is retried.  With several episodes in flight (``envs_per_worker >
1``) the driver cannot tell which one was the culprit, so each of them is retried alone, one at
a time, before the rest of the shard resumes in lock-step: an innocent neighbour then finishes
normally and only the culprit is charged again.  Every restart is a ``retry`` event, which the
runner lists in the manifest's session (as the Ray executor does).

Hangs: the in-process step deadline (SIGALRM) can be caught by the agent, so the driver also
reads each worker's :class:`~vlaeval.evaluators.guards.CallClock` and kills a worker whose
agent call has run :func:`step_grace` seconds past the step timeout.  A hang is a verdict, not
bad luck: the episode is failed with the timeout error and not retried (unless several episodes
were in flight, when each is retried alone as above).  Agent construction and ``bind()`` get
their own ``setup_timeout``; running past it fails the run with a one-line error, because an
agent that cannot be set up cannot play any episode.
"""

from __future__ import annotations

import collections
import dataclasses
import multiprocessing as mp
import os
import signal
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Iterator, Sequence

from vlaeval.errors import VlaevalError
from vlaeval.evaluators.executors import Event, EventMerge, Shard, play_shard
from vlaeval.evaluators.guards import CallClock, publish_calls, step_timeout_message
from vlaeval.results.store import EpisodeRecord

#: Workers an episode may kill before it is stored as failed instead of retried.
MAX_DEATHS = 2
#: Seconds between the driver's looks at its workers' clocks when no event arrives.
POLL_SECONDS = 0.2
#: Seconds a worker gets to stop after SIGTERM before it is killed.
STOP_SECONDS = 3.0


def step_grace(step_timeout: float) -> float:
    """How long past the step timeout the driver waits before killing a worker.

    The in-process deadline fires at the timeout itself and normally ends the call within
    milliseconds; the grace only has to cover a loaded machine's scheduling delays, so the
    driver never kills a worker whose agent would have been stopped by the cheap guard.
    """
    return max(1.0, 0.25 * step_timeout)


@dataclass
class _Worker:
    """One worker slot: the process playing ``job`` now, and the jobs the slot plays after it."""

    slot: int
    job: Shard
    proc: Any
    conn: Connection
    clock: CallClock
    later: list[Shard] = field(default_factory=list)
    ready: bool = False
    finished: bool = False
    note: str | None = None  # the worker's own account of why it is exiting
    in_flight: dict[int, float] = field(default_factory=dict)  # episode index -> perf_counter when started


class LocalWorkers:
    """The executor of named agents: each shard in its own supervised worker process.

    Its events (see :mod:`vlaeval.evaluators.executors`) hold each episode exactly once, including
    the failed rows of episodes that killed or hung their worker, and a ``retry`` whenever a
    worker is replaced.
    """

    def __init__(self, *, setup_timeout: float) -> None:
        self.setup_timeout = setup_timeout

    def run(self, shards: Sequence[Shard]) -> Iterator[Event]:
        if shards:
            yield from _supervise(shards, setup_timeout=self.setup_timeout)


def _supervise(jobs: Sequence[Shard], *, setup_timeout: float) -> Iterator[Event]:
    ctx = jobs[0].context
    spawn = mp.get_context("spawn")
    specs = {e.index: e for job in jobs for e in job.episodes}
    merge = EventMerge()
    done = merge.done
    deaths: collections.Counter[int] = collections.Counter()
    workers: dict[int, _Worker] = {}
    step_timeout = ctx.step_timeout

    def start(slot: int, queue: list[Shard]) -> None:
        job, later = queue[0], queue[1:]
        reader, writer = spawn.Pipe(duplex=False)
        values = spawn.RawArray("d", CallClock.SIZE)
        proc = spawn.Process(target=_worker_main, args=(job, writer, values), daemon=True, name=f"vlaeval-worker-{slot}")
        proc.start()
        writer.close()  # the worker holds the only write end
        workers[slot] = _Worker(slot, job, proc, reader, CallClock(values), later)

    def failed(index: int, started: float, error: str) -> EpisodeRecord:
        episode = specs[index]
        done.add(index)
        return EpisodeRecord(index, episode.seed, (ctx.row(episode, 0, False, 0, time.perf_counter() - started, error),))

    def lost(w: _Worker, cause: str, timed_out: str | None = None) -> Iterator[Event]:
        """The worker is gone: fail or re-queue its in-flight episodes, restart the rest of its shard."""
        del workers[w.slot]
        in_flight = [i for i in w.in_flight if i not in done]
        rest = [e for e in w.job.episodes if e.index not in done and e.index not in w.in_flight]
        if not in_flight:
            if not rest and w.ready:  # died on its way out (e.g. in agent.close()): nothing is lost
                advance(w)
                return
            phase = "outside any episode" if w.ready else "while setting up the agent"
            raise VlaevalError(f"worker {w.slot} died {phase} ({cause}); finished episodes are saved, resume the run with --resume")
        retried: list[int] = []
        verdicts: list[int] = []
        for i in in_flight:
            if timed_out is not None and len(in_flight) == 1:
                error = f"{timed_out}, and ignored it: the worker was killed and replaced"
            else:
                deaths[i] += 1
                if deaths[i] < MAX_DEATHS:
                    retried.append(i)
                    continue
                error = f"the agent killed its worker {deaths[i]} times (last: {cause}); the episode is not retried"
            verdicts.append(i)
            yield "record", failed(i, w.in_flight[i], error)
        queue: list[Shard] = []
        suspects = tuple(specs[i] for i in retried)
        if w.job.envs_per_worker > 1 and len(suspects) > 1:
            queue.append(dataclasses.replace(w.job, episodes=suspects, envs_per_worker=1))  # alone, one at a time
            suspects = ()
        if suspects or rest:
            queue.append(dataclasses.replace(w.job, episodes=suspects + tuple(rest)))
        text = f"worker {w.slot} {cause} with episode(s) {in_flight} in flight"
        if verdicts:
            text += f"; failed episode(s) {verdicts}"
        if retried:
            text += f"; retrying episode(s) {retried}" + (" alone, one at a time" if len(retried) > 1 else "")
        yield "retry", text + (f"; {len(rest)} more episode(s) go to a new worker" if rest else "")
        queue += w.later
        if queue:
            start(w.slot, queue)

    def advance(w: _Worker) -> None:
        """The worker's job is complete: start the slot's next one, if any."""
        workers.pop(w.slot, None)
        if w.later:
            start(w.slot, w.later)

    def receive(w: _Worker) -> Iterator[Event]:
        """Act on every event the worker has sent so far."""
        for kind, payload in _drain(w.conn):
            if kind == "started":
                w.in_flight[payload] = time.perf_counter()
            elif kind == "record":
                w.in_flight.pop(payload.episode, None)
                if merge.accept(kind, payload):
                    yield kind, payload
            elif kind == "ready":
                w.ready = True
                if merge.accept(kind, payload):
                    yield kind, payload
            elif kind == "fatal":
                raise VlaevalError(payload)
            elif kind == "exit":
                w.note = payload
            elif kind == "done":
                w.finished = True

    try:
        for job in jobs:
            start(job.worker, [job])
        while workers:
            wait([w.conn for w in workers.values()] + [w.proc.sentinel for w in workers.values()], timeout=POLL_SECONDS)
            for w in list(workers.values()):
                alive = w.proc.is_alive()  # before draining: all a dead worker sent is then in the pipe
                yield from receive(w)
                if not alive:
                    w.proc.join()
                    if w.finished and w.proc.exitcode == 0:
                        advance(w)
                    else:
                        yield from lost(w, _exit_cause(w.proc.exitcode, w.note))
                    continue
                now = time.monotonic()
                started, what = w.clock.call()
                if step_timeout > 0 and started > 0 and now - started > step_timeout + step_grace(step_timeout):
                    _kill(w)
                    yield from receive(w)  # records sent just before the kill still count
                    yield from lost(w, f"was killed: {what} ran {now - started:.1f} s (step timeout {step_timeout:g} s)",
                                    timed_out=step_timeout_message(what, step_timeout))
                    continue
                started, what = w.clock.setup()
                if setup_timeout > 0 and started > 0 and now - started > setup_timeout:
                    _kill(w)
                    raise VlaevalError(f"agent {ctx.agent!r}: {what} did not finish within the {setup_timeout:g} s "
                                       f"setup timeout (--setup-timeout; 0 = none)")
    finally:
        for w in workers.values():
            if w.proc.is_alive():
                w.proc.terminate()
        for w in workers.values():
            w.proc.join(timeout=STOP_SECONDS)
            if w.proc.is_alive():
                _kill(w)
            w.conn.close()


def _drain(conn: Connection) -> Iterator[Event]:
    """Every event already in the pipe (a dead worker's pipe ends in EOF)."""
    try:
        while conn.poll():
            yield conn.recv()
    except (EOFError, OSError):
        return


def _kill(w: _Worker) -> None:
    w.proc.kill()
    w.proc.join()


def _exit_cause(code: int | None, note: str | None) -> str:
    if code is not None and code < 0:
        try:
            text = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            text = f"was killed by signal {-code}"
    else:
        text = f"exited with status {code}"
    return f"{text}: {note}" if note else text


def _worker_main(job: Shard, conn: Connection, values: Any) -> None:
    """A worker process: play ``job``, sending every event to the driver as it happens."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's; a KeyboardInterrupt here is the agent's
    publish_calls(CallClock(values))
    try:
        for event in play_shard(job):
            conn.send(event)
        conn.send(("done", None))
    except VlaevalError as exc:
        conn.send(("fatal", str(exc)))
    except (SystemExit, KeyboardInterrupt) as exc:  # raised by agent code: the worker is lost, not the run
        conn.send(("exit", f"the agent raised {type(exc).__name__}({', '.join(map(repr, exc.args))})"))
        conn.close()
        os._exit(1)
    except BaseException:  # noqa: BLE001 - reported to the driver
        conn.send(("fatal", f"worker {job.worker} crashed:\n{traceback.format_exc()}"))
