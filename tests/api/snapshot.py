"""Store the public API of an sdk_core source tree as griffe sees it, for ``check.py``.

    python tests/api/snapshot.py SOURCE_DIR tests/api/sdk_core-X.Y.Z.json

SOURCE_DIR holds the ``sdk_core`` package of a release (``git archive vX.Y.Z sdk_core | tar -x
-C DIR``). Take one at every release: the check compares the working tree with each of them.
Docstrings are dropped; signatures, members, annotations and values are kept."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import griffe


def load(source: str | Path) -> griffe.Module:
    """The ``sdk_core`` package found in ``source`` only (never an installed one), statically."""
    loader = griffe.GriffeLoader(search_paths=[str(source)], allow_inspection=False)
    module = loader.load("sdk_core", try_relative_path=False, find_stubs_package=False)
    assert isinstance(module, griffe.Module)
    return module


def strip(data: object) -> object:
    if isinstance(data, dict):
        return {k: strip(v) for k, v in data.items() if k not in ("docstring", "source", "filepath")}
    if isinstance(data, list):
        return [strip(v) for v in data]
    return data


def main(source: str, out: str) -> None:
    data = json.loads(load(source).as_json(full=True))
    Path(out).write_text(json.dumps(strip(data), indent=0, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
