"""The architecture blocks of the README and docs/architecture.md say what import-linter
enforces: one line per layer of the contract in pyproject.toml, in its order, each naming
exactly that layer's modules."""

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def contract_layers() -> list[list[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c["layers"] for c in config["contracts"] if c["type"] == "layers")
    return [[m.strip() for m in layer.split("|")] for layer in layers]


def block_layers(text: str, heading: str) -> list[list[str]]:
    """The layers a document's block shows: each line that starts with a module name, up to
    the description (two spaces or more), split at ``|``."""
    section = text.split(heading, 1)[1]
    block = re.search(r"```\n(.*?)```", section, re.S)
    assert block, f"no code block after {heading!r}"
    found = []
    for line in block.group(1).splitlines():
        if line.strip().startswith("sdk_core."):
            names = re.split(r"\s{2,}", line.strip())[0]
            found.append([m.strip() for m in names.split("|")])
    return found


@pytest.mark.parametrize(
    ("document", "heading"), [("README.md", "## Architecture"), ("docs/architecture.md", "## The layers")]
)
def test_the_architecture_block_is_the_import_linter_contract(document: str, heading: str) -> None:
    shown = block_layers((ROOT / document).read_text(), heading)
    assert shown == contract_layers(), f"{document}: the block's layers differ from pyproject.toml's contract"


def test_the_check_reads_a_block_as_the_contract_would() -> None:
    text = "## A\n\n```\nsdk_core.x   top\n  |\nsdk_core.y | sdk_core.z\n      both\n```\n"
    assert block_layers(text, "## A") == [["sdk_core.x"], ["sdk_core.y", "sdk_core.z"]]
