"""Native maps of checked images: batched forward passes, resizing, scales, cache, tiles.

The one forward path of the package: :func:`iter_maps` yields each image's
native-resolution maps, batching images of one shape, resizing them
(``image_size``, then each scale of a pyramid), serving and filling a
:class:`~skhyper.features.MapCache`, and feeding images larger than one
window in tiles whose maps equal the whole-image maps. Its callers (the
:class:`~skhyper.features.FeatureEngine`) have validated the images and the
settings; nothing here checks them again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm  # tqdm.auto warns in notebooks without ipywidgets

from ._backbone import Backbone
from ._cache import MapCache, backbone_fingerprint, image_digest
from ._intensity import to_float_image
from ._scales import scale_prefix, split_scaled
from ._tiling import needs_tiling, tiled_maps

__all__ = ["DTYPES", "forward_maps", "iter_maps", "resized_shape"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resized_shape(shape: tuple[int, int], image_size: int | None, scale: float = 1.0
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
        maps = forward_maps(backbone, batch, layers, dtype=dtype)
    except RuntimeError as err:
        target = tuple(batch.shape[-2:])
        if isinstance(err, torch.OutOfMemoryError) or min(target) >= 64:
            raise
        raise ValueError(
            f"Images of shape {shape} (fed at {target}) are too small for backbone "
            f"{backbone.name!r}: {err}. Upscale them, set image_size or use larger scales."
        ) from err
    _check_finite_maps(maps, batch, backbone, dtype)
    return maps


def _check_finite_maps(maps: dict[str, torch.Tensor], batch: torch.Tensor, backbone: Backbone,
                       dtype: str) -> None:
    """Overflow inside the network (huge pixel values, float16) must not become NaN scores.

    One pass per map: a finite sum (float32 accumulation) means every value is finite (an
    infinity or NaN makes any sum non-finite); only a non-finite sum, which a huge finite map
    can also give, is checked value by value."""
    if not maps or bool(torch.stack([m.sum(dtype=torch.float32) for m in maps.values()])
                        .isfinite().all()):
        return
    bad = [name for name, m in maps.items() if not bool(torch.isfinite(m).all())]
    if not bad:  # the sums overflowed, the values are finite
        return
    lo, hi = float(batch.amin()), float(batch.amax())
    raise ValueError(
        f"The 'images' parameter gave non-finite activations (overflow) in layers {bad} of "
        f"backbone {backbone.name!r} at dtype={dtype!r}; the pixel values reached the network "
        f"in [{lo:.3g}, {hi:.3g}]. Map pixel values to [0, 1] with "
        "intensity_range=(low, high)"
        + (", or use dtype='bfloat16' or 'float32'." if dtype == "float16" else ".")
    )


Maps = dict[str, torch.Tensor]
Project = Callable[[Maps], Maps]


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
    cache_layers: Sequence[str] = (),
    tile_size: int | None = None,
    tiling: Callable[[], tuple[int, int, dict[str, int]]] | None = None,
    project: Project | None = None,
    intensity_range: tuple | None = None,
    scales: Sequence[float] | None = None,
    batched: bool = False,
) -> Iterator[tuple[int, Maps]] | Iterator[tuple[list[int], Maps]]:
    """Yield ``(image index, {layer: (c, h, w) map})`` for checked images.

    Images of the same (resized) shape are batched together, ``batch_size``
    at a time; maps stay on ``device``. ``image_size`` resizes each image so
    its longer side has that many pixels (antialiased bilinear) before the
    forward pass. ``indices`` restricts the pass to some images.

    ``cache`` serves maps it holds and stores new ones (``cache_layers``, the
    backbone's stages, are computed too on a miss). Images whose fed size
    exceeds ``tile_size`` go through the backbone in tiles
    (:func:`skhyper.features.tiled_maps`, with ``tiling() -> (halo, stride,
    {layer: reduction})``), giving the same maps. ``project`` is applied to
    the maps before they are yielded (per tile when tiling, so that only
    projected maps are held at full size). ``intensity_range`` says which
    pixel values are black and white.

    ``scales``: ``layers`` are then scaled names such as ``"s0.5.layer1"``,
    each computed on the image resized by its scale; images of one shape go
    ``batch_size`` at a time (one at a time when tiled at some scale) through
    every scale before their maps are yielded.

    ``batched``: yield ``([image indices], {layer: (n, c, h, w) maps})`` instead, the images of
    one forward batch together (images served by the cache, tiled or multi-scale come one by
    one); ``project`` is then not applied.
    """
    settings = dict(device=device, batch_size=batch_size, dtype=dtype, image_size=image_size,
                    verbose=verbose, cache=cache, cache_layers=cache_layers,
                    tile_size=tile_size, tiling=tiling, intensity_range=intensity_range)
    if batched and project is not None:
        raise ValueError("iter_maps: batched maps are not projected; pass one of the two.")
    if scales is None:
        yield from _iter_scale(backbone, images, list(layers), indices=indices, project=project,
                               batched=batched, **settings)
        return
    plan = split_scaled(layers, scales)
    indices = list(range(len(images)) if indices is None else indices)
    top = max(s for s, _ in plan)
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i in indices:
        groups[images[i].shape[:2]].append(i)
    chunks = []
    for shape, idx in groups.items():
        big = tile_size is not None and max(resized_shape(shape, image_size, top)) > tile_size
        step = 1 if big else batch_size
        chunks.extend(idx[k : k + step] for k in range(0, len(idx), step))
    settings["verbose"] = False
    for chunk in tqdm(chunks, disable=not verbose, desc="multi-scale hypercolumns", unit="batch"):
        found: dict[int, Maps] = {i: {} for i in chunk}
        for scale, names in plan:
            prefix = scale_prefix(scale)
            for i, maps in _iter_scale(backbone, images, names, indices=chunk, scale=scale,
                                       project=_renamed(project, prefix), **settings):
                found[i].update((prefix + k, v) for k, v in maps.items())
        for i in chunk:
            maps = found.pop(i)
            yield ([i], {name: maps[name][None] for name in layers}) if batched else (
                i, {name: maps[name] for name in layers})


def _renamed(project: Project | None, prefix: str) -> Project | None:
    """``project`` for maps named by layer, when it expects scaled names."""
    if project is None:
        return None

    def run(maps: Maps) -> Maps:
        out = project({prefix + k: v for k, v in maps.items()})
        return {k[len(prefix):]: v for k, v in out.items()}

    return run


def _iter_scale(
    backbone: Backbone,
    images: Sequence[np.ndarray],
    layers: list[str],
    *,
    device: torch.device,
    batch_size: int,
    dtype: str,
    image_size: int | None,
    indices: Sequence[int] | None,
    verbose: bool,
    cache: MapCache | None,
    cache_layers: Sequence[str],
    tile_size: int | None,
    tiling: Callable[[], tuple[int, int, dict[str, int]]] | None,
    project: Project | None,
    intensity_range: tuple | None,
    scale: float = 1.0,
    batched: bool = False,
) -> Iterator[tuple[int, Maps]] | Iterator[tuple[list[int], Maps]]:
    """:func:`iter_maps` at one ``scale`` (the fed image is resized by it)."""
    indices = range(len(images)) if indices is None else indices
    n_chans = backbone.in_chans
    finish = project if project is not None else (lambda maps: maps)

    def one(i: int, maps: Maps) -> tuple:  # one image's maps, as the caller takes them
        return ([i], {k: v[None] for k, v in maps.items()}) if batched else (i, finish(maps))

    compute = layers
    if cache is not None:
        base = (backbone_fingerprint(backbone), dtype, image_size, scale, intensity_range)
        compute = list(dict.fromkeys([*layers, *cache_layers]))
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    tiled: list[int] = []
    keys: dict[int, tuple] = {}
    for i in indices:
        shape = images[i].shape[:2]
        fed = resized_shape(shape, image_size, scale)
        if tile_size is not None and max(fed) > tile_size:
            halo, stride, _ = tiling()
            if needs_tiling(fed, tile_size, halo, stride):
                tiled.append(i)
                continue
        if cache is not None:
            keys[i] = (*base, image_digest(images[i]))
            hit = cache.get(keys[i], layers)
            if hit is not None:
                yield one(i, {k: v.to(device) for k, v in hit.items()})
                continue
        groups[shape].append(i)
    batches = [
        (shape, idx[k : k + batch_size])
        for shape, idx in groups.items()
        for k in range(0, len(idx), batch_size)
    ]
    for shape, idx in tqdm(batches, disable=not verbose, desc="hypercolumns", unit="batch"):
        batch = _load_batch(images, idx, resized_shape(shape, image_size, scale), n_chans,
                            device, intensity_range)
        maps = _forward(backbone, batch, compute, dtype, shape)
        del batch
        if cache is not None:
            for k, i in enumerate(idx):
                cache.put(keys[i], {name: m[k] for name, m in maps.items()}, forward=True)
        if batched:
            yield list(idx), {name: maps[name] for name in layers}
            continue
        for k, i in enumerate(idx):
            yield i, finish({name: maps[name][k] for name in layers})
    if tiled:
        halo, stride, reductions = tiling()

        def fwd(batch: torch.Tensor) -> Maps:
            return _forward(backbone, batch, layers, dtype, tuple(batch.shape[-2:]))

        for i in tqdm(tiled, disable=not verbose, desc="tiled images", unit="image"):
            shape = images[i].shape[:2]
            image = _load_batch(images, [i], resized_shape(shape, image_size, scale),
                                n_chans, device, intensity_range)[0]
            maps = tiled_maps(fwd, image, reductions, tile_size=tile_size, halo=halo,
                              stride=stride, project=project)
            yield ([i], {k: v[None] for k, v in maps.items()}) if batched else (i, maps)
