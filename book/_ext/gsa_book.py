"""Local Sphinx extension of the GSA-Nets book (listed in book/_config.yml, local_extensions).

* Hides the ``# NBVAL_CHECK_OUTPUT`` first line of code cells from readers: it tells nbval
  (``make test``) to compare the cell's stored output, and means nothing to a reader. The
  notebooks keep it; only the rendered page drops it.
* Shows the "Open in Colab" badge from the book itself (``static/colab-badge.svg``): the
  notebooks link Colab's own SVG, which a reader without network sees as a broken image.
* API reference: ``:class:`Group``` in a docstring of another module resolves to the one
  public object of the package with that name (``gsa_tutorial.groups.Group``), and ``|H|``
  (the group size, as the docstrings write it) is not read as a reStructuredText
  substitution.
* Drops repeated ``<script>`` tags: sphinx-thebe (and sphinx-togglebutton) register their
  inline configuration twice in a Jupyter Book build, and the second
  ``const THEBE_JS_URL = ...`` is a JavaScript error on every page.
* Gives the theme its default colour mode (``auto``, the theme's own fallback): without
  one, pydata-sphinx-theme logs "Got invalid theme mode" as an error on a reader's first page.
* Marks the widget areas of the online book: the sliders need a running kernel, so a static
  page shows them frozen (or, offline, where the widget JavaScript cannot load, not at all).
  ``widget_fallback.js`` puts a short note in each widget area instead of an empty box; the
  static figure that follows every widget in the chapters shows the same thing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

NBVAL_MARK = "# NBVAL_CHECK_OUTPUT"
STATIC = Path(__file__).parent / "static"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
LOCAL_BADGE = "/_ext/static/colab-badge.svg"  # "/..." is relative to the book's source folder


def strip_nbval_marks(app: Sphinx, doctree: nodes.document) -> None:
    """Drop the nbval marker line from every code block that starts with it."""
    for block in doctree.findall(nodes.literal_block):
        text = block.astext()
        if not text.startswith(NBVAL_MARK):
            continue
        rest = text[len(NBVAL_MARK) :].lstrip(" \t").removeprefix("\n")
        block.children = [nodes.Text(rest)]
        block.rawsource = rest


BARS = re.compile(r"(?<![`\\])\|H\|(?!`)")  # |H| outside ``...`` and :math:`...`


def escape_group_size(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """Write ``|H|`` as ``\\|H\\|`` in docstrings (not in ``::`` literal blocks)."""
    literal_indent: int | None = None
    previous = ""
    for i, line in enumerate(lines):
        indent = len(line) - len(line.lstrip())
        if line.strip():
            if literal_indent is not None and indent <= literal_indent:
                literal_indent = None
            if literal_indent is None and previous.rstrip().endswith("::"):
                literal_indent = len(previous) - len(previous.lstrip())
            if literal_indent is None:
                lines[i] = BARS.sub(r"\\|H\\|", line)
            previous = line


def resolve_short_names(app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.Element) -> nodes.Element | None:
    """Resolve a bare ``Group`` to the package's only public object of that name."""
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target or "." in target:
        return None
    domain = env.get_domain("py")
    matches = [
        full for full in domain.objects  # type: ignore[attr-defined]
        if full.startswith("gsa_tutorial.") and full.rsplit(".", 1)[-1] == target and "._" not in full
    ]
    if len(matches) != 1:
        return None
    return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], matches[0], node, contnode)


def drop_repeated_scripts(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    """Keep the first of identical ``<script>`` (same file and attributes, or same inline body).

    The repeated inline one is registered once with ``filename=None``, once with ``""``.
    """
    for key in ("script_files", "css_files"):
        files = context.get(key)
        if not files:
            continue
        seen, unique = set(), []
        for asset in files:
            attributes = getattr(asset, "attributes", {})
            signature = (str(getattr(asset, "filename", asset) or ""), tuple(sorted((k, str(v)) for k, v in attributes.items())))
            if signature not in seen:
                seen.add(signature)
                unique.append(asset)
        context[key] = unique


def local_colab_badge(app: Sphinx, doctree: nodes.document) -> None:
    """Point Colab badge images at the local copy (before Sphinx collects the images)."""
    for image in doctree.findall(nodes.image):
        if image.get("uri") == COLAB_BADGE:
            image["uri"] = LOCAL_BADGE
            if "candidates" in image:
                del image["candidates"]


def add_static_path(app: Sphinx) -> None:
    app.config.html_static_path.append(str(STATIC))


def default_colour_mode(app: Sphinx, config: Any) -> None:
    config.html_context.setdefault("default_mode", "auto")  # sphinx-book-theme: html_context, not a theme option


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("doctree-read", strip_nbval_marks)
    app.connect("doctree-read", local_colab_badge, priority=100)  # before the image collector (500)
    app.connect("autodoc-process-docstring", escape_group_size)
    app.connect("missing-reference", resolve_short_names)
    app.connect("html-page-context", drop_repeated_scripts, priority=900)  # after the theme's handlers
    app.connect("builder-inited", add_static_path)
    app.connect("config-inited", default_colour_mode)
    app.add_js_file("widget_fallback.js")
    app.add_css_file("widget_fallback.css")
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
