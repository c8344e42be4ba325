"""Calling plugin code without letting it take the SDK down.

Every call into a plugin goes through :func:`call` or :func:`call_all`: any exception,
``SystemExit`` and other ``BaseException`` included (only ``KeyboardInterrupt`` passes, so
Ctrl-C still stops the user's program), becomes an :class:`Outcome` whose ``error`` says what
happened in one line. :func:`call_all` runs probing and reading calls on a worker thread and
stops waiting for one at its deadline: a wedged driver costs the deadline, the plugin is named,
and the other plugins' calls go on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

MAX_MESSAGE = 300


class Outcome(NamedTuple):
    """What one call gave: its ``value``, or an ``error`` message (``None`` when it worked),
    with the ``exception`` itself (``None`` when the call timed out)."""

    value: Any = None
    error: str | None = None
    exception: BaseException | None = None
    timed_out: bool = False


def describe(exc: BaseException) -> str:
    """``Type: first line of the message``, at most :data:`MAX_MESSAGE` characters."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def call(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Outcome:
    """``fn(*args, **kwargs)`` with every exception but ``KeyboardInterrupt`` caught."""
    try:
        return Outcome(fn(*args, **kwargs))
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit in a plugin must not end the user's process
        return Outcome(error=describe(exc), exception=exc)


class _Worker(threading.Thread):
    """Runs calls one after another, saying which one it is in and since when."""

    def __init__(self, todo: list[tuple[str, Callable[[], Any]]], results: dict[str, Outcome]) -> None:
        super().__init__(name="sdk-plugin-calls", daemon=True)
        self.todo, self.results = todo, results
        self.current: tuple[str, float] | None = None  # (name, started): replaced in one step
        self.abandoned = False
        self.finished = threading.Event()

    def run(self) -> None:
        for name, fn in self.todo:
            self.current = (name, time.monotonic())
            outcome = call(fn)
            if self.abandoned:
                return  # the caller gave up on this worker: its answers are not wanted any more
            self.results[name] = outcome
        self.finished.set()


def call_all(calls: Mapping[str, Callable[[], Any]], timeout: float | None) -> dict[str, Outcome]:
    """Run every call (name -> no-argument callable) and return their outcomes by name.

    With a ``timeout`` (seconds) the calls run one after another on a worker thread and each
    may take ``timeout`` seconds: a call still running then gets the error ``timed out after
    N s``, its thread is abandoned (it cannot be stopped from outside) and a new worker takes
    the calls after it. One thread serves them all when none hangs. ``None`` or ``0`` runs
    them in this thread.
    """
    if not timeout or not calls:
        return {name: call(fn) for name, fn in calls.items()}
    results: dict[str, Outcome] = {}
    while len(results) < len(calls):
        worker = _Worker([(n, fn) for n, fn in calls.items() if n not in results], results)
        worker.start()
        while not worker.finished.wait(0.02):
            current = worker.current
            if current is not None and current[0] not in results and time.monotonic() - current[1] > timeout:
                worker.abandoned = True
                results[current[0]] = Outcome(error=f"timed out after {timeout:g} s", timed_out=True)
                break
    return {name: results[name] for name in calls}
