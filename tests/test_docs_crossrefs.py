"""The API reference links its cross-references: the docstrings' reST roles become
mkdocs-autorefs links, and a role left raw (or a link left unresolved) fails ``mkdocs build
--strict`` (tox -e docs). Needs mkdocs: the docs environment runs it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings_handlers.python")
from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("rest_roles", ROOT / "docs" / "hooks" / "rest_roles.py")
rest_roles = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rest_roles)


@pytest.mark.parametrize(
    ("role", "link"),
    [
        (":class:`Stack`", "[`Stack`][Stack]"),
        (":meth:`build`", "[`build`][build]"),
        (":mod:`sdk_core.runtime.select`", "[`sdk_core.runtime.select`][sdk_core.runtime.select]"),
        (":func:`~sdk_core.model.weights.load_weights`", "[`load_weights`][sdk_core.model.weights.load_weights]"),
        (":data:`MAX_MESSAGE`", "[`MAX_MESSAGE`][MAX_MESSAGE]"),
        (":meth:`Stack.fit()`", "[`Stack.fit()`][Stack.fit]"),
    ],
)
def test_each_role_becomes_an_autorefs_link(role: str, link: str) -> None:
    assert rest_roles.to_markdown(f"see {role}.") == f"see {link}."


def site(tmp_path: Path, docstring: str) -> subprocess.CompletedProcess:
    """A one-page site documenting a module whose function has ``docstring``."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# API\n\n::: demo\n")
    (tmp_path / "demo.py").write_text(f'def target():\n    """Documented."""\n\n\ndef user():\n    """{docstring}"""\n')
    config = (ROOT / "mkdocs.yml").read_text()
    config = config[: config.index("nav:")] + config[config.index("hooks:") :]
    config = config.replace("paths: [.]", f"paths: [{tmp_path}]").replace("docs/hooks/", f"{ROOT}/docs/hooks/")
    config = config.replace("  - docs/hooks/cli_reference.py\n", "").replace(
        f"  - {ROOT}/docs/hooks/cli_reference.py\n", ""
    )
    (tmp_path / "mkdocs.yml").write_text(config)
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )


def test_a_role_renders_as_a_link_to_its_target(tmp_path: Path) -> None:
    built = site(tmp_path, "Calls :func:`target`.")
    assert built.returncode == 0, built.stderr
    html = (tmp_path / "site" / "index.html").read_text()
    assert 'href="#demo.target"' in html and ":func:" not in html


def test_an_unresolved_role_fails_the_build(tmp_path: Path) -> None:
    built = site(tmp_path, "Calls :func:`nowhere`.")
    assert built.returncode != 0
    assert "Could not find cross-reference target" in built.stderr


def test_a_raw_role_fails_the_build_but_not_one_in_a_code_example() -> None:
    page = type("Page", (), {"file": type("File", (), {"src_uri": "reference/x.md"})()})()
    with pytest.raises(PluginError, match=r"reference/x\.md: a reST role is printed as text"):
        rest_roles.on_post_page("<p>see :class:<code>Stack</code></p>", page, None)
    example = "<pre><code>:class:`Stack` in a docstring</code></pre>"
    assert rest_roles.on_post_page(example, page, None) == example
