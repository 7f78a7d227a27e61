"""Sphinx configuration for the pyro-permutations documentation.

Build with ``make docs`` (HTML into ``docs/_build/html``, then the doctest builder, which
runs every ``>>>`` example in these pages). Nothing here reaches the network.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import pyro_permutations  # noqa: E402

project = "pyro-permutations"
author = "pyro-permutations developers"
copyright = "pyro-permutations developers"
version = pyro_permutations.__version__
release = version

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build"]
nitpicky = False

# autodoc: members in source order, signatures without the defaults' long reprs duplicated in
# the description, and the class docstring alone (``__init__`` carries none).
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}
autodoc_typehints = "none"
autoclass_content = "class"
# Methods show the docstrings this library writes; torch's inherited ones (Google style)
# are not reST and would only repeat torch's documentation.
autodoc_inherit_docstrings = False

# doctest: every page's examples start from the same imports and seed.
doctest_global_setup = """
import torch
torch.manual_seed(0)
"""

html_theme = "sphinx_rtd_theme"
html_title = f"pyro-permutations {release}"
html_static_path = []


# ``.. markdown-table:: path`` includes a results file written by the tutorials (a paragraph,
# one pipe table, more paragraphs) as reST, so that the page shows the committed numbers and
# follows them when the tutorial is rerun.
from docutils import nodes  # noqa: E402
from docutils.parsers.rst import Directive  # noqa: E402
from docutils.statemachine import StringList  # noqa: E402


def _markdown_to_rst(text):
    out, rows = [], []

    def flush():
        if not rows:
            return
        out.extend([".. list-table::", "   :header-rows: 1", ""])
        for row in rows:
            for k, cell in enumerate(row):
                out.append(("   * - " if k == 0 else "     - ") + (cell or r"\ "))
        out.append("")
        rows.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|"):
            cells = [c.strip() for c in stripped.strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):  # skip the |---| rule
                rows.append(cells)
            continue
        flush()
        out.append(stripped)
    flush()
    return out


class MarkdownTable(Directive):
    required_arguments = 1

    def run(self):
        env = self.state.document.settings.env
        rel, path = env.relfn2path(self.arguments[0])
        env.note_dependency(rel)
        with open(path, encoding="utf-8") as f:
            lines = _markdown_to_rst(f.read())
        node_lines = StringList(lines, source=path)
        container = nodes.container()
        self.state.nested_parse(node_lines, self.content_offset, container)
        return container.children


def setup(app):
    app.add_directive("markdown-table", MarkdownTable)
