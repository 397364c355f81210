"""Folded dense scores equal the linear head applied to the dense hypercolumn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from skhyper import HypercolumnTransformer, sample_pixels
from skhyper.heads import NotFoldableError
from skhyper.heads._folding import fold_chain, folded_scores, split_by_layer

HEADS = {
    "sgd": lambda: SGDClassifier(loss="log_loss", random_state=0),
    "logreg": lambda: LogisticRegression(max_iter=300),
    "linearsvc": lambda: LinearSVC(),
    "ridge": lambda: RidgeClassifier(),
}


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("prep", ["none", "scaler", "scaler+pca"])
def test_folded_scores_equal_naive_dense_decision(head, prep, n_classes, rng):
    images = [rng.random((29, 43, 3)).astype(np.float32) for _ in range(3)]
    masks = [np.digitize(img[..., 0], np.linspace(0, 1, n_classes + 1)[1:-1]) for img in images]
    X, y = sample_pixels(images, masks, n_per_image=80, random_state=0)
    hc = HypercolumnTransformer("resnet18", layers=["relu", "layer2", "fc"], weights=None,
                                device="cpu").fit(X)
    steps = {"none": [], "scaler": [StandardScaler()],
             "scaler+pca": [StandardScaler(), PCA(16, random_state=0)]}[prep]
    chain = make_pipeline(*steps, HEADS[head]()).fit(hc.transform(X), y)

    A, b = fold_chain([s for _, s in chain.steps])
    blocks = [torch.from_numpy(w) for w in split_by_layer(A, hc.feature_info_)]
    bias = torch.from_numpy(b)
    img = images[1]
    (_, maps), = hc.engine_.iter_maps(hc.engine_.check_images([img]))
    assert list(maps) == [d["name"] for d in hc.feature_info_]
    folded = folded_scores(maps, blocks, bias, img.shape[:2]).numpy()

    # The naive path in float64 (the definition: upsample every map, concatenate, apply the
    # head); float32 dense features carry rounding that the head amplifies for random weights.
    H, W = img.shape[:2]
    dense = torch.cat([
        torch.nn.functional.interpolate(m[None].double(), size=(H, W), mode="bilinear",
                                        align_corners=False)
        for m in maps.values()
    ], 1)[0].permute(1, 2, 0).reshape(H * W, -1).numpy()
    naive = chain.decision_function(dense).reshape(H, W, -1)
    scale = max(1.0, np.abs(naive).max())
    np.testing.assert_allclose(folded.transpose(1, 2, 0), naive, rtol=0, atol=1e-8 * scale)
    # and the float32 dense hypercolumn of the transformer agrees to float32 precision
    dense32 = hc.transform_dense(img).reshape(H * W, -1)
    np.testing.assert_allclose(dense32, dense, rtol=1e-5, atol=1e-5)


def test_non_linear_heads_do_not_fold():
    from sklearn.ensemble import RandomForestClassifier

    with pytest.raises(NotFoldableError, match="RandomForestClassifier"):
        fold_chain([StandardScaler().fit(np.eye(3)), RandomForestClassifier()])
