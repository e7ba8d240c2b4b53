"""Sphinx configuration of trio_phoenix's documentation (``make docs``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trio_phoenix

project = "trio_phoenix"
author = "trio_phoenix developers"
copyright = "2026, trio_phoenix developers"
release = trio_phoenix.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinxcontrib_trio",
    "myst_parser",  # the guide pages are Markdown, moved from the README as they were
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
myst_heading_anchors = 3
default_role = "py:obj"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" sections as fields, beside :members: listings
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_title = f"trio_phoenix {release}"
