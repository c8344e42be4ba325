"""Calling plugin code without letting it take the SDK down.

Every call into a plugin goes through :func:`call` or :func:`call_all`: any exception,
``SystemExit`` and other ``BaseException`` included (only ``KeyboardInterrupt`` passes, so
Ctrl-C still stops the user's program), becomes an :class:`Outcome` whose ``error`` says what
happened in one line. :func:`call_all` runs probing and reading calls side by side, each in a
thread, and stops waiting at a deadline: a wedged driver costs the deadline once, not once per
command, and the plugin is named.
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


def call_all(calls: Mapping[str, Callable[[], Any]], timeout: float | None) -> dict[str, Outcome]:
    """Run every call (name -> no-argument callable) and return their outcomes by name.

    With a ``timeout`` (seconds) the calls run in parallel daemon threads and the wait ends at
    the deadline: a call still running then has the error ``timed out after N s`` (its thread
    is abandoned; it cannot be stopped from outside). ``None`` or ``0`` runs them in turn.
    """
    if not timeout:
        return {name: call(fn) for name, fn in calls.items()}
    results: dict[str, Outcome] = {}

    def run(name: str, fn: Callable[[], Any]) -> None:
        results[name] = call(fn)

    threads = {
        name: threading.Thread(target=run, args=(name, fn), name=f"sdk-plugin-{name}", daemon=True)
        for name, fn in calls.items()
    }
    for thread in threads.values():
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads.values():
        thread.join(max(0.0, deadline - time.monotonic()))
    timed_out = Outcome(error=f"timed out after {timeout:g} s", timed_out=True)
    return {name: results.get(name, timed_out) for name in calls}
