"""Feature backbones: a network that returns ``{layer name: activation map}``, thread-safely.

A :class:`Backbone` wraps any :class:`torch.nn.Module`. Layers are picked by
their dotted module name (the names of ``model.named_modules()``, as
torchvision's feature extraction uses them), or by an integer index into the
backbone's *stages* (its feature pyramid, as timm's ``feature_info``
describes it). Fully connected and globally pooled layers are valid layers
too: their ``(n, channels)`` output is returned as a ``(n, channels, 1, 1)``
map.

Layer capture
-------------
Each requested layer's module carries one forward hook, registered once (the
module-level function :func:`_tap`, so the backbone still pickles and
deep-copies). A call to :meth:`Backbone.forward` puts a fresh capture record
into a :class:`contextvars.ContextVar`, which every thread (and every asyncio
task) sees on its own; the hooks write into the record of the call that runs
them and ignore modules it did not ask for. Once the deepest requested layer
has run, the hook ends that pass early. So concurrent calls on one backbone
never see each other's maps, and no lock serializes forward passes. The
wrapped module is never changed beyond these hooks: modules that act in place
keep doing so, and a captured map that a later in-place module could
overwrite is copied.
"""

from __future__ import annotations

import contextvars
import difflib
import numbers
import threading
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ._intensity import normalize
from ._records import FeatureInfo, as_records

__all__ = ["Backbone", "resolve_layers", "requested_modules", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_PROBE_SIZE = 224
_TAP_LOCK = threading.Lock()


class _StopForward(BaseException):
    """Ends a forward pass once every requested layer has been captured.

    A ``BaseException`` so that a model's own ``except Exception`` cannot swallow it.
    """


class _Capture:
    """The maps of one forward pass: which modules to record, and what they returned."""

    __slots__ = ("names", "out", "copy")

    def __init__(self, names: dict[int, str], copy: bool) -> None:
        self.names = names  # id(module) -> layer name
        self.out: dict[str, torch.Tensor] = {}
        self.copy = copy


_ACTIVE: contextvars.ContextVar[_Capture | None] = contextvars.ContextVar(
    "skhyper_capture", default=None
)
_PROBING: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "skhyper_layer_probe", default=None
)


def requested_modules() -> frozenset[int] | None:
    """Ids of the modules the running capture records; None outside a capture.

    Lets a composite model skip the parts that hold no requested layer (see
    :class:`~skhyper.features.BackboneUnion`).
    """
    cap = _ACTIVE.get()
    return None if cap is None else frozenset(cap.names)


def _tap(module: nn.Module, args: Any, output: Any) -> None:
    """The forward hook of every captured layer: record into the running call's capture."""
    cap = _ACTIVE.get()
    if cap is None:
        return
    name = cap.names.get(id(module))
    if name is None:
        return
    if name in cap.out:  # not a valid layer (validation excludes modules that run twice)
        raise RuntimeError(f"layer {name!r} ran more than once in one forward pass")
    if output.ndim == 2:
        output = output[:, :, None, None]
    cap.out[name] = output.clone() if cap.copy else output
    if len(cap.out) == len(cap.names) and not _tracing():
        raise _StopForward


def _tracing() -> bool:
    """Whether the pass is being traced (``torch.export``, ``torch.jit.trace``, ``torch.compile``,
    ONNX export): the pass then runs to the end, since tracers cannot follow an exception out of
    nested modules; the unused tail is dead code in the traced graph."""
    return bool(torch.jit.is_tracing() or torch.compiler.is_exporting()
                or torch.compiler.is_compiling())


