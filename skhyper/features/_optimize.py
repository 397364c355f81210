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

from ._fast_modules import FastConv2d, FastReLU6, SamePadConv2d, fused_activation

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


def _faster_modules(model: nn.Module) -> int:
    """Swap timm's ``Conv2dSame`` and ``nn.ReLU6`` for same-output faster modules."""
    swaps = []
    for name, m in model.named_modules():
        if _hooked(m) or not name:
            continue
        if type(m).__name__ == "Conv2dSame" and isinstance(m, nn.Conv2d) and (
                m.padding_mode == "zeros"):
            new = SamePadConv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, 0,
                                m.dilation, m.groups, m.bias is not None, device="meta")
            new.weight, new.bias = m.weight, m.bias
            swaps.append((name, new.train(m.training)))
        elif type(m) is nn.ReLU6:
            swaps.append((name, FastReLU6(m.inplace).train(m.training)))
    for name, new in swaps:
        _replace(model, name, new)
    return len(swaps)


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


class _Trace:
    """One probe pass: per module name its calls, first input and output; the autograd uses."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.inputs: dict[str, torch.Tensor] = {}
        self.outputs: dict[str, Any] = {}
        self.roots: list[torch.Tensor] = []
        self.uses: dict[Any, int] = {}

    def single_use(self, t: torch.Tensor) -> bool:
        """Whether exactly one operation of the pass read ``t`` (and ``t`` owns its memory)."""
        return t.grad_fn is not None and not t._is_view() and self.uses.get(t.grad_fn, 0) == 1


def _trace(model: nn.Module, in_chans: int) -> _Trace | None:
    """Run ``model`` once on a small random batch with gradients on; None if it fails."""
    names = {id(m): n for n, m in model.named_modules()}
    trace = _Trace()

    def hook(module, args, output):
        name = names.get(id(module))
        trace.calls[name] = trace.calls.get(name, 0) + 1
        trace.roots.extend(_tensors(output))
        trace.outputs.setdefault(name, output)
        if args and isinstance(args[0], torch.Tensor):
            trace.inputs.setdefault(name, args[0])

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    was_training = model.training
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        model.eval()
        for size in _PROBE_SIZES:
            trace = _Trace()
            x = torch.rand(1, in_chans, size, size, device=dev, requires_grad=True)
            try:
                with torch.enable_grad():
                    trace.roots.extend(_tensors(model(x)))
                break
            except Exception:
                if size == _PROBE_SIZES[-1]:
                    return None  # the model does not run on a probe: leave it as it is
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    trace.uses = _graph_uses(trace.roots)
    return trace


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
    convs = {n for n, m in model.named_modules()
             if isinstance(m, nn.Conv2d) and n not in keep and not _hooked(m)
             and m.padding_mode == "zeros"}
    norms = [n for n, m in model.named_modules() if _norm_kind(m) and not _hooked(m)]
    return sorted(_sole_readers(model, in_chans, convs, norms))


def _sole_readers(model: nn.Module, in_chans: int, convs: set[str], readers: list[str]
                  ) -> list[tuple[str, str]]:
    """``(conv, reader)`` pairs where, in one probe pass, ``reader``'s input is the output of
    ``conv``, both run once and nothing else reads that output. Each conv pairs with its first
    reader in ``readers``'s order."""
    if not convs or not readers:
        return []
    trace = _trace(model, in_chans)
    if trace is None:
        return []
    by_output = {id(trace.outputs[n]): n for n in convs if n in trace.outputs}
    pairs = []
    for reader in readers:
        x = trace.inputs.get(reader)
        conv = None if x is None else by_output.pop(id(x), None)
        if (conv is not None and trace.calls.get(conv) == 1 and trace.calls.get(reader) == 1
                and trace.single_use(x)):
            pairs.append((conv, reader))
    return pairs


_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.SiLU, nn.Hardswish, nn.Hardsigmoid,
                nn.LeakyReLU, nn.ELU, nn.CELU, nn.SELU, nn.Mish)


def _inplace_activations(model: nn.Module, in_chans: int, keep: Iterable[str]) -> list[str]:
    """Let activations overwrite their input where nothing else can read it.

    An activation runs in place when, in a probe pass, it runs once, its input is a tensor of
    its own (not a view) that no other operation reads, and that tensor is not the output of a
    ``keep`` module (a captured map, or a module returning the same tensor object).
    """
    acts = [n for n, m in model.named_modules()
            if isinstance(m, _ACTIVATIONS) and not m.inplace and not _hooked(m)]
    if not acts:
        return []
    trace = _trace(model, in_chans)
    if trace is None:
        return []
    kept = {id(t) for n in keep if n in trace.outputs for t in _tensors(trace.outputs[n])}
    done = []
    for name in acts:
        x = trace.inputs.get(name)
        if (x is not None and trace.calls.get(name) == 1 and id(x) not in kept
                and trace.single_use(x)):
            model.get_submodule(name).inplace = True
            done.append(name)
    return done


def _fuse_activations(model: nn.Module, in_chans: int, keep: Iterable[str]) -> list[str]:
    """Fuse into a convolution the activation that alone reads its output.

    In a probe pass the activation (ReLU, ReLU6, a clamp, or the remainder of a folded timm
    ``BatchNormAct2d`` without dropout) must read the output of a plain zero-padded
    convolution that runs once, is not a ``keep`` module (its own output is a captured map)
    and whose output nothing else reads. The convolution becomes a ``FastConv2d``
    computing the activation; the activation's module becomes ``nn.Identity`` (keeping its name:
    it returns what it returned).
    """
    keep = set(keep)
    convs = {n for n, m in model.named_modules()
             if type(m) in (nn.Conv2d, FastConv2d, SamePadConv2d) and getattr(m, "post", None)
             is None and m.padding_mode == "zeros" and not isinstance(m.padding, str)
             and n not in keep and not _hooked(m)}
    acts = {}
    for name, m in model.named_modules():
        act = m.act if isinstance(m, NormActRemainder) and isinstance(m.drop, nn.Identity) \
            else m
        if name and not _hooked(m) and not _hooked(act) and fused_activation(act) is not None:
            acts[name] = act
    done: list[str] = []
    # a folded remainder comes before its own act (both read the conv's output): it gets the conv
    for conv, name in _sole_readers(model, in_chans, convs, list(acts)):
        act = acts[name]
        old = model.get_submodule(conv)
        new = (SamePadConv2d if isinstance(old, SamePadConv2d) else FastConv2d)(
            old.in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
            old.dilation, old.groups, old.bias is not None, device="meta",
            post=fused_activation(act))
        new.weight, new.bias = old.weight, old.bias
        _replace(model, conv, new.train(old.training))
        _replace(model, name, nn.Identity().train(act.training))
        done.append(name)
    return done


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
    """Fold batch norms into their convolutions, swap slow modules for same-output fast ones,
    in place.

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

    Notes
    -----
    Besides folding, timm's ``Conv2dSame`` becomes ``SamePadConv2d``, ``nn.ReLU6``
    becomes ``FastReLU6``, and a ReLU or ReLU6 that alone reads a convolution's output
    is fused into it (``FastConv2d``): the same outputs from faster kernels on the
    channels-last batches the engine feeds. Activations whose input nothing else reads (and
    which is not the output of a ``keep`` module) run in place again (``build_backbone``
    switched them all off so that captured maps are never overwritten).

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
    _faster_modules(model)
    _fuse_activations(model, in_chans, keep)
    _inplace_activations(model, in_chans, keep)
    return pairs
