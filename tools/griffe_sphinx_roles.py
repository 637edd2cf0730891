"""Griffe extension: render the Sphinx roles of docstrings (:class:`X`, :func:`~a.b`) as links.

mkdocstrings renders Markdown, so ``:class:`Structure``` would show as raw text. Each role
becomes an *optional* autoref: a link when the target is documented on the site, plain
code otherwise (no warning, so ``mkdocs build --strict`` stays quiet). Relative names are
resolved in the docstring's scope, as Sphinx does. The sources are not changed.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(class|func|meth|mod|attr|data|obj|exc):`(~?)([^`]+)`")
_MATH = re.compile(r":math:`([^`]+)`")


def _target(obj: griffe.Object, name: str) -> str:
    try:
        return obj.resolve(name.split(".")[0]) + name[len(name.split(".")[0]) :]
    except (griffe.NameResolutionError, ValueError, KeyError):
        return name


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring once the package is loaded."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.is_alias or obj.docstring is None:
            return

        def link(match: re.Match) -> str:
            _, short, name = match.groups()
            name = name.removesuffix("()")
            title = name.rsplit(".", 1)[-1] if short else name
            return (
                f'<autoref identifier="{_target(obj, name)}" optional>'
                f"<code>{title}</code></autoref>"
            )

        text = _ROLE.sub(link, obj.docstring.value)
        obj.docstring.value = _MATH.sub(r"`\1`", text)
