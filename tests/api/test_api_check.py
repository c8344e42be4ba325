"""The API check fails on a breaking change without a deprecation entry, and passes once the
change is listed as deprecated (run by `tox -e lint`)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("griffe")

ROOT = Path(__file__).parents[2]
CHECK = ROOT / "tests" / "api" / "check.py"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the working tree's sdk_core and CHANGELOG.md, to break."""
    shutil.copytree(ROOT / "sdk_core", tmp_path / "sdk_core", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "CHANGELOG.md", tmp_path / "CHANGELOG.md")
    return tmp_path


def check(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CHECK), "--source", str(tree), "--changelog", str(tree / "CHANGELOG.md")],
        capture_output=True,
        text=True,
        timeout=300,
    )


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def deprecate(tree: Path, entry: str) -> None:
    edit(tree / "CHANGELOG.md", "### Deprecated\n", f"### Deprecated\n- ~~`{entry}`~~: injected by the test.\n")


def test_the_working_tree_passes() -> None:
    result = check(ROOT)
    assert result.returncode == 0, result.stdout
    assert re.search(r"API check against 0\.1\.0, 0\.2\.0.*: 0 breaking", result.stdout)


def test_a_removed_parameter_fails_until_it_is_listed_as_deprecated(tree: Path) -> None:
    edit(tree / "sdk_core" / "runtime" / "stack.py", "        shuffle: bool = True,\n", "")
    result = check(tree)
    assert result.returncode == 1
    assert "sdk_core.runtime.stack.Stack.fit: Parameter was removed (shuffle)" in result.stdout
    assert "Stack.fit: Positional parameter was moved (seed)" in result.stdout  # the later ones moved up a place
    deprecate(tree, "sdk_core.runtime.stack.Stack.fit(shuffle)")
    assert "Stack.fit: Parameter was removed (shuffle)" not in check(tree).stdout
    deprecate(tree, "sdk_core.runtime.stack.Stack.fit")
    assert check(tree).returncode == 0


def test_a_renamed_module_fails_until_it_is_listed_as_deprecated(tree: Path) -> None:
    hooks = tree / "sdk_core" / "plugins"
    (hooks / "hookspecs.py").rename(hooks / "hook_specs.py")
    for path in tree.joinpath("sdk_core").rglob("*.py"):  # the rename done properly, every import updated
        text = path.read_text()
        if "hookspecs" in text:
            path.write_text(re.sub(r"\bplugins(\.|\s+import\s+)hookspecs\b", r"plugins\1hook_specs", text))
    (hooks / "manager.py").write_text((hooks / "manager.py").read_text().replace("hookspecs", "hook_specs"))
    result = check(tree)
    assert result.returncode == 1
    assert "sdk_core.plugins.hookspecs: Public object was removed" in result.stdout
    deprecate(tree, "sdk_core.plugins.hookspecs")
    assert check(tree).returncode == 0


def test_a_required_record_field_fails(tree: Path) -> None:
    edit(
        tree / "sdk_core" / "plugins" / "records.py",
        '    driver: str = attrs.field(default="", validator=_text)\n',
        '    driver: str = attrs.field(default="", validator=_text)\n    bus: str\n',
    )
    result = check(tree)
    assert result.returncode == 1
    assert "sdk_core.plugins.records.DeviceInfo.bus: a field added to a record needs a default" in result.stdout


def test_a_hook_that_changes_fails(tree: Path) -> None:
    edit(
        tree / "sdk_core" / "plugins" / "hookspecs.py",
        "def sdk_read_memory(device: DeviceInfo)",
        "def sdk_read_memory(dev: DeviceInfo)",
    )
    result = check(tree)
    assert result.returncode == 1
    assert "sdk_core.plugins.hookspecs.sdk_read_memory: Parameter was removed (device)" in result.stdout


def test_a_deprecated_module_removed_too_early_fails(tree: Path) -> None:
    (tree / "sdk_core" / "spec.py").unlink()
    result = check(tree)
    assert result.returncode == 1
    assert "sdk_core.spec is listed as deprecated but is gone" in result.stdout
