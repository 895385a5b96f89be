"""Sphinx configuration of matalign's documentation.

Build (from the repository root; the ``docs`` extra holds the dependencies)::

    python -m sphinx -W --keep-going -n -b html docs docs/_build/html

The tutorials in ``docs/tutorials/`` run while the site builds (sphinx-gallery), offline.
Cross-references to numpy, scipy, Python, ASE, pymatgen and torch resolve through small
inventory files shipped in ``docs/_inv/`` (written by ``docs/_inv/make_inventories.py``), so
the build needs no network: the links in the pages still point at those projects' sites.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "_ext"))

import matalign  # noqa: E402

project = "matalign"
author = "the matalign authors"
copyright = "the matalign authors"  # noqa: A001
release = matalign.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "clidoc",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_inv", "_ext", "tutorials/README.rst", "**.ipynb_checkpoints",
                    "auto_tutorials/*.ipynb", "auto_tutorials/*.py", "auto_tutorials/*.zip",
                    "auto_tutorials/*.md5", "auto_tutorials/*.json"]
root_doc = "index"

# -- API reference: numpydoc renders the docstrings' Parameters/Returns/Raises/Examples
autodoc_default_options = {"members": False}
autodoc_typehints = "none"  # the numpydoc Parameters sections carry the types
autosummary_generate = False
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()

# Names the docstrings mention that are not pages of this reference: private helpers, and
# the attributes numpydoc lists under "Attributes" (documented there, not as objects).
nitpick_ignore = [
    ("py:func", "default_subsample_size"),
    ("py:func", "imbalance_null_sd"),
    ("py:func", "run_embed"),
    ("py:meth", "_embed_batch"),
    ("py:func", "check_atoms"),
    ("py:func", "cka"),          # matalign.cka, from the kernel_alignment module's text
    ("py:meth", "save"),         # AlignmentMatrix.save, listed with the class
    # re-exported at the top level, documented there as matalign.<name>
    ("py:func", "confidence_interval"),
    ("py:func", "null_test"),
]
nitpick_ignore_regex = [("py:(obj|attr)", r"[a-z_]+")]

# -- Markdown pages (the docs/*.md notes are pages of the site as they are)
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
suppress_warnings = ["myst.xref_missing", "myst.header"]

# -- intersphinx from local inventories (no network at build time; see _inv/README)
_INV = os.path.join(HERE, "_inv")
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", os.path.join(_INV, "python.inv")),
    "numpy": ("https://numpy.org/doc/stable", os.path.join(_INV, "numpy.inv")),
    "scipy": ("https://docs.scipy.org/doc/scipy", os.path.join(_INV, "scipy.inv")),
    "torch": ("https://docs.pytorch.org/docs/stable", os.path.join(_INV, "torch.inv")),
    "ase": ("https://ase-lib.org", os.path.join(_INV, "ase.inv")),
    "pymatgen": ("https://pymatgen.org", os.path.join(_INV, "pymatgen.inv")),
}
intersphinx_timeout = 1

# -- tutorials: executed while building, small data, offline
sphinx_gallery_conf = {
    "examples_dirs": "tutorials",
    "gallery_dirs": "auto_tutorials",
    "filename_pattern": r"/tut_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "min_reported_time": 0,
    "show_memory": False,
    "plot_gallery": "True",
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "within_subsection_order": "FileNameSortKey",
}

html_theme = "pydata_sphinx_theme"
html_title = f"matalign {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_static_path: list[str] = []
html_show_sourcelink = False
