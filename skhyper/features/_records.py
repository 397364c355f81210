"""The description of one map of a hypercolumn: :class:`FeatureInfo`.

A :class:`FeatureInfo` is what a backbone's layer table, ``list_layers``,
``FeatureEngine.feature_info`` / ``blocks`` and ``HypercolumnTransformer.feature_info_`` hold,
one record per map (as timm's ``feature_info`` entries). It is a frozen dataclass, read by
attribute (``info.reduction``), and also a read-only mapping with the keys these entries had
when they were dicts (``info["reduction"]``, ``info.get("scale")``, ``dict(info)``), so code
written for dicts keeps working. Optional fields that are not set (``layer``, ``scale``,
``pad_to``, ``stage``) are not keys, exactly as the dicts left them out.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["FeatureInfo", "KINDS"]

#: What a map is: a spatial map, a vector (used as a 1 x 1 map), or the location columns.
KINDS = ("map", "vector", "location")
_ALWAYS = ("name", "num_chs", "reduction", "kind")  # keys every entry has (reduction may be None)
_OPTIONAL = ("layer", "scale", "pad_to", "stage")  # keys only when set


@dataclass(frozen=True, eq=False, repr=False)
class FeatureInfo(Mapping):
    """One map of a hypercolumn: its name, channels, stride and origin; immutable.

    Parameters
    ----------
    name : str
        The map's name (a backbone layer, or ``"s<scale>.<layer>"`` with scales).
    num_chs : int
        Its channels: the map's block of columns in a hypercolumn.
    reduction : float or None, default=None
        Its stride in image pixels (at a 224 px input for a layer table; divided by the scale
        for scaled maps). None for vectors and the location columns.
    kind : {"map", "vector", "location"}, default="map"
        A ``(c, h, w)`` map, a ``(c,)`` vector used as a 1 x 1 map, or the location columns.
    layer : str, default=None
        With scales: the backbone layer the map is captured from (None: ``name``).
    scale : float, default=None
        With scales: the factor the image is resized by before the backbone.
    pad_to : int, default=None
        Transformer maps: the patch multiple the fed image is zero-padded to.
    stage : bool, default=None
        In :func:`~skhyper.features.list_layers`: whether the layer is a default stage.

    Notes
    -----
    Read-only mapping access gives the keys of the dict entries this record replaces:
    ``name``, ``num_chs``, ``reduction``, ``kind`` always, the optional fields when set. A
    record equals a dict with the same items.

    Examples
    --------
    >>> info = FeatureInfo("layer1", 64, reduction=4.0)
    >>> info.num_chs, info["reduction"], info.get("scale"), "scale" in info
    (64, 4.0, None, False)
    >>> dict(info)
    {'name': 'layer1', 'num_chs': 64, 'reduction': 4.0, 'kind': 'map'}
    >>> info == {"name": "layer1", "num_chs": 64, "reduction": 4.0, "kind": "map"}
    True
    >>> FeatureInfo.from_mapping({"name": "fc", "num_chs": 1000, "kind": "vector"}).is_vector
    True
    """

    name: str
    num_chs: int
    reduction: float | None = None
    kind: str = "map"
    layer: str | None = None
    scale: float | None = None
    pad_to: int | None = None
    stage: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"FeatureInfo 'name' must be a non-empty str; got {self.name!r}.")
        if self.kind not in KINDS:
            raise ValueError(f"FeatureInfo 'kind' must be one of {KINDS}; got {self.kind!r}.")
        _set = object.__setattr__  # normalize numbers (numpy scalars) in a frozen record
        _set(self, "num_chs", _count(self.num_chs, "num_chs", low=1))
        for key in ("reduction", "scale"):
            value = getattr(self, key)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, numbers.Real) or value <= 0:
                    raise ValueError(f"FeatureInfo {key!r} must be a positive number or None; "
                                     f"got {value!r}.")
                _set(self, key, float(value))
        if self.pad_to is not None:
            _set(self, "pad_to", _count(self.pad_to, "pad_to", low=1))
        if self.stage is not None:
            _set(self, "stage", bool(self.stage))

    @classmethod
    def from_mapping(cls, entry: Mapping[str, Any]) -> FeatureInfo:
        """The record of a dict entry (``entry`` itself when it is a record already).

        Layer tables written as dicts (older pickles, user-given tables) become
        records, so that every consumer reads one type.

        Parameters
        ----------
        entry : dict or FeatureInfo
            ``{"name": ..., "num_chs": ..., "reduction": ...}`` and optional fields
            (``kind``, ``layer``, ``scale``, ``pad_to``...), as the record's fields.

        Returns
        -------
        info : FeatureInfo
            The record with these fields.

        Raises
        ------
        TypeError
            When ``entry`` is neither a dict nor a record.
        ValueError
            When ``entry`` has a key that is not a field (named in the message).
        """
        if isinstance(entry, cls):
            return entry
        if not isinstance(entry, Mapping):
            raise TypeError(f"A feature_info entry must be a dict or FeatureInfo; got "
                            f"{type(entry).__name__}.")
        unknown = sorted(set(entry) - set(_ALWAYS) - set(_OPTIONAL))
        if unknown:
            raise ValueError(f"A feature_info entry has keys {unknown} that are not FeatureInfo "
                             f"fields {[*_ALWAYS, *_OPTIONAL]}; got {dict(entry)!r}.")
        return cls(**entry)

    # -- attributes ---------------------------------------------------------------------------

    @property
    def is_vector(self) -> bool:
        """A vector (pooled / fully connected output), read as a 1 x 1 map: never upsampled."""
        return self.kind == "vector"

    @property
    def is_location(self) -> bool:
        """The location columns ``(u, v)`` (:data:`skhyper.location.LOCATION`)."""
        return self.kind == "location"

    @property
    def source_layer(self) -> str:
        """The backbone layer the map is captured from: ``layer``, or ``name`` without scales."""
        return self.name if self.layer is None else self.layer

    def replace(self, **changes: Any) -> FeatureInfo:
        """A copy with some fields changed (``dataclasses.replace``); records are immutable.

        Parameters
        ----------
        **changes
            New values of fields, by name (e.g. ``name="cnn.layer1"``).

        Returns
        -------
        info : FeatureInfo
            The changed copy.
        """
        return dataclasses.replace(self, **changes)

    # -- read-only mapping (the dict entries these records replace) ---------------------------

    def _keys(self) -> tuple[str, ...]:
        return _ALWAYS + tuple(k for k in _OPTIONAL if getattr(self, k) is not None)

    def __getitem__(self, key: str) -> Any:
        if key in self._keys():
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def __contains__(self, key: object) -> bool:
        return key in self._keys()

    def __hash__(self) -> int:
        return hash(tuple(self.items()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._keys())
        return f"FeatureInfo({fields})"

    def __reduce__(self) -> tuple:
        # pickled by field values: the record's own pickle, whatever fields are added later
        return (_rebuild, (dict(self),))


def _rebuild(fields: dict[str, Any]) -> FeatureInfo:
    return FeatureInfo.from_mapping(fields)


def _count(value: Any, key: str, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"FeatureInfo {key!r} must be an int >= {low}; got {value!r}.")
    return int(value)


def as_records(entries: Any) -> list[FeatureInfo]:
    """``feature_info`` entries (dicts or records, e.g. from an older pickle) as records."""
    return [FeatureInfo.from_mapping(d) for d in entries]
