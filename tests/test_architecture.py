"""The structure ARCHITECTURE.md promises: data flows one way, images are validated once, the
caller's module is never changed, and the demo predicts through the public segmenter."""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import skhyper
import skhyper._validation as validation
from skhyper import (
    HypercolumnKeypointLocator,
    HypercolumnSegmenter,
    HypercolumnTransformer,
    grid_pixels,
    sample_pixels,
)

PACKAGE = Path(skhyper.__file__).resolve().parent

# Layers of the package, bottom to top (ARCHITECTURE.md, "Layers"): a module may import from
# its own layer or below, never from above.
LAYERS = [
    ["skhyper.exceptions", "skhyper._validation", "skhyper._version", "skhyper._params",
     "skhyper._paths", "skhyper._param_validation"],
    ["skhyper.sampling", "skhyper.stacks", "skhyper.io", "skhyper.metrics"],
    ["skhyper.location", "skhyper.datasets"],
    ["skhyper.features"],
    ["skhyper.heads"],
    ["skhyper.keypoints"],
    ["skhyper.estimators"],
    ["skhyper.inspection", "skhyper.plotting", "skhyper.parallel", "skhyper.demo",
     "skhyper.export"],
    ["skhyper.__main__", "skhyper.cli", "skhyper"],
    ["skhyper.napari"],
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Package modules that ``name`` imports (module level and inside functions)."""
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        found.update(c for c in candidates if c in modules and c != name)
    return found


def _layer(module: str) -> int:
    best = None
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (rank, len(prefix))
    assert best is not None, f"{module} belongs to no layer: add it to LAYERS and ARCHITECTURE.md"
    return best[0]


def test_import_graph_flows_one_way_without_cycles():
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    upward = [
        (m, t) for m, targets in graph.items() for t in targets
        if _layer(t) > _layer(m) and not m.startswith(t + ".")
    ]
    assert not upward, f"modules importing from a layer above them: {upward}"
    # cycles (a package __init__ re-exporting its own submodules is not one)
    edges = {m: {t for t in ts if not t.startswith(m + ".") and not m.startswith(t + ".")}
             for m, ts in graph.items()}
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for t in edges[m]:
            if state.get(t) == 1:
                raise AssertionError(f"import cycle: {' -> '.join(stack + [m, t])}")
            if t not in state:
                visit(t, stack + [m])
        state[m] = 2

    for m in edges:
        if m not in state:
            visit(m, [])


def test_layers_cover_the_package_and_sizes_stay_small():
    """Function size, branching and argument counts are ruff's rules (below); a module may
    grow past 400 lines when that keeps one concept in one place, but not past 900."""
    for name, path in _modules().items():
        _layer(name)
        n_lines = len(path.read_text().splitlines())
        assert n_lines <= 900, f"{path} has {n_lines} lines: split it by concept"


# what the complexity rules allow, and the only functions exempt from the argument count
COMPLEXITY = {"mccabe": {"max-complexity": 12},
              "pylint": {"max-args": 10, "max-branches": 12, "max-statements": 50}}
MANY_ARGS_ALLOWED = {
    ("estimators/_transformer.py", "__init__"), ("estimators/_segmenter.py", "__init__"),
    ("estimators/_keypoints.py", "__init__"), ("features/_extract.py", "extract_hypercolumns"),
    ("features/_extract.py", "extract_dense"),
}


def test_ruff_enforces_the_complexity_rules():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    lint = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    rules = {"C901", "PLR0912", "PLR0913", "PLR0915"}
    assert rules <= set(lint["select"])
    for section, settings in COMPLEXITY.items():
        assert lint[section] == settings
    # exemptions are named, on their def lines, never whole files
    ignored = {code for codes in lint.get("per-file-ignores", {}).values() for code in codes}
    assert not ignored & rules, ignored & rules


def test_argument_count_exemptions_are_the_named_ones():
    exempt = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                line = path.read_text().splitlines()[node.lineno - 1]
                if "noqa" in line and "PLR0913" in line:
                    exempt.add((path.relative_to(PACKAGE).as_posix(), node.name))
    assert exempt <= MANY_ARGS_ALLOWED, exempt - MANY_ARGS_ALLOWED


# -- validated once ---------------------------------------------------------------------------


@pytest.fixture
def count_scans(monkeypatch):
    """Count the finiteness scans (the one full pass over a float image's pixels)."""
    calls = []
    original = validation._check_finite

    def counting(arr, where):
        calls.append(where)
        return original(arr, where)

    monkeypatch.setattr(validation, "_check_finite", counting)
    return calls


def _boxes_data(n=3, size=48):
    rng = np.random.default_rng(0)
    images = (rng.random((n, size, size, 3)) * 0.3).astype(np.float32)
    masks = np.zeros((n, size, size), dtype=np.int64)
    masks[:, 12:36, 10:30] = 1
    images[masks == 1] += 0.6
    return list(images), list(masks)


def _small_hc(**kw):
    return HypercolumnTransformer("resnet18", layers=["relu", "layer1"], weights=None,
                                  device="cpu", **kw)


@pytest.mark.parametrize("settings", [{}, {"scales": (1.0, 0.5)},
                                      {"channel_strategy": "per_channel"}])
def test_each_image_is_scanned_once_per_public_call(count_scans, settings):
    images, masks = _boxes_data()
    seg = HypercolumnSegmenter(_small_hc(**settings), n_pixels_per_image=60, random_state=0)
    seg.fit(images, masks)
    assert len(count_scans) == len(images)  # fit: one scan per image, not five
    count_scans.clear()
    seg.predict(images)
    assert len(count_scans) == len(images)
    count_scans.clear()
    seg.score(images, masks)
    assert len(count_scans) == len(images)
    count_scans.clear()
    X, _ = sample_pixels(images, masks, n_per_image=20, random_state=0)
    assert len(count_scans) == len(images)
    count_scans.clear()
    seg.hypercolumns_.transform(X)  # the PixelSet's images were checked when it was made
    assert count_scans == []


def test_keypoint_images_are_scanned_once_per_public_call(count_scans):
    images, _ = _boxes_data(n=4)
    keypoints = np.array([[[15.0, 20.0], [30.0, 28.0]]] * 4)
    loc = HypercolumnKeypointLocator(_small_hc(), grid_size=1, frame_size=32, random_state=0)
    loc.fit(images, keypoints)
    assert len(count_scans) == len(images)
    count_scans.clear()
    loc.predict(images)
    assert len(count_scans) == len(images)


# -- the caller's objects are not changed ------------------------------------------------------


def test_fitting_leaves_the_callers_module_unchanged():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True),
                        nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU(inplace=True))
    before = copy.deepcopy(net.state_dict())
    images, masks = _boxes_data(n=2, size=32)
    seg = HypercolumnSegmenter(HypercolumnTransformer(net, layers=["0", "2"], device="cpu"),
                               n_pixels_per_image=50, random_state=0).fit(images, masks)
    seg.predict(images)
    assert net[1].inplace and net[3].inplace  # not flipped
    assert all(len(m._forward_hooks) == 0 for m in net.modules())  # no hooks left on it
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_backbone_of_inplace_modules_captures_maps_before_they_are_overwritten():
    """A Backbone used as it is, around a model whose ReLUs act in place, returns the maps of
    the requested layers (copied), not the activations that overwrote them."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True))
    bb = skhyper.Backbone(net)
    x = torch.rand(1, 3, 8, 8) - 0.5
    with torch.inference_mode():
        got = bb(x, ["0"])["0"]
        expected = net[0]((x - bb.mean) / bb.std)
    assert (expected < 0).any()  # the ReLU would have zeroed these in place
    assert torch.equal(got, expected)
    assert net[1].inplace


# -- the demo predicts through the public segmenter ---------------------------------------------


def test_demo_predicts_with_channel_strategy_and_intensity_range(tmp_path):
    from skhyper.demo import run_demo

    hc = _small_hc(channel_strategy="per_channel", intensity_range=(0, 128))
    res = run_demo(output=tmp_path / "demo.png", hypercolumns=hc, n_per_image=100,
                   verbose=False)
    seg = res["segmenter"]
    assert seg.prediction_path_ == "folded"
    assert seg.hypercolumns_.engine_.intensity_range == (0.0, 128.0)
    from skhyper.datasets import load_horses

    test = load_horses(split="test")
    for img, pred in zip(test.images[:3], res["test_predictions"][:3]):
        assert np.array_equal(pred, seg.predict(img))  # the demo's maps are the segmenter's
        # the naive path: the classifier on the full hypercolumn of every pixel, read with the
        # same channel strategy and intensity range (the exact, bilinear upsampling)
        naive = seg.classifier_.predict(seg.hypercolumns_.transform(grid_pixels(img)))
        exact = seg.set_params(upsampling="bilinear").predict(img)
        seg.set_params(upsampling="edge_aware")
        assert np.array_equal(exact, naive.reshape(img.shape[:2]))
    # and the settings matter: without the intensity range the maps differ
    plain = _small_hc(channel_strategy="per_channel").fit_images(test.images[:1])
    a = plain.transform_dense(test.images[0])
    b = seg.hypercolumns_.transform_dense(test.images[0])
    assert not np.allclose(a, b)


# -- the tests themselves: shared fitted fixtures are copied, never changed ----------------------

TESTS = Path(__file__).resolve().parent
# calls that change an estimator (a shared fixture is copied first: copy.deepcopy keeps the
# fitted state, sklearn.base.clone does not)
_MUTATORS = {"set_params", "fit", "partial_fit", "fit_images", "fit_transform", "fit_predict"}


def _is_shared(decorator: ast.expr) -> bool:
    """``@pytest.fixture(scope="module")`` or ``scope="session"``."""
    return isinstance(decorator, ast.Call) and any(
        k.arg == "scope" and isinstance(k.value, ast.Constant)
        and k.value.value in ("module", "session")
        for k in decorator.keywords
    )


def _shared_fixtures(tree: ast.Module) -> set[str]:
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)
            and any(_is_shared(d) for d in node.decorator_list)}


def _root(node: ast.expr) -> str | None:
    """The name an attribute / item chain starts from (``seg`` in ``seg.a[0].b``)."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _mutations(test: ast.FunctionDef, shared: set[str]) -> list[str]:
    """Changes a test makes to a shared fixture or to a name bound to a part of one."""
    held = {a.arg for a in test.args.args} & shared
    found = []
    nodes = [n for n in ast.walk(test) if isinstance(n, (ast.Assign, ast.AugAssign, ast.Call))]
    for node in sorted(nodes, key=lambda n: (n.lineno, n.col_offset)):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in _MUTATORS \
                    and _root(func.value) in held:
                found.append(f"{node.lineno}: {ast.unparse(node)}")
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        found += [f"{node.lineno}: {ast.unparse(t)} = ..." for t in targets
                  if isinstance(t, (ast.Attribute, ast.Subscript)) and _root(t) in held]
        bound = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        if isinstance(node, ast.Assign) and _root(node.value) in held:
            held |= bound  # seg, images = fitted
        elif isinstance(node, ast.Assign):
            held -= bound  # rebound to something else (e.g. a copy)
    return found


