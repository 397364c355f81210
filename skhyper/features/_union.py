"""Several backbones in one hypercolumn: a CNN's early stages and a ViT's late blocks, say.

``HypercolumnTransformer(backbone={"cnn": "efficientnet_lite0", "vit": "timm:..."})``
builds a :class:`BackboneUnion`: one module whose children are the members' networks, so
that its layers are the members' layers prefixed by the member's name (``"cnn.blocks.1"``,
``"vit.blocks.11"``). It is one backbone for the feature engine: one layer capture (hooks
registered once, early stop), one map per layer, so sampling, folding (a linear head on the
concatenated hypercolumn is the sum of every member's per-layer 1x1 heads), grids, keypoints,
scales, caching and pickling work unchanged, and a ``GridSearchCV`` can search over the
members' layers as over any other.

Each member keeps its own normalization, padding and map geometry; a member without a
requested layer does not run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ._backbone import Backbone, requested_modules
from ._build import build_backbone

__all__ = ["BackboneUnion", "backbone_union"]


class BackboneUnion(nn.Module):
    """The networks of several backbones side by side, each normalizing its own input.

    Parameters
    ----------
    members : dict of str to Backbone
        Member name -> backbone. Names are identifiers without dots.

    Examples
    --------
    >>> import torch
    >>> from skhyper.features import build_backbone
    >>> union = BackboneUnion({"a": build_backbone("resnet18", weights=None)})
    >>> [n for n, _ in union.named_children()]
    ['a']
    """

    def __init__(self, members: Mapping[str, Backbone]) -> None:
        super().__init__()
        self.names = list(members)
        for name, bb in members.items():
            self.add_module(name, bb.model)
            self.register_buffer(f"mean__{name}", bb.mean.detach().clone())
            self.register_buffer(f"std__{name}", bb.std.detach().clone())

    def forward(self, x: torch.Tensor) -> list[Any]:
        """Run each member that has a requested layer on ``x`` in ``[0, 1]``.

        Each member normalizes the batch with its own mean and standard deviation;
        a member without a layer in the running capture is skipped, so a union
        costs only the members that are read.

        Parameters
        ----------
        x : torch.Tensor of shape (n, channels, h, w)
            Images with intensities in ``[0, 1]``; ``channels`` is the members'
            common input channel count.

        Returns
        -------
        outputs : list
            The output of each member that ran, in member order. The maps are
            captured by the layer hooks (see :class:`~skhyper.features.Backbone`);
            these outputs themselves are not used.
        """
        wanted = requested_modules()
        out = []
        for name in self.names:
            model = getattr(self, name)
            if wanted is not None and not any(id(m) in wanted for m in model.modules()):
                continue
            mean, std = getattr(self, f"mean__{name}"), getattr(self, f"std__{name}")
            if x.shape[1] != mean.shape[1]:
                raise ValueError(
                    f"Member {name!r} of a backbone union takes {mean.shape[1]} channels; got a "
                    f"batch of shape {tuple(x.shape)}. Unions take the members' image "
                    "channels: use channel_strategy=None, 'replicate' or 'per_channel'."
                )
            out.append(model((x - mean.to(x.dtype)) / std.to(x.dtype)))
        return out


def backbone_union(
    members: Mapping[str, str | nn.Module], weights: Any = "imagenet"
) -> Backbone:
    """One :class:`~skhyper.features.Backbone` over several: layers ``"<member>.<layer>"``.

    Parameters
    ----------
    members : dict of str to str or torch.nn.Module
        Member name -> backbone (a name, module or :class:`~skhyper.features.Backbone`, as
        :func:`~skhyper.features.build_backbone` takes). Names are identifiers without dots.
        Modules and backbones are used with their own weights.
    weights : None, "imagenet", str or path, default="imagenet"
        For members given by name, as in :func:`~skhyper.features.build_backbone`.

    Returns
    -------
    Backbone
        Identity normalization (members normalize their own input); its layer table is the
        members' tables with prefixed names, its stages the members' stages.

    Examples
    --------
    >>> bb = backbone_union({"cnn": "resnet18", "big": "resnet34"}, weights=None)
    >>> bb.stages()[:2], bb.stages()[-1]
    (['cnn.relu', 'cnn.layer1'], 'big.layer4')
    """
    if not isinstance(members, Mapping) or not members:
        raise TypeError(
            "The 'backbone' parameter, as a union of backbones, must be a non-empty dict "
            f"{{name: backbone}}; got {members!r}."
        )
    bad = [k for k in members if not (isinstance(k, str) and k.isidentifier())]
    if bad:
        raise ValueError(
            f"The 'backbone' parameter got member names {bad}; names of a backbone union must "
            "be identifiers without dots, e.g. {'cnn': 'efficientnet_lite0', 'vit': ...}."
        )
    built = {k: build_backbone(v, weights=weights) for k, v in members.items()}
    chans = {k: bb.in_chans for k, bb in built.items()}
    if len(set(chans.values())) != 1:
        raise ValueError(
            f"The members of a backbone union must take the same image channels; got {chans}."
        )
    table, stages = [], []
    for k, bb in built.items():
        table += [d.replace(name=f"{k}.{d.name}") for d in bb.layer_table()]
        stages += [f"{k}.{s}" for s in bb.stages()]
    n = next(iter(chans.values()))
    name = "{" + ", ".join(f"{k}: {bb.name}" for k, bb in built.items()) + "}"
    return Backbone(BackboneUnion(built), mean=[0.0] * n, std=[1.0] * n, stages=stages,
                    name=name, table=table)
