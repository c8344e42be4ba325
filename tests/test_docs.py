"""The code examples of the README and the documentation site run, so they cannot rot.

Every fenced ``python`` block of a page runs, in order, in one fresh interpreter inside a
temporary directory. A block preceded by ``<!-- docs-test: requires NAME -->`` is skipped
when the module NAME is not installed; ``<!-- docs-test: skip -->`` skips it always (for a
fragment that is not meant to run on its own).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sdk_core

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"(?:<!-- docs-test: (?P<marker>[^>]*?) -->\s*\n)?```python\n(?P<code>.*?)^```", re.S | re.M)


def examples(page: Path) -> list[tuple[str, str]]:
    """``(marker, code)`` for every python block of ``page``."""
    return [(m["marker"] or "", m["code"]) for m in BLOCK.finditer(page.read_text(encoding="utf-8"))]


def runnable(page: Path) -> str:
    """The page's blocks that can run here, joined; a requirement that is missing is skipped."""
    code = []
    for marker, block in examples(page):
        if marker == "skip":
            continue
        if marker.startswith("requires "):
            module = marker.split()[1]
            if importlib.util.find_spec(module) is None:
                continue
        code.append(block)
    return "\n\n".join(code)


def test_pages_with_examples_are_found():
    assert any(examples(p) for p in PAGES)
    assert all(m == "skip" or m.startswith("requires ") or not m for p in PAGES for m, _ in examples(p))


@pytest.mark.parametrize("page", [p for p in PAGES if examples(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run(page: Path, tmp_path: Path):
    frameworks = sdk_core.PluginManager().frameworks()
    if "numpy" not in frameworks or importlib.util.find_spec("sklearn") is None:
        pytest.skip("the examples need sdk-numpy and scikit-learn")
    code = runnable(page)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{page.name}:\n{result.stderr[-3000:]}"
