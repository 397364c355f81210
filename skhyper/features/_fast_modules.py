"""Same-output faster modules that :func:`~skhyper.features.optimize_for_inference` swaps in.

* ``FastConv2d``: a convolution that may carry the activation that alone reads its
  output (ReLU, ReLU6, a clamp) fused in. On CPU in float32 it runs as one oneDNN convolution
  with the activation as a post-op (``torch.ops.mkldnn._convolution_pointwise``, the kernel
  ``torch.compile`` uses for the same fusion): the activation is applied to each result before
  it is written, so the map is written once instead of written, read and written again. The
  same values, bit for bit (a clamp of the same sums). Elsewhere (CUDA, autocast, traced or
  exported passes) it runs the convolution and then the activation.
* ``SamePadConv2d``: timm's ``Conv2dSame`` (TensorFlow 'SAME' padding, computed per input
  size) without the padded copy of the input.
* ``FastReLU6``: ``nn.ReLU6`` through ``F.relu6``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FastConv2d", "FastReLU6", "SamePadConv2d", "fused_activation"]


def _traced() -> bool:
    return bool(torch.jit.is_tracing() or torch.compiler.is_exporting()
                or torch.compiler.is_compiling())


def _pointwise_available() -> bool:
    return bool(torch.backends.mkldnn.is_available()
                and hasattr(torch.ops.mkldnn, "_convolution_pointwise"))


_POINTWISE = _pointwise_available()


def fused_activation(module: nn.Module) -> tuple[str, list[float]] | None:
    """The oneDNN post-op (name, scalars) that computes ``module`` exactly, or None.

    Examples
    --------
    >>> fused_activation(nn.ReLU6())
    ('hardtanh', [0.0, 6.0])
    >>> fused_activation(nn.SiLU()) is None  # oneDNN's differs in the last bits
    True
    """
    if type(module) is nn.ReLU:
        return "relu", []
    if type(module) in (nn.ReLU6, FastReLU6, nn.Hardtanh):
        return "hardtanh", [float(module.min_val), float(module.max_val)]
    return None


def _post(y: torch.Tensor, post: tuple[str, list[float]]) -> torch.Tensor:
    """The activation ``post`` (:func:`fused_activation`) of a fresh convolution output."""
    if post[0] == "relu":
        return nn.functional.relu(y, inplace=not _traced())
    return nn.functional.hardtanh(y, post[1][0], post[1][1], inplace=not _traced())


class FastConv2d(nn.Conv2d):
    """``nn.Conv2d`` (zero padding) with an optional fused activation ``post``.

    ``post`` is None (a plain convolution) or the ``(name, scalars)`` of an exact oneDNN
    post-op (:func:`fused_activation`); the forward pass returns the activation of the
    convolution. The activation is an attribute, not a child module: the convolution stays a
    leaf module, as the receptive-field probe of tiling expects.
    """

    def __init__(self, *args, post: tuple[str, list[float]] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.post = post

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.post is None else f", post={self.post}")

    def conv_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """The input, weight and (symmetric) padding of the convolution to run."""
        return x, self.weight, tuple(self.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, weight, padding = self.conv_inputs(x)
        post = self.post
        if (post is not None and _POINTWISE and not _traced() and x.device.type == "cpu"
                and x.dtype == weight.dtype == torch.float32 and x.dim() == 4
                and not torch.is_autocast_enabled("cpu") and not torch.is_grad_enabled()):
            return torch.ops.mkldnn._convolution_pointwise(
                x, weight, self.bias, list(padding), list(self.stride), list(self.dilation),
                self.groups, post[0], post[1], "")
        y = nn.functional.conv2d(x, weight, self.bias, self.stride, padding, self.dilation,
                                 self.groups)
        return y if post is None else _post(y, post)


def _same_pad(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _pad_zeros(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """``F.pad`` with zeros in the memory format of ``x`` (``F.pad`` of a channels-last batch
    is several times slower than this copy)."""
    n, c, h, w = x.shape
    fmt = (torch.channels_last if x.is_contiguous(memory_format=torch.channels_last)
           and not x.is_contiguous() else torch.contiguous_format)
    out = torch.empty((n, c, h + top + bottom, w + left + right), dtype=x.dtype,
                      device=x.device, memory_format=fmt)
    out[:, :, :top].zero_()
    out[:, :, top + h:].zero_()
    out[:, :, :, :left].zero_()
    out[:, :, :, left + w:].zero_()
    out[:, :, top:top + h, left:left + w] = x
    return out


class SamePadConv2d(FastConv2d):
    """timm's ``Conv2dSame`` (TensorFlow 'SAME' padding, computed per input size) without the
    padded copy of the input; the same output (traced passes use timm's own padding, which
    exporters know).

    'SAME' pads ``(p, p)`` or ``(p, p + 1)`` per axis. The second, one more zero after than
    before, is the convolution padded ``p + 1`` on both sides with a kernel that has one more
    tap of weight zero at its start: the extra tap reads the zero row (column) before the image
    and every other tap the same pixel as before, so the sums hold the same products (plus
    exact zeros). Without the copy of a large channels-last map (``F.pad``) the stride-2
    convolutions of EfficientNet run 3-10x faster. Dilated convolutions (where one tap is more
    than one pixel) keep the padded copy.
    """

    def conv_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        if _traced():
            from timm.layers.padding import pad_same

            return pad_same(x, self.weight.shape[-2:], self.stride, self.dilation), \
                self.weight, (0, 0)
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        top, bottom = _same_pad(x.shape[-2], kh, sh, dh)
        left, right = _same_pad(x.shape[-1], kw, sw, dw)
        if (dh, dw) == (1, 1):
            weight = self.weight
            if bottom > top or right > left:  # one more zero tap at the kernel's start
                weight = self._padded_weight(right - left, bottom - top)
            return x, weight, (bottom, right)
        if top or bottom or left or right:
            x = _pad_zeros(x, top, bottom, left, right)
        return x, self.weight, (0, 0)

    def _padded_weight(self, cols: int, rows: int) -> torch.Tensor:
        """The weight with ``rows`` / ``cols`` zero taps before it, made once per weight when no
        gradient is recorded (keyed by the weight's storage and version, so a moved or changed
        weight gets a new one; not pickled)."""
        w = self.weight
        if torch.is_grad_enabled():  # gradients must flow to the weight
            return nn.functional.pad(w, (cols, 0, rows, 0))
        key = (cols, rows, w.data_ptr(), w._version, w.device, w.dtype)
        cache = self.__dict__.get("_padded", {})
        hit = cache.get(key)
        if hit is None:
            with torch.inference_mode(False), torch.no_grad():  # usable outside inference mode
                hit = nn.functional.pad(w, (cols, 0, rows, 0))
            kept = {k: v for k, v in list(cache.items()) if k[2:] == key[2:]}
            self.__dict__["_padded"] = {**kept, key: hit}  # one assignment: thread-safe
        return hit

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        return {k: v for k, v in state.items() if k != "_padded"}


class FastReLU6(nn.ReLU6):
    """``nn.ReLU6`` through ``F.relu6``: the same values, faster than ``hardtanh`` (which
    ``nn.ReLU6`` calls) on channels-last batches."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.relu6(x, inplace=self.inplace)
