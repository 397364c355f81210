"""skhyper.plotting: what each plot draws, hypercolumn colours, and the input errors."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import sys  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from skhyper import GridLocationClassifier  # noqa: E402
from skhyper.plotting import (  # noqa: E402
    hypercolumns_to_rgb,
    plot_grid_cells,
    plot_layer_scores,
    plot_overlay,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ---------------------------------------------------------------------------------------------
# plot_overlay


H, W = 12, 16


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)


def _labels() -> np.ndarray:
    labels = np.zeros((H, W), dtype=np.int64)
    labels[2:8, 3:9] = 1
    labels[8:11, 10:15] = 2
    return labels


def test_overlay_labels_draws_image_coloured_labels_and_contours():
    labels = _labels()
    ax = plot_overlay(_image(), labels, alpha=0.4, title="pred")
    assert len(ax.images) == 2
    np.testing.assert_allclose(ax.images[0].get_array(), _image() / 255.0, atol=1e-6)
    over = np.asarray(ax.images[1].get_array())
    assert over.shape == (H, W, 4)
    # background transparent, other labels at the requested opacity
    np.testing.assert_allclose(over[..., 3], np.where(labels == 0, 0.0, 0.4), atol=1e-6)
    c1, c2 = over[labels == 1][:, :3], over[labels == 2][:, :3]
    assert np.all(c1 == c1[0]) and np.all(c2 == c2[0])
    assert not np.allclose(c1[0], c2[0])  # one colour per label
    np.testing.assert_allclose(c1[0], to_rgba("tab:blue")[:3], atol=1e-6)  # tab10 colour 0
    # the image and overlay share pixel-edge coordinates
    assert list(ax.images[0].get_extent()) == list(ax.images[1].get_extent()) == [0, W, H, 0]
    # contour between the 3 labels
    assert len(ax.collections) == 1
    np.testing.assert_allclose(ax.collections[0].levels, [0.5, 1.5])
    assert not ax.axison
    assert ax.get_title() == "pred"


def test_overlay_without_contour_and_on_given_axes():
    fig, ax = plt.subplots()
    out = plot_overlay(_image(), _labels(), ax, contour=False)
    assert out is ax
    assert len(ax.images) == 2 and len(ax.collections) == 0
    assert len(fig.axes) == 1  # no colorbar for labels


def test_overlay_bool_labels_and_grayscale_float_image():
    img = np.linspace(0, 1, H * W).reshape(H, W)
    ax = plot_overlay(img, _labels() > 0)
    assert ax.images[0].get_cmap().name == "gray"
    over = np.asarray(ax.images[1].get_array())
    assert np.count_nonzero(over[..., 3]) == np.count_nonzero(_labels())


def test_overlay_class_colors_dict_and_sequence():
    labels = _labels()
    ax = plot_overlay(_image(), labels, class_colors={0: "yellow", 1: None, 2: "red"}, alpha=1.0)
    over = np.asarray(ax.images[1].get_array())
    np.testing.assert_allclose(over[labels == 0][0], to_rgba("yellow"))
    assert np.all(over[labels == 1][:, 3] == 0)
    np.testing.assert_allclose(over[labels == 2][0], to_rgba("red"))
    ax = plot_overlay(_image(), labels, class_colors=[None, "green", "blue"], alpha=1.0)
    over = np.asarray(ax.images[1].get_array())
    np.testing.assert_allclose(over[labels == 1][0], to_rgba("green"))
    np.testing.assert_allclose(over[labels == 2][0], to_rgba("blue"))


def test_overlay_probability_heat_map_colorbar_and_half_contour():
    prob = np.tile(np.linspace(0, 1, W), (H, 1))
    fig, ax = plt.subplots()
    plot_overlay(_image(), prob, ax, alpha=0.3)
    assert len(ax.images) == 2
    heat = ax.images[1]
    np.testing.assert_allclose(heat.get_array(), prob)
    assert heat.get_cmap().name == "magma" and heat.get_alpha() == 0.3
    assert heat.get_clim() == (0.0, 1.0)
    assert len(fig.axes) == 2  # the colorbar
    assert len(ax.collections) == 1
    np.testing.assert_allclose(ax.collections[0].levels, [0.5])


def test_overlay_two_channel_proba_shows_foreground_channel():
    p1 = np.tile(np.linspace(0, 1, W), (H, 1))
    proba = np.stack([1 - p1, p1], axis=-1)
    ax = plot_overlay(_image(), proba)
    np.testing.assert_allclose(ax.images[1].get_array(), p1)


def test_overlay_multiclass_proba_draws_argmax_labels():
    labels = _labels()
    proba = np.eye(3)[labels] * 0.8 + 0.2 / 3
    ax = plot_overlay(_image(), proba, alpha=0.5)
    over = np.asarray(ax.images[1].get_array())
    assert over.shape == (H, W, 4)
    np.testing.assert_allclose(over[..., 3], np.where(labels == 0, 0.0, 0.5), atol=1e-6)
    np.testing.assert_allclose(ax.collections[0].levels, [0.5, 1.5])


def test_overlay_uniform_probability_draws_no_contour():
    ax = plot_overlay(_image(), np.full((H, W), 0.2))
    assert len(ax.collections) == 0


def test_overlay_errors():
    img = _image()
    with pytest.raises(ValueError, match=r"labels_or_proba.*\(10, 16\).*\(12, 16, 3\)"):
        plot_overlay(img, np.zeros((10, 16), dtype=int))
    with pytest.raises(ValueError, match=r"'image' parameter.*\[0, 1\]"):
        plot_overlay(img.astype(float), _labels())
    with pytest.raises(TypeError, match="'image' parameter"):
        plot_overlay(img.astype(np.int32), _labels())
    with pytest.raises(ValueError, match=r"labels_or_proba.*probabilities in \[0, 1\]"):
        plot_overlay(img, np.full((H, W), 3.5))
    with pytest.raises(ValueError, match="labels_or_proba.*2-D"):
        plot_overlay(img, np.zeros((H, W, 2), dtype=int))
    with pytest.raises(ValueError, match="'alpha' parameter"):
        plot_overlay(img, _labels(), alpha=1.5)
    with pytest.raises(ValueError, match="class_colors.*label 2"):
        plot_overlay(img, _labels(), class_colors={0: None, 1: "red"})
    with pytest.raises(ValueError, match="class_colors.*2 colours"):
        plot_overlay(img, _labels(), class_colors=[None, "red"])
    with pytest.raises(TypeError, match="'ax' parameter"):
        plot_overlay(img, _labels(), ax="left")


def test_missing_matplotlib_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install 'skhyper\[plot\]'"):
        plot_overlay(_image(), _labels())


# ---------------------------------------------------------------------------------------------
# hypercolumns_to_rgb


def _maps() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.normal(size=(8, 9, 6)).astype(np.float32), rng.normal(size=(5, 7, 6))]


def test_rgb_shape_dtype_range_single_and_list():
    a, b = _maps()
    rgb = hypercolumns_to_rgb(a)
    assert isinstance(rgb, np.ndarray) and rgb.shape == (8, 9, 3) and rgb.dtype == np.float32
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    out = hypercolumns_to_rgb([a, b])
    assert isinstance(out, list) and [o.shape for o in out] == [(8, 9, 3), (5, 7, 3)]
    assert all(o.dtype == np.float32 and 0 <= o.min() and o.max() <= 1 for o in out)


def test_rgb_is_pca_scaled_by_1st_and_99th_percentiles():
    a, b = _maps()
    X = np.concatenate([a.reshape(-1, 6), b.reshape(-1, 6)])
    rgb, pca = hypercolumns_to_rgb([a, b], return_pca=True)
    assert isinstance(pca, PCA) and pca.n_components_ == 3 and pca.n_samples_ == len(X)
    proj = PCA(3, random_state=0).fit(X).transform(X)
    lo, hi = np.percentile(proj, [1, 99], axis=0)
    np.testing.assert_allclose(pca.rgb_limits_, [lo, hi], rtol=1e-4, atol=1e-4)
    expected = np.clip((proj - lo) / (hi - lo), 0, 1)
    got = np.concatenate([rgb[0].reshape(-1, 3), rgb[1].reshape(-1, 3)])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # about 1% of the pixels saturate at each end of each channel
    assert np.all(np.abs((got <= 0).mean(0) - 0.01) < 0.01)
    assert np.all(np.abs((got >= 1).mean(0) - 0.01) < 0.01)


def test_rgb_same_vector_same_colour_across_images():
    a, b = _maps()
    b = b.astype(np.float32)
    b[2, 3] = a[0, 0]
    rgb_a, rgb_b = hypercolumns_to_rgb([a, b])
    np.testing.assert_array_equal(rgb_a[0, 0], rgb_b[2, 3])
    assert not np.array_equal(rgb_a[0, 0], rgb_a[0, 1])


def test_rgb_returned_pca_reproduces_colours():
    a, b = _maps()
    rgb, pca = hypercolumns_to_rgb([a, b], return_pca=True, max_fit_pixels=50)
    assert pca.n_samples_ == 50  # fitted on a subsample
    again = hypercolumns_to_rgb([a, b], pca=pca)
    for r, g in zip(rgb, again):
        np.testing.assert_array_equal(r, g)
    np.testing.assert_array_equal(hypercolumns_to_rgb(b, pca=pca), rgb[1])
    # same seed, same subsample, same colours; another seed, another subsample
    np.testing.assert_array_equal(hypercolumns_to_rgb([a, b], max_fit_pixels=50)[0], rgb[0])
    other = hypercolumns_to_rgb([a, b], max_fit_pixels=50, random_state=5)[0]
    assert not np.array_equal(other, rgb[0])


def test_rgb_with_user_pca_computes_limits():
    a, _ = _maps()
    pca = PCA(3).fit(a.reshape(-1, 6))
    rgb = hypercolumns_to_rgb(a, pca=pca)
    assert not hasattr(pca, "rgb_limits_")  # the user's object is left alone
    assert rgb.shape == (8, 9, 3) and np.isclose(rgb.min(), 0) and np.isclose(rgb.max(), 1)


def test_rgb_errors():
    a, _ = _maps()
    with pytest.raises(ValueError, match="hypercolumns.*2 features.*at least 3"):
        hypercolumns_to_rgb(a[..., :2])
    with pytest.raises(ValueError, match=r"hypercolumns\[1\].*5 features"):
        hypercolumns_to_rgb([a, a[..., :5]])
    with pytest.raises(ValueError, match="hypercolumns.*at least one"):
        hypercolumns_to_rgb([])
    with pytest.raises(ValueError, match="hypercolumns.*height, width, n_features"):
        hypercolumns_to_rgb(a[0])
    with pytest.raises(ValueError, match="max_fit_pixels"):
        hypercolumns_to_rgb(a, max_fit_pixels=1)
    with pytest.raises(ValueError, match="'pca' parameter.*4 features"):
        hypercolumns_to_rgb(a, pca=PCA(3).fit(a[..., :4].reshape(-1, 4)))
    with pytest.raises(NotFittedError):
        hypercolumns_to_rgb(a, pca=PCA(3))
    with pytest.raises(TypeError, match="'pca' parameter"):
        hypercolumns_to_rgb(a, pca="pca")


# ---------------------------------------------------------------------------------------------
# plot_layer_scores


RESULTS = {
    "param_hypercolumns__layers": [["blocks.6"], ["blocks.4", "blocks.6"], None],
    "mean_test_score": [0.70, 0.82, 0.78],
    "std_test_score": [0.02, 0.03, 0.01],
}


def _bars(ax):
    (container,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    widths = [p.get_width() for p in container.patches]
    colours = [p.get_facecolor() for p in container.patches]
    segments = container.errorbar.lines[2][0].get_segments()
    return widths, colours, segments


def test_layer_scores_sorted_bars_errors_labels_and_best():
    ax = plot_layer_scores(RESULTS)
    widths, colours, segments = _bars(ax)
    assert len(widths) == 3
    np.testing.assert_allclose(widths, [0.82, 0.78, 0.70])  # best first (on top)
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "blocks.4+blocks.6", "all", "blocks.6"
    ]
    assert ax.yaxis_inverted()  # first bar at the top
    half = [(s[1, 0] - s[0, 0]) / 2 for s in segments]
    np.testing.assert_allclose(half, [0.03, 0.01, 0.02])
    np.testing.assert_allclose([(s[0, 0] + s[1, 0]) / 2 for s in segments], widths)
    assert colours[0] != colours[1] and colours[1] == colours[2]  # best highlighted
    assert ax.get_xlabel() == "mean test score (± std over CV folds)"
    assert ax.get_ylabel() == "hypercolumns__layers"
    assert [t.get_text() for t in ax.texts] == ["0.820", "0.780", "0.700"]


def test_layer_scores_unsorted_keeps_candidate_order():
    ax = plot_layer_scores(RESULTS, sort=False)
    widths, colours, _ = _bars(ax)
    np.testing.assert_allclose(widths, RESULTS["mean_test_score"])
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "blocks.6", "blocks.4+blocks.6", "all"
    ]
    assert colours[1] != colours[0] and colours[0] == colours[2]


def test_layer_scores_from_fitted_grid_search():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4))
    y = (X[:, 0] + 0.5 * rng.normal(size=120) > 0).astype(int)
    search = GridSearchCV(LogisticRegression(), {"C": [0.001, 0.1, 10.0]}, cv=3).fit(X, y)
    fig, ax = plt.subplots()
    assert plot_layer_scores(search, ax, param="C") is ax
    widths, colours, segments = _bars(ax)
    res = search.cv_results_
    order = np.argsort(-res["mean_test_score"], kind="stable")
    np.testing.assert_allclose(widths, res["mean_test_score"][order])
    np.testing.assert_allclose([(s[1, 0] - s[0, 0]) / 2 for s in segments],
                               res["std_test_score"][order])
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        ["0.001", "0.1", "10"][i] for i in order
    ]
    best = list(order).index(search.best_index_)
    assert sum(c == colours[best] for c in colours) == 1


def test_layer_scores_appends_other_varying_params():
    results = {
        "param_hypercolumns__layers": [None, None, [4]],
        "param_classifier__C": [0.1, 1.0, 0.1],
        "param_hypercolumns__device": ["cpu", "cpu", "cpu"],  # constant: not shown
        "mean_test_score": [0.5, 0.6, 0.7],
        "std_test_score": [0.0, 0.0, 0.0],
    }
    ax = plot_layer_scores(results, sort=False)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["all (C=0.1)", "all (C=1)", "4 (C=0.1)"]


def test_layer_scores_errors():
    with pytest.raises(ValueError, match=r"param_hypercolumns__layers.*\['param_C'\]"):
        plot_layer_scores({"param_C": [1], "mean_test_score": [0.5], "std_test_score": [0.1]})
    with pytest.raises(ValueError, match="mean_test_score.*mean_test_iou"):
        plot_layer_scores({"param_hypercolumns__layers": [None], "mean_test_iou": [0.5]})
    with pytest.raises(ValueError, match="as many"):
        plot_layer_scores({**RESULTS, "std_test_score": [0.1]})
    with pytest.raises(NotFittedError):
        plot_layer_scores(GridSearchCV(LogisticRegression(), {"C": [1.0]}))
    with pytest.raises(TypeError, match="search_or_results"):
        plot_layer_scores([0.5, 0.6])


# ---------------------------------------------------------------------------------------------
# plot_grid_cells


@pytest.fixture(scope="module")
def grid():
    rng = np.random.default_rng(0)
    X = np.hstack([rng.normal(size=(600, 3)), rng.random((600, 2))])
    y = (X[:, 0] > 0).astype(int)
    return GridLocationClassifier(LogisticRegression(), grid_size=3).fit(X, y)


@pytest.fixture(scope="module")
def left_grid():
    """Pixels only in the left half (u < 0.5): the right column of cells falls back."""
    rng = np.random.default_rng(0)
    X = np.hstack([rng.normal(size=(600, 3)), rng.random((600, 2)) * [0.5, 1.0]])
    y = (X[:, 0] > 0).astype(int)
    return GridLocationClassifier(LogisticRegression(), grid_size=3, assignment="cell").fit(X, y)


def _cell_texts(ax, frame, K):
    """{(row, col): text} from the positions of the annotations."""
    x0, y0, x1, y1 = frame
    out = {}
    for t in ax.texts:
        x, y = t.get_position()
        j, i = (x - x0) / (x1 - x0) * K - 0.5, (y - y0) / (y1 - y0) * K - 0.5
        assert np.isclose(i, round(i)) and np.isclose(j, round(j))  # at a cell centre
        out[round(i), round(j)] = t.get_text()
    return out


def test_grid_cells_unit_square_counts(grid):
    fig, ax = plt.subplots()
    plot_grid_cells(grid, ax)
    K = grid.grid_size
    assert len(ax.images) == 1
    cells = ax.images[0]
    assert list(cells.get_extent()) == [0, 1, 1, 0]
    np.testing.assert_array_equal(cells.get_array(), grid.n_samples_cell_)
    assert len(ax.texts) == K * K
    texts = _cell_texts(ax, (0, 0, 1, 1), K)
    assert {k: int(v) for k, v in texts.items()} == {
        (i, j): int(grid.n_samples_cell_[i, j]) for i in range(K) for j in range(K)
    }
    assert len(ax.lines) == 2 * (K + 1)  # cell borders
    assert len(fig.axes) == 2  # colorbar
    assert ax.get_xlabel() == "u" and ax.get_ylabel() == "v"
    assert len(ax.patches) == grid.fallback_.sum() == 0


def test_grid_cells_on_image_with_box(grid):
    img = np.zeros((60, 80, 3), dtype=np.uint8)
    box = (10, 5, 70, 50)
    ax = plot_grid_cells(grid, image=img, box=box)
    assert len(ax.images) == 2
    assert list(ax.images[0].get_extent()) == [0, 80, 60, 0]  # the image
    assert list(ax.images[1].get_extent()) == [10, 70, 50, 5]  # the cells: the box
    assert ax.images[1].get_alpha() == 0.5
    assert ax.get_xlim() == (0, 80) and ax.get_ylim() == (60, 0)  # the whole image visible
    texts = _cell_texts(ax, box, grid.grid_size)
    assert len(texts) == grid.grid_size**2


def test_grid_cells_image_without_box_spans_image(grid):
    ax = plot_grid_cells(grid, image=np.ones((30, 40)))
    assert list(ax.images[1].get_extent()) == [0, 40, 30, 0]


def test_grid_cells_marks_fallback_cells_where_they_are(left_grid):
    K = left_grid.grid_size
    np.testing.assert_array_equal(left_grid.fallback_[:, 2], True)  # no pixel with u > 2/3
    ax = plot_grid_cells(left_grid, box=(0, 0, 90, 90))
    hatched = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_hatch()]
    assert len(hatched) == left_grid.fallback_.sum() == 3
    assert sorted((round(p.get_y() / 30), round(p.get_x() / 30)) for p in hatched) == sorted(
        zip(*np.nonzero(left_grid.fallback_))
    )
    assert all(p.get_x() == 60 for p in hatched)  # the right column: u in [2/3, 1]
    assert ax.get_legend() is not None
    texts = _cell_texts(ax, (0, 0, 90, 90), K)
    assert [texts[i, 2] for i in range(K)] == ["0", "0", "0"]

    ax = plot_grid_cells(left_grid, values="fallback")
    np.testing.assert_array_equal(ax.images[0].get_array(), left_grid.fallback_.astype(int))
    assert sorted(t.get_text() for t in ax.texts) == ["0"] * 6 + ["1"] * 3


def test_grid_cells_user_values_and_pipeline(grid):
    scores = np.arange(9, dtype=float).reshape(3, 3) / 7
    pipe = make_pipeline(StandardScaler(), grid)  # plot_grid_cells reads the last step only
    ax = plot_grid_cells(pipe, values=scores, cmap="magma")
    np.testing.assert_allclose(ax.images[0].get_array(), scores)
    assert ax.images[0].get_cmap().name == "magma"
    texts = _cell_texts(ax, (0, 0, 1, 1), 3)
    assert texts[1, 2] == f"{scores[1, 2]:.3g}" == "0.714"


def test_grid_cells_errors(grid):
    with pytest.raises(ValueError, match=r"values.*\(3, 3\).*\(2, 3\)"):
        plot_grid_cells(grid, values=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="values.*'n_samples', 'fallback'"):
        plot_grid_cells(grid, values="scores")
    with pytest.raises(TypeError, match="values"):
        plot_grid_cells(grid, values=np.full((3, 3), "a"))
    with pytest.raises(NotFittedError):
        plot_grid_cells(GridLocationClassifier(LogisticRegression(), grid_size=3))
    with pytest.raises(TypeError, match="'grid' parameter"):
        plot_grid_cells(LogisticRegression())
    with pytest.raises(ValueError, match="'box' parameter.*x0 < x1"):
        plot_grid_cells(grid, box=(10, 0, 5, 10))
    with pytest.raises(ValueError, match="'box' parameter"):
        plot_grid_cells(grid, box=(0, 0, 1))
    with pytest.raises(ValueError, match="'image' parameter"):
        plot_grid_cells(grid, image=np.full((4, 4), 2.0))
