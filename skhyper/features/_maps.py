"""Native maps of checked images: batched forward passes, resizing, scales, cache, tiles.

The one forward path of the package: :meth:`MapPass.iter_maps` (an engine's backbone and
:class:`~skhyper.features.EngineSettings`) yields each image's native-resolution maps,
batching images of one shape, resizing them (``image_size``, then each scale of a pyramid),
serving and filling a :class:`~skhyper.features.MapCache`, and feeding images larger than one
window in tiles whose maps equal the whole-image maps. Its callers (the
:class:`~skhyper.features.FeatureEngine`) have validated the images and the settings; nothing
here checks them again.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm  # tqdm.auto warns in notebooks without ipywidgets

from ._backbone import Backbone
from ._cache import backbone_fingerprint, image_digest
from ._intensity import to_float_image
from ._scales import resized_shape, scale_prefix, split_scaled
from ._settings import DTYPES, EngineSettings
from ._tiling import needs_tiling, tiled_maps

__all__ = ["DTYPES", "MapPass", "forward_maps", "resized_shape"]

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
Tiling = Callable[[], tuple[int, int, dict[str, int]]]


@dataclass(frozen=True, eq=False)
class MapPass:
    """An engine's forward path: its backbone, its settings and what it prepared at build.

    ``cache_layers`` (the backbone's stages) are computed too when a
    :class:`~skhyper.features.MapCache` misses; ``tiling() -> (halo, stride, {layer:
    reduction})`` is asked for only when an image is fed larger than ``tile_size``. Immutable,
    so one pass serves many threads; :meth:`iter_maps` is its one entry point.
    """

    backbone: Backbone
    settings: EngineSettings
    cache_layers: tuple[str, ...] = ()
    tiling: Tiling | None = None

    def iter_maps(
        self,
        images: Sequence[np.ndarray],
        layers: Sequence[str],
        *,
        indices: Sequence[int] | None = None,
        project: Project | None = None,
        batched: bool = False,
    ) -> Iterator[tuple[int, Maps]] | Iterator[tuple[list[int], Maps]]:
        """Yield ``(image index, {layer: (c, h, w) map})`` for checked images.

        Images of the same (resized) shape are batched together, ``batch_size`` at a time;
        maps stay on ``device``. ``image_size`` resizes each image so its longer side has that
        many pixels (antialiased bilinear) before the forward pass. ``indices`` restricts the
        pass to some images.

        ``cache`` serves maps it holds and stores new ones. Images whose fed size exceeds
        ``tile_size`` go through the backbone in tiles (:func:`skhyper.features.tiled_maps`),
        giving the same maps. ``project`` is applied to the maps before they are yielded (per
        tile when tiling, so that only projected maps are held at full size).
        ``intensity_range`` says which pixel values are black and white.

        ``scales``: ``layers`` are then scaled names such as ``"s0.5.layer1"``, each computed
        on the image resized by its scale; images of one shape go ``batch_size`` at a time
        (one at a time when tiled at some scale) through every scale before their maps are
        yielded.

        ``batched``: yield ``([image indices], {layer: (n, c, h, w) maps})`` instead, the
        images of one forward batch together (images served by the cache, tiled or
        multi-scale come one by one); ``project`` is then not applied.
        """
        if batched and project is not None:
            raise ValueError("iter_maps: batched maps are not projected; pass one of the two.")
        if self.settings.scales is None:
            yield from self._iter_scale(images, list(layers), indices=indices, project=project,
                                        batched=batched)
            return
        yield from self._iter_scales(images, list(layers), indices=indices, project=project,
                                     batched=batched)

    def _iter_scales(self, images: Sequence[np.ndarray], layers: list[str], *,
                     indices: Sequence[int] | None, project: Project | None,
                     batched: bool) -> Iterator[tuple]:
        """:meth:`iter_maps` with scales: every scale of a chunk of images, then its maps."""
        s = self.settings
        plan = split_scaled(layers, s.scales)
        quiet = dataclasses.replace(self, settings=dataclasses.replace(s, verbose=False))
        for chunk in tqdm(self._scale_chunks(images, indices, max(c for c, _ in plan)),
                          disable=not s.verbose, desc="multi-scale hypercolumns", unit="batch"):
            found: dict[int, Maps] = {i: {} for i in chunk}
            for scale, names in plan:
                prefix = scale_prefix(scale)
                for i, maps in quiet._iter_scale(images, names, indices=chunk, scale=scale,
                                                 project=_renamed(project, prefix)):
                    found[i].update((prefix + k, v) for k, v in maps.items())
            for i in chunk:
                maps = found.pop(i)
                yield ([i], {name: maps[name][None] for name in layers}) if batched else (
                    i, {name: maps[name] for name in layers})

    def _scale_chunks(self, images: Sequence[np.ndarray], indices: Sequence[int] | None,
                      top: float) -> list[list[int]]:
        """Images of one shape, ``batch_size`` at a time (one at a time when the largest
        scale tiles them)."""
        s = self.settings
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i in range(len(images)) if indices is None else indices:
            groups[images[i].shape[:2]].append(i)
        chunks = []
        for shape, idx in groups.items():
            big = s.tile_size is not None and max(resized_shape(shape, s.image_size, top)) > (
                s.tile_size)
            step = 1 if big else s.batch_size
            chunks.extend(idx[k : k + step] for k in range(0, len(idx), step))
        return chunks

    def _iter_scale(
        self,
        images: Sequence[np.ndarray],
        layers: list[str],
        *,
        indices: Sequence[int] | None,
        project: Project | None,
        batched: bool = False,
        scale: float = 1.0,
    ) -> Iterator[tuple]:
        """:meth:`iter_maps` at one ``scale`` (the fed image is resized by it)."""
        indices = range(len(images)) if indices is None else indices
        tiled, direct = self._split_tiled(images, indices, scale)
        keys = self._cache_keys(images, direct, scale)
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i in direct:
            hit = None if i not in keys else self.settings.cache.get(keys[i], layers)
            if hit is None:
                groups[images[i].shape[:2]].append(i)
            else:
                maps = {k: v.to(self.settings.device) for k, v in hit.items()}
                yield _emit(i, maps, project, batched)
        yield from self._batches(images, groups, layers, keys, scale=scale, project=project,
                                 batched=batched)
        for i in tiled:
            yield _emit(i, self._tiled(images, i, layers, scale, project), None, batched)

    def _split_tiled(self, images: Sequence[np.ndarray], indices: Sequence[int],
                     scale: float) -> tuple[list[int], list[int]]:
        """``(tiled, direct)``: the images fed in tiles at ``scale``, and the others."""
        s = self.settings
        tiled, direct = [], []
        for i in indices:
            fed = resized_shape(images[i].shape[:2], s.image_size, scale)
            if s.tile_size is not None and max(fed) > s.tile_size:
                halo, stride, _ = self.tiling()
                if needs_tiling(fed, s.tile_size, halo, stride):
                    tiled.append(i)
                    continue
            direct.append(i)
        return tiled, direct

    def _cache_keys(self, images: Sequence[np.ndarray], indices: Sequence[int],
                    scale: float) -> dict[int, tuple]:
        """The map cache keys of the images (none without a cache)."""
        s = self.settings
        if s.cache is None:
            return {}
        base = (backbone_fingerprint(self.backbone), s.dtype, s.image_size, scale,
                s.intensity_range)
        return {i: (*base, image_digest(images[i])) for i in indices}

    def _batches(self, images: Sequence[np.ndarray], groups: dict[tuple[int, int], list[int]],
                 layers: list[str], keys: dict[int, tuple], *, scale: float,
                 project: Project | None, batched: bool) -> Iterator[tuple]:
        """Forward batches of images of one shape (the cache filled with their maps)."""
        s = self.settings
        compute = list(dict.fromkeys([*layers, *self.cache_layers])) if keys else layers
        batches = [(shape, idx[k : k + s.batch_size]) for shape, idx in groups.items()
                   for k in range(0, len(idx), s.batch_size)]
        for shape, idx in tqdm(batches, disable=not s.verbose, desc="hypercolumns",
                               unit="batch"):
            batch = _load_batch(images, idx, resized_shape(shape, s.image_size, scale),
                                self.backbone.in_chans, s.device, s.intensity_range)
            maps = _forward(self.backbone, batch, compute, s.dtype, shape)
            del batch
            for k, i in enumerate(idx if keys else ()):
                s.cache.put(keys[i], {name: m[k] for name, m in maps.items()}, forward=True)
            if batched:
                yield list(idx), {name: maps[name] for name in layers}
                continue
            for k, i in enumerate(idx):
                yield _emit(i, {name: maps[name][k] for name in layers}, project, False)

    def _tiled(self, images: Sequence[np.ndarray], i: int, layers: list[str], scale: float,
               project: Project | None) -> Maps:
        """The maps of image ``i`` computed in tiles (projected per tile)."""
        s = self.settings
        halo, stride, reductions = self.tiling()
        backbone = self.backbone

        def fwd(batch: torch.Tensor) -> Maps:
            return _forward(backbone, batch, layers, s.dtype, tuple(batch.shape[-2:]))

        shape = images[i].shape[:2]
        image = _load_batch(images, [i], resized_shape(shape, s.image_size, scale),
                            backbone.in_chans, s.device, s.intensity_range)[0]
        return tiled_maps(fwd, image, reductions, tile_size=s.tile_size, halo=halo,
                          stride=stride, project=project)


def _emit(i: int, maps: Maps, project: Project | None, batched: bool) -> tuple:
    """One image's maps as the caller takes them: ``([i], (1, c, h, w) maps)`` when
    ``batched``, else ``(i, maps)`` projected."""
    if batched:
        return [i], {k: v[None] for k, v in maps.items()}
    return i, maps if project is None else project(maps)


def _renamed(project: Project | None, prefix: str) -> Project | None:
    """``project`` for maps named by layer, when it expects scaled names."""
    if project is None:
        return None

    def run(maps: Maps) -> Maps:
        out = project({prefix + k: v for k, v in maps.items()})
        return {k[len(prefix):]: v for k, v in out.items()}

    return run