class Backbone(nn.Module):
    """A CNN wrapped to return the activation maps of named layers.

    Parameters
    ----------
    model : torch.nn.Module
        The network. Its forward takes a normalized ``(n, 3, height, width)``
        tensor.
    mean, std : sequence of float, default=ImageNet statistics
        Per-channel normalization applied to images in ``[0, 1]``.
    stages : list of str, default=None
        The layers used when no layers are chosen (the feature pyramid).
        ``None`` takes the model's top-level children that return maps.
    name : str, default=None
        A label used in messages and reprs.
    table : list of FeatureInfo or dict, default=None
        A precomputed :meth:`layer_table` (for a backbone whose layers are
        known, e.g. an adapted copy); None probes the model on first use.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    >>> bb = Backbone(net, name="tiny")
    >>> [(d["name"], d["num_chs"], d["reduction"]) for d in bb.layer_table()]
    [('0', 4, 1.0), ('1', 4, 1.0), ('2', 4, 2.0)]
    >>> maps = bb(torch.rand(1, 3, 8, 8), ["0", "2"])
    >>> tuple(maps["2"].shape)
    (1, 4, 4, 4)
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        stages: Sequence[str] | None = None,
        name: str | None = None,
        table: Sequence[FeatureInfo | dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"Backbone expects a torch.nn.Module, got {type(model).__name__}.")
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.name = name if name is not None else type(model).__name__
        self._stages = list(stages) if stages is not None else None
        self._table: list[FeatureInfo] | None = as_records(table) if table is not None else None
        # A captured map must not be overwritten by a later in-place activation: copy the maps
        # of models that have in-place modules (the caller's module is never changed; copies
        # made by build_backbone are switched to out-of-place and need no copy).
        self._copy_maps = any(getattr(m, "inplace", False) is True for m in model.modules())

    def out_of_place(self) -> Backbone:
        """Switch the model's in-place modules off, so captured maps need no copy.

        A captured map that a later in-place activation could overwrite has to be
        copied; a model without in-place modules is captured without copies. This
        changes the wrapped module: :func:`~skhyper.features.build_backbone` calls
        it on its own copies only.

        Returns
        -------
        self : Backbone
            This backbone, its model now free of in-place modules.
        """
        for module in self.model.modules():
            if getattr(module, "inplace", False) is True:
                module.inplace = False
        self._copy_maps = False
        return self

    @property
    def in_chans(self) -> int:
        return int(self.mean.shape[1])

    def layer_table(self) -> list[FeatureInfo]:
        """Valid layers in execution order, one :class:`~skhyper.features.FeatureInfo` each:
        ``name``, ``num_chs``, ``reduction``, ``kind``.

        A layer is valid when its module runs once per forward pass and returns
        a ``(n, c, h, w)`` map (``kind="map"``) or an ``(n, c)`` vector
        (``kind="vector"``, used as a 1x1 map). ``reduction`` is the input size
        over the map size for a ``224x224`` input (``None`` for vectors).
        The table is probed with one small forward pass on first use, then kept.

        Returns
        -------
        table : list of FeatureInfo
            One record per valid layer, in the order the forward pass runs them.

        See Also
        --------
        skhyper.features.list_layers : The same table for a backbone name.
        """
        if self._table is None:
            self._table = _probe(self)
        return as_records(self._table)  # records are immutable (dicts in older pickles)

    def stages(self) -> list[str]:
        """The layers used when none are chosen (the feature pyramid).

        Integer layer indices count in this list.

        Returns
        -------
        stages : list of str
            The ``stages`` given to the constructor, or else the model's top-level
            children that return maps (all valid layers if there are none).
        """
        valid = [d["name"] for d in self.layer_table()]
        if self._stages is not None:
            missing = [s for s in self._stages if s not in valid]
            if missing:
                raise ValueError(
                    f"The stages {missing} of backbone {self.name!r} are not valid layers."
                )
            return list(self._stages)
        top = [
            d["name"]
            for d in self.layer_table()
            if "." not in d["name"] and d["kind"] == "map"
        ]
        return top or valid

    def forward(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Maps of ``layers`` for images ``x`` in ``[0, 1]``, shape ``(n, in_chans, h, w)``.

        The forward pass stops as soon as the last requested layer has run.
        Vectors come back as ``(n, c, 1, 1)`` maps. Safe to call from several
        threads at once: each call records into its own capture.

        Parameters
        ----------
        x : torch.Tensor of shape (n, in_chans, h, w)
            Images with intensities in ``[0, 1]``; they are normalized with the
            backbone's ``mean`` and ``std`` before the model runs.
        layers : sequence of str
            Names of the layers to capture (see :meth:`layer_table`).

        Returns
        -------
        maps : dict of str to torch.Tensor
            ``{layer name: (n, channels, h_l, w_l) map}``, in the order of ``layers``.
        """
        return self.capture(normalize(x, self.mean.to(x.dtype), self.std.to(x.dtype)), layers)

    def capture(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Run the wrapped model on an already normalized batch; return the maps of ``layers``.

        What :meth:`forward` runs after normalization, for callers that normalize
        themselves (such as a union of backbones sharing one input).

        Parameters
        ----------
        x : torch.Tensor of shape (n, in_chans, h, w)
            A normalized image batch, as the wrapped model expects it.
        layers : sequence of str
            Names of the layers to capture.

        Returns
        -------
        maps : dict of str to torch.Tensor
            ``{layer name: (n, channels, h_l, w_l) map}``, in the order of ``layers``.
        """
        layers = list(layers)
        modules = self.tap(layers)
        cap = _Capture({id(m): name for name, m in zip(layers, modules)}, self._copy_maps)
        token = _ACTIVE.set(cap)
        try:
            self.model(x)
        except _StopForward:
            pass
        finally:
            _ACTIVE.reset(token)
        missing = [name for name in layers if name not in cap.out]
        if missing:
            raise RuntimeError(f"layers {missing} did not run in the forward pass")
        return {name: cap.out[name] for name in layers}

    def tap(self, layers: Sequence[str]) -> list[nn.Module]:
        """The modules of ``layers``, each with the capture hook (registered once, idempotent).

        Engines tap their layers when they are built, so that inference never
        registers hooks.

        Parameters
        ----------
        layers : sequence of str
            Dotted module names of the layers to capture.

        Returns
        -------
        modules : list of torch.nn.Module
            The module of each layer, in the order of ``layers``.
        """
        modules = []
        for name in layers:
            try:  # the dotted path, not a walk over every module (this runs per forward pass)
                modules.append(self.model.get_submodule(name))
            except AttributeError:
                raise ValueError(
                    f"Backbone {self.name!r} has no layer {name!r}. See "
                    "skhyper.features.list_layers() for valid names."
                ) from None
        untapped = [m for m in modules if not _has_tap(m)]
        if untapped:
            with _TAP_LOCK:
                for m in untapped:
                    if not _has_tap(m):
                        m.register_forward_hook(_tap)
        return modules

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


def _has_tap(module: nn.Module) -> bool:
    return any(h is _tap for h in module._forward_hooks.values())


def _probe(backbone: Backbone) -> list[FeatureInfo]:
    """Run one small forward pass with hooks on every module; record what each returns."""
    records: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    owner = object()  # only this call's probe pass records (other threads may run the model)

    def make_hook(name):
        def hook(module, args, output):
            if _PROBING.get() is not owner:
                return
            rec = records.get(name)
            if rec is not None:
                rec["calls"] += 1
                return
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
            records[name] = {"calls": 1, "shape": shape}
            order.append(name)

        return hook

    model = backbone.model
    handles = [
        m.register_forward_hook(make_hook(n)) for n, m in model.named_modules() if n != ""
    ]
    was_training = model.training
    device = backbone.mean.device
    token = _PROBING.set(owner)
    try:
        model.eval()
        with torch.inference_mode():
            x = torch.rand(1, backbone.in_chans, _PROBE_SIZE, _PROBE_SIZE, device=device)
            try:
                model((x - backbone.mean) / backbone.std)
            except Exception as err:
                raise ValueError(
                    f"The 'backbone' parameter ({backbone.name!r}) cannot be used as an image "
                    f"backbone: it fails on an image batch of shape {tuple(x.shape)} "
                    f"({type(err).__name__}: {err}). A backbone takes a (n, channels, height, "
                    "width) image batch and returns feature maps; wrap such a network in "
                    "skhyper.Backbone (mean, std, stages) or pick a torchvision / timm model."
                ) from err
    finally:
        _PROBING.reset(token)
        model.train(was_training)
        for h in handles:
            h.remove()

    table = []
    for name in order:
        rec = records[name]
        shape = rec["shape"]
        if rec["calls"] != 1 or shape is None or shape[0] != 1:
            continue
        if len(shape) == 4:
            table.append(FeatureInfo(name, int(shape[1]), round(_PROBE_SIZE / shape[2], 3)))
        elif len(shape) == 2:
            table.append(FeatureInfo(name, int(shape[1]), None, kind="vector"))
    return table


def resolve_layers(backbone: Backbone, layers: Sequence[str | int] | None) -> list[FeatureInfo]:
    """Validate ``layers`` (names or stage indices) and describe them.

    Returns the ``feature_info`` list: one :class:`~skhyper.features.FeatureInfo` per layer
    (``name``, ``num_chs``, ``reduction`` and ``kind``), in the order given. ``None`` selects
    all stages.
    """
    table = {d["name"]: d for d in backbone.layer_table()}
    if not table:
        raise ValueError(
            f"The 'backbone' parameter {backbone.name!r} has no layer with an image-shaped "
            "(batch, channels, height, width) or vector output to capture (e.g. nn.Identity "
            "or a module without submodules). Pass a network with named submodules, such as "
            "a torchvision or timm CNN."
        )
    stages = backbone.stages()
    if layers is None:
        names = list(stages)
    else:
        if isinstance(layers, (str, int)):
            raise TypeError(
                "The 'layers' parameter must be a list or tuple of layer names or stage "
                f"indices, e.g. [{layers!r}]; got {layers!r}."
            )
        names = []
        for layer in layers:
            if isinstance(layer, bool) or not isinstance(layer, (str, numbers.Integral)):
                raise TypeError(
                    "The 'layers' parameter must hold layer names (str) or stage indices (int); "
                    f"got {layer!r} of type {type(layer).__name__}."
                )
            if isinstance(layer, numbers.Integral):
                layer = int(layer)
                if not -len(stages) <= layer < len(stages):
                    raise ValueError(
                        f"The 'layers' parameter got stage index {layer}, but backbone "
                        f"{backbone.name!r} has {len(stages)} stages: {stages}."
                    )
                layer = stages[layer]
            names.append(layer)
        if not names:
            raise ValueError(
                "The 'layers' parameter must name at least one layer; got an empty list. "
                f"Stages of backbone {backbone.name!r}: {stages}."
            )
    unknown = [n for n in names if n not in table]
    if unknown:
        valid = list(table)
        close = sorted({c for n in unknown for c in difflib.get_close_matches(n, valid, n=3)})
        listing = (
            f"Valid names: {valid}."
            if len(valid) <= 80
            else f"Stages: {stages}; {len(valid)} valid names in all."
        )
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(
            f"The 'layers' parameter got unknown layers {unknown} for backbone "
            f"{backbone.name!r}.{hint} {listing} See skhyper.features.list_layers() "
            "for names, channels and strides."
        )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"The 'layers' parameter lists {dupes} more than once.")
    return [table[n] for n in names]
