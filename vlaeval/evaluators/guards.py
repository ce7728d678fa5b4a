"""The guards around every agent call: a per-step deadline and a check of what came back.

The agent is untrusted code: an exception, a hang past the per-step timeout, or a NaN, non-real
or wrongly shaped action fails *that episode* with the error recorded, and the run goes on.
The rollout core (:mod:`vlaeval.evaluators.rollout`) applies these guards to every agent call it
makes, whoever drives it (evaluation, recording, RL), so their rules and error texts exist once.

Two guards bound an agent call.  The first is in-process (:func:`deadline`: SIGALRM, or a
watchdog thread) and cheap, but an agent can swallow the exception it raises.  The second is
outside the agent's reach: a worker supervised by :mod:`vlaeval.evaluators.workers` publishes in
shared memory (:class:`CallClock`) when the agent call in progress began, and the driver kills
and replaces a worker whose call outlives the timeout.  Publishing is two stores into shared
memory per call, no IPC, so the step cost does not change.
"""

from __future__ import annotations

import reprlib
import signal
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np

from vlaeval.envs.pool import describe

#: Seconds one agent call may take before its episode fails (``--step-timeout``).
DEFAULT_STEP_TIMEOUT = 60.0


class AgentFailure(Exception):
    """The agent misbehaved; the message is recorded in the episode's ``error`` column."""


class StepTimeout(AgentFailure):
    pass


#: The agent calls a :class:`CallClock` can name (by index), so the driver's error says which one hung.
CALLS = ("agent.seed()", "agent.reset()", "agent.act()", "agent.act_batch()", "agent.reset_slot()", "agent.seed_slot()",
         "agent construction", "agent.bind()")
_CALL_CODES = {what: float(i) for i, what in enumerate(CALLS)}


class CallClock:
    """When the agent call in progress (and the setup phase in progress) began, in shared memory.

    The worker writes, the supervising driver reads (:mod:`vlaeval.evaluators.workers`).  The
    values are ``time.monotonic()`` readings, which on Linux share one clock across processes;
    0 means "no call in progress".  Layout of ``values`` (4 doubles): call start, call code,
    setup start, setup code (codes index :data:`CALLS`).
    """

    SIZE = 4

    def __init__(self, values: Sequence[float]) -> None:
        self.values = values

    def call(self) -> tuple[float, str]:
        """(start, what) of the guarded agent call in progress; start 0 when none."""
        return self.values[0], CALLS[int(self.values[1])]

    def setup(self) -> tuple[float, str]:
        """(start, what) of the agent setup phase in progress; start 0 when none."""
        return self.values[2], CALLS[int(self.values[3])]


_clock: CallClock | None = None  # set in supervised workers only (publish_calls)


def publish_calls(clock: CallClock | None) -> None:
    """Make every guarded agent call in this process visible to the driver through ``clock``."""
    global _clock
    _clock = clock


@contextmanager
def watched_setup(what: str) -> Iterator[None]:
    """Mark an agent setup phase (``"agent construction"``, ``"agent.bind()"``) for the driver's
    setup timeout.  Setup is not guarded in-process: loading a model may legitimately take many
    minutes and sits in C code, so only the driver, which can kill the worker, bounds it."""
    clock = _clock
    if clock is None:
        yield
        return
    clock.values[3] = _CALL_CODES[what]
    clock.values[2] = time.monotonic()
    try:
        yield
    finally:
        clock.values[2] = 0.0


def check_action(action: Any, shape: tuple[int, ...] | None) -> np.ndarray:
    """The action as float32, or :class:`AgentFailure` saying what is wrong with it.

    Only real numbers pass (integer or floating dtypes).  Converting with ``dtype=float`` would
    accept numeric strings ("0.1") and drop the imaginary part of complex values with only a
    warning, so the dtype numpy infers is checked first.  Booleans are refused too: the gripper
    convention is +-1, and a True/False action is a bug (a flag returned by mistake), not a command.
    """
    if action is None:
        raise AgentFailure("agent returned None instead of an action; act() must return real numbers")
    try:
        arr = np.asarray(action)
    except (TypeError, ValueError) as exc:
        raise AgentFailure(f"agent returned a non-numeric action ({type(action).__name__}): {exc}") from None
    if arr.dtype.kind not in "iuf":
        raise AgentFailure(f"agent returned a non-real action ({type(action).__name__} of dtype {arr.dtype}: "
                           f"{reprlib.repr(action)}); actions must be real numbers")
    if shape is not None and arr.shape != tuple(shape):
        raise AgentFailure(f"agent returned an action of shape {arr.shape}, the suite expects {tuple(shape)}")
    out = arr.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise AgentFailure(f"agent returned a non-finite action {np.array2string(arr, precision=3)}")
    return out


def agent_error(exc: BaseException, method: str) -> str:
    """The ``error`` text of an agent call that raised: a guard's own message, or what it raised."""
    if isinstance(exc, AgentFailure):
        return str(exc)
    return f"agent raised in {method}(): {describe(exc)}"


@contextmanager
def deadline(seconds: float, what: str) -> Iterator[None]:
    """Raise :class:`StepTimeout` if the block runs longer than ``seconds``.

    In a process's main thread (local workers, Ray tasks and synchronous Ray actors) this uses
    SIGALRM, which interrupts Python code and blocking calls that return to the interpreter.
    SIGALRM cannot be used from any other thread (threaded Ray actors, an ``evaluate`` call made
    from a thread), so there a watchdog thread takes over: when the time is up it raises
    :class:`StepTimeout` inside the guarded thread (``PyThreadState_SetAsyncExc``), which takes
    effect at the next Python bytecode; a call stuck inside C code is therefore failed as soon
    as it returns.  Either exception can be caught by the agent: an agent that swallows it and
    carries on is stopped only by the driver, which kills its worker (see :class:`CallClock`).
    ``seconds <= 0`` runs the block unguarded.
    """
    if seconds <= 0:
        yield
        return
    clock = _clock
    if clock is not None:
        clock.values[1] = _CALL_CODES[what]
        clock.values[0] = time.monotonic()
    try:
        with _in_process_deadline(seconds, what):
            yield
    finally:
        if clock is not None:
            clock.values[0] = 0.0


def step_timeout_message(what: str, seconds: float) -> str:
    """The ``error`` text of an agent call that ran out of time (shared by both guards)."""
    return f"{what} did not return within the {seconds:g} s step timeout (--step-timeout)"


@contextmanager
def _in_process_deadline(seconds: float, what: str) -> Iterator[None]:
    """SIGALRM in the main thread, else the watchdog thread (see :func:`deadline`)."""
    message = step_timeout_message(what, seconds)
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        with _watchdog(seconds, message):
            yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise StepTimeout(message)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def _watchdog(seconds: float, message: str) -> Iterator[None]:
    """The thread-safe deadline: a timer thread flags the guarded thread and interrupts it."""
    import ctypes

    target = threading.get_ident()
    state = {"fired": False, "done": False}
    lock = threading.Lock()

    def fire() -> None:
        with lock:
            if state["done"]:
                return
            state["fired"] = True
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target), ctypes.py_object(StepTimeout))

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    except StepTimeout:
        raise StepTimeout(message) from None
    finally:
        try:
            with lock:
                state["done"] = True
                timer.cancel()
                if state["fired"]:
                    # Clear an exception still pending (the block ended before it was delivered).
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target), None)
        except StepTimeout:
            pass  # delivered just after the block ended: reported below with its message
    if state["fired"]:
        raise StepTimeout(message)
