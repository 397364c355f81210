"""Images with any number of channels on RGB backbones: channel strategies.

ImageNet backbones take 3 channels. Microscopy images have 1, 2, 4 or more.
``HypercolumnTransformer(channel_strategy=...)`` says what to do:

* ``None`` (default) -- a 1-channel image is replicated to the backbone's 3
  channels; any other count must equal the backbone's, else a ValueError
  names the strategies.
* ``"replicate"`` -- grayscale only: every image must have 1 channel, which
  is replicated; a multichannel image raises.
* ``"per_channel"`` -- each of the ``C`` channels goes through the backbone
  on its own, as a replicated grayscale image, and the hypercolumns of the
  channels are concatenated (:class:`PerChannelBackbone`). Every layer's map
  then has ``C`` times the layer's channels, channel-major: the block of
  layer ``l`` is ``[l of channel 0, l of channel 1, ...]`` (feature names
  ``ch0.layer1.c000``...). Each layer stays one map, so folding, tiling and
  the :class:`~skhyper.features.MapCache` work unchanged. A forward pass costs
  ``C`` grayscale passes.
* ``"first_conv"`` -- the backbone's first convolution is adapted to ``C``
  input channels from its pretrained RGB weights
  (:func:`timm.models.adapt_input_conv`: summed for 1 channel, repeated
  cyclically and scaled by ``3 / C`` otherwise), see
  :func:`adapt_first_conv`. One pass per image, same feature count as RGB.

For ``"per_channel"`` and ``"first_conv"`` the channel count is learnt at
fit (from the images given to ``fit``; 3 without images) and fixed:
images with another count raise.
"""

from __future__ import annotations

import contextvars
import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .._validation import check_images
from ._backbone import Backbone
from ._build import import_timm

__all__ = [
    "CHANNEL_STRATEGIES",
    "PerChannelBackbone",
    "adapt_first_conv",
    "check_channels",
    "find_first_conv",
    "fit_channels",
    "prepare_backbone",
]

CHANNEL_STRATEGIES = ("replicate", "per_channel", "first_conv")


