"""Inference-time graph optimization of an engine's own backbone copy: BatchNorm folded into
the preceding convolution (batches already reach it channels-last, see ``_maps._forward``).

In ``eval()`` a batch normalization is a per-channel affine map, ``y = a * x + b``; when its
input is the output of a convolution and nothing else reads that output, the affine map folds
into the convolution's weights and bias (``W' = a W``, ``c' = a (c - mean) + beta``), and the
normalization disappears from the pass. :func:`optimize_for_inference` finds such pairs by
running the model once (the pairs are structural: which module's output feeds which, read
from the autograd graph of a small probe pass, not guessed from names or registration order),
folds them in float64 and replaces each folded normalization by what remains of it: nothing
(``nn.Identity``) or, for timm's ``BatchNormAct2d`` (normalization, dropout and activation in
one module), :class:`NormActRemainder` with the same ``drop`` and ``act`` children.

What it never changes: the meaning of a layer anyone can capture. A convolution whose own
output is a captured layer (``keep``) is not folded; a folded normalization keeps its name
(its replacement returns what it returned); modules with hooks are left alone. Networks
without batch normalization (VGG, vision transformers with LayerNorm, which does not fold) are
returned unchanged. It changes the module it is given: the
engine calls it on its own copy only (:func:`~skhyper.features.build_engine`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["NormActRemainder", "optimize_for_inference", "foldable_pairs"]

_PROBE_SIZES = (64, 224)


class NormActRemainder(nn.Module):
    """What is left of a norm-and-activation module once its normalization is folded.

    Runs the module's ``drop`` and ``act`` children (kept under the same names).
    """

    def __init__(self, drop: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.drop = drop
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(x))


def _norm_kind(module: nn.Module) -> str | None:
    """``"bn"`` / ``"bn_act"`` for a foldable 2-d batch norm in eval use, else None."""
    stats = getattr(module, "running_mean", None), getattr(module, "running_var", None)
    if stats[0] is None or stats[1] is None or not hasattr(module, "eps"):
        return None  # batch statistics even in eval: not an affine map
    name = type(module).__name__
    if isinstance(module, nn.BatchNorm2d) or name == "FrozenBatchNorm2d":
        return "bn_act" if hasattr(module, "act") and hasattr(module, "drop") else "bn"
    if name == "FrozenBatchNormAct2d":
        return "bn_act"
    return None


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _graph_uses(roots: Iterable[torch.Tensor]) -> dict[Any, int]:
    """How many autograd nodes (reachable from ``roots``) consume each node's output."""
    uses: dict[Any, int] = {}
    seen = set()
    stack = [t.grad_fn for t in roots if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for nxt, _ in node.next_functions:
            if nxt is not None:
                uses[nxt] = uses.get(nxt, 0) + 1
                stack.append(nxt)
    return uses


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def foldable_pairs(model: nn.Module, in_chans: int, keep: Iterable[str] = ()
                   ) -> list[tuple[str, str]]:
    """``(conv name, norm name)`` pairs of ``model`` whose normalization folds into the conv.

    A pair qualifies when, in a probe pass, the norm's input is the conv's output, each runs
    once, nothing else reads the conv's output, the conv is a plain 2-d convolution not named
    in ``keep`` (captured layers) and neither module carries hooks.

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    >>> foldable_pairs(net.eval(), 3)
    [('0', '1')]
    >>> foldable_pairs(net, 3, keep=["0"])
    []
    """
    keep = set(keep)
    names = {id(m): n for n, m in model.named_modules()}
    convs = {n for n, m in model.named_modules()
             if isinstance(m, nn.Conv2d) and n not in keep and not _hooked(m)
             and m.padding_mode == "zeros"}
    norms = {n for n, m in model.named_modules() if _norm_kind(m) and not _hooked(m)}
    if not convs or not norms:
        return []
    calls: dict[str, int] = {}
    conv_out: dict[str, torch.Tensor] = {}
    norm_in: dict[str, torch.Tensor] = {}
    outputs: list[torch.Tensor] = []

    def hook(module, args, output):
        name = names.get(id(module))
        calls[name] = calls.get(name, 0) + 1
        outputs.extend(_tensors(output))
        if name in convs:
            conv_out[name] = output
        if name in norms and args and isinstance(args[0], torch.Tensor):
            norm_in[name] = args[0]

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    was_training = model.training
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        model.eval()
        for size in _PROBE_SIZES:
            calls.clear(), conv_out.clear(), norm_in.clear(), outputs.clear()
            x = torch.rand(1, in_chans, size, size, device=dev, requires_grad=True)
            try:
                with torch.enable_grad():
                    outputs.extend(_tensors(model(x)))
                break
            except Exception:
                if size == _PROBE_SIZES[-1]:
                    return []  # the model does not run on a probe: leave it as it is
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    uses = _graph_uses(outputs)
    by_output = {id(t): n for n, t in conv_out.items()}
    pairs = []
    for norm, x in norm_in.items():
        conv = by_output.get(id(x))
        if conv is None or calls.get(conv) != 1 or calls.get(norm) != 1:
            continue
        if x.grad_fn is None or uses.get(x.grad_fn, 0) != 1:
            continue  # the conv's output is read by something besides the norm
        pairs.append((conv, norm))
    return pairs


def _fold(conv: nn.Conv2d, norm: nn.Module) -> None:
    """Fold ``norm``'s eval affine map into ``conv`` (computed in float64)."""
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(
        w.shape[0], dtype=torch.float64, device=w.device)
    mean, var = norm.running_mean.double(), norm.running_var.double()
    gamma = norm.weight.detach().double() if getattr(norm, "weight", None) is not None \
        else torch.ones_like(mean)
    beta = norm.bias.detach().double() if getattr(norm, "bias", None) is not None \
        else torch.zeros_like(mean)
    scale = gamma * torch.rsqrt(var + float(norm.eps))
    dtype = conv.weight.dtype
    grad = conv.weight.requires_grad
    conv.weight = nn.Parameter((w * scale.view(-1, 1, 1, 1)).to(dtype), requires_grad=grad)
    conv.bias = nn.Parameter(((b - mean) * scale + beta).to(dtype), requires_grad=grad)


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def optimize_for_inference(model: nn.Module, in_chans: int, keep: Iterable[str] = ()
                           ) -> list[tuple[str, str]]:
    """Fold batch norms into their convolutions, in place.

    Parameters
    ----------
    model : torch.nn.Module
        The network (a copy the caller owns: it is changed).
    in_chans : int
        Input channels of ``model`` (for the probe pass that finds the pairs).
    keep : iterable of str
        Module names whose outputs must keep their meaning (captured layers): such a
        convolution is not folded.

    Returns
    -------
    list of (str, str)
        The folded ``(conv, norm)`` pairs.

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    >>> optimize_for_inference(net, 3)
    [('0', '1')]
    >>> net[1]
    Identity()
    """
    pairs = foldable_pairs(model, in_chans, keep)
    with torch.no_grad():
        for conv_name, norm_name in pairs:
            conv, norm = model.get_submodule(conv_name), model.get_submodule(norm_name)
            _fold(conv, norm)
            rest = nn.Identity()
            if _norm_kind(norm) == "bn_act" and not (
                    isinstance(norm.drop, nn.Identity) and isinstance(norm.act, nn.Identity)):
                rest = NormActRemainder(norm.drop, norm.act)
            _replace(model, norm_name, rest.train(norm.training))
    return pairs
