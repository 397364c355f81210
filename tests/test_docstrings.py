"""numpydoc validation of the public API's docstrings (as scikit-learn's test_docstrings.py).

The public API is what the documentation publishes: every class and function named in the
``__all__`` of ``skhyper`` and of its public subpackages (the list the API reference is
generated from, ``docs/_ext/api_pages.py``), each validated once where it is documented, and the
public methods those classes define.

Checks, and why these:

- GL08 (a docstring exists), SS01 (it starts with a summary line);
- GL06, GL07 (only numpydoc's sections, in numpydoc's order: the reference renders them);
- PR01, PR02, PR03 (every parameter of the signature is documented, no unknown ones, in
  signature order) -- what keeps a docstring from drifting from the code;
- PR04, PR07, PR10 (each parameter has a type and a description, ``name : type`` syntax);
- RT01, RT03, YD01 (a function that returns or yields says what, with a description).

Not checked, on purpose: SA01 / EX01 / ES01 (a See Also, Examples and extended summary on every
method would be noise; the estimators and main functions carry them), SS05 / SS06 / GL02 /
RT02 / PR05 / PR06 / PR08 / SA03 (wording and layout style: they do not change what a reader
learns). Properties are not validated (the class's ``Attributes`` section documents them), nor
torch's ``extra_repr`` hook. A second test checks that docstrings name only public objects that
exist.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
from pathlib import Path

import numpydoc.validate as numpydoc_validate
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKS = {"GL08", "SS01", "GL06", "GL07", "PR01", "PR02", "PR03", "PR04", "PR07", "PR10",
          "RT01", "RT03", "YD01"}
SKIPPED_METHODS = {"extra_repr"}

# Docstrings allowed to fail the checks: none. An entry here would be a strict expected failure
# (a fixed docstring that stays listed fails), so the list can only shrink.
KNOWN_FAILURES: frozenset[str] = frozenset()


def load_api_pages():
    spec = importlib.util.spec_from_file_location(
        "api_pages", ROOT / "docs" / "_ext" / "api_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


api_pages = load_api_pages()


def public_modules() -> dict[str, list[str]]:
    modules = {m: api_pages.public_names(m) for m in api_pages.PUBLIC_MODULES}
    return {m: names for m, names in modules.items() if names is not None}


def public_objects() -> list[str]:
    """Qualified names of the public classes, functions and methods, each once."""
    modules = public_modules()
    homes = api_pages.home_modules(modules)
    names = []
    for module_name, public in modules.items():
        module = importlib.import_module(module_name)
        for name in public:
            obj = getattr(module, name)
            if api_pages.directive_of(obj) is None or homes.get(id(obj)) != module_name:
                continue
            names.append(f"{module_name}.{name}")
            if inspect.isclass(obj):
                names += [f"{module_name}.{name}.{attr}" for attr, value in vars(obj).items()
                          if is_public_method(attr, value)]
    return names


def is_public_method(attr: str, value) -> bool:
    if attr.startswith("_") and attr != "__call__":
        return False
    if attr in SKIPPED_METHODS or (attr.startswith("set_") and attr.endswith("_request")):
        return False  # torch's repr hook; scikit-learn's generated metadata-routing setters
    return inspect.isfunction(value) or isinstance(value, (classmethod, staticmethod))


PUBLIC_OBJECTS = public_objects()


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.xfail(strict=True, reason="docstring to fix (issue 30)"))
    if name in KNOWN_FAILURES else name
    for name in PUBLIC_OBJECTS])
def test_docstring(name):
    result = numpydoc_validate.validate(name)
    errors = [f"{code}: {message}" for code, message in result["errors"] if code in CHECKS]
    assert not errors, f"{name}:\n" + "\n".join(errors)


def test_known_failures_are_public():
    """The expected-failure list names only objects that are tested (no stale entries)."""
    assert not KNOWN_FAILURES - set(PUBLIC_OBJECTS)


SKHYPER_NAME = re.compile(r"\bskhyper(?:\.[A-Za-z_]\w*)+")


def resolves(dotted: str) -> bool:
    """Whether ``skhyper.a.b`` imports or is an attribute path from an importable module."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            if not hasattr(obj, part):
                return False
            obj = getattr(obj, part)
        return True
    return False


# Named references that are wrong today (issue 30), expected until their docstrings are fixed.
KNOWN_BAD_REFERENCES = frozenset({
})


def bad_references() -> set[str]:
    """``where: name`` for each ``skhyper.x.y`` in a public docstring that is missing or
    private."""
    docs = {name: importlib.import_module(name).__doc__ or "" for name in public_modules()}
    for qualified in PUBLIC_OBJECTS:
        docs[qualified] = inspect.getdoc(numpydoc_validate.Validator._load_obj(qualified)) or ""
    wrong = set()
    for where, doc in docs.items():
        for ref in SKHYPER_NAME.findall(doc):
            ref = ref.rstrip(".")
            private = any(p.startswith("_") and not p.startswith("__") for p in ref.split("."))
            if private or not resolves(ref):
                wrong.add(f"{where}: {ref}")
    return wrong


def test_docstrings_name_existing_public_objects():
    """A ``skhyper.x.y`` named in a public docstring exists and is not private."""
    wrong = bad_references()
    assert not wrong - KNOWN_BAD_REFERENCES, "docstrings naming missing or private objects:\n" + (
        "\n".join(sorted(wrong - KNOWN_BAD_REFERENCES)))
    fixed = KNOWN_BAD_REFERENCES - wrong
    assert not fixed, f"fixed, remove from KNOWN_BAD_REFERENCES: {sorted(fixed)}"
