"""One huge image chunk by chunk: :func:`predict_large`."""

from __future__ import annotations

import uuid
from numbers import Integral
from typing import Any

import numpy as np
import torch

from ..estimators import HypercolumnTransformer
from ..extraction import forward_maps, interp_weights, iter_maps
from ..folding import project_maps
from ..location import FoldedGrid, axis_locations
from ..tiling import NotTileableError, receptive_field
from ._common import (
    _check_fitted,
    _check_images,
    _check_method,
    _check_positive,
    _cluster_threads,
    _forward_kwargs,
    _forward_lock,
    _hypercolumns_of,
    _import_dask,
    _is_dask_array,
    _live,
    _model_ref,
    _threads_here,
    _torch_threads,
    _without_cache,
)


def _as_dask_image(da: Any, image: Any, chunks: tuple[int, int]) -> Any:
    shape = getattr(image, "shape", None)
    if shape is not None and (len(shape) not in (2, 3) or 0 in shape):
        raise ValueError(
            "The parameter `image` of predict_large must be one image (height, width[, "
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
            "The parameter `image` of predict_large must be a dask array, a zarr array or a "
            f"numpy array (height, width[, channels]); got {type(image).__name__}."
        )
    kind = np.dtype(arr.dtype).kind
    if kind not in "biuf":
        raise TypeError(
            f"The parameter `image` must hold numbers (bool, integer or float pixels); got dtype "
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
    """Each layer's map size for the whole image, from thin probes of the last windows."""
    bb = hc.backbone_
    layers = hc._layer_names()
    red = {d["name"]: max(1, round(d["reduction"])) for d in hc.feature_info_}
    thin = max(64, 2 * stride)
    sizes: dict[str, list[int]] = {name: [0, 0] for name in layers}
    for axis, (n, c) in enumerate(zip(shape, chunks)):
        w0, _ = _window((n - 1) // c * c, n, n, ext, stride)
        probe = (n - w0, thin) if axis == 0 else (thin, n - w0)
        x = torch.zeros((1, bb.in_chans, *probe), device=hc.device_)
        maps = forward_maps(bb, x, layers, dtype=hc.dtype)
        for name, m in maps.items():
            sizes[name][axis] = w0 // red[name] + m.shape[2 + axis]
    return {k: (v[0], v[1]) for k, v in sizes.items()}


def _axis(start: int, stop: int, n_native: int, n: int, offset: int,
          n_local: int) -> tuple[torch.Tensor, ...]:
    """Bilinear neighbours and weights of pixels ``start..stop-1`` of an axis of ``n``
    pixels whose map has ``n_native`` cells, as indices into a window map that starts at
    native cell ``offset`` and has ``n_local`` cells."""
    i0, i1, w0, w1 = interp_weights(torch.arange(start, stop), n_native, n)
    i0, i1 = i0 - offset, i1 - offset
    if int(i0.min()) < 0 or int(i1.max()) >= n_local:  # pragma: no cover - a bug if reached
        raise RuntimeError("predict_large: a window does not cover its chunk's neighbours.")
    return i0, i1, w0.double(), w1.double()


def _upsample(m: torch.Tensor, rows: tuple, cols: tuple, dtype: torch.dtype) -> torch.Tensor:
    """``(c, ny, nx)``: a window map ``(c, h, w)`` read at pixels, bilinearly, separably."""
    i0, i1, a0, a1 = rows
    j0, j1, b0, b1 = cols
    m = m.to(dtype)
    t = m[:, i0, :] * a0.to(dtype)[:, None] + m[:, i1, :] * a1.to(dtype)[:, None]
    return t[:, :, j0] * b0.to(dtype) + t[:, :, j1] * b1.to(dtype)


def _large_mode(model: Any, hc: HypercolumnTransformer, method: str) -> str:
    if method == "transform_dense":
        return "features"
    head = getattr(model, "folded_", None)
    if head is None or isinstance(head, FoldedGrid):
        return "classifier"
    if method == "predict_proba" and head.link is None:
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


def _predict_chunk(model: Any, window: np.ndarray, spec: dict) -> np.ndarray:
    """One output chunk from its window: the task of :func:`predict_large`."""
    with _torch_threads(_threads_here(spec["threads"])):
        return _chunk(_live(model), np.asarray(window), spec)


def _chunk(model: Any, window: np.ndarray, spec: dict) -> np.ndarray:
    hc = _hypercolumns_of(model)
    H, W = spec["shape"]
    r0, r1, c0, c1 = spec["core"]
    w0, v0 = spec["origin"]
    mode, method = spec["mode"], spec["method"]
    layers = hc._layer_names()
    red = {d["name"]: max(1, round(d["reduction"])) for d in hc.feature_info_}
    checked = _check_images(hc, window, "image")
    fw = _forward_kwargs(hc)
    dev = fw["device"]
    project = None
    head = getattr(model, "folded_", None)
    if mode == "folded":
        by_name = {name: torch.from_numpy(np.asarray(b, dtype=np.float64)).to(dev)
                   for name, b in zip(layers, head.blocks)}

        def project(maps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            # 1x1 heads in float64 at native resolution, as folded_predict
            return dict(zip(maps, project_maps(maps, [by_name[name] for name in maps])))

    with _forward_lock(model):
        _, maps = next(iter_maps(hc.backbone_, checked, layers, project=project, **fw))
    ny, nx = r1 - r0, c1 - c0
    col_w = {}
    for name in layers:
        r = red[name]
        col_w[name] = _axis(c0, c1, spec["native"][name][1], W, v0 // r, maps[name].shape[2])

    def rows_of(name: str, a: int, b: int) -> tuple:
        r = red[name]
        return _axis(a, b, spec["native"][name][0], H, w0 // r, maps[name].shape[1])

    if mode == "folded":
        total = torch.from_numpy(np.asarray(head.bias, dtype=np.float64)).to(dev)
        total = total.reshape(-1, 1, 1).expand(-1, ny, nx).clone()
        for name in layers:
            total += _upsample(maps[name], rows_of(name, r0, r1), col_w[name], torch.float64)
        if head.location is not None:
            loc = torch.from_numpy(np.asarray(head.location, dtype=np.float64)).to(dev)
            u = torch.from_numpy(axis_locations(W, 0.0, float(W))[c0:c1]).to(dev)
            v = torch.from_numpy(axis_locations(H, 0.0, float(H))[r0:r1]).to(dev)
            total += loc[0][:, None, None] * u + loc[1][:, None, None] * v[:, None]
        if method == "predict":
            return np.asarray(head.classes)[head.labels(total).cpu().numpy()]
        if method == "predict_proba":
            values = head.proba(total).float().cpu().numpy()
        else:
            values = total.cpu().numpy()
        return values[0] if values.shape[0] == 1 else np.moveaxis(values, 0, -1)

    # hypercolumns of the chunk in bands of rows, for transform_dense or a classifier
    dtype, trail = spec["dtype"], spec["trail"]
    out = np.empty((ny, nx, *trail), dtype=dtype)
    chunk_pixels = getattr(model, "chunk_pixels", 65536)
    band = max(1, chunk_pixels // nx)
    u = axis_locations(W, 0.0, float(W))[c0:c1].astype(np.float32)
    v = axis_locations(H, 0.0, float(H))[r0:r1].astype(np.float32)
    for a in range(r0, r1, band):
        b = min(r1, a + band)
        parts = [_upsample(maps[name], rows_of(name, a, b), col_w[name], torch.float32)
                 for name in layers]
        feats = torch.cat(parts, 0).permute(1, 2, 0).cpu().numpy()  # (rows, nx, D)
        if hc.append_location:
            loc = np.empty((b - a, nx, 2), dtype=np.float32)
            loc[..., 0] = u[None, :]
            loc[..., 1] = v[a - r0 : b - r0, None]
            feats = np.concatenate([feats, loc], axis=-1)
        if mode == "features":
            out[a - r0 : b - r0] = feats
        else:
            values = np.asarray(getattr(model.classifier_, method)(
                feats.reshape((b - a) * nx, -1)))
            out[a - r0 : b - r0] = values.reshape(b - a, nx, *trail)
    return out


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
    skhyper.tiling : the same windows for the forward pass of one image.

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
    if hc.image_size is not None:
        raise ValueError(
            f"{owner} cannot chunk a model that resizes images (image_size={hc.image_size}): "
            "resize the image first and use a model with image_size=None."
        )
    if getattr(hc, "scales_", None) is not None:
        raise ValueError(
            f"{owner} cannot chunk a multi-scale model (scales={hc.scales_}): the windows of "
            "a resized image do not line up with the chunks. Predict the whole image, or use "
            "a model with scales=None."
        )
    ir = getattr(hc, "intensity_range", None)
    if isinstance(ir, (tuple, list)) and len(ir) and ir[0] == "percentile":
        raise ValueError(
            f"{owner} cannot reproduce intensity_range={tuple(ir)!r}: percentiles are taken per "
            "image, and a chunk's differ from the whole image's. Use a model with a fixed "
            "intensity_range=(low, high)."
        )
    pair = (chunks, chunks) if isinstance(chunks, Integral) else tuple(chunks)
    if len(pair) != 2 or any(isinstance(c, bool) or not isinstance(c, Integral) or c < 1
                             for c in pair):
        raise ValueError(
            f"The 'chunks' parameter of {owner} must be a positive int or a pair of them. Got "
            f"{chunks!r} instead."
        )
    layers = hc._layer_names()
    try:
        halo, stride = receptive_field(hc.backbone_, layers)
    except NotTileableError as err:
        raise ValueError(
            f"{owner} cannot chunk layers {layers}: {err} Predict the whole image instead."
        ) from err
    ext = halo + stride
    ch, cw = (max(stride, c // stride * stride) for c in pair)
    arr = _as_dask_image(da, image, (ch, cw))
    H, W = arr.shape[:2]
    n_chans = arr.shape[2] if arr.ndim == 3 else 1
    _check_images(hc, np.zeros((2, 2, n_chans), dtype=arr.dtype), "image")  # channel count
    mode = _large_mode(model, hc, method)
    dtype, trail = _large_meta(model, hc, method, mode)
    native = _native_sizes(hc, (H, W), (ch, cw), ext, stride)

    model = _without_cache(model)
    token = uuid.uuid4().hex[:12]
    threads: Any = n_threads
    model_ref = _model_ref(dask, model, client, token)
    if client is not None:
        threads = _cluster_threads(client, n_threads, model, None)
    base = {"shape": (H, W), "native": native, "mode": mode, "method": method,
            "dtype": dtype, "trail": trail, "threads": threads}
    rows = []
    for i, r0 in enumerate(range(0, H, ch)):
        r1 = min(H, r0 + ch)
        w0, w1 = _window(r0, r1, H, ext, stride)
        row = []
        for j, c0 in enumerate(range(0, W, cw)):
            c1 = min(W, c0 + cw)
            v0, v1 = _window(c0, c1, W, ext, stride)
            spec = {**base, "core": (r0, r1, c0, c1), "origin": (w0, v0)}
            task = dask.delayed(_predict_chunk, pure=True)(
                model_ref, arr[w0:w1, v0:v1], spec,
                dask_key_name=f"skhyper-large-{token}-{i}-{j}")
            row.append(da.from_delayed(task, shape=(r1 - r0, c1 - c0, *trail), dtype=dtype))
        rows.append(da.concatenate(row, axis=1) if len(row) > 1 else row[0])
    return da.concatenate(rows, axis=0) if len(rows) > 1 else rows[0]

