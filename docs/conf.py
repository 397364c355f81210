"""Sphinx configuration of the skhyper documentation (offline build: no intersphinx, no CDN).

Build: ``pip install -e ".[docs]" && sphinx-build -W --keep-going docs docs/_build/html``.
Generated at build time (not committed): ``api/`` from the public ``__all__`` lists,
``benchmarks/`` from ``benchmarks/results/*.json``, ``notebooks/`` copied from the top-level
notebooks with their committed outputs, and the gallery ``auto_examples/`` from ``examples/``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from sphinx.util.nodes import make_refnode

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(ROOT))  # the checkout's skhyper, also when it is not installed

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # shared CPU cores: no spinning threads

import api_pages  # noqa: E402
import bench_tables  # noqa: E402

import skhyper  # noqa: E402

project = "skhyper"
author = "skhyper developers"
copyright = "skhyper developers, BSD-3-Clause"  # noqa: A001
release = skhyper.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_nb",
    "sphinx_copybutton",
    "sphinxarg.ext",
]

# --- generated sources -----------------------------------------------------------------
API_ALIASES = api_pages.write_api_pages(DOCS / "api")
BENCH_PAGES = bench_tables.write_benchmark_pages(ROOT / "benchmarks" / "results",
                                                 DOCS / "benchmarks")

#: Notebook figures not published because they show photos of people. The face keypoint
#: notebook: every image output (its photos may not be redistributed; text outputs are kept).
NO_IMAGE_OUTPUTS = {"05_keypoints.ipynb"}
#: Cells (by the start of their code) whose figures include Weizmann horse photos with a person
#: beside the horse (test images horse158, horse172). If such a cell is not found the build
#: fails, so that a re-written notebook cannot publish them silently; pick other images in the
#: notebook and delete the entry.
PEOPLE_IN_FIGURES = {
    "02_layers.ipynb": ("picks = [0, 1, 2]",),
    "04_scribbles.ipynb": ("others = list(range(1, min(9, len(test.images))))",),
}


def without_images(outputs: list) -> list:
    """The outputs without images (text, tables and streams stay)."""
    return [o for o in outputs if not any(k.startswith("image/") for k in o.get("data", {}))]


def copy_notebooks(src: Path, dest: Path) -> None:
    """Copy the executed notebooks into the source tree, dropping images where required."""
    dest.mkdir(exist_ok=True)
    for path in sorted(src.glob("*.ipynb")):
        nb = json.loads(path.read_text())
        starts = PEOPLE_IN_FIGURES.get(path.name, ())
        found = set()
        for cell in nb["cells"]:
            source = "".join(cell.get("source", ""))
            hit = [s for s in starts if source.startswith(s)]
            found.update(hit)
            if path.name in NO_IMAGE_OUTPUTS or hit:
                cell["outputs"] = without_images(cell.get("outputs", []))
        missing = set(starts) - found
        if missing:
            raise RuntimeError(f"docs/conf.py: {path.name} has no cell starting with {missing}; "
                               "update PEOPLE_IN_FIGURES")
        text = json.dumps(nb, indent=1)
        target = dest / path.name
        if not target.exists() or target.read_text() != text:
            target.write_text(text)


copy_notebooks(ROOT / "notebooks", DOCS / "notebooks")

# --- sources ---------------------------------------------------------------------------
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "**.zip", "**.md5", "**.codeobj.json"]
templates_path = ["_templates"]
root_doc = "index"

# single backticks are code, as in scikit-learn; references to names are written as roles
default_role = "literal"

# --- API reference -----------------------------------------------------------------------
autosummary_generate = True
autodoc_typehints = "none"  # the numpydoc Parameters section states the types, in words
autodoc_default_options = {"member-order": "bysource"}
# a method without a docstring of its own (an nn.Module's forward) shows none, rather than
# its base class's (torch's docstrings use torch's own cross-references)
autodoc_inherit_docstrings = False
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()  # tests/test_docstrings.py validates instead

# Every reference must resolve (-W), except names of other projects: their objects.inv
# inventories cannot be downloaded in this offline build, so they stay unlinked.
nitpicky = True
nitpick_ignore: list[tuple[str, str]] = []
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|np|torch|torchvision|timm|sklearn|scipy|dask|distributed|zarr|onnx|"
               r"onnxruntime|matplotlib|PIL|joblib|skops|safetensors|bioimageio|pydantic|"
               r"argparse|pathlib|os|collections|typing|concurrent)(\..*)?"),
    # builtins and standard library types named in signatures and docstrings
    (r"py:.*", r"(int|float|str|bool|bytes|dict|list|tuple|set|object|callable|None|Path|"
               r"Iterator|Iterable|Sequence|Mapping|Any|Callable)"),
]


def skip_member(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated ``set_*_request`` methods (metadata routing)."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


_LITERAL = re.compile(r"(`+[^`]*`+)")
_TRAILING_UNDERSCORE = re.compile(r"(?<![\\\w])([A-Za-z]\w*[A-Za-z0-9])_(?=[\s,.;:)\]]|$)")


def escape_fitted_names(app, what, name, obj, options, lines):
    """Render fitted-attribute names such as n_features_out_ written outside backticks.

    In reStructuredText a word ending in ``_`` is a link to a target of that name, so a type
    line such as ``ndarray of shape (n_pixels, n_features_out_)`` would be an unknown target.
    The underscore is escaped outside literals; the docstring text itself is unchanged."""
    for i, line in enumerate(lines):
        parts = _LITERAL.split(line)
        for j in range(0, len(parts), 2):
            parts[j] = _TRAILING_UNDERSCORE.sub(r"\1\\_", parts[j])
        lines[i] = "".join(parts)


def resolve_public_names(app, env, node, contnode):
    """Resolve references the Python domain misses, to objects that exist:

    - through an alias: ``skhyper.HypercolumnSegmenter.fit`` is documented as
      ``skhyper.estimators.HypercolumnSegmenter.fit`` (one page per object);
    - a dotted name relative to nothing, when exactly one documented object's full name ends
      with it (``HypercolumnSegmenter.fit`` written in another module), as Sphinx's own
      ``.name`` syntax does. Names that match nothing still fail the build.
    """
    if node.get("refdomain") != "py":
        return None
    domain = env.domains["py"]
    target, reftype = node["reftarget"], node["reftype"]
    for alias, home in API_ALIASES.items():
        if target == alias or target.startswith(alias + "."):
            target = home + target[len(alias):]
            break
    objtypes = domain.objtypes_for_role(reftype) or []
    matches = {name: entry for name, entry in domain.objects.items()
               if (name == target or name.endswith("." + target))
               and entry.objtype in objtypes and name not in API_ALIASES}
    if len(matches) != 1:
        return None
    name, entry = next(iter(matches.items()))
    return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, name)


def _protect_literal_periods(extract):
    """Wrap autosummary's ``extract_summary`` so that it does not end a summary at a period
    inside a literal (``0 .. n-1``): Sphinx 9 checks its sentence split against the whole
    stanza instead of the candidate summary, and the cut literal breaks the table's markup."""
    mark = "\u2024"  # ONE DOT LEADER: not a period to the sentence splitter

    def extract_summary(doc, settings):
        protected = [_LITERAL.sub(lambda m: m.group(0).replace(". ", mark + " "), line)
                     for line in doc]
        return extract(protected, settings).replace(mark, ".")

    return extract_summary


