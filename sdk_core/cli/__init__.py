"""The ``sdk`` command: environment, train, predict, bench, compress, export, estimate, tune, launch.

Tables for people, ``--json`` for scripts; on bad input one line on stderr and exit code 1.
Each module registers one group of subcommands (``add_commands``); plugins add theirs through
the ``sdk_add_commands`` hook.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Sequence

from ..errors import DeviceOutOfMemory, SdkError, SdkWarning, is_out_of_memory, one_line, requested_memory
from ..plugins.manager import get_manager
from .common import Parser

# each module registers a group of subcommands; only the group of the command run is imported
GROUPS = {
    "environment": ("plugins", "devices", "stacks", "doctor"),
    "train": ("train", "predict"),
    "bench": ("bench",),
    "compress": ("compress",),
    "export": ("export",),
    "estimate": ("estimate",),
    "tune": ("tune",),
    "launch": ("launch",),
    "generate": ("generate",),
    "convert": ("convert",),
    "checkpoint": ("checkpoint",),
    "onnx_import": ("import",),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``sdk`` parser with every built-in and plugin subcommand; with ``command`` (a
    built-in one), only that command's group, which is all a run of it needs."""
    parser = Parser(prog="sdk", description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    groups = [g for g, commands in GROUPS.items() if command in commands] or list(GROUPS)
    for group in groups:
        importlib.import_module(f"{__name__}.{group}").add_commands(sub)
    if len(groups) == len(GROUPS):
        get_manager().add_commands(sub)  # plugins' own commands; a failing plugin is disabled
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sdk`` with ``argv`` (default: the process arguments); returns the exit code."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SdkWarning)  # printed once below, as one line each
        try:
            words = list(sys.argv[1:] if argv is None else argv)
            args = build_parser(words[0] if words else None).parse_args(words)
            for message in get_manager().warnings:
                print(f"sdk: warning: {message}", file=sys.stderr)
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # a closed pipe shows here, not at exit
            return code
        except SdkError as exc:
            print(f"sdk: error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("sdk: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # `sdk plugins --json | head`: the reader left; nothing to say
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        except Exception as exc:  # memory that ran out outside a Stack (reading the data, ...)
            if not is_out_of_memory(exc):
                raise
            error = DeviceOutOfMemory("the host", "running", requested_memory(exc), one_line(f"{exc!r}", 120))
            print(f"sdk: error: {error}", file=sys.stderr)
            return 1
