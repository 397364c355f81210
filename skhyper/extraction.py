"""Hypercolumns: batched forward passes, bilinear sampling at pixels, dense extraction.

The hypercolumn of a pixel is the concatenation, over the chosen layers, of
each layer's map bilinearly upsampled to the image (``F.interpolate(...,
mode="bilinear", align_corners=False)``) and read at the pixel. Nothing here
upsamples a whole map: :func:`sample_maps` reads the 4 neighbours of each
pixel on the native-resolution map, so sampled rows equal the rows of the
dense hypercolumn at a fraction of its cost.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm  # tqdm.auto warns in notebooks without ipywidgets

from ._validation import check_images, check_positive_int, resolve_device, to_float_image
from .backbones import Backbone, build_backbone, resolve_layers
from .bilinear import interp_weights, row_bands, sample_maps
from .cache import MapCache, backbone_fingerprint, image_digest
from .intensity import check_intensity_range, warn_intensity
from .sampling import PixelSet
from .scales import check_scales, iter_scaled_maps, scaled_info
from .tiling import needs_tiling, receptive_field, tiled_maps

__all__ = [
    "forward_maps",
    "iter_maps",
    "sample_maps",
    "extract_hypercolumns",
    "extract_dense",
    "row_bands",
    "interp_weights",
    "DTYPES",
]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _resized_shape(shape: tuple[int, int], image_size: int | None, scale: float = 1.0
                   ) -> tuple[int, int]:
    """The fed size: longer side ``image_size`` (if set), then times ``scale``."""
    h, w = shape
    if image_size is not None:
        s = image_size / max(h, w)
        h, w = max(1, round(h * s)), max(1, round(w * s))
    if scale != 1.0:
        h, w = max(1, round(h * scale)), max(1, round(w * scale))
    return h, w


def forward_maps(
    backbone: Backbone,
    batch: torch.Tensor,
    layers: Sequence[str],
    *,
    dtype: str = "float32",
) -> dict[str, torch.Tensor]:
    """Native-resolution maps of ``layers`` for a ``(n, 3, h, w)`` batch in ``[0, 1]``.

    Runs in ``inference_mode``, with autocast for ``bfloat16``/``float16``;
    the pass stops at the deepest requested layer.
    """
    dev_type = batch.device.type
    with torch.inference_mode(), torch.autocast(
        dev_type, dtype=DTYPES[dtype], enabled=dtype != "float32"
    ):
        return backbone(batch, layers)


def _load_batch(
    images: Sequence[np.ndarray], idx: Sequence[int], target: tuple[int, int], n_chans: int,
    device: torch.device, intensity_range: tuple | None = None,
) -> torch.Tensor:
    """``(n, c, h, w)`` float batch in ``[0, 1]`` on ``device``, resized to ``target``."""
    arrays = [to_float_image(images[i], n_chans, intensity_range) for i in idx]
    stacked = arrays[0][None] if len(arrays) == 1 else np.stack(arrays)
    del arrays
    batch = torch.from_numpy(stacked).permute(0, 3, 1, 2)
    batch = batch.to(device, non_blocking=True)
    if target != batch.shape[-2:]:
        batch = torch.nn.functional.interpolate(
            batch, size=target, mode="bilinear", align_corners=False, antialias=True
        )
    return batch


def _forward(backbone: Backbone, batch: torch.Tensor, layers: Sequence[str], dtype: str,
             shape: tuple[int, int]) -> dict[str, torch.Tensor]:
    batch = batch.contiguous(memory_format=torch.channels_last)
    try:
        return forward_maps(backbone, batch, layers, dtype=dtype)
    except RuntimeError as err:
        target = tuple(batch.shape[-2:])
        if isinstance(err, torch.OutOfMemoryError) or min(target) >= 64:
            raise
        raise ValueError(
            f"Images of shape {shape} (fed at {target}) are too small for backbone "
            f"{backbone.name!r}: {err}. Upscale them, set image_size or use larger scales."
        ) from err


def iter_maps(
    backbone: Backbone,
    images: Sequence[np.ndarray],
    layers: Sequence[str],
    *,
    device: torch.device,
    batch_size: int = 8,
    dtype: str = "float32",
    image_size: int | None = None,
    indices: Sequence[int] | None = None,
    verbose: bool = False,
    cache: MapCache | None = None,
    tile_size: int | None = None,
    project: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
    intensity_range: Any = None,
    scales: Sequence[float] | None = None,
) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
    """Yield ``(image index, {layer: (c, h, w) map})`` for checked images.

    Images of the same (resized) shape are batched together, ``batch_size``
    at a time; maps stay on ``device``. ``image_size`` resizes each image so
    its longer side has that many pixels (antialiased bilinear) before the
    forward pass. ``indices`` restricts the pass to some images.

    ``cache`` (a :class:`~skhyper.cache.MapCache`) serves maps it holds and
    stores new ones (all stages are computed on a miss). Images whose fed
    size exceeds ``tile_size`` on either side go through the backbone in
    tiles (:func:`skhyper.tiling.tiled_maps`), giving the same maps.
    ``project`` is applied to the maps before they are yielded (per tile when
    tiling, so that only projected maps are held at full size).
    ``intensity_range`` says which pixel values are black and white
    (:mod:`skhyper.intensity`); with None, images that would come out nearly
    black or outside ``[0, 1]`` get one warning.

    ``scales`` (see :mod:`skhyper.scales`): ``layers`` are then scaled names
    such as ``"s0.5.layer1"``, each computed on the image resized by its
    scale (:func:`skhyper.scales.iter_scaled_maps`).
    """
    settings = dict(
        device=device, batch_size=batch_size, dtype=dtype, image_size=image_size,
        indices=indices, verbose=verbose, cache=cache, tile_size=tile_size, project=project,
        intensity_range=intensity_range,
    )
    if scales is not None:
        yield from iter_scaled_maps(backbone, images, layers, scales, **settings)
    else:
        yield from _iter_maps(backbone, images, layers, **settings)


def _iter_maps(
    backbone: Backbone,
    images: Sequence[np.ndarray],
    layers: Sequence[str],
    *,
    device: torch.device,
    batch_size: int = 8,
    dtype: str = "float32",
    image_size: int | None = None,
    indices: Sequence[int] | None = None,
    verbose: bool = False,
    cache: MapCache | None = None,
    tile_size: int | None = None,
    project: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
    intensity_range: Any = None,
    scale: float = 1.0,
    warn: bool = True,
) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
    """:func:`iter_maps` at one ``scale`` (the fed image is resized by it); ``warn``: check
    the intensities."""
    indices = range(len(images)) if indices is None else indices
    layers = list(layers)
    n_chans = backbone.in_chans
    intensity_range = check_intensity_range(intensity_range, owner="iter_maps")
    if warn:
        warn_intensity((images[i] for i in indices), intensity_range)
    finish = project if project is not None else (lambda maps: maps)
    compute = layers
    if cache is not None:
        base = (backbone_fingerprint(backbone), dtype, image_size, scale, intensity_range)
        compute = list(dict.fromkeys([*layers, *backbone.stages()]))
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    tiled: list[int] = []
    keys: dict[int, tuple] = {}
    rf: tuple[int, int] | None = None
    for i in indices:
        shape = images[i].shape[:2]
        fed = _resized_shape(shape, image_size, scale)
        if tile_size is not None and max(fed) > tile_size:
            rf = rf or receptive_field(backbone, layers)
            if needs_tiling(fed, tile_size, *rf):
                tiled.append(i)
                continue
        if cache is not None:
            keys[i] = (*base, image_digest(images[i]))
            hit = cache.get(keys[i], layers)
            if hit is not None:
                yield i, finish({k: v.to(device) for k, v in hit.items()})
                continue
        groups[shape].append(i)
    batches = [
        (shape, idx[k : k + batch_size])
        for shape, idx in groups.items()
        for k in range(0, len(idx), batch_size)
    ]
    for shape, idx in tqdm(batches, disable=not verbose, desc="hypercolumns", unit="batch"):
        batch = _load_batch(images, idx, _resized_shape(shape, image_size, scale), n_chans,
                            device, intensity_range)
        maps = _forward(backbone, batch, compute, dtype, shape)
        del batch
        for k, i in enumerate(idx):
            if cache is not None:
                cache.put(keys[i], {name: m[k] for name, m in maps.items()})
                cache.n_forward_images += 1
            yield i, finish({name: maps[name][k] for name in layers})
    if tiled:
        info = resolve_layers(backbone, layers)
        halo, stride = rf

        def fwd(batch: torch.Tensor) -> dict[str, torch.Tensor]:
            return _forward(backbone, batch, layers, dtype, tuple(batch.shape[-2:]))

        for i in tqdm(tiled, disable=not verbose, desc="tiled images", unit="image"):
            shape = images[i].shape[:2]
            image = _load_batch(images, [i], _resized_shape(shape, image_size, scale),
                                n_chans, device, intensity_range)[0]
            yield i, tiled_maps(fwd, image, info, tile_size=tile_size, halo=halo,
                                stride=stride, project=project)


def _prepare(backbone, layers, device, batch_size, dtype, image_size, tile_size, intensity_range,
             scales, owner):
    check_intensity_range(intensity_range, owner=owner)
    scales = check_scales(scales, owner=owner)
    bb = backbone if isinstance(backbone, Backbone) else build_backbone(backbone)
    info = resolve_layers(bb, layers)
    if scales is not None:
        info = scaled_info(info, scales)
    dev = resolve_device(device)
    if dtype not in DTYPES:
        raise ValueError(f"The 'dtype' parameter must be one of {sorted(DTYPES)}; got {dtype!r}.")
    check_positive_int(batch_size, "batch_size")
    check_positive_int(image_size, "image_size", allow_none=True)
    check_positive_int(tile_size, "tile_size", allow_none=True)
    bb = bb.to(dev).eval()
    return bb, info, dev, scales


def extract_hypercolumns(
    X: PixelSet,
    backbone: Backbone | str | torch.nn.Module = "efficientnet_lite0",
    layers: Sequence[str | int] | None = None,
    *,
    device: Any = "cpu",
    batch_size: int = 8,
    dtype: str = "float32",
    image_size: int | None = None,
    verbose: bool = False,
    cache: MapCache | None = None,
    tile_size: int | None = None,
    intensity_range: Any = None,
    scales: Sequence[float] | None = None,
) -> np.ndarray:
    """Hypercolumns of the pixels of a :class:`~skhyper.sampling.PixelSet`.

    Each image with pixels in ``X`` goes through the backbone once; every
    layer's native map is sampled bilinearly at the pixels.

    Parameters
    ----------
    X : PixelSet
        The pixels.
    backbone : Backbone, str or torch.nn.Module, default="efficientnet_lite0"
        A built :class:`~skhyper.backbones.Backbone` (used as is) or anything
        :func:`~skhyper.backbones.build_backbone` takes.
    layers : list of str or int, default=None
        Layer names or stage indices; None takes all stages.
    device : {"cpu", "cuda", "auto"} or torch.device, default="cpu"
    batch_size : int, default=8
        Images per forward pass (images of one shape are batched together).
    dtype : {"float32", "bfloat16", "float16"}, default="float32"
        Forward-pass precision (autocast); results are float32.
    image_size : int, default=None
        If set, images are resized so their longer side has this many pixels
        before the forward pass; pixels stay in original image coordinates.
    verbose : bool, default=False
        Show a progress bar.
    cache : MapCache, default=None
        Serve and store native maps (see :class:`skhyper.cache.MapCache`).
    tile_size : int, default=None
        Feed images larger than one window of ``tile_size`` pixels plus the
        receptive-field halo in tiles; the maps equal the whole-image maps
        (see :mod:`skhyper.tiling`). None never tiles.
    intensity_range : None, (low, high) or ("percentile", p_low, p_high), default=None
        Pixel values mapped to ``[0, 1]`` (values outside clipped); None: the
        dtype's range. See :mod:`skhyper.intensity`.
    scales : sequence of float, default=None
        Multi-scale hypercolumns (:mod:`skhyper.scales`): every layer of
        ``layers`` at every scale, the image resized by the scale factor
        before the forward pass, scale-major. None: the image as fed.

    Returns
    -------
    ndarray of shape (n_pixels, n_features), float32

    Examples
    --------
    >>> import numpy as np
    >>> from skhyper.sampling import sample_pixels
    >>> rng = np.random.default_rng(0)
    >>> images = rng.random((2, 40, 50, 3))
    >>> X, y = sample_pixels(images, (images[..., 0] > 0.5).astype(int), n_per_image=7,
    ...                      random_state=0)
    >>> from skhyper.backbones import build_backbone
    >>> bb = build_backbone("resnet18", weights=None)
    >>> extract_hypercolumns(X, bb, ["layer1", "fc"]).shape
    (14, 1064)
    >>> extract_hypercolumns(X, bb, ["layer1", "fc"], scales=(1.0, 0.5)).shape
    (14, 2128)
    """
    if not isinstance(X, PixelSet):
        raise TypeError(
            "The parameter `X` must be a PixelSet (e.g. from skhyper.sample_pixels or "
            f"skhyper.grid_pixels); got {type(X).__name__}."
        )
    bb, info, dev, scales = _prepare(backbone, layers, device, batch_size, dtype, image_size,
                                     tile_size, intensity_range, scales, "extract_hypercolumns")
    images, _ = check_images(X.images, param="X.images", n_channels=bb.in_chans)
    coords = X.coords
    names = [d["name"] for d in info]
    total = sum(d["num_chs"] for d in info)
    out = np.empty((len(coords), total), dtype=np.float32)
    if len(coords) == 0:
        return out
    order = np.argsort(coords[:, 0], kind="stable")
    img_ids, starts = np.unique(coords[order, 0], return_index=True)
    bounds = dict(zip(img_ids.tolist(), zip(starts, [*starts[1:], len(order)])))
    for i, maps in iter_maps(
        bb, images, names, device=dev, batch_size=batch_size, dtype=dtype,
        image_size=image_size, indices=img_ids.tolist(), verbose=verbose, cache=cache,
        tile_size=tile_size, intensity_range=intensity_range, scales=scales,
    ):
        a, b = bounds[i]
        sel = order[a:b]
        rows = torch.from_numpy(coords[sel, 1])
        cols = torch.from_numpy(coords[sel, 2])
        first = int(sel[0])
        if dev.type == "cpu" and (np.diff(sel) == 1).all():
            # the image's pixels are one block of rows: sample straight into the result
            sample_maps(maps, rows, cols, images[i].shape[:2],
                        out=torch.from_numpy(out[first : first + len(sel)]))
        else:
            out[sel] = sample_maps(maps, rows, cols, images[i].shape[:2]).cpu().numpy()
    return out


def extract_dense(
    images: Any,
    backbone: Backbone | str | torch.nn.Module = "efficientnet_lite0",
    layers: Sequence[str | int] | None = None,
    *,
    device: Any = "cpu",
    batch_size: int = 8,
    dtype: str = "float32",
    image_size: int | None = None,
    chunk_pixels: int = 65536,
    verbose: bool = False,
    cache: MapCache | None = None,
    tile_size: int | None = None,
    intensity_range: Any = None,
    scales: Sequence[float] | None = None,
) -> list[np.ndarray] | np.ndarray:
    """Dense hypercolumns ``(height, width, n_features)`` of whole images, for analysis.

    Computed in bands of rows (about ``chunk_pixels`` pixels each) so that the
    only full-resolution array is the result itself. Parameters as in
    :func:`extract_hypercolumns`.

    Returns
    -------
    ndarray of shape (height, width, n_features), or a list of them
        A list when a list or stack of images was passed.

    Examples
    --------
    >>> import numpy as np
    >>> from skhyper.backbones import build_backbone
    >>> bb = build_backbone("resnet18", weights=None)
    >>> extract_dense(np.zeros((33, 47, 3)), bb, ["layer2", "layer4"]).shape
    (33, 47, 640)
    >>> extract_dense(np.zeros((33, 47, 3)), bb, ["layer2"], scales=(2, 1)).shape
    (33, 47, 256)
    """
    bb, info, dev, scales = _prepare(backbone, layers, device, batch_size, dtype, image_size,
                                     tile_size, intensity_range, scales, "extract_dense")
    checked, batched = check_images(images, param="images", n_channels=bb.in_chans)
    check_positive_int(chunk_pixels, "chunk_pixels")
    names = [d["name"] for d in info]
    total = sum(d["num_chs"] for d in info)
    results: list[np.ndarray | None] = [None] * len(checked)
    for i, maps in iter_maps(
        bb, checked, names, device=dev, batch_size=batch_size, dtype=dtype,
        image_size=image_size, verbose=verbose, cache=cache, tile_size=tile_size,
        intensity_range=intensity_range, scales=scales,
    ):
        H, W = checked[i].shape[:2]
        dense = np.empty((H, W, total), dtype=np.float32)
        for r0, r1, rows, cols in row_bands((H, W), chunk_pixels):
            band_out = dense[r0:r1].reshape((r1 - r0) * W, total)
            if dev.type == "cpu":
                sample_maps(maps, rows, cols, (H, W), out=torch.from_numpy(band_out))
            else:
                band_out[:] = sample_maps(maps, rows, cols, (H, W)).cpu().numpy()
        results[i] = dense
    return results if batched else results[0]
