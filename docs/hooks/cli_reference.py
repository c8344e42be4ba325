"""mkdocs hook: the command-line reference is generated from the ``sdk`` argparse parser, so
it can never drift from the code. A page containing ``<!-- sdk-cli -->`` gets the help of
``sdk`` and of every built-in subcommand in its place."""

from __future__ import annotations

import argparse
import os
from typing import Any

MARKER = "<!-- sdk-cli -->"


def _parser() -> argparse.ArgumentParser:
    os.environ["SDK_CORE_AUTOLOAD"] = "0"  # only the built-in commands: no installed plugin's
    from sdk_core.cli import build_parser

    return build_parser()


def render() -> str:
    """Markdown: the top-level help, then one section per subcommand."""
    parser = _parser()
    parser.prog = "sdk"
    parts = ["```text", parser.format_help().rstrip(), "```"]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        command.prog = f"sdk {name}"
        parts += ["", f"## sdk {name}", "", "```text", command.format_help().rstrip(), "```"]
    return "\n".join(parts)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return markdown.replace(MARKER, render()) if MARKER in markdown else markdown
