"""Sphinx configuration of the keg_storage documentation."""

from keg_storage.version import VERSION

project = "keg_storage"
author = "keg_storage developers"
release = VERSION
# No intersphinx: the build must work without network access.
extensions = ["sphinx.ext.autodoc", "sphinx.ext.doctest"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
exclude_patterns = ["_build"]
html_theme = "alabaster"
# Names every doctest and testcode block may use; Flask(__name__) needs a module-like name.
doctest_global_setup = """
import io
__name__ = "keg_storage_docs"
"""
