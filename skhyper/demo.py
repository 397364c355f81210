"""The demo behind ``python -m skhyper``: horse segmentation with hypercolumns, offline.

The default :class:`~skhyper.HypercolumnSegmenter` (EfficientNet-Lite0's five stages, small
images fed up to 2x larger, ``StandardScaler -> LogisticRegression``, edge-aware upsampling of
the coarse score maps) is trained on pixels sampled from the bundled Weizmann horse images,
predicts every pixel of the train and test images (folded), reports the foreground IoU
(:func:`skhyper.metrics.foreground_iou`) and draws the test predictions into a PNG (with PIL
only).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ._paths import check_output_path
from .datasets import load_horses
from .estimators import HypercolumnSegmenter, HypercolumnTransformer, default_hypercolumns
from .metrics import foreground_iou
from .sampling import sample_pixels

__all__ = ["make_segmenter", "run_demo"]

StrPath = str | os.PathLike

# Figure layout.
_N_COLS = 4
_MAX_PANELS = 16  # larger test sets (e.g. --data) show their first 16 images
_CELL = 320  # longer side of a panel's image, in pixels
_PAD = 8
_PRED_RGB = (30, 144, 255)  # predicted horse: blue tint (horses are brown, grass is green)
_TRUE_RGB = (255, 225, 0)  # true horse outline: yellow, edged in black to show on light grounds
_TINT = 0.45


def make_segmenter(
    *, hypercolumns: HypercolumnTransformer | None = None, n_per_image: int = 1000, seed: int = 0
) -> HypercolumnSegmenter:
    """The demo's segmenter: the default :class:`~skhyper.HypercolumnSegmenter`.

    Parameters
    ----------
    hypercolumns : HypercolumnTransformer, default=None
        The features (None: the segmenter's default, EfficientNet-Lite0, all stages,
        ``scales="auto"``); every setting of it (channel strategy, intensity range, ...)
        applies to training and prediction alike.
    n_per_image : int, default=1000
        Training pixels per image.
    seed : int, default=0
        Seeds the pixel draw.

    Returns
    -------
    HypercolumnSegmenter
        Unfitted.

    Examples
    --------
    >>> make_segmenter().upsampling
    'edge_aware'
    """
    return HypercolumnSegmenter(hypercolumns, n_pixels_per_image=n_per_image, random_state=seed)


def _outline(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """Boolean map of the pixels of ``mask`` within ``width`` pixels of its border."""
    inner = mask.copy()
    for _ in range(width):
        eroded = inner.copy()
        eroded[1:] &= inner[:-1]
        eroded[:-1] &= inner[1:]
        eroded[:, 1:] &= inner[:, :-1]
        eroded[:, :-1] &= inner[:, 1:]
        inner = eroded
    return mask & ~inner


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed-size bitmap font
        return ImageFont.load_default()


def _panel(image: np.ndarray, pred: np.ndarray, true: np.ndarray) -> Image.Image:
    """The image scaled up to ``_CELL``, the prediction tinted blue, the true outline yellow."""
    h, w = image.shape[:2]
    scale = _CELL / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    rgb = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR), np.float32)

    def up(mask: np.ndarray) -> np.ndarray:
        img = Image.fromarray((mask == 1).astype(np.uint8) * 255)
        return np.asarray(img.resize(size, Image.Resampling.NEAREST)) > 0

    pred_up, true_up = up(pred), up(true)
    rgb[pred_up] = (1 - _TINT) * rgb[pred_up] + _TINT * np.array(_PRED_RGB, np.float32)
    rgb[_outline(pred_up, 1)] = _PRED_RGB
    rgb[_outline(true_up, 3)] = 0
    rgb[_outline(true_up, 2)] = _TRUE_RGB
    return Image.fromarray(rgb.round().clip(0, 255).astype(np.uint8))


def _draw_figure(
    path: Path,
    images: Sequence[np.ndarray],
    preds: Sequence[np.ndarray],
    trues: Sequence[np.ndarray],
    names: Sequence[str],
    ious: Sequence[float],
    title: str,
) -> None:
    n = min(len(images), _MAX_PANELS)
    panels = [_panel(images[k], preds[k], trues[k]) for k in range(n)]
    n_cols = min(_N_COLS, n)
    n_rows = -(-n // n_cols)
    font, title_font = _font(15), _font(17)
    label_h, title_h = 22, 54
    cell_w = max(p.width for p in panels)
    cell_h = max(p.height for p in panels) + label_h
    width = n_cols * cell_w + (n_cols + 1) * _PAD
    height = title_h + n_rows * cell_h + (n_rows + 1) * _PAD
    fig = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(fig)
    legend = "blue tint: predicted horse      yellow line: true horse outline"
    if n < len(images):
        legend += f"      (first {n} of {len(images)} test images)"
    draw.text((_PAD, 6), title, fill=(0, 0, 0), font=title_font)
    draw.text((_PAD, 30), legend, fill=(70, 70, 70), font=font)
    for k, panel in enumerate(panels):
        r, c = divmod(k, n_cols)
        x = _PAD + c * (cell_w + _PAD)
        y = title_h + _PAD + r * (cell_h + _PAD)
        draw.text((x, y + 2), f"{names[k]}   IoU {ious[k]:.2f}", fill=(0, 0, 0), font=font)
        fig.paste(panel, (x, y + label_h))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.save(path)


def _load_splits(data: StrPath | None, say: Callable[..., None]) -> tuple[Any, Any]:
    """The train and test splits of ``data`` (errors name run_demo's ``data``), both non-empty."""
    try:
        train = load_horses(data, split="train")
        test = load_horses(data, split="test")
    except ValueError as err:  # name run_demo's parameter, not load_horses'
        raise ValueError(
            str(err).replace("The 'path' parameter of load_horses", "The 'data' parameter")
        ) from None
    where = "bundled Weizmann horse sample" if data is None else str(data)
    say(f"data: {where}: {len(train.images)} train / {len(test.images)} test images")
    if not train.images or not test.images:
        raise ValueError(
            f"The 'data' parameter of run_demo points to {where!r}, which has "
            f"{len(train.images)} train and {len(test.images)} test images; both must be > 0."
        )
    return train, test


def run_demo(
    *,
    output: StrPath = "skhyper_demo.png",
    device: str = "auto",
    n_per_image: int = 1000,
    seed: int = 0,
    data: StrPath | None = None,
    image_size: int | None = None,
    hypercolumns: HypercolumnTransformer | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Segment horses with hypercolumns and a linear classifier; report IoU and draw a figure.

    Trains the default segmenter (:func:`make_segmenter`: ``StandardScaler ->
    LogisticRegression`` on hypercolumns of pixels of the train images; EfficientNet-Lite0 with
    its bundled ImageNet weights, all 5 stages, small images fed up to 2x larger: works offline),
    labels every pixel of the train and test images with its folded ``predict`` and reports the
    foreground (horse) IoU of each split,
    pooled over all the pixels of the split. The test images go into a PNG: the predicted horse
    tinted blue, the true outline in yellow, each image's own IoU above it.

    Parameters
    ----------
    output : str or path-like, default="skhyper_demo.png"
        Where to write the figure (PNG); parent folders are created.
    device : {"auto", "cpu", "cuda"} or str, default="auto"
        Device of the backbone; ``"auto"`` uses CUDA when available.
    n_per_image : int, default=1000
        Training pixels drawn per train image, uniformly over its pixels.
    seed : int, default=0
        Seeds the pixel draw: a seed gives the same result on a given machine.
    data : str or path-like, default=None
        None uses the bundled sample (16 train / 8 test images, longer side <= 160 px). Otherwise
        a folder with ``images/`` and ``masks/`` (such as the full Weizmann horse set), split by
        :func:`skhyper.datasets.load_horses`.
    image_size : int, default=None
        Longer side, in pixels, the images are resized to for the forward pass (predictions stay
        at the original resolution). None: the default ``scales="auto"`` (small images fed up to
        2x larger).
    hypercolumns : HypercolumnTransformer, default=None
        Other features (any backbone, layers, channel strategy or intensity range); None:
        the segmenter's default features with ``device`` and ``image_size``, which are ignored
        when it is given.
    verbose : bool, default=True
        Print progress, timings and the IoUs.

    Returns
    -------
    results : dict
        ``train_iou`` and ``test_iou`` (float, pooled over the split's pixels),
        ``test_ious`` (list of float, per test image), ``n_train_images``, ``n_test_images``,
        ``n_train_pixels``, ``seconds`` (float, the whole run), ``fit_seconds``,
        ``predict_seconds``, ``output`` (:class:`pathlib.Path`, absolute), ``segmenter`` (the
        fitted :class:`~skhyper.HypercolumnSegmenter`) and ``test_predictions`` (label maps).

    See Also
    --------
    make_segmenter : the segmenter trained here.
    skhyper.metrics.foreground_iou : the IoU used here.

    Examples
    --------
    >>> from skhyper.demo import run_demo
    >>> res = run_demo(output="demo.png", verbose=False)  # doctest: +SKIP
    >>> res["test_iou"] > 0.6  # doctest: +SKIP
    True
    """
    say: Callable[..., None] = print if verbose else (lambda *a, **k: None)
    start = time.perf_counter()
    output = check_output_path(output, "output", suffixes=(".png",))  # before the work
    train, test = _load_splits(data, say)
    if hypercolumns is None:
        hypercolumns = default_hypercolumns().set_params(
            device=device, image_size=image_size,
            scales="auto" if image_size is None else None)
    seg = make_segmenter(hypercolumns=hypercolumns, n_per_image=n_per_image, seed=seed)
    _, y = sample_pixels(train.images, train.masks, n_per_image=n_per_image,
                         min_per_class=seg.min_pixels_per_class,
                         random_state=seed)  # the pixels fit draws: only counted here
    say(
        f"segmenter: HypercolumnTransformer({hypercolumns.backbone}, all stages, "
        f"scales={hypercolumns.scales!r}) -> StandardScaler -> LogisticRegression, "
        f"{seg.upsampling} upsampling (the default HypercolumnSegmenter)"
    )
    say(
        f"training on {len(y)} pixels ({np.mean(y == 1):.0%} horse; up to {n_per_image} per "
        f"image, seed={seed}) ..."
    )
    t0 = time.perf_counter()
    seg.fit(train.images, train.masks)
    fit_seconds = time.perf_counter() - t0
    hc = seg.hypercolumns_
    say(
        f"  fitted in {fit_seconds:.1f} s on {hc.device_} (torch threads: "
        f"{torch.get_num_threads()}; {hc.n_features_out_} features per pixel, "
        f"image_size={hc.image_size}, scales={hc.scales_}; prediction {seg.prediction_path_})"
    )

    n_pixels = sum(m.size for m in train.masks) + sum(m.size for m in test.masks)
    say(f"predicting all {n_pixels} pixels of {len(train.images) + len(test.images)} images ...")
    t0 = time.perf_counter()
    pred_train = seg.predict(list(train.images))
    pred_test = seg.predict(list(test.images))
    predict_seconds = time.perf_counter() - t0
    say(f"  predicted in {predict_seconds:.1f} s")

    train_iou = foreground_iou(list(train.masks), pred_train)
    test_iou = foreground_iou(list(test.masks), pred_test)
    test_ious = [foreground_iou(t, p) for p, t in zip(pred_test, test.masks)]
    say(f"train foreground IoU (pooled over {len(train.images)} images): {train_iou:.3f}")
    say(f"test foreground IoU (pooled over {len(test.images)} images): {test_iou:.3f}")

    title = (
        f"skhyper demo: test foreground IoU {test_iou:.3f} (pooled), train {train_iou:.3f}, "
        f"seed {seed}"
    )
    _draw_figure(output, test.images, pred_test, test.masks, test.names, test_ious, title)
    seconds = time.perf_counter() - start
    say(f"figure: {output}")
    say(f"total time: {seconds:.1f} s")
    return {
        "train_iou": train_iou,
        "test_iou": test_iou,
        "test_ious": test_ious,
        "n_train_images": len(train.images),
        "n_test_images": len(test.images),
        "n_train_pixels": len(y),
        "seconds": seconds,
        "fit_seconds": fit_seconds,
        "predict_seconds": predict_seconds,
        "output": output,
        "segmenter": seg,
        "test_predictions": pred_test,
    }