def test_no_test_changes_a_shared_fixture():
    """Module- and session-scoped fixtures are shared by the tests that use them: a test that
    needs other parameters works on ``copy.deepcopy`` of the fitted fixture."""
    shared_everywhere = _shared_fixtures(ast.parse((TESTS / "conftest.py").read_text()))
    found = []
    for path in sorted(TESTS.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        shared = shared_everywhere | _shared_fixtures(tree)
        for test in ast.walk(tree):
            if isinstance(test, ast.FunctionDef) and test.name.startswith("test"):
                found += [f"{path.name}:{m}" for m in _mutations(test, shared)]
    assert not found, "tests change shared fixtures:\n" + "\n".join(found)


# fixtures that make a test slow (pyproject.toml, the "slow" marker): a Dask cluster, the whole
# shared data sets
SLOW_FIXTURES = {"test_parallel.py": "client", "test_horses.py": "horses",
                 "test_face_keypoints.py": "faces"}


def _marked_slow(test: ast.FunctionDef) -> bool:
    return any(ast.unparse(d) == "pytest.mark.slow" for d in test.decorator_list)


def test_tests_on_slow_fixtures_are_marked_slow():
    """`pytest -m "not slow"` leaves out every test that starts a cluster or loads a whole
    shared data set (the fast tier); the notebooks' execution is marked too."""
    unmarked = []
    for name, fixture in SLOW_FIXTURES.items():
        for test in ast.parse((TESTS / name).read_text()).body:
            if isinstance(test, ast.FunctionDef) and test.name.startswith("test") \
                    and fixture in [a.arg for a in test.args.args] and not _marked_slow(test):
                unmarked.append(f"{name}::{test.name}")
    notebooks = ast.parse((TESTS / "test_notebooks.py").read_text()).body
    assert [_marked_slow(t) for t in notebooks
            if isinstance(t, ast.FunctionDef) and t.name == "test_notebook_runs"] == [True]
    assert not unmarked, unmarked
