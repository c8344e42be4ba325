"""The API check: the working tree's public API against every stored release (griffe).

    python tests/api/check.py [--source DIR] [--changelog CHANGELOG.md]

Each ``sdk_core-X.Y.Z.json`` beside this file is the public API of a release (``snapshot.py``).
For each, griffe lists what changed incompatibly (a public name removed, a parameter removed,
renamed, made required or moved, a default changed, an attribute's type changed, ...). A change
is an error unless it is outside the public surface (docs/stability.md) or it is covered by a
deprecation entry: a struck-out, backquoted path under a "### Deprecated" heading of
CHANGELOG.md (``~~`sdk_core.spec`~~`` covers the module and all it held;
``~~`sdk_core.X.f(a, b)`~~`` covers the parameters ``a`` and ``b`` of ``f``; the replacements
named beside them are plain backquotes). The records add one rule: a field added since a release
must have a default (API 1's records only gain optional fields). Exit 1 on any error.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import griffe

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
from snapshot import load  # noqa: E402

# Packages whose __all__ is their public API (their other modules are the inside of a layer).
EXPORTING = ("sdk_core", "sdk_core.bench", "sdk_core.compress", "sdk_core.export", "sdk_core.tune",
             "sdk_core.distributed", "sdk_core.testing")  # fmt: skip
# Modules public as a whole: the plugin contract.
CONTRACT = ("sdk_core.plugins.hookspecs", "sdk_core.plugins.records", "sdk_core.plugins.requests", "sdk_core.errors")
RECORDS = ("sdk_core.plugins.records", "sdk_core.plugins.requests")
# The `sdk` command line is public; the Python functions behind it are not.
PRIVATE = ("sdk_core.cli",)
MACHINERY = ("__getattr__", "__dir__")  # a module's lazy loading, not a name anyone calls


def stored(path: Path) -> griffe.Module:
    module = json.loads(path.read_text(), object_hook=griffe.json_decoder)
    collection = griffe.ModulesCollection()
    collection.set_member("sdk_core", module)
    module._modules_collection = collection  # what a loader sets; the decoder has none
    return module


def _public_names(module: griffe.Object) -> list[str]:
    exports = getattr(module, "exports", None)
    if exports:
        return [e if isinstance(e, str) else e.name for e in exports]
    return [n for n in module.members if not n.startswith("_")]  # a computed __all__: every public name


def surface(release: griffe.Module, deprecated_modules: list[str]) -> set[str]:
    """The paths a release made public: exported names (and what they point to), the contract
    modules and the 0.1 module paths that are still kept for their users."""
    roots = set(CONTRACT) | set(deprecated_modules)
    for package in EXPORTING:
        try:
            module = release[package.removeprefix("sdk_core.")] if package != "sdk_core" else release
        except KeyError:
            continue
        for name in _public_names(module):
            roots.add(f"{package}.{name}")
            member = module.members.get(name)
            if member is not None and member.is_alias:
                roots.add(member.target_path)
                roots.add(member.target_path.rpartition(".")[0])  # its module: the path reprs and tracebacks show
    for module in list(roots):  # a 0.1 module path that existed in this release: all its public names
        if module.count(".") == 1 and module.removeprefix("sdk_core.") in release.members:
            roots.add(module)
    return roots


def covered(path: str, roots: set[str] | list[str]) -> bool:
    return any(path == r or path.startswith(r + ".") for r in roots)


def deprecations(changelog: Path) -> dict[str, set[str]]:
    """path -> parameters (empty: the whole object) of every "Deprecated" entry."""
    found: dict[str, set[str]] = {}
    whole: set[str] = set()
    inside = False
    for line in changelog.read_text().splitlines():
        if line.startswith("#"):
            inside = line.strip().lower() == "### deprecated"
            continue
        if inside:
            for path, params in re.findall(r"~~`(sdk_core(?:\.\w+)+)(?:\(([\w, ]*)\))?`~~", line):
                names = {p.strip() for p in params.split(",") if p.strip()}
                found.setdefault(path, set()).update(names)
                if not names:
                    whole.add(path)
    return {path: set() if path in whole else params for path, params in found.items()}


def excused(breakage: griffe.Breakage, entries: dict[str, set[str]]) -> bool:
    path = breakage.obj.path
    param = getattr(breakage.old_value, "name", None) if "Parameter" in breakage.kind.value else None
    for entry, params in entries.items():
        if path == entry and params and param in params:
            return True
        if not params and covered(path, [entry]):
            return True
    return False


def record_fields(release: griffe.Module, current: griffe.Module) -> Iterator[str]:
    """Fields added to a record since ``release`` without a default."""
    for module_path in RECORDS:
        try:
            old_module, new_module = release[module_path[9:]], current[module_path[9:]]
        except KeyError:
            continue
        for name, cls in new_module.members.items():
            if cls.is_alias or not cls.is_class or name not in old_module.members or old_module[name].is_alias:
                continue
            old = old_module[name]
            for field, attr in cls.members.items():
                new_field = attr.is_attribute and "instance-attribute" in attr.labels and field not in old.members
                if new_field and not _has_default(attr):
                    yield f"{module_path}.{name}.{field}: a field added to a record needs a default"


def _has_default(attr: griffe.Object) -> bool:
    """``x: int = 0`` or ``attrs.field(default=..., factory=...)``; not ``x: int``, nor
    ``attrs.field(validator=...)``."""
    value = getattr(attr, "value", None)
    if value is None:
        return False
    text = str(value)
    if re.match(r"(attrs?\.)?(field|ib|attrib)\(", text):
        return bool(re.search(r"\b(default|factory)=", text))
    return True


def check(source: Path, changelog: Path, snapshots: list[Path]) -> list[str]:
    current = load(source)
    entries = deprecations(changelog)
    kept = [p for p in entries if p.count(".") == 1]  # deprecated whole modules: still their users'
    errors = []
    for snapshot in snapshots:
        release = stored(snapshot)
        roots = surface(release, kept)
        for breakage in griffe.find_breaking_changes(release, current):
            path = breakage.obj.path
            if path.rpartition(".")[2] in MACHINERY or covered(path, PRIVATE) or not covered(path, roots):
                continue
            if excused(breakage, entries):
                continue
            old = getattr(breakage.old_value, "name", breakage.old_value)
            errors.append(f"{snapshot.stem}: {path}: {breakage.kind.value} ({old})")
        errors += [f"{snapshot.stem}: {e}" for e in record_fields(release, current)]
    for path in entries:  # a deprecated name keeps working until its removal release
        if path.count(".") == 1 and path.removeprefix("sdk_core.") not in current.members:
            errors.append(f"{path} is listed as deprecated but is gone: keep it until the release that removes it")
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT, help="the folder holding the sdk_core package")
    parser.add_argument("--changelog", type=Path, default=ROOT / "CHANGELOG.md")
    args = parser.parse_args(argv)
    snapshots = sorted(HERE.glob("sdk_core-*.json"))
    errors = check(args.source, args.changelog, snapshots)
    for error in errors:
        print(f"breaking change without a deprecation entry: {error}")
    names = ", ".join(s.stem.removeprefix("sdk_core-") for s in snapshots)
    print(f"API check against {names}: {len(errors)} breaking change(s) without a deprecation entry")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
