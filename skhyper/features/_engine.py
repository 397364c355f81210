"""The fitted feature engine: images -> native maps -> hypercolumns, for every consumer.

:class:`FeatureEngine` is built once (by :class:`~skhyper.HypercolumnTransformer`'s ``fit``,
exposed as ``engine_``, or by :func:`~skhyper.features.build_engine`) and holds everything that
turns images into features: the backbone copy with its capture hooks, the resolved layers,
device, dtype, batching, resizing and scales, tiling, the map cache, the channel strategy and
intensity range, and whether location columns are appended. Its public methods are all that the
estimators, the heads, :mod:`skhyper.parallel`, :mod:`skhyper.inspection` and the benchmarks
use: :meth:`~FeatureEngine.iter_maps` (native maps per image), :meth:`~FeatureEngine.sample`
(hypercolumn rows at pixels), :meth:`~FeatureEngine.dense` and :meth:`~FeatureEngine.bands`
(dense hypercolumns, whole or in bands of rows).

An engine does not change after it is built, so one engine serves many threads at once: the
backbone's layer capture is per call (see :mod:`skhyper.features`), the receptive field and the
cache key are computed at build, and the :class:`~skhyper.features.MapCache` locks. Images
reach the engine checked (:meth:`~FeatureEngine.check_images`, at the public boundary); its
methods do not scan them again.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from .._params import resolve_device
from .._validation import CheckedImages
from ..exceptions import DeviceWarning
from ..location import LOCATION, frame_of, location_columns
from ..sampling import PixelSet
from ._backbone import Backbone
from ._bilinear import row_bands, sample_maps
from ._cache import backbone_fingerprint
from ._channels import check_channels
from ._intensity import warn_intensity
from ._maps import MapPass, Project
from ._records import FeatureInfo, as_records
from ._settings import EngineSettings
from ._tiling import NotTileableError, receptive_field
from ._transformers import map_canvases

__all__ = ["LOCATION_INFO", "FeatureEngine"]

#: The record of the location columns ``(u, v)`` (:data:`skhyper.location.LOCATION`), the last
#: of ``FeatureEngine.blocks`` when they are appended.
LOCATION_INFO = FeatureInfo.from_mapping(LOCATION)


def _setting(name: str) -> property:
    """The engine attribute ``name``: ``settings.<name>``; assigning it replaces the settings."""

    def get(self: FeatureEngine) -> Any:
        return getattr(self.settings, name)

    def set_(self: FeatureEngine, value: Any) -> None:
        self.settings = dataclasses.replace(self.settings, **{name: value})
        self._prepare()

    return property(get, set_, doc=f"``settings.{name}``.")


class FeatureEngine:
    """Images to native maps and hypercolumns, with fixed settings; thread-safe.

    Build it with :func:`~skhyper.features.build_engine` (or read
    ``HypercolumnTransformer.engine_``). It turns images into the native maps of
    chosen layers and reads them at pixels as hypercolumns [1]_: each layer's map
    bilinearly upsampled to the image, concatenated over layers, without ever
    building the upsampled maps.

    Parameters
    ----------
    backbone : skhyper.features.Backbone
        The network, used as it is (the engine taps its layers): pass a copy that
        no one else changes, in eval mode on ``settings.device``.
    feature_info : list of FeatureInfo or dict
        One record per map, as ``skhyper.features.build_engine`` resolves them
        (layer, channels, reduction, scale): which maps make a hypercolumn, in
        order.
    settings : EngineSettings, default=None
        How the backbone runs (device, precision, batching, tiling, cache...).
        None takes ``EngineSettings()``.
    n_channels : int, default=3
        Image channels the engine takes (checked by :meth:`check_images`).

    Attributes
    ----------
    backbone : skhyper.features.Backbone
        The engine's own backbone (a copy, in eval mode, on ``device``).
    settings : skhyper.features.EngineSettings
        How it runs (frozen); :meth:`replace` gives an engine with other run settings.
    feature_info : list of FeatureInfo
        One record per map: ``name``, ``num_chs``, ``reduction``, ``kind`` (and ``layer``,
        ``scale`` with scales, ``pad_to`` for transformer maps), as
        ``HypercolumnTransformer.feature_info_``; readable as dicts too.
    blocks : list of FeatureInfo
        ``feature_info`` plus the location columns' record (:data:`LOCATION_INFO`, the record
        of :data:`skhyper.location.LOCATION`) when location columns are appended: the layout of
        a hypercolumn, one block per map (what heads fold onto).
    map_names : list of str
        The names of the maps, one per entry of ``feature_info``.
    layers : list of str
        The backbone layers, once each.
    n_features : int
        Length of a hypercolumn (location columns included).
    n_channels : int
        Image channels taken.
    device, dtype, batch_size, image_size, tile_size, cache, scales, channel_strategy, \
