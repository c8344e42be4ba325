"""Cross-references in the API reference: the docstrings' reST roles (``:class:`Stack```,
``:meth:`build```, ``:mod:`sdk_core.runtime.select```, ``:data:`MAX_MESSAGE```,
``:func:`~sdk_core.model.weights.load_weights```) become mkdocs-autorefs links.

Two halves, both registered in mkdocs.yml:

- ``RestRoles``, a griffe extension (mkdocstrings' ``extensions`` option), rewrites each role
  in a docstring as ``[`title`][identifier]``; mkdocstrings' ``scoped_crossrefs`` resolves a
  short identifier the way Python would from that object (``build`` inside ``Stack`` is
  ``sdk_core.runtime.stack.Stack.build``). A target no page documents is an unresolved
  reference, which ``mkdocs build --strict`` fails on.
- ``on_post_page``, an mkdocs hook, fails the build if any role is still printed literally.
"""

from __future__ import annotations

import re
from typing import Any

import griffe
from mkdocs.exceptions import PluginError

ROLES = ("class", "func", "meth", "mod", "data", "attr", "exc", "obj")
NAMES = "|".join(ROLES)
ROLE = re.compile(rf":(?:py:)?({NAMES}):`(~?)([\w.]+)(\(\))?`")
RAW = re.compile(rf":(?:py:)?(?:{NAMES}):(?:`|<code>)")


def to_markdown(text: str) -> str:
    """Each reST role in ``text`` as an autorefs link: the title is the name as written (its
    last part for ``~``), in code."""

    def link(match: re.Match[str]) -> str:
        _role, short, target, call = match.groups()
        title = target.rsplit(".", 1)[-1] if short else target
        return f"[`{title}{call or ''}`][{target}]"

    return ROLE.sub(link, text)


class RestRoles(griffe.Extension):
    """Rewrites the reST roles of every docstring griffe loads."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ":" in obj.docstring.value:
            obj.docstring.value = to_markdown(obj.docstring.value)


def on_post_page(output: str, page: Any, config: Any) -> str:
    """Fail the build on a role printed as text: a docstring the extension did not reach."""
    found = RAW.search(re.sub(r"<pre.*?</pre>", "", output, flags=re.S))  # code examples may show roles
    if found:
        start = max(found.start() - 60, 0)
        raise PluginError(f"{page.file.src_uri}: a reST role is printed as text: ...{output[start : found.end() + 40]}")
    return output