class PerChannelBackbone(Backbone):
    """Run every image channel through a backbone as a replicated grayscale image.

    Takes ``(n, n_channels, h, w)`` batches; each channel is replicated to the
    wrapped backbone's input channels (normalized as the wrapped backbone
    normalizes) and the maps of the channels are concatenated along the
    channel axis, channel-major: layer ``l`` returns ``(n, n_channels * c_l,
    h_l, w_l)`` where channels ``k * c_l .. (k + 1) * c_l`` come from image
    channel ``k``. :meth:`layer_table` reports these widths.

    Parameters
    ----------
    backbone : Backbone
        The wrapped backbone (its module is shared, not copied).
    n_channels : int
        Channels of the images.

    Examples
    --------
    >>> import torch
    >>> from skhyper.features import build_backbone
    >>> bb = PerChannelBackbone(build_backbone("resnet18", weights=None), 2)
    >>> bb.in_chans, [d["num_chs"] for d in bb.layer_table() if d["name"] == "layer1"]
    (2, [128])
    >>> tuple(bb(torch.rand(1, 2, 32, 32), ["layer1"])["layer1"].shape)
    (1, 128, 8, 8)
    """

    def __init__(self, backbone: Backbone, n_channels: int) -> None:
        if not isinstance(backbone, Backbone):
            raise TypeError(
                f"PerChannelBackbone wraps a skhyper Backbone; got {type(backbone).__name__}."
            )
        table = backbone.layer_table()
        super().__init__(
            backbone.model,
            mean=backbone.mean.flatten().tolist(),
            std=backbone.std.flatten().tolist(),
            stages=backbone.stages(),
            name=backbone.name,
            table=[d.replace(num_chs=d.num_chs * int(n_channels)) for d in table],
        )
        self.n_channels = int(n_channels)

    @property
    def in_chans(self) -> int:
        return self.n_channels

    def forward(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Maps of ``layers`` for ``(n, n_channels, h, w)`` images in ``[0, 1]``.

        The channels run as ``n * n_channels`` grayscale images in one pass.

        Parameters
        ----------
        x : torch.Tensor of shape (n, n_channels, h, w)
            Images with intensities in ``[0, 1]``.
        layers : sequence of str
            Names of the layers to capture.

        Returns
        -------
        maps : dict of str to torch.Tensor
            ``{layer name: (n, n_channels * c_l, h_l, w_l) map}``, channel-major.
        """
        n, c, h, w = x.shape
        if c != self.n_channels:
            raise ValueError(
                f"PerChannelBackbone takes {self.n_channels} channels; got a batch of shape "
                f"{tuple(x.shape)}."
            )
        gray = x.reshape(n * c, 1, h, w).expand(-1, int(self.mean.shape[1]), -1, -1)
        maps = super().forward(gray, layers)
        return {k: m.reshape(n, c * m.shape[1], *m.shape[2:]) for k, m in maps.items()}

    def extra_repr(self) -> str:
        return f"name={self.name!r}, n_channels={self.n_channels}"


class _Found(BaseException):
    pass


_SEARCHING: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "skhyper_first_conv", default=None
)


def find_first_conv(backbone: Backbone) -> tuple[str, nn.Conv2d]:
    """The first ``Conv2d`` that runs in a forward pass: ``(dotted name, module)``.

    Found by running a small input until the first convolution is called, so
    the order of module registration does not matter.

    Examples
    --------
    >>> from skhyper.features import build_backbone
    >>> find_first_conv(build_backbone("resnet18", weights=None))[0]
    'conv1'
    """
    names = {m: n for n, m in backbone.model.named_modules()}
    found: list[nn.Conv2d] = []
    owner = object()  # only this call's pass stops here (other threads may run the model)

    def hook(module, args):
        if _SEARCHING.get() is not owner:
            return
        found.append(module)
        raise _Found

    handles = [m.register_forward_pre_hook(hook) for m in names if isinstance(m, nn.Conv2d)]
    token = _SEARCHING.set(owner)
    try:
        with torch.inference_mode():
            x = torch.rand(1, backbone.in_chans, 64, 64, device=backbone.mean.device)
            backbone.model((x - backbone.mean) / backbone.std)
    except _Found:
        pass
    finally:
        _SEARCHING.reset(token)
        for h in handles:
            h.remove()
    if not found:
        raise ValueError(
            f"channel_strategy='first_conv' needs a backbone whose input goes through a "
            f"torch.nn.Conv2d first; backbone {backbone.name!r} runs none. Use "
            "channel_strategy='per_channel' instead."
        )
    return names[found[0]], found[0]


def adapt_first_conv(backbone: Backbone, n_channels: int) -> Backbone:
    """A copy of ``backbone`` whose first convolution takes ``n_channels`` channels.

    The new weights come from the pretrained ones by
    :func:`timm.models.adapt_input_conv` (1 channel: the RGB filters summed;
    ``C`` channels: the RGB filters repeated cyclically and scaled by
    ``3 / C``). The normalization follows the same rule: 1 channel uses the
    mean of the RGB means and standard deviations, ``C`` channels the RGB
    statistics cyclically. ``backbone`` itself is left unchanged.

    Parameters
    ----------
    backbone : Backbone
        A backbone with RGB input (its first convolution takes 3 channels, no
        groups), typically pretrained; it is copied, not changed.
    n_channels : int
        Input channels of the adapted backbone.

    Returns
    -------
    Backbone
        With ``in_chans == n_channels``; same layers and widths.

    Examples
    --------
    >>> import torch
    >>> from skhyper.features import build_backbone
    >>> bb = adapt_first_conv(build_backbone("resnet18", weights=None), 2)
    >>> bb.in_chans, tuple(bb.model.conv1.weight.shape)
    (2, (64, 2, 7, 7))
    >>> tuple(bb(torch.rand(1, 2, 32, 32), ["layer1"])["layer1"].shape)
    (1, 64, 8, 8)
    """
    n_channels = int(n_channels)
    if n_channels < 1:
        raise ValueError(f"adapt_first_conv needs n_channels >= 1; got {n_channels}.")
    table = backbone.layer_table()
    bb = copy.deepcopy(backbone)
    name, conv = find_first_conv(bb)
    base = bb.in_chans
    if conv.in_channels != base or conv.groups != 1:
        raise ValueError(
            f"channel_strategy='first_conv' adapts the first convolution of backbone "
            f"{bb.name!r}, but {name!r} takes {conv.in_channels} channels in {conv.groups} "
            f"groups, not the {base} image channels. Use channel_strategy='per_channel'."
        )
    adapt_input_conv = import_timm().models.adapt_input_conv
    weight = adapt_input_conv(n_channels, conv.weight.detach().clone(), base_chans=base)
    conv.weight = nn.Parameter(weight.contiguous(), requires_grad=conv.weight.requires_grad)
    conv.in_channels = n_channels
    mean, std = bb.mean.flatten().tolist(), bb.std.flatten().tolist()
    if n_channels == 1:
        mean, std = [float(np.mean(mean))], [float(np.mean(std))]
    else:
        mean = [mean[k % base] for k in range(n_channels)]
        std = [std[k % base] for k in range(n_channels)]
    # same layers and widths: only the input changed
    adapted = Backbone(bb.model, mean=mean, std=std, stages=bb.stages(), name=bb.name,
                       table=table)
    return adapted.to(backbone.mean.device)


def prepare_backbone(backbone: Backbone, strategy: str | None, n_channels: int) -> Backbone:
    """The backbone for a channel strategy: as is, :class:`PerChannelBackbone` or adapted.

    Examples
    --------
    >>> from skhyper.features import build_backbone
    >>> prepare_backbone(build_backbone("resnet18", weights=None), "per_channel", 4).in_chans
    4
    """
    _check_strategy(strategy)
    if strategy == "per_channel":
        return PerChannelBackbone(backbone, n_channels)
    if strategy == "first_conv":
        return adapt_first_conv(backbone, n_channels)
    return backbone


def _check_strategy(strategy: Any) -> None:
    if strategy is not None and strategy not in CHANNEL_STRATEGIES:
        raise ValueError(
            "The 'channel_strategy' parameter of HypercolumnTransformer must be None or one of "
            f"{list(CHANNEL_STRATEGIES)}. Got {strategy!r} instead."
        )


def _where(param: str, i: int, batched: bool) -> str:
    return f"{param}[{i}]" if batched else param


def _check_gray(checked: list[np.ndarray], batched: bool, param: str) -> None:
    for i, img in enumerate(checked):
        if img.shape[2] != 1:
            raise ValueError(
                f"The '{_where(param, i, batched)}' parameter has {img.shape[2]} channels, but "
                "channel_strategy='replicate' takes grayscale (1-channel) images only. Use "
                "channel_strategy='per_channel' or 'first_conv' for multichannel images, or "
                "None for RGB."
            )


def fit_channels(images: Any, strategy: str | None, in_chans: int, *, param: str = "images"
                 ) -> int:
    """The channel count a transformer takes, learnt from the images given to ``fit``.

    ``None``: the backbone's ``in_chans`` (1-channel images are accepted too);
    ``"replicate"``: 1; ``"per_channel"`` / ``"first_conv"``: the channel count
    of the images, which must be the same for all, or ``in_chans`` when
    ``images`` is None.

    Examples
    --------
    >>> import numpy as np
    >>> fit_channels([np.zeros((8, 8, 2))] * 2, "per_channel", 3)
    2
    >>> fit_channels([np.zeros((8, 8, 2)), np.zeros((8, 8))], "first_conv", 3)
    Traceback (most recent call last):
    ...
    ValueError: The 'images[1]' parameter has 1 channels but `images[0]` has 2; ...
    """
    _check_strategy(strategy)
    if images is None:
        return 1 if strategy == "replicate" else in_chans
    if strategy is None:
        check_images(images, param=param, n_channels=in_chans)
        return in_chans
    checked, batched = check_images(images, param=param, n_channels=None)
    if strategy == "replicate":
        _check_gray(checked, batched, param)
        return 1
    first = checked[0].shape[2]
    for i, img in enumerate(checked):
        if img.shape[2] != first:
            raise ValueError(
                f"The '{_where(param, i, batched)}' parameter has {img.shape[2]} channels but "
                f"`{_where(param, 0, batched)}` has {first}; channel_strategy={strategy!r} "
                "fixes the channel count at fit, so all images need the same number of channels."
            )
    return first


def check_channels(images: Any, strategy: str | None, n_channels: int, *, param: str = "images"
                   ) -> tuple[list[np.ndarray], bool]:
    """:func:`~skhyper._validation.check_images` plus the channel rule of a fitted strategy.

    ``n_channels`` is the count learnt by :func:`fit_channels`.

    Examples
    --------
    >>> import numpy as np
    >>> check_channels([np.zeros((8, 8, 3))], "per_channel", 2)
    Traceback (most recent call last):
    ...
    ValueError: The 'images[0]' parameter has 3 channels, but this HypercolumnTransformer ...
    """
    _check_strategy(strategy)
    if strategy is None:
        return check_images(images, param=param, n_channels=n_channels)
    checked, batched = check_images(images, param=param, n_channels=None)
    if strategy == "replicate":
        _check_gray(checked, batched, param)
        return checked, batched
    for i, img in enumerate(checked):
        if img.shape[2] != n_channels:
            raise ValueError(
                f"The '{_where(param, i, batched)}' parameter has {img.shape[2]} channels, but "
                f"this HypercolumnTransformer (channel_strategy={strategy!r}) was fitted on "
                f"images with {n_channels}; the channel count is fixed at fit. Fit again on "
                "images like these."
            )
    return checked, batched
