"""Sphinx configuration of the offline book: the executed notebooks of a run, rendered as they are.

Built by ``make book`` (see the Makefile) from a copy of this folder with the published notebooks
(``rllc publish``) under ``notebooks/``. Nothing is executed and nothing is loaded from the
network: MathJax is served from ``_static/mathjax`` (the npm package, fetched by the Makefile).
"""

project = "rllc"
author = "the rllc contributors"
copyright = "2026, the rllc contributors"

extensions = ["myst_nb"]
nb_execution_mode = "off"  # the notebooks carry their outputs; the book never runs them
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "notebooks/landing.md"]
suppress_warnings = ["mystnb.unknown_mime_type", "misc.highlighting_failure"]

html_theme = "sphinx_book_theme"
html_title = "rllc: refined LLCs of attention heads, reproduced"
html_static_path = ["_static"]
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": True,
    "use_fullscreen_button": False,
    "use_repository_button": False,
}
html_last_updated_fmt = None
# MathJax 3 from the npm package, copied next to the pages: no external script
mathjax_path = "mathjax/tex-chtml.js"
