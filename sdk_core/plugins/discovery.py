"""Finding installed plugins quickly: the entry points of one group, read straight from the
``*.dist-info`` and ``*.egg-info`` folders on ``sys.path``.

Only each distribution's ``entry_points.txt`` is read (and, for the few that have an entry
point in the group, the first lines of their metadata for the display name): no METADATA is
parsed by the email parser and ``importlib.metadata`` is not imported, which is most of what
discovery used to cost. Folders are visited in ``sys.path`` order and, inside a folder, in
sorted order, so the result never depends on the file system's directory order. The scan is
done once per process and ``sys.path``; :func:`rescan` forgets it.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterable
from typing import Any, NamedTuple


class Distribution(NamedTuple):
    """An installed distribution: normalized name, version and its metadata folder."""

    name: str
    version: str
    path: str


class EntryPoint(NamedTuple):
    """One entry point: ``name = value`` in ``group`` of the distribution ``dist``."""

    name: str
    value: str
    group: str
    dist: Distribution

    def load(self) -> Any:
        """Import the module (and attribute, after ``:``) the entry point names."""
        module, _, attr = self.value.partition(":")
        obj: Any = importlib.import_module(module.strip())
        for part in attr.strip().split(".") if attr.strip() else ():
            obj = getattr(obj, part)
        return obj

    @property
    def dist_label(self) -> str:
        """``name version`` as ``pip list`` shows the distribution."""
        return f"{display_name(self.dist)} {self.dist.version}"


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them: ``SDK_Numpy`` -> ``sdk-numpy``."""
    return re.sub(r"[-_.]+", "-", name).lower()


_scans: dict[tuple[str, ...], list[Distribution]] = {}


def rescan() -> None:
    """Forget what was found (after installing or removing a distribution in this process)."""
    _scans.clear()


def distributions(path: Iterable[str] | None = None) -> list[Distribution]:
    """Every distribution on ``path`` (default ``sys.path``), the first of a name winning."""
    key = tuple(sys.path if path is None else path)
    if key not in _scans:
        found: dict[str, Distribution] = {}
        for entry in key:
            try:
                names = sorted(os.listdir(entry or "."))
            except OSError:  # a zip file, a missing folder
                continue
            for folder in names:
                dist = _distribution(entry or ".", folder)
                if dist is not None and dist.name not in found:
                    found[dist.name] = dist
        _scans[key] = list(found.values())
    return _scans[key]


def _distribution(entry: str, folder: str) -> Distribution | None:
    if folder.endswith(".dist-info"):
        stem = folder[: -len(".dist-info")]
    elif folder.endswith(".egg-info"):
        stem = folder[: -len(".egg-info")]
    else:
        return None
    name, _, version = stem.partition("-")
    path = os.path.join(entry, folder)
    if not version:  # name.egg-info: the version is in PKG-INFO
        version = _header(os.path.join(path, "PKG-INFO"), "Version") or ""
    return Distribution(normalize(name), version.split("-")[0], path)


def _header(path: str, field: str) -> str | None:
    """A ``Field: value`` line from the head of a metadata file, without the email parser."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break  # the headers end at the first blank line
                key, _, value = line.partition(":")
                if key.strip().lower() == field.lower():
                    return value.strip()
    except OSError:
        pass
    return None


def display_name(dist: Distribution) -> str:
    """The distribution's own spelling of its name (``sdk-numpy``), from its metadata."""
    for meta in ("METADATA", "PKG-INFO"):
        name = _header(os.path.join(dist.path, meta), "Name")
        if name:
            return name
    return dist.name


def entry_points(group: str, path: Iterable[str] | None = None) -> list[EntryPoint]:
    """Every entry point of ``group``, in distribution order (see the module docstring)."""
    found = []
    for dist in distributions(path):
        try:
            with open(os.path.join(dist.path, "entry_points.txt"), encoding="utf-8") as f:
                text = f.read()
        except OSError:
            continue
        found += [EntryPoint(n, v, group, dist) for n, v in _section(text, group)]
    return found


def _section(text: str, group: str) -> list[tuple[str, str]]:
    """The ``name = value`` lines of the ``[group]`` section of an entry_points.txt."""
    items, inside = [], False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            inside = line.strip("[]").strip() == group
        elif inside and "=" in line:
            name, _, value = line.partition("=")
            items.append((name.strip(), value.strip()))
    return items


def version(name: str, path: Iterable[str] | None = None) -> str | None:
    """The installed version of the distribution ``name``, or ``None``."""
    wanted = normalize(name)
    for dist in distributions(path):
        if dist.name == wanted:
            return dist.version
    return None