intensity_range, append_location, verbose
        The settings (``settings.<name>``). Assigning one replaces ``settings`` (not while
        other threads use the engine).

    See Also
    --------
    skhyper.features.build_engine : Build an engine from a backbone name or module.
    skhyper.features.EngineSettings : The run settings.

    References
    ----------
    .. [1] B. Hariharan, P. Arbelaez, R. Girshick and J. Malik, "Hypercolumns for
       object segmentation and fine-grained localization", CVPR 2015.

    Examples
    --------
    >>> import numpy as np
    >>> from skhyper.features import build_engine
    >>> engine = build_engine("resnet18", layers=["layer1", "fc"], weights=None, device="cpu")
    >>> images = engine.check_images([np.zeros((40, 52, 3))])
    >>> (i, maps), = engine.iter_maps(images)
    >>> {k: tuple(v.shape) for k, v in maps.items()}
    {'layer1': (64, 10, 13), 'fc': (1000, 1, 1)}
    >>> engine.dense(images)[0].shape
    (40, 52, 1064)
    """

    def __init__(
        self,
        backbone: Backbone,
        feature_info: Sequence[FeatureInfo | dict],
        settings: EngineSettings | None = None,
        *,
        n_channels: int = 3,
    ) -> None:
        self.backbone = backbone
        self.feature_info = as_records(feature_info)
        self.settings = EngineSettings() if settings is None else settings
        if not isinstance(self.settings, EngineSettings):
            raise TypeError(f"The 'settings' parameter of FeatureEngine must be an "
                            f"EngineSettings; got {type(settings).__name__}.")
        self.n_channels = n_channels
        self.map_names = [d.name for d in self.feature_info]
        self.layers = list(dict.fromkeys(d.source_layer for d in self.feature_info))
        self._prepare()

    # the settings, read as attributes (as before the settings object)
    device = _setting("device")
    dtype = _setting("dtype")
    batch_size = _setting("batch_size")
    image_size = _setting("image_size")
    tile_size = _setting("tile_size")
    cache = _setting("cache")
    scales = _setting("scales")
    channel_strategy = _setting("channel_strategy")
    intensity_range = _setting("intensity_range")
    append_location = _setting("append_location")
    verbose = _setting("verbose")

    def _prepare(self) -> None:
        """Everything inference would otherwise compute lazily (and race on): hooks, the
        cache key, the receptive field."""
        bb = self.backbone
        self._cache_layers = bb.stages() if self.cache is not None else []
        bb.tap([*self.layers, *self._cache_layers])
        if self.cache is not None:
            backbone_fingerprint(bb)
        self._tiling: tuple[int, int, dict[str, int]] | None = None
        self._tiling_error: str | None = None
        if self.tile_size is not None:
            table = {d.name: d for d in bb.layer_table()}
            try:
                halo, stride = receptive_field(bb, self.layers)
            except NotTileableError as err:
                self._tiling_error = str(err)
            else:
                red = {n: max(1, round(table[n].reduction)) for n in self.layers}
                self._tiling = (halo, stride, red)

    # -- description ------------------------------------------------------------------------

    @property
    def blocks(self) -> list[FeatureInfo]:
        """``feature_info`` (+ the location columns' record): one block per hypercolumn part."""
        info = list(self.feature_info)
        return [*info, LOCATION_INFO] if self.append_location else info

    @property
    def n_features(self) -> int:
        return sum(d.num_chs for d in self.blocks)

    def feature_names(self) -> list[str]:
        """The name of every hypercolumn feature, in column order.

        Returns
        -------
        names : list of str
            ``"<map>.c<channel>"`` per feature (``ch<k>.`` first for
            ``channel_strategy="per_channel"``), then ``location.u``, ``location.v``
            when location columns are appended; ``n_features`` names.
        """
        names = []
        per_channel = self.channel_strategy == "per_channel"
        n_img = self.n_channels if per_channel else 1
        for d in self.feature_info:
            n = d.num_chs // n_img
            width = max(3, len(str(n - 1)))
            for k in range(n_img):
                prefix = f"ch{k}." if per_channel else ""
                names.extend(f"{prefix}{d.name}.c{j:0{width}d}" for j in range(n))
        if self.append_location:
            names.extend(["location.u", "location.v"])
        return names

    def canvases(self, image_shape: tuple[int, int]) -> list[tuple[float, float] | None]:
        """Per map, the canvas it covers in an image of ``image_shape``.

        Transformer maps come from the image zero-padded to whole patches, so they
        cover a canvas larger than the image; bilinear reads must use it to put
        pixels where the map saw them.

        Parameters
        ----------
        image_shape : tuple of int
            ``(height, width)`` of the image.

        Returns
        -------
        canvases : list of tuple of float or None
            Per map of ``feature_info``, the ``(height, width)`` in image pixels of
            the padded canvas it covers, or None when it covers the image.
        """
        return map_canvases(self.feature_info, image_shape, self.image_size)

    def receptive_field(self) -> tuple[int, int]:
        """``(halo, stride)`` of the engine's layers, which exact tiling needs.

        Returns
        -------
        halo : int
            Image pixels a window needs on each side so that its maps equal the
            whole image's maps at the window's centre.
        stride : int
            The largest stride of the layers: tiles start at multiples of it.

        Raises
        ------
        NotTileableError
            When a layer sees the whole image (pooled vectors), so windows cannot reproduce it.

        See Also
        --------
        skhyper.features.receptive_field : The same for a backbone and layers.
        """
        if self._tiling is None:
            if self._tiling_error is None:
                halo, stride = receptive_field(self.backbone, self.layers)
                return halo, stride
            raise NotTileableError(self._tiling_error)
        return self._tiling[0], self._tiling[1]

    def _tiling_info(self) -> tuple[int, int, dict[str, int]]:
        if self._tiling is None:
            raise NotTileableError(self._tiling_error)
        return self._tiling

    # -- images -----------------------------------------------------------------------------

    def check_images(self, images: Any, *, param: str = "images") -> CheckedImages:
        """Validate images once, with the engine's channel rule.

        The other methods take checked images and do not scan them again.
        Checking an already checked list again is free (no pixel scan).

        Parameters
        ----------
        images : array-like or list of array-like
            One ``(height, width[, channels])`` image or a sequence of them; the
            channel count must suit ``channel_strategy`` and ``n_channels``.
        param : str, default="images"
            The parameter name used in error messages (the caller's name for
            the images).

        Returns
        -------
        images : list of ndarray
            The images as a checked list (a ``CheckedImages``) of
            ``(height, width, channels)`` arrays.
        """
        checked, _ = check_channels(images, self.channel_strategy, self.n_channels, param=param)
        return checked

    def iter_maps(
        self,
        images: Sequence[np.ndarray],
        *,
        indices: Sequence[int] | None = None,
        project: Project | None = None,
        batched: bool = False,
    ) -> Iterator[tuple[Any, dict[str, torch.Tensor]]]:
        """Yield ``(image index, {map name: (c, h, w) map})`` for checked images.

        Maps are native resolution, on ``device``, in the order of ``map_names``. ``project``
        maps them before they are yielded (per tile when tiling), e.g. the 1x1 heads of a
        folded classifier. Images that would reach the backbone nearly black or outside
        ``[0, 1]`` get one :class:`~skhyper.exceptions.IntensityWarning` per call.

        Parameters
        ----------
        images : list of ndarray
            Checked images (see :meth:`check_images`).
        indices : sequence of int, default=None
            The images to run, in this order; None runs them all.
        project : callable, default=None
            ``{name: maps} -> {name: maps}`` applied to the maps before they are
            yielded (per tile when tiling), e.g. the 1x1 heads of a folded
            classifier, so that only the projected maps are kept.
        batched : bool, default=False
            Yield one item per forward batch rather than per image, so that a
            consumer reads the maps of a batch together.

        Yields
        ------
        index : int or list of int
            The image index (a list of indices when ``batched``).
        maps : dict of str to torch.Tensor
            ``{map name: (c, h, w) map}`` (``(n, c, h, w)`` when ``batched``).
        """
        todo = range(len(images)) if indices is None else indices
        warn_intensity((images[i] for i in todo), self.intensity_range)
        run = MapPass(self.backbone, self.settings, tuple(self._cache_layers), self._tiling_info)
        yield from run.iter_maps(images, self.map_names, indices=indices, project=project,
                                 batched=batched)

    # -- hypercolumns -----------------------------------------------------------------------

    def fill(
        self,
        maps: dict[str, torch.Tensor],
        rows: torch.Tensor | np.ndarray,
        cols: torch.Tensor | np.ndarray,
        image_shape: tuple[int, int],
        out: np.ndarray,
        *,
        frame: Any = None,
        windows: Sequence[tuple[int, int, int, int] | None] | None = None,
        images: np.ndarray | None = None,
    ) -> np.ndarray:
        """Write the hypercolumns of pixels ``(rows, cols)`` into ``out`` ``(n, n_features)``.

        The one place where hypercolumns are assembled from maps: the bilinear reads of every
        map (:func:`~skhyper.features.sample_maps`, with ``windows`` for window maps) and, with
        ``append_location``, the pixels' locations in ``frame`` (default: the whole image).

        Parameters
        ----------
        maps : dict of str to torch.Tensor
            Native maps of one image (``(c, h, w)``, as :meth:`iter_maps` yields
            them) or of a batch (``(n, c, h, w)``, with ``images``).
        rows, cols : torch.Tensor or ndarray of shape (n,)
            Pixel coordinates in the image.
        image_shape : tuple of int
            ``(height, width)`` of the image(s).
        out : ndarray of shape (n, n_features)
            float32 array the rows are written into (a view of a larger result
            is fine).
        frame : tuple of float or list, default=None
            ``(x0, y0, x1, y1)`` the location columns are measured in; None: the
            whole image. With ``images``, one frame per image of the batch.
        windows : list of tuple of int or None, default=None
            Per map, ``(row0, col0, full_h, full_w)`` when the map is a window of a
            larger map, as :func:`~skhyper.features.sample_maps` takes them.
        images : ndarray of shape (n,), default=None
            With batched maps, the batch position of each pixel's image.

        Returns
        -------
        out : ndarray of shape (n, n_features)
            ``out``, filled.
        """
        n_maps = out.shape[1] - (2 if self.append_location else 0)
        dst = out[:, :n_maps]
        tensors = [maps[name] for name in self.map_names]
        canvases = self.canvases(image_shape)
        if tensors[0].device.type == "cpu":  # straight into the result (a strided view)
            sample_maps(tensors, rows, cols, image_shape, out=torch.from_numpy(dst),
                        windows=windows, canvases=canvases, images=images)
        else:
            dst[:] = sample_maps(tensors, rows, cols, image_shape, windows=windows,
                                 canvases=canvases, images=images).cpu().numpy()
        if self.append_location:
            rows, cols = np.asarray(rows), np.asarray(cols)
            which = np.zeros(len(rows), dtype=np.int64) if images is None else images
            for k, f in enumerate([frame] if images is None else frame):
                f, at = frame_of(None, image_shape) if f is None else f, which == k
                out[at, n_maps:] = location_columns(rows[at], cols[at], image_shape, f)
        return out

    def sample(self, X: PixelSet) -> np.ndarray:
        """Hypercolumn rows ``(n_pixels, n_features)`` float32 of the pixels of ``X``.

        Each image with pixels in ``X`` runs through the backbone once; each native map is
        read bilinearly at the pixels. ``X.images`` must be checked.

        Parameters
        ----------
        X : skhyper.sampling.PixelSet
            Checked images and the ``(image, row, col)`` pixels to read (and their
            boxes, which frame the location columns).

        Returns
        -------
        features : ndarray of shape (n_pixels, n_features)
            float32 hypercolumns, one row per pixel of ``X``, in its order.
        """
        coords = X.coords
        out = np.empty((len(coords), self.n_features), dtype=np.float32)
        if len(coords) == 0:
            return out
        images = X.images
        order = np.argsort(coords[:, 0], kind="stable")
        img_ids, starts = np.unique(coords[order, 0], return_index=True)
        bounds = dict(zip(img_ids.tolist(), zip(starts, [*starts[1:], len(order)])))
        # the images of one forward batch are read together (one gather per map)
        for idx, maps in self.iter_maps(images, indices=img_ids.tolist(), batched=True):
            spans = [bounds[i] for i in idx]
            sel = np.concatenate([order[a:b] for a, b in spans])
            which = np.repeat(np.arange(len(idx)), [b - a for a, b in spans])
            shape = images[idx[0]].shape[:2]
            frames = [frame_of(None if X.boxes is None else X.boxes[i], shape) for i in idx]
            first = int(sel[0])
            block = int(sel[-1]) - first == len(sel) - 1 and bool((np.diff(sel) == 1).all())
            dst = (out[first : first + len(sel)] if block  # straight into the result
                   else np.empty((len(sel), out.shape[1]), np.float32))
            self.fill(maps, coords[sel, 1], coords[sel, 2], shape, dst, frame=frames,
                      images=which)
            if not block:
                out[sel] = dst
        return out

    def bands(
        self,
        maps: dict[str, torch.Tensor],
        image_shape: tuple[int, int],
        *,
        chunk_pixels: int = 65536,
        frame: tuple[float, ...] | None = None,
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """Dense hypercolumns of one image's maps in bands of whole rows: ``(r0, r1, feats)``.

        Memory stays bounded by a band, so no full-resolution hypercolumn of the image
        exists at once.

        Parameters
        ----------
        maps : dict of str to torch.Tensor
            Native maps of one image, as :meth:`iter_maps` yields them.
        image_shape : tuple of int
            ``(height, width)`` of the image.
        chunk_pixels : int, default=65536
            About how many pixels a band holds (whole rows, at least one).
        frame : tuple of float, default=None
            ``(x0, y0, x1, y1)`` the location columns are measured in; None: the
            whole image.

        Yields
        ------
        r0, r1 : int
            The band's first row and the row after its last.
        feats : ndarray of shape ((r1 - r0) * width, n_features)
            float32 hypercolumns of the band's pixels, row-major.
        """
        H, W = image_shape
        for r0, r1, rows, cols in row_bands((H, W), chunk_pixels):
            feats = np.empty(((r1 - r0) * W, self.n_features), dtype=np.float32)
            yield r0, r1, self.fill(maps, rows, cols, (H, W), feats, frame=frame)

    def dense(self, images: Sequence[np.ndarray], *, boxes: np.ndarray | None = None,
              chunk_pixels: int = 65536) -> list[np.ndarray]:
        """Dense hypercolumns ``(height, width, n_features)`` of checked images (a list).

        Computed in bands of rows: the only full-resolution array is the result itself.

        Parameters
        ----------
        images : list of ndarray
            Checked images (see :meth:`check_images`).
        boxes : ndarray of shape (n_images, 4), default=None
            Checked ``(x0, y0, x1, y1)`` per image, framing the location columns;
            None: the whole image.
        chunk_pixels : int, default=65536
            About how many pixels are read from the maps at once.

        Returns
        -------
        dense : list of ndarray
            One float32 ``(height, width, n_features)`` array per image.
        """
        results: list[np.ndarray | None] = [None] * len(images)
        for i, maps in self.iter_maps(images):
            H, W = images[i].shape[:2]
            frame = frame_of(None if boxes is None else boxes[i], (H, W))
            dense = np.empty((H, W, self.n_features), dtype=np.float32)
            for r0, r1, rows, cols in row_bands((H, W), chunk_pixels):
                self.fill(maps, rows, cols, (H, W),
                          dense[r0:r1].reshape((r1 - r0) * W, self.n_features), frame=frame)
            results[i] = dense
        return results

    # -- copies, devices, pickling -------------------------------------------------------------

    def replace(self, **settings: Any) -> FeatureEngine:
        """A copy with other run settings, sharing the backbone.

        Only settings that leave the features unchanged can be replaced; other
        settings need a new engine.

        Parameters
        ----------
        **settings
            New values of ``batch_size``, ``tile_size``, ``cache``, ``verbose``,
            ``dtype``, or ``intensity_range=None`` for images already read into
            ``[0, 1]``.

        Returns
        -------
        engine : FeatureEngine
            The copy; this engine is unchanged.

        Examples
        --------
        >>> from skhyper.features import build_engine
        >>> engine = build_engine("resnet18", layers=["layer1"], weights=None, device="cpu")
        >>> engine.replace(tile_size=None).tile_size is None, engine.tile_size
        (True, 768)
        """
        allowed = {"batch_size", "tile_size", "cache", "verbose", "dtype", "intensity_range"}
        unknown = sorted(set(settings) - allowed)
        if settings.get("intensity_range", None) is not None:
            unknown.append("intensity_range")
        if unknown:
            raise ValueError(
                f"FeatureEngine.replace takes the run settings {sorted(allowed)}; got "
                f"{unknown}. Other settings change the features: build a new engine."
            )
        new = copy.copy(self)
        new.settings = dataclasses.replace(self.settings, **settings)
        new._prepare()
        return new

    def to(self, device: Any) -> FeatureEngine:
        """Move the backbone to ``device``, in place.

        Not while other threads use the engine.

        Parameters
        ----------
        device : {"auto", "cpu", "cuda", "cuda:N"} or torch.device
            The device to run on (``"auto"``: CUDA when available).

        Returns
        -------
        self : FeatureEngine
            This engine, now on ``device``.
        """
        dev = resolve_device(device)
        if dev != self.device:
            self.backbone.to(dev)
            self.settings = dataclasses.replace(self.settings, device=dev)
        return self

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self.backbone.mean.device.type != "cpu":
            state["backbone"] = copy.deepcopy(self.backbone).cpu()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        if "settings" not in state:  # pickled before EngineSettings: settings were attributes
            state["settings"] = EngineSettings(
                **{k: state.pop(k) for k in EngineSettings.names() if k in state})
        state["feature_info"] = as_records(state["feature_info"])  # dicts in older pickles
        self.__dict__.update(state)
        dev = self.device
        if dev.type == "cuda":
            if torch.cuda.is_available():
                self.backbone.to(dev)
            else:
                warnings.warn(
                    f"This model was fitted on {dev} but CUDA is not available here; it runs "
                    "on the CPU.",
                    DeviceWarning,
                    stacklevel=2,
                )
                self.settings = dataclasses.replace(self.settings, device=torch.device("cpu"))

    def __repr__(self) -> str:
        return (f"FeatureEngine(backbone={self.backbone.name!r}, maps={self.map_names}, "
                f"device={self.device}, n_features={self.n_features})")
