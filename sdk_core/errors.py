"""Errors raised by sdk_core. Every message is one line that names what was wrong."""

from __future__ import annotations

MAX_MESSAGE = 300


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` on one line (newlines and runs of spaces become one space), at most ``limit``
    characters: an echoed value can never flood a terminal or a log."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class SdkError(Exception):
    """Base class: bad input or a failed operation, with a one-line message of at most
    :data:`MAX_MESSAGE` characters."""

    def __init__(self, *args: object) -> None:
        if args and isinstance(args[0], str):
            args = (one_line(args[0]), *args[1:])
        super().__init__(*args)


class SpecError(SdkError, ValueError):
    """A ModelSpec, layer, optimizer or loss description is invalid."""


class PluginError(SdkError):
    """A plugin failed: on import, in a hook, or by returning the wrong type."""

    def __init__(self, plugin: str, where: str, reason: str) -> None:
        self.plugin = plugin
        self.where = where
        self.reason = reason
        super().__init__(f"plugin '{plugin}' failed in {where}: {reason}")


class NotAvailableError(SdkError):
    """A framework, device or feature was asked for that no installed plugin provides."""


class WeightsError(SdkError):
    """A weights file is missing, corrupt, or does not match the model."""


class SdkWarning(UserWarning):
    """Something works, but not as the user probably meant: a block entry that matches no
    plugin, a hook function without ``@hookimpl``."""
