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
     "skhyper._paths"],
    ["skhyper.sampling", "skhyper.stacks", "skhyper.io", "skhyper.metrics"],
    ["skhyper.location", "skhyper.datasets"],
    ["skhyper.features"],
    ["skhyper.heads"],
    ["skhyper.keypoints"],
    ["skhyper.estimators"],
    ["skhyper.inspection", "skhyper.plotting", "skhyper.parallel", "skhyper.demo",
     "skhyper.export"],
    ["skhyper.__main__", "skhyper.cli", "skhyper"],
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
    for name, path in _modules().items():
        _layer(name)
        n_lines = len(path.read_text().splitlines())
        assert n_lines <= 500, f"{path} has {n_lines} lines: split it (guideline ~400)"


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
