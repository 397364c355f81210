"""Predict with an exported segmenter in ONNX Runtime: :class:`OnnxSegmenter`, no torch needed.

This module imports only numpy, json and (when a model is opened) onnxruntime: it can be
copied on its own next to an ``.onnx`` file written by :func:`skhyper.export.to_onnx` and run
where neither torch nor scikit-learn is installed. The intensity step before the network
(:func:`prepare_image`) follows :func:`skhyper.features.to_float_image` (the tests check that
they agree).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["OnnxSegmenter", "prepare_image"]


def prepare_image(image: np.ndarray, n_channels: int, intensity_range: Any = None
                  ) -> np.ndarray:
    """An ``(h, w[, c])`` image as the network's float32 ``(n_channels, h, w)`` input.

    With ``intensity_range=None`` the dtype implies the range (``uint8`` / ``uint16``
    divided by their maximum, signed integers to ``[-1, 1]``, bools 0/1, floats as they are);
    ``(low, high)`` rescales linearly to ``[0, 1]`` and clips; ``("percentile", p_low,
    p_high)`` does the same with each channel's percentiles. A 1-channel image is replicated
    to ``n_channels``.

    This is the intensity step of the fitted segmenter (``export_config``), done outside the
    network because it depends on the dtype.

    Parameters
    ----------
    image : ndarray of shape (h, w) or (h, w, c)
        One image.
    n_channels : int
        Input channels of the network; an image must have 1 or ``n_channels`` channels.
    intensity_range : tuple or None, default=None
        None (by dtype), ``(low, high)``, or ``("percentile", p_low, p_high)``.

    Returns
    -------
    x : ndarray of shape (n_channels, h, w)
        The float32 network input, in ``[0, 1]`` (floats as given when
        ``intensity_range`` is None).

    Raises
    ------
    ValueError
        If the image is not 2-d or 3-d, or has neither 1 nor ``n_channels`` channels.

    Examples
    --------
    >>> import numpy as np
    >>> prepare_image(np.array([[100, 4000]], dtype=np.uint16), 1, (100, 4000)).tolist()
    [[[0.0, 1.0]]]
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise ValueError(
            f"The 'images' parameter must hold (height, width[, channels]) images; got an "
            f"array of shape {img.shape}."
        )
    if intensity_range is not None:
        out = _rescale(img, tuple(intensity_range))
    elif img.dtype == bool:
        out = img.astype(np.float32)
    elif np.issubdtype(img.dtype, np.unsignedinteger):
        out = img.astype(np.float32)
        out /= np.float32(np.iinfo(img.dtype).max)
    elif np.issubdtype(img.dtype, np.signedinteger):
        out = img.astype(np.float32)
        out /= np.float32(np.iinfo(img.dtype).max)
        np.maximum(out, -1.0, out=out)
    else:
        out = np.asarray(img, dtype=np.float32)
    if out.shape[2] == 1 and n_channels != 1:
        out = np.repeat(out, n_channels, axis=2)
    if out.shape[2] != n_channels:
        raise ValueError(
            f"The 'images' parameter has an image with {out.shape[2]} channels; this model "
            f"takes {n_channels} (or 1, replicated). Several grayscale images go in a list "
            "(a 3-D array is one (height, width, channels) image)."
        )
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def _rescale(img: np.ndarray, rng: tuple) -> np.ndarray:
    c = img.shape[-1]
    if rng[0] == "percentile":
        flat = img.reshape(-1, c)
        if flat.dtype == bool:
            flat = flat.view(np.uint8)
        lo, hi = np.percentile(flat, [float(rng[1]), float(rng[2])], axis=0)
        lo, hi = lo.astype(np.float64), hi.astype(np.float64)
    else:
        lo, hi = np.full(c, float(rng[0])), np.full(c, float(rng[1]))
    span = np.where(hi > lo, hi - lo, np.inf)
    wide = img.dtype.itemsize > 2 and img.dtype.kind in "iu" or img.dtype == np.float64
    work = np.float64 if wide else np.float32
    out = img.astype(work)
    out -= lo.astype(work)
    out /= span.astype(work)
    np.clip(out, 0.0, 1.0, out=out)
    return out.astype(np.float32, copy=False)


