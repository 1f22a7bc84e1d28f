"""Sphinx configuration for the sm-imgclf documentation."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sm_imgclf import __version__

project = "sm-imgclf"
author = "sm-imgclf developers"
copyright = "2026, sm-imgclf developers"
release = version = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]
html_theme = "furo"
html_title = f"sm-imgclf {version}"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
nitpicky = False

# Without network access (CI, air-gapped machines) the inventories cannot be
# fetched; links to other projects' docs then stay plain text.
if os.environ.get("SM_IMGCLF_DOCS_OFFLINE"):
    intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
else:
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "boto3": ("https://boto3.amazonaws.com/v1/documentation/api/latest", None),
        "PIL": ("https://pillow.readthedocs.io/en/stable", None),
    }