def setup(app):
    import sphinx.ext.autosummary as autosummary

    autosummary.extract_summary = _protect_literal_periods(autosummary.extract_summary)
    app.connect("autodoc-skip-member", skip_member)
    app.connect("missing-reference", resolve_public_names)
    app.connect("autodoc-process-docstring", escape_fitted_names, priority=600)


# References in skhyper's own docstrings to names that do not exist (private helpers, a
# removed module, an undocumented attribute). Each is a docstring to fix (listed in the docs
# report for the coordinator); delete its line here when it is fixed, so that -W guards it.

# --- math: MathJax 3 served from _static (Apache-2.0, LICENSE beside it), no CDN ----------
mathjax_path = "mathjax/tex-chtml.js"

# --- notebooks: rendered with their committed outputs, never executed ---------------------
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# --- gallery: examples/ executed at build time on the bundled horse sample ----------------
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "reference_url": {"skhyper": None},
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "abort_on_example_error": True,
    "show_memory": False,
    "min_reported_time": 1,
}

# --- HTML ---------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"skhyper {release}"
html_static_path = ["_static"]
html_css_files = ["skhyper.css"]
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "header_links_before_dropdown": 7,
    "footer_start": ["copyright"],
    # benchmark tables are wide: their pages give the outline's column to the article
    "secondary_sidebar_items": {"**": ["page-toc"],
                                **{f"benchmarks/{page}": [] for page in BENCH_PAGES}},
    "footer_end": ["sphinx-version"],
}
html_show_sourcelink = False
toc_object_entries_show_parents = "hide"  # "fit()" in the page outline, not "Class.fit()"
html_last_updated_fmt = None
