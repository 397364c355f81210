"""Write the API reference's pages from the public ``__all__`` lists, at build time.

The reference must follow the curated public names without a hand-typed list: every module
below that exists and defines ``__all__`` gets one page with an autosummary table of its names,
and autosummary generates one page per name. Modules that do not exist (yet) are skipped.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

#: Modules a user imports from, in the order the reference shows them.
PUBLIC_MODULES = (
    "skhyper",
    "skhyper.estimators",
    "skhyper.features",
    "skhyper.heads",
    "skhyper.sampling",
    "skhyper.location",
    "skhyper.keypoints",
    "skhyper.stacks",
    "skhyper.metrics",
    "skhyper.inspection",
    "skhyper.plotting",
    "skhyper.parallel",
    "skhyper.export",
    "skhyper.io",
    "skhyper.datasets",
    "skhyper.exceptions",
    "skhyper.finetune",
    "skhyper.napari",
)


def public_names(module_name: str) -> list[str] | None:
    """The module's ``__all__`` (as written), or None when it has none or is absent."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    names = getattr(module, "__all__", None)
    return None if names is None else list(names)


def directive_of(obj: object) -> str | None:
    """The Python-domain directive of a documented class or function, None for data."""
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return "function"
    return None


def home_modules(modules: dict[str, list[str]]) -> dict[int, str]:
    """Where each public class or function is documented, by ``id`` of the object.

    An object exported by several public modules (``skhyper.HypercolumnSegmenter`` is
    ``skhyper.estimators.HypercolumnSegmenter``) gets one page, under the public module that
    defines it (the longest public prefix of its ``__module__``, so that the short names its
    docstring refers to resolve there), else under the first module that lists it. The other
    modules list it as an alias of that page.
    """
    homes: dict[int, str] = {}
    for module_name, names in modules.items():
        module = importlib.import_module(module_name)
        for name in names:
            obj = getattr(module, name)
            if directive_of(obj) is None:
                continue
            defining = getattr(obj, "__module__", "") or ""
            owners = [m for m, ns in modules.items() if name in ns
                      and getattr(importlib.import_module(m), name) is obj
                      and (defining == m or defining.startswith(m + "."))]
            best = max(owners, key=len) if owners else module_name
            homes.setdefault(id(obj), best)
    return homes


def module_page(module_name: str, names: list[str], homes: dict[int, str]) -> str:
    """reStructuredText of one module's page: its docstring, a table of the names it
    documents, and the names it re-exports from another page."""
    module = importlib.import_module(module_name)
    own, aliases = [], []
    for name in names:
        obj = getattr(module, name)
        home = homes.get(id(obj), module_name)
        (own if home == module_name else aliases).append((name, obj, home))
    title = f"``{module_name}``"
    lines = [title, "=" * len(title), "", f".. automodule:: {module_name}", "   :no-members:", "",
             f".. currentmodule:: {module_name}", ""]
    if own:
        lines += [".. autosummary::", "   :toctree: generated/", "   :nosignatures:", ""]
        lines += [f"   {name}" for name, _, _ in own]
        lines.append("")
    if aliases:
        lines += ["Also importable from here", "-------------------------", "",
                  "These names are documented where they are defined:", ""]
        for name, obj, home in aliases:
            lines += [f".. py:{directive_of(obj)}:: {name}", "   :no-index-entry:", "",
                      f"   Documented as :py:obj:`{home}.{name}`.", ""]
    return "\n".join(lines) + "\n"


def index_page(modules: list[str]) -> str:
    """The reference's index: one entry per public module."""
    lines = ["API reference", "=============", "",
             "Generated from the ``__all__`` of ``skhyper`` and of each public subpackage: a",
             "name is listed here exactly when it is public. A class or function exported by",
             "several modules is documented once, under the module that defines it, and listed",
             "as an alias by the others.", "",
             ".. toctree::", "   :maxdepth: 1", ""]
    lines += [f"   {name}" for name in modules]
    return "\n".join(lines) + "\n"


def write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` unless the file already holds it (keeps Sphinx's incremental builds)."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def write_api_pages(out_dir: Path) -> dict[str, str]:
    """Write ``index.rst`` and one page per public module into ``out_dir``.

    Returns the aliases: ``{"skhyper.HypercolumnSegmenter":
    "skhyper.estimators.HypercolumnSegmenter", ...}`` for names documented on another page.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    modules = {}
    for module_name in PUBLIC_MODULES:
        names = public_names(module_name)
        if names is not None:
            modules[module_name] = names
    homes = home_modules(modules)
    aliases = {}
    pages = set()
    for module_name, names in modules.items():
        write_if_changed(out_dir / f"{module_name}.rst", module_page(module_name, names, homes))
        module = importlib.import_module(module_name)
        for n in names:
            home = homes.get(id(getattr(module, n)), module_name)
            if home == module_name:
                pages.add(f"{module_name}.{n}")
            else:
                aliases[f"{module_name}.{n}"] = f"{home}.{n}"
    for stale in (out_dir / "generated").glob("*.rst"):
        if stale.stem not in pages:  # a name that left __all__ or moved: no orphan page
            stale.unlink()
    write_if_changed(out_dir / "index.rst", index_page(modules))
    for stale in out_dir.glob("skhyper*.rst"):
        if stale.stem not in modules:
            stale.unlink()
    return aliases
