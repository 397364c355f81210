"""layer_importance: single-layer and leave-one-layer-out cross-validated scores."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import cross_val_score

from skhyper import HypercolumnSegmenter, HypercolumnTransformer, MapCache
from skhyper.datasets import load_horses
from skhyper.inspection import layer_importance
from skhyper.metrics import foreground_iou_scorer

LAYERS = ["blocks.2", "blocks.4", "blocks.6"]


@pytest.fixture(scope="module")
def horses():
    return load_horses(split="train")  # the bundled sample: 16 images


@pytest.fixture(scope="module")
def result(horses):
    seg = HypercolumnSegmenter(HypercolumnTransformer(layers=LAYERS, device="cpu"),
                               n_pixels_per_image=200, random_state=0)
    return layer_importance(seg, horses.images, horses.masks, cv=2,
                            scoring=foreground_iou_scorer)


def test_shapes_and_consistency(result, horses):
    assert result.layers == LAYERS
    assert result.all_scores.shape == (2,)
    assert result.single_scores.shape == result.without_scores.shape == (3, 2)
    np.testing.assert_allclose(result.importance, result.all_mean - result.without_mean)
    np.testing.assert_allclose(result.single_mean, result.single_scores.mean(1))
    # every image through the backbone once for all 7 x 2 fits and their scoring
    assert result.n_forward_images == len(horses.images)


def test_entries_equal_independent_cross_validation(result, horses):
    seg = HypercolumnSegmenter(HypercolumnTransformer(layers=["blocks.2", "blocks.6"],
                                                      device="cpu"),
                               n_pixels_per_image=200, random_state=0)
    expected = cross_val_score(seg, horses.images, horses.masks, cv=2,
                               scoring=foreground_iou_scorer)
    np.testing.assert_allclose(result.without_scores[1], expected, rtol=0, atol=1e-12)


def test_what_the_layers_carry(result):
    # an early stage alone localizes but lacks semantics: all stages together do better
    assert result.all_mean > result.single_mean[0] + 0.05
    assert np.all(np.isfinite(result.importance))


def test_existing_cache_is_used_and_errors(horses):
    cache = MapCache()
    seg = HypercolumnSegmenter(HypercolumnTransformer(layers=["blocks.6"], device="cpu",
                                                      cache=cache),
                               n_pixels_per_image=100, random_state=0)
    res = layer_importance(seg, horses.images[:4], horses.masks[:4], cv=2)
    assert res.layers == ["blocks.6"] and cache.n_forward_images == 4
    np.testing.assert_array_equal(res.without_scores[0], res.all_scores)
    with pytest.raises(TypeError, match="'segmenter' parameter must be a HypercolumnSegmenter"):
        layer_importance(clone(seg.hypercolumns), horses.images, horses.masks)
    with pytest.raises(ValueError, match=r"nope.*blocks\.0"):
        layer_importance(seg, horses.images, horses.masks, layers=["nope"])