class OnnxSegmenter:
    """A segmenter exported by :func:`skhyper.export.to_onnx`, run by ONNX Runtime.

    Parameters
    ----------
    path : str or path-like
        The ``.onnx`` file.
    providers : list of str, default=None
        ONNX Runtime execution providers; None: ``["CPUExecutionProvider"]``.
    batch_size : int, default=4
        Images of one shape per run.
    threads : int, default=None
        ONNX Runtime's intra-op threads; None leaves its default.

    Attributes
    ----------
    config : dict
        The model's :func:`skhyper.export.export_config` (classes, channels, intensity range).
    classes_ : ndarray of shape (n_classes,)
        The class labels, in the order of the probabilities.
    session : onnxruntime.InferenceSession
        The ONNX Runtime session that runs the model.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from skhyper import HypercolumnSegmenter, HypercolumnTransformer
    >>> from skhyper.export import OnnxSegmenter, to_onnx
    >>> rng = np.random.default_rng(0)
    >>> images = rng.random((2, 40, 52, 3)).astype(np.float32)
    >>> masks = (images[..., 0] > 0.5).astype(int)
    >>> seg = HypercolumnSegmenter(HypercolumnTransformer(
    ...     "resnet18", layers=["relu"], weights=None, device="cpu"),
    ...     n_pixels_per_image=200, random_state=0).fit(images, masks)
    >>> path = to_onnx(seg, os.path.join(tempfile.mkdtemp(), "seg.onnx"))
    >>> onnx_seg = OnnxSegmenter(path)
    >>> bool((onnx_seg.predict(images[0]) == seg.predict(images[0])).mean() > 0.999)
    True
    """

    def __init__(self, path: str | os.PathLike, *, providers: Sequence[str] | None = None,
                 batch_size: int = 4, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        self.path = os.fspath(path)
        self.session = ort.InferenceSession(
            self.path, options, providers=list(providers or ["CPUExecutionProvider"]))
        meta = self.session.get_modelmeta().custom_metadata_map
        if "skhyper" not in meta:
            raise ValueError(
                f"The 'path' parameter {self.path!r} is an ONNX model without skhyper metadata; "
                "write it with skhyper.export.to_onnx."
            )
        self.config = json.loads(meta["skhyper"])
        self.classes_ = np.asarray(self.config["classes"])
        self.batch_size = int(batch_size)
        self.input_name = self.session.get_inputs()[0].name

    def _run(self, images: Any) -> tuple[list[np.ndarray], str]:
        if isinstance(images, np.ndarray) and images.ndim == 4:
            items, kind = list(images), "stack"
        elif isinstance(images, (list, tuple)):
            items, kind = list(images), "list"
        else:
            items, kind = [images], "one"
        n_in, rng = int(self.config["n_channels"]), self.config["intensity_range"]
        prepared = [prepare_image(img, n_in, rng) for img in items]
        out: list[np.ndarray | None] = [None] * len(prepared)
        by_shape: dict[tuple, list[int]] = {}
        for i, x in enumerate(prepared):
            by_shape.setdefault(x.shape, []).append(i)
        for idx in by_shape.values():
            for k in range(0, len(idx), self.batch_size):
                part = idx[k : k + self.batch_size]
                batch = np.stack([prepared[i] for i in part])
                (res,) = self.session.run(None, {self.input_name: batch})
                for j, i in enumerate(part):
                    out[i] = res[j]
        return out, kind

    @staticmethod
    def _shape(values: list[np.ndarray], kind: str) -> Any:
        if kind == "one":
            return values[0]
        return np.stack(values) if kind == "stack" else values

    def _labels(self, raw: np.ndarray) -> np.ndarray:
        if raw.shape[0] == 1:  # one score (binary decision_function)
            return self.classes_[(raw[0] > 0).astype(np.int64)]
        return self.classes_[raw.argmax(0)]

    def predict(self, images: Any) -> Any:
        """Label map of every image.

        Parameters
        ----------
        images : ndarray or list of ndarray
            One image ``(height, width[, channels])``, a list of them (any sizes) or a stack
            ``(n_images, height, width[, channels])``, with the intensities the segmenter was
            fitted on (:func:`prepare_image` prepares them as it did).

        Returns
        -------
        labels : ndarray of shape (height, width), or a list or stack of them
            The label (one of ``classes_``) of every pixel: one map for one image, a list for
            a list, an ``(n_images, height, width)`` array for a stack.
        """
        raw, kind = self._run(images)
        return self._shape([self._labels(r) for r in raw], kind)

    def predict_proba(self, images: Any) -> Any:
        """Class probabilities of every pixel of every image.

        Parameters
        ----------
        images : ndarray or list of ndarray
            One image ``(height, width[, channels])``, a list of them (any sizes) or a stack
            ``(n_images, height, width[, channels])``, with the intensities the segmenter was
            fitted on (:func:`prepare_image` prepares them as it did).

        Returns
        -------
        proba : ndarray of shape (height, width, n_classes), or a list or stack of them
            Probabilities in the order of ``classes_``, shaped as the input (as
            :meth:`predict`).

        Raises
        ------
        AttributeError
            If the model was exported with ``output="decision_function"``.
        """
        if self.config["output"] != "predict_proba":
            raise AttributeError("This model was exported with output='decision_function'.")
        raw, kind = self._run(images)
        return self._shape([np.ascontiguousarray(r.transpose(1, 2, 0)) for r in raw], kind)

    def decision_function(self, images: Any) -> Any:
        """Classifier scores of every pixel of every image.

        Parameters
        ----------
        images : ndarray or list of ndarray
            One image ``(height, width[, channels])``, a list of them (any sizes) or a stack
            ``(n_images, height, width[, channels])``, with the intensities the segmenter was
            fitted on (:func:`prepare_image` prepares them as it did).

        Returns
        -------
        scores : ndarray, or a list or stack of them
            ``(height, width)`` per image for a binary classifier (the score of
            ``classes_[1]``), else ``(height, width, n_classes)``; shaped as the input (as
            :meth:`predict`).

        Raises
        ------
        AttributeError
            If the model was exported with ``output="predict_proba"``.
        """
        if self.config["output"] != "decision_function":
            raise AttributeError("This model was exported with output='predict_proba'.")
        raw, kind = self._run(images)
        vals = [r[0] if r.shape[0] == 1 else np.ascontiguousarray(r.transpose(1, 2, 0))
                for r in raw]
        return self._shape(vals, kind)

    def __repr__(self) -> str:
        return f"OnnxSegmenter({self.path!r}, classes={self.classes_.tolist()})"
