"""One huge image chunk by chunk: :func:`predict_large`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import numpy as np

from ..estimators import HypercolumnTransformer
from ..features import NotTileableError
from ..heads import Window, predict_window
from ._common import (
    _check_fitted,
    _check_method,
    _check_positive,
    _cluster_threads,
    _hypercolumns_of,
    _import_dask,
    _is_dask_array,
    _live,
    _model_ref,
    _threads_here,
    _torch_threads,
    _window_engine,
    _without_cache,
)


def _as_dask_image(da: Any, image: Any, chunks: tuple[int, int]) -> Any:
    shape = getattr(image, "shape", None)
    if shape is not None and (len(shape) not in (2, 3) or 0 in shape):
        raise ValueError(
            "The 'image' parameter of predict_large must be one image (height, width[, "
            f"channels]); got shape {tuple(shape)}. For many images use predict_collection."
        )
    if _is_dask_array(image):
        arr = image
    elif isinstance(image, np.ndarray):
        arr = da.from_array(image, chunks=chunks + ((-1,) if image.ndim == 3 else ()))
    elif all(hasattr(image, a) for a in ("shape", "dtype", "ndim", "__getitem__")):
        own = getattr(image, "chunks", None)  # zarr, h5py: read chunk by chunk
        arr = da.from_array(image, chunks=own if own else "auto")
    else:
        raise TypeError(
            "The 'image' parameter of predict_large must be a dask array, a zarr array or a "
            f"numpy array (height, width[, channels]); got {type(image).__name__}."
        )
    kind = np.dtype(arr.dtype).kind
    if kind not in "biuf":
        raise TypeError(
            f"The 'image' parameter must hold numbers (bool, integer or float pixels); got dtype "
            f"{arr.dtype}."
        )
    return arr


def _window(c0: int, c1: int, n: int, ext: int, stride: int) -> tuple[int, int]:
    """Window of core ``[c0, c1)``: ``ext`` more on each side, congruent to ``n`` mod stride."""
    w0 = max(0, c0 - ext)
    w1 = c1 + ext
    w1 = n if w1 >= n else min(n, w1 + (n - w1) % stride)
    return w0, w1


def _native_sizes(hc: HypercolumnTransformer, shape: tuple[int, int],
                  chunks: tuple[int, int], ext: int, stride: int) -> dict[str, tuple[int, int]]:
    """Each map's size for the whole image, from thin probes of the last windows."""
    engine = _window_engine(hc).replace(intensity_range=None)  # probes of zeros, in [0, 1]
    red = {d["name"]: max(1, round(d["reduction"])) for d in engine.feature_info}
    thin = max(64, 2 * stride)
    sizes: dict[str, list[int]] = {name: [0, 0] for name in engine.map_names}
    for axis, (n, c) in enumerate(zip(shape, chunks)):
        w0, _ = _window((n - 1) // c * c, n, n, ext, stride)
        probe = (n - w0, thin) if axis == 0 else (thin, n - w0)
        zeros = engine.check_images([np.zeros((*probe, engine.n_channels), np.float32)])
        (_, maps), = engine.iter_maps(zeros)
        for name, m in maps.items():
            sizes[name][axis] = w0 // red[name] + m.shape[1 + axis]
    return {k: (v[0], v[1]) for k, v in sizes.items()}


def _large_mode(model: Any, method: str) -> str:
    """How windows are computed: ``"features"`` (hypercolumns), ``"folded"`` (the head module,
    plain heads and location grids alike) or ``"classifier"`` (heads that do not fold, or
    probabilities without a link)."""
    if method == "transform_dense":
        return "features"
    head = getattr(model, "folded_", None)
    if head is None or (method == "predict_proba" and head.link is None):
        return "classifier"
    return "folded"


def _large_meta(model: Any, hc: HypercolumnTransformer, method: str,
                mode: str) -> tuple[np.dtype, tuple[int, ...]]:
    if mode == "features":
        return np.dtype(np.float32), (hc.n_features_out_,)
    if mode == "folded":
        head = model.folded_
        if method == "predict":
            return np.asarray(head.classes).dtype, ()
        if method == "predict_proba":
            return np.dtype(np.float32), (len(head.classes),)
        return np.dtype(np.float64), (() if head.n_outputs == 1 else (head.n_outputs,))
    res = np.asarray(getattr(model.classifier_, method)(
        np.zeros((1, hc.n_features_out_), dtype=np.float32)))
    dtype = np.dtype(np.float64) if method == "decision_function" else res.dtype
    return dtype, res.shape[1:]


@dataclass(frozen=True)
class ChunkSpec:
    """One task of :func:`predict_large`: its block (a :class:`~skhyper.heads.Window`), how it
    is computed (``mode``: :func:`_large_mode`), the output's ``method``, ``dtype`` and
    trailing shape, and the torch threads of the task."""

    window: Window
    mode: str
    method: str
    dtype: np.dtype
    trail: tuple[int, ...]
    threads: Any


def _predict_chunk(model: Any, window: np.ndarray, spec: ChunkSpec) -> np.ndarray:
    """One output chunk from its window: the task of :func:`predict_large`."""
    with _torch_threads(_threads_here(spec.threads)):
        return _chunk(_live(model), np.asarray(window), spec)


def _chunk(model: Any, window: np.ndarray, spec: ChunkSpec) -> np.ndarray:
    """The block of ``spec`` from its window, through the one head path."""
    hc = _hypercolumns_of(model)
    engine = _window_engine(hc)
    out = predict_window(
        engine, engine.check_images(window, param="image"), spec.window,
        head=getattr(model, "folded_", None) if spec.mode == "folded" else None,
        classifier=getattr(model, "classifier_", None),
        output=spec.method, chunk_pixels=getattr(model, "chunk_pixels", 65536),
        upsampling=getattr(model, "upsampling", "bilinear"),
    )
    return out.astype(spec.dtype, copy=False)


def _check_chunkable(engine: Any, owner: str) -> None:
    """Refuse engines whose maps of a window differ from the whole image's (resized images,
    several scales, per-image percentiles)."""
    if engine.image_size is not None:
        raise ValueError(
            f"{owner} cannot chunk a model that resizes images (image_size={engine.image_size}): "
            "resize the image first and use a model with image_size=None."
        )
    if engine.scales is not None:
        raise ValueError(
            f"{owner} cannot chunk a multi-scale model (scales={engine.scales}): the windows of "
            "a resized image do not line up with the chunks. Predict the whole image, or use "
            "a model with scales=None."
        )
    ir = engine.intensity_range
    if isinstance(ir, (tuple, list)) and len(ir) and ir[0] == "percentile":
        raise ValueError(
            f"{owner} cannot reproduce intensity_range={tuple(ir)!r}: percentiles are taken per "
            "image, and a chunk's differ from the whole image's. Use a model with a fixed "
            "intensity_range=(low, high)."
        )


def predict_large(
    model: Any,
    image: Any,
    *,
    method: str = "predict",
    chunks: int | tuple[int, int] = 1024,
    client: Any = None,
    n_threads: int | None = None,
) -> Any:
    """Predict one huge image chunk by chunk, as a lazy dask array.

    Each ``chunks``-sized block of the output is computed by one task from a
    window of the image (the block plus the receptive-field halo), and equals
    ``getattr(model, method)(image)`` on the whole image to float rounding
    (see the module's notes). Nothing runs until the result is computed or
    stored, so the image can live in a zarr store and the labels can go to
    one (``.to_zarr(...)``) without either ever being in memory.

    Parameters
    ----------
    model : HypercolumnSegmenter or HypercolumnTransformer
        Fitted (a transformer for ``method="transform_dense"``). Image-level
        layers (global pooling, fully connected) and ``image_size`` cannot be
        chunked; neither can a per-image ``intensity_range=("percentile",
        ...)``.
    image : dask array, zarr array or ndarray of shape (height, width[, channels])
        Read window by window (a numpy array is wrapped with
        ``dask.array.from_array``).
    method : {"predict", "predict_proba", "decision_function", "transform_dense"}, \
default="predict"
    chunks : int or (int, int), default=1024
        Output block size in pixels, rounded down to a multiple of the
        network's stride. Each task holds one forward pass of ``chunks`` plus
        twice the halo (480 + 32 pixels for the default backbone): larger
        blocks waste less work on halos and use more memory (8192 x 8192 on
        2 CPU cores: 1024 takes 178 s and 2.9 GiB for the whole process, 2048
        95 s and 4.4 GiB).
    client : distributed.Client, default=None
        Scatter the model to every worker of this cluster once (else the
        model is one key of the graph). Compute the result with the same
        client.
    n_threads : int, default=None
        ``torch.set_num_threads`` inside each task; None: as in
        :func:`predict_collection`.

    Returns
    -------
    dask.array.Array
        ``(height, width)`` labels (the classes' dtype), ``(height, width,
        n_classes)`` float32 probabilities, float64 scores (``(height, width)``
        for one output), or ``(height, width, n_features)`` float32
        hypercolumns, chunked by ``chunks``.

    See Also
    --------
    predict_collection : many images.
    skhyper.features.tiled_maps : the same windows for the forward pass of one image.

    Examples
    --------
    >>> import numpy as np
    >>> from skhyper import HypercolumnSegmenter, HypercolumnTransformer
    >>> from skhyper.parallel import predict_large
    >>> rng = np.random.default_rng(0)
    >>> images = rng.random((4, 48, 64, 3)).astype(np.float32) * 0.3
    >>> masks = np.zeros((4, 48, 64), dtype=np.uint8)
    >>> masks[:, 10:30, 15:40] = 1
    >>> images[masks == 1] += 0.6
    >>> seg = HypercolumnSegmenter(
    ...     HypercolumnTransformer("resnet18", layers=["relu", "layer1"], weights=None,
    ...                            device="cpu"),
    ...     n_pixels_per_image=200, random_state=0,
    ... ).fit(images, masks)
    >>> big = np.tile(images[0], (5, 4, 1))          # 240 x 256, in 96-pixel blocks
    >>> labels = predict_large(seg, big, chunks=96)
    >>> labels.shape, labels.chunks
    ((240, 256), ((96, 96, 48), (96, 96, 64)))
    >>> bool((labels.compute() == seg.predict(big)).all())
    True
    """
    owner = "predict_large"
    dask, da = _import_dask(owner)
    _check_method(model, method, owner)
    _check_fitted(model)
    _check_positive(n_threads, "n_threads", owner, allow_none=True)
    hc = _hypercolumns_of(model)
    if hc is None:
        raise TypeError(
            f"{owner} needs a fitted HypercolumnSegmenter or HypercolumnTransformer (it computes "
            f"the folded scores window by window); got {type(model).__name__}. For other "
            "models use predict_collection on tiles."
        )
    engine = hc.engine_
    _check_chunkable(engine, owner)
    try:
        pair = (chunks, chunks) if isinstance(chunks, Integral) else tuple(chunks)
    except TypeError:
        pair = ()
    if len(pair) != 2 or any(isinstance(c, bool) or not isinstance(c, Integral) or c < 1
                             for c in pair):
        raise ValueError(
            f"The 'chunks' parameter of {owner} must be a positive int or a pair of them. Got "
            f"{chunks!r} instead."
        )
    try:
        halo, stride = hc.engine_.receptive_field()
    except NotTileableError as err:
        raise ValueError(
            f"{owner} cannot chunk layers {hc.engine_.map_names}: {err} Predict the whole "
            "image instead."
        ) from err
    ext = halo + stride
    ch, cw = (max(stride, c // stride * stride) for c in pair)
    arr = _as_dask_image(da, image, (ch, cw))
    H, W = arr.shape[:2]
    n_chans = arr.shape[2] if arr.ndim == 3 else 1
    hc.engine_.check_images(np.zeros((2, 2, n_chans), dtype=arr.dtype), param="image")
    mode = _large_mode(model, method)
    dtype, trail = _large_meta(model, hc, method, mode)
    native = _native_sizes(hc, (H, W), (ch, cw), ext, stride)

    model = _without_cache(model)
    token = uuid.uuid4().hex[:12]
    threads: Any = n_threads
    model_ref = _model_ref(dask, model, client, token)
    if client is not None:
        threads = _cluster_threads(client, n_threads, model, None)
    sizes = tuple(native[name] for name in engine.map_names)
    rows = []
    for i, r0 in enumerate(range(0, H, ch)):
        r1 = min(H, r0 + ch)
        w0, w1 = _window(r0, r1, H, ext, stride)
        row = []
        for j, c0 in enumerate(range(0, W, cw)):
            c1 = min(W, c0 + cw)
            v0, v1 = _window(c0, c1, W, ext, stride)
            spec = ChunkSpec(Window((H, W), (r0, r1, c0, c1), (w0, v0), sizes), mode, method,
                             dtype, trail, threads)
            task = dask.delayed(_predict_chunk, pure=True)(
                model_ref, arr[w0:w1, v0:v1], spec,
                dask_key_name=f"skhyper-large-{token}-{i}-{j}")
            row.append(da.from_delayed(task, shape=(r1 - r0, c1 - c0, *trail), dtype=dtype))
        rows.append(da.concatenate(row, axis=1) if len(row) > 1 else row[0])
    return da.concatenate(rows, axis=0) if len(rows) > 1 else rows[0]

