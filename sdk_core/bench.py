"""Hardware evaluation (``sdk bench``): being written; see issue 9."""
from __future__ import annotations

import argparse


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``sdk bench`` on the CLI."""
