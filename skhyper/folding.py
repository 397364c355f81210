"""Folding: a linear head on upsampled hypercolumns is a sum of upsampled per-layer 1x1 heads.

Upsampling is linear, so ``w . up(h) + b = sum_l up(W_l * f_l) + b``. A chain of
affine steps (``StandardScaler``, ``PCA``, a linear model with ``coef_`` /
``intercept_``) composes into one matrix ``A`` (n_features, n_outputs) and a
bias; its rows split into one block per layer. Dense scores then cost a 1x1
convolution of each native map and an upsample of ``n_outputs`` score maps:
the full-resolution hypercolumn never exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["affine_of", "fold_chain", "split_by_layer", "folded_scores", "NotFoldableError"]


class NotFoldableError(TypeError):
    """A step of the chain is not affine (or not fitted), so the chain cannot fold."""


def affine_of(step: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(M, v)`` with ``step.transform(x)`` (or ``decision_function``) ``== x @ M + v``.

    Supports fitted ``StandardScaler``, ``PCA`` (``whiten`` too), ``"passthrough"``
    and linear models with ``coef_`` and ``intercept_``.
    """
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    if isinstance(step, StandardScaler):
        n = step.n_features_in_
        scale = step.scale_ if step.scale_ is not None else np.ones(n)
        mean = step.mean_ if step.mean_ is not None and step.with_mean else np.zeros(n)
        return np.diag(1.0 / scale), -mean / scale
    if isinstance(step, PCA):
        M = step.components_.T.copy()
        if step.whiten:
            M /= np.sqrt(step.explained_variance_)
        return M, -step.mean_ @ M
    if hasattr(step, "coef_") and hasattr(step, "intercept_"):
        coef = np.atleast_2d(np.asarray(step.coef_, dtype=np.float64))
        intercept = np.broadcast_to(np.asarray(step.intercept_, dtype=np.float64), coef.shape[:1])
        return coef.T.copy(), intercept.copy()
    raise NotFoldableError(f"{type(step).__name__} is not an affine step and cannot be folded.")


def fold_chain(steps: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Compose fitted affine steps into ``(A, b)``: ``chain(x) == x @ A + b``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.preprocessing import StandardScaler
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.random((50, 6)), rng.integers(0, 2, 50)
    >>> sc, pca = StandardScaler().fit(X), PCA(3).fit(X)
    >>> Z = pca.fit_transform(sc.transform(X))
    >>> lr = LogisticRegression().fit(Z, y)
    >>> A, b = fold_chain([sc, pca, lr])
    >>> bool(np.allclose(X @ A + b, lr.decision_function(Z)[:, None]))
    True
    """
    A: np.ndarray | None = None
    b: np.ndarray | None = None
    for step in steps:
        if step is None or step == "passthrough":
            continue
        M, v = affine_of(step)
        if A is None:
            A, b = M, v
        else:
            A, b = A @ M, b @ M + v
    if A is None:
        raise NotFoldableError("The chain has no affine step to fold.")
    return A, b


def split_by_layer(A: np.ndarray, feature_info: Sequence[dict]) -> list[np.ndarray]:
    """Row blocks of ``A``, one ``(num_chs, n_outputs)`` block per layer of ``feature_info``."""
    sizes = [d["num_chs"] for d in feature_info]
    if sum(sizes) != A.shape[0]:
        raise ValueError(
            f"The folded head takes {A.shape[0]} features but the layers give {sum(sizes)}."
        )
    return np.split(A, np.cumsum(sizes)[:-1], axis=0)


def folded_scores(
    maps: dict[str, torch.Tensor] | Sequence[torch.Tensor],
    blocks: Sequence[torch.Tensor],
    bias: torch.Tensor,
    image_shape: tuple[int, int],
) -> torch.Tensor:
    """Dense ``(n_outputs, height, width)`` scores: ``sum_l up(W_l^T f_l) + b``.

    ``maps`` are ``(c_l, h_l, w_l)`` native maps of one image, ``blocks`` the
    matching ``(c_l, n_outputs)`` weights. Each layer's 1x1 scores are upsampled
    with ``F.interpolate(mode="bilinear", align_corners=False)``, the convention
    of the hypercolumn itself, so the result equals the linear head applied to
    the dense hypercolumn. Computed in the dtype of ``bias`` (float64 keeps
    large scores exact to float32 rounding of the features).
    """
    tensors = list(maps.values()) if isinstance(maps, dict) else list(maps)
    H, W = image_shape
    dtype = bias.dtype if bias.dtype in (torch.float32, torch.float64) else torch.float32
    out = bias.reshape(-1, 1, 1).to(dtype).expand(-1, H, W).clone()
    for m, w in zip(tensors, blocks):
        c, h, wd = m.shape
        s = torch.einsum("ck,chw->khw", w.to(dtype), m.to(dtype))
        if h == 1 and wd == 1:
            out += s
        else:
            out += F.interpolate(s[None], size=(H, W), mode="bilinear", align_corners=False)[0]
    return out
