"""Inference optimization (batch norms folded into convolutions): the same maps as the
unoptimized engine for every backbone family, captured layers keep their meaning, the caller's
module is unchanged, and the optimized backbone still pickles, moves, runs from threads."""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torchvision
from torch import nn

from skhyper import HypercolumnTransformer, sample_pixels
from skhyper.features import build_engine, optimize_for_inference
from skhyper.features._fast_modules import FastConv2d
from skhyper.features._optimize import NormActRemainder, foldable_pairs
from tests import _vits

# Tolerance. Folding only re-associates float32 arithmetic: conv(x; a*W) + (a*(c - m) + b)
# instead of a*(conv(x; W) + c - m) + b. Each output of a convolution sums K = c_in * k * k
# products (K <= 4608 for the 3x3x512 convolutions here); a blocked float32 sum of K terms has a
# relative error of order sqrt(K) * eps = 68 * 1.2e-7 = 8e-6 of the sum of the absolute terms,
# and a different rounding of the weights adds eps per layer. Through up to 50 folded layers
# (EfficientNet-Lite0, ResNet-50 depth) errors of random sign add up to about sqrt(50) * 8e-6 =
# 6e-5 of the activations' scale (50 * 8e-6 = 4e-4 if they all lined up); measured: 2e-6 on the
# Lite0 logits. We allow 2e-4 of each map's largest magnitude -- far below any difference a
# wrong fold makes (those are O(1) relative: the test's random statistics shift and scale every
# channel by O(1)).
RTOL_OF_SCALE = 2e-4


def _randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random running statistics and affine parameters, so that a fold is not an identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                n = m.running_mean.numel()
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.25)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(n, generator=g) * 0.5)
    return model.eval()


def _n_norms(module: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def _maps(engine, images):
    return {i: {k: v.float().numpy() for k, v in maps.items()}
            for i, maps in engine.iter_maps(engine.check_images(images))}


def _assert_same_maps(fast, slow, images):
    a, b = _maps(fast, images), _maps(slow, images)
    for i in b:
        for name in b[i]:
            scale = float(np.abs(b[i][name]).max())
            err = float(np.abs(a[i][name] - b[i][name]).max())
            assert err <= RTOL_OF_SCALE * max(scale, 1e-6), (name, err, scale)


def _families():
    def tv(arch, **kw):
        return lambda: _randomize_norms(torchvision.models.get_model(arch, weights=None, **kw))

    def tm(arch, **kw):
        return lambda: _randomize_norms(timm.create_model(arch, pretrained=False, **kw))

    return {
        # torchvision ResNet: conv -> BatchNorm2d pairs, residual additions after the norms
        "resnet18": (tv("resnet18"), None),
        # VGG with batch norms, and without (nothing to fold)
        "vgg11_bn": (tv("vgg11_bn"), ["features.2", "features.6", "features.13"]),
        "vgg11": (tv("vgg11"), ["features.1", "features.4"]),
        # MobileNetV3: depthwise convolutions, squeeze-excitation, hardswish
        "mobilenet_v3_small": (tv("mobilenet_v3_small"), None),
        # timm: BatchNormAct2d (norm + activation in one module), 'same' padded convolutions
        "timm_efficientnet_b0": (tm("tf_efficientnet_b0"), [1, 2, 3]),
        # ConvNeXt: LayerNorm, which does not fold (nothing to fold)
        "convnext": (tm("convnext_atto"), [0, 1]),
    }


FAMILIES = _families()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_optimized_maps_equal_unoptimized_maps(family, rng):
    make, layers = FAMILIES[family]
    net = make()
    images = [rng.random((45, 61, 3)).astype(np.float32), rng.random((33, 40, 3))]
    fast = build_engine(net, layers=layers, device="cpu", optimize=True)
    slow = build_engine(net, layers=layers, device="cpu", optimize=False)
    assert _n_norms(slow.backbone) == _n_norms(net)
    if _n_norms(net):
        assert _n_norms(fast.backbone) < _n_norms(net)  # something was folded
    _assert_same_maps(fast, slow, images)


def test_default_backbone_with_its_pretrained_weights_folds_every_norm(rng):
    """EfficientNet-Lite0 (bundled ImageNet weights: real statistics): all 49 norms fold."""
    images = [(rng.random((64, 80, 3)) * 255).astype(np.uint8)]
    fast = build_engine(device="cpu")
    slow = build_engine(device="cpu", optimize=False)
    assert _n_norms(slow.backbone) == 49 and _n_norms(fast.backbone) == 0
    # every ReLU6 of a folded norm runs inside its convolution (a oneDNN post-op on CPU)
    assert not [m for m in fast.backbone.modules() if isinstance(m, NormActRemainder)]
    fused = [m for m in fast.backbone.modules() if isinstance(m, FastConv2d) and m.post]
    assert len(fused) == 33 and all(m.post == ("hardtanh", [0.0, 6.0]) for m in fused)
    # the norms without activation (the blocks' linear projections) became identities
    assert isinstance(fast.backbone.model.blocks[1][0].bn3, nn.Identity)
    # timm's 'same'-padded strided convolutions got the faster padding
    assert type(fast.backbone.model.blocks[1][0].conv_dw).__name__ == "SamePadConv2d"
    _assert_same_maps(fast, slow, images)


def test_transformer_is_left_unchanged(rng):
    net = _vits.make("vit")
    engine = build_engine(net, layers=["blocks.1", "blocks.2"], device="cpu")
    slow = build_engine(net, layers=["blocks.1", "blocks.2"], device="cpu", optimize=False)
    sd_fast, sd_slow = engine.backbone.state_dict(), slow.backbone.state_dict()
    assert sd_fast.keys() == sd_slow.keys()
    assert all(torch.equal(sd_fast[k], sd_slow[k]) for k in sd_slow)
    _assert_same_maps(engine, slow, [rng.random((40, 48, 3))])


def test_union_of_backbones_folds_each_member(rng):
    members = {"a": FAMILIES["resnet18"][0](), "b": FAMILIES["vgg11"][0]()}
    layers = ["a.layer1", "a.layer2", "b.features.4"]
    fast = build_engine(members, layers=layers, weights=None, device="cpu")
    slow = build_engine(members, layers=layers, weights=None, device="cpu", optimize=False)
    assert _n_norms(fast.backbone) < _n_norms(slow.backbone)
    _assert_same_maps(fast, slow, [rng.random((40, 40, 3))])


def test_captured_convolution_keeps_its_own_output(rng):
    """A captured conv is not folded (its map is the conv's output, before the norm); a
    captured norm returns what it returned (its replacement keeps the name)."""
    net = FAMILIES["resnet18"][0]()
    layers = ["conv1", "bn1", "layer1.0.conv1", "layer1.0.bn2", "layer2"]
    fast = build_engine(net, layers=layers, device="cpu")
    slow = build_engine(net, layers=layers, device="cpu", optimize=False)
    assert isinstance(fast.backbone.model.bn1, nn.BatchNorm2d)  # conv1 is captured: kept
    assert isinstance(fast.backbone.model.layer1[0].bn2, nn.Identity)  # folded, still named
    _assert_same_maps(fast, slow, [rng.random((40, 40, 3))])


def test_activations_run_in_place_only_where_no_captured_map_is_overwritten(rng):
    net = _randomize_norms(nn.Sequential(OrderedDict(
        stem=nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()),
        body=nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.SiLU(),
                           nn.Conv2d(6, 6, 1), nn.SiLU()))))
    layers = ["stem.0", "body"]
    fast = build_engine(net, layers=layers, device="cpu")
    slow = build_engine(net, layers=layers, device="cpu", optimize=False)
    stem, body = fast.backbone.model.stem, fast.backbone.model.body
    # its input is the captured map of "stem.0": neither in place nor fused into it
    assert type(stem[1]) is nn.ReLU and not stem[1].inplace
    assert body[2].inplace and body[4].inplace  # inputs nothing else reads (SiLU: not fused)
    assert isinstance(body[1], nn.Identity)
    _assert_same_maps(fast, slow, [rng.random((20, 24, 3))])


class _FusionBody(nn.Module):
    """conv -> ReLU6 and conv -> norm -> ReLU fuse; a conv whose output the residual also
    reads, a conv followed by SiLU and a captured conv do not."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.a_act = nn.ReLU6()
        self.b = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.b_bn = nn.BatchNorm2d(8)
        self.b_act = nn.ReLU()
        self.c = nn.Conv2d(8, 8, 1)
        self.c_act = nn.ReLU()
        self.d = nn.Conv2d(8, 8, 1)
        self.d_act = nn.SiLU()
        self.e = nn.Conv2d(8, 8, 1)
        self.e_act = nn.Hardtanh(-1.0, 2.0)

    def forward(self, x):
        x = self.b_act(self.b_bn(self.b(self.a_act(self.a(x)))))
        y = self.c(x)
        x = self.c_act(y) + y
        return self.e_act(self.e(self.d_act(self.d(x))))


def test_activations_fuse_into_the_convolution_they_alone_read(rng):
    net = _randomize_norms(nn.Sequential(OrderedDict(body=_FusionBody()))).eval()
    layers = ["body.b_act", "body.e", "body.e_act"]
    fast = build_engine(net, layers=layers, device="cpu")
    slow = build_engine(net, layers=layers, device="cpu", optimize=False)
    m, m_slow = fast.backbone.model.body, slow.backbone.model.body
    assert isinstance(m.a, FastConv2d) and m.a.post == ("hardtanh", [0.0, 6.0])
    assert isinstance(m.a_act, nn.Identity)
    assert isinstance(m.b, FastConv2d) and m.b.post == ("relu", [])  # folded, then fused
    assert isinstance(m.b_bn, nn.Identity) and isinstance(m.b_act, nn.Identity)
    assert type(m.c) is nn.Conv2d and type(m.c_act) is nn.ReLU  # the residual reads y
    assert type(m.d) is nn.Conv2d and type(m.d_act) is nn.SiLU  # no exact post-op
    assert type(m.e) is nn.Conv2d and type(m.e_act) is nn.Hardtanh  # "e" is captured
    images = [rng.random((20, 24, 3)), rng.random((17, 9, 3))]
    _assert_same_maps(fast, slow, images)
    # the fused module off the oneDNN path (autocast, gradients) computes the same
    x = torch.rand(2, 3, 12, 10)
    with torch.no_grad():
        want = m_slow.a_act(m_slow.a(x))
        torch.testing.assert_close(m.a(x), want, rtol=0, atol=1e-6)
    with torch.inference_mode():
        torch.testing.assert_close(m.a(x.contiguous(memory_format=torch.channels_last)), want,
                                   rtol=0, atol=1e-6)


class _SharedConv(nn.Module):
    """The conv's output is read by the norm and by the addition: it must not fold."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(4, affine=False)
        self.act = nn.ReLU()

    def forward(self, x):
        y = self.conv(x)
        return self.act(self.bn2(self.conv2(self.bn(y) + y)))


def test_a_convolution_read_twice_is_not_folded():
    net = _randomize_norms(_SharedConv())
    assert foldable_pairs(net, 3) == [("conv2", "bn2")]  # the bias-less, affine-less pair folds
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        expected = net(x)
        folded = copy.deepcopy(net)
        optimize_for_inference(folded, 3)
        got = folded(x)
    assert isinstance(folded.bn, nn.BatchNorm2d) and isinstance(folded.bn2, nn.Identity)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


def test_callers_module_is_unchanged_after_fit(rng):
    net = FAMILIES["resnet18"][0]()
    net.train()  # a training flag the fit must not touch either
    before = copy.deepcopy(net.state_dict())
    images = [rng.random((40, 40, 3)) for _ in range(2)]
    X, y = sample_pixels(images, [im[..., 0] > 0.5 for im in images], n_per_image=20,
                         random_state=0)
    hc = HypercolumnTransformer(net, layers=["layer1", "layer2"], device="cpu").fit(X)
    assert _n_norms(hc.backbone_) < _n_norms(net)
    assert net.training and all(m.training for m in net.modules())
    assert net.state_dict().keys() == before.keys()
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(not m._forward_hooks for m in net.modules())


def test_optimized_transformer_pickles_moves_and_serves_threads(rng):
    net = FAMILIES["timm_efficientnet_b0"][0]()
    images = [rng.random((36, 44, 3)) for _ in range(4)]
    X, y = sample_pixels(images, [im[..., 0] > 0.5 for im in images], n_per_image=30,
                         random_state=0)
    hc = HypercolumnTransformer(net, layers=[1, 3], device="cpu").fit(X)
    ref = hc.transform(X)
    slow = HypercolumnTransformer(net, layers=[1, 3], device="cpu", optimize=False).fit(X)
    scale = np.abs(ref).max()
    np.testing.assert_allclose(ref, slow.transform(X), atol=RTOL_OF_SCALE * scale, rtol=0)
    again = pickle.loads(pickle.dumps(hc))
    np.testing.assert_array_equal(again.transform(X), ref)
    hc.engine_.to("cpu")
    np.testing.assert_array_equal(hc.transform(X), ref)
    parts = [X[np.flatnonzero(X.groups == g)] for g in range(4)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(hc.transform, parts * 2))
    for part, rows in zip(parts * 2, got):
        np.testing.assert_array_equal(rows, hc.transform(part))


def test_optimize_is_a_parameter():
    hc = HypercolumnTransformer(optimize=False)
    assert hc.get_params()["optimize"] is False
    with pytest.raises(ValueError, match="'optimize' parameter"):
        HypercolumnTransformer(optimize="yes").fit()


def test_gpu_check_dry_run_passes_without_a_gpu():
    """benchmarks/gpu_check.sh --dry-run runs every step of the GPU check on the CPU at toy
    sizes and exits 0 (so CI keeps the script working until a GPU runs it)."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
    env = {**os.environ, "PYTHON": sys.executable}
    res = subprocess.run(["bash", str(script), "--dry-run"], capture_output=True, text=True,
                         timeout=900, env=env)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert "gpu_check dry run passed" in res.stdout
    assert "bfloat16" in res.stdout and "folded" in res.stdout


@pytest.mark.parametrize("kernel,stride,dilation", [(3, 2, 1), (5, 2, 1), (3, 1, 1), (3, 2, 2),
                                                    (4, 2, 1)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_same_pad_conv_equals_timm_conv2d_same(kernel, stride, dilation, channels_last):
    """Even, odd and mixed sizes: 'SAME' pads (p, p) or (p, p + 1) per axis; the zero tap at
    the kernel's start replaces the padded copy. Float32 sums of the same products (plus exact
    zeros) in another order: relative error a few ulp of the sum of |products| (<= 27 * 25
    terms of inputs and weights below 1 here), so 1e-5 absolute."""
    from timm.layers import Conv2dSame

    from skhyper.features._fast_modules import SamePadConv2d

    torch.manual_seed(0)
    ref = Conv2dSame(6, 6, kernel, stride=stride, dilation=dilation, groups=3).eval()
    fast = SamePadConv2d(6, 6, kernel, stride, 0, dilation, 3, True)
    fast.load_state_dict(ref.state_dict())
    for h, w in [(16, 16), (17, 17), (16, 17), (17, 16), (9, 30)]:
        x = torch.rand(2, 6, h, w)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            want, got = ref(x), fast(x)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_finite_check_of_maps_by_sums():
    """The forward pass's overflow check reads one sum per map: infinities and NaNs are
    refused by name, huge finite maps whose float32 sum overflows are accepted."""
    from types import SimpleNamespace

    from skhyper.features._maps import _check_finite_maps

    batch, bb = torch.zeros(1, 3, 4, 4), SimpleNamespace(name="net")
    ok = {"a": torch.ones(2, 3, 3), "b": torch.full((4, 2, 2), 3e38)}  # sum(b) overflows
    _check_finite_maps(ok, batch, bb, "float32")
    for bad_value in (float("inf"), float("-inf"), float("nan")):
        maps = {"a": torch.ones(2, 3, 3), "b": torch.zeros(4, 2, 2)}
        maps["b"][1, 0, 1] = bad_value
        with pytest.raises(ValueError, match=r"non-finite activations.*\['b'\]"):
            _check_finite_maps(maps, batch, bb, "float32")


def test_same_pad_conv_reuses_its_padded_weight_until_the_weight_changes():
    """The zero-tap weight is made once per weight: a changed weight (in place or replaced), a
    dtype change and a recorded gradient all see the current weight; the cache is not pickled."""
    from timm.layers import Conv2dSame

    from skhyper.features._fast_modules import SamePadConv2d

    torch.manual_seed(0)
    ref = Conv2dSame(4, 4, 3, stride=2).eval()
    fast = SamePadConv2d(4, 4, 3, 2, 0, 1, 1, True)
    fast.load_state_dict(ref.state_dict())
    x = torch.rand(1, 4, 16, 16)  # 'SAME' pads (0, 1): the padded weight
    with torch.inference_mode():
        first = fast(x)
        torch.testing.assert_close(fast(x), first, rtol=0, atol=0)
        assert len(fast.__dict__["_padded"]) == 1
    with torch.no_grad():
        for m in (ref, fast):
            m.weight.mul_(-2.0)  # in place: a new version of the same storage
        torch.testing.assert_close(fast(x), ref(x), rtol=0, atol=1e-5)
        fast.weight = nn.Parameter(torch.rand_like(fast.weight))  # replaced
        ref.weight = nn.Parameter(fast.weight.detach().clone())
        torch.testing.assert_close(fast(x), ref(x), rtol=0, atol=1e-5)
        torch.testing.assert_close(fast.double()(x.double()), ref.double()(x.double()),
                                   rtol=0, atol=1e-12)
    fast.float()
    fast(x).sum().backward()  # gradients reach the weight through a fresh padding
    assert fast.weight.grad is not None and fast.weight.grad.abs().sum() > 0
    assert "_padded" not in pickle.loads(pickle.dumps(fast)).__dict__


@pytest.mark.parametrize("layout", ["channels_last", "nchw", "strided"])
def test_normalize_equals_the_broadcast_formula(layout):
    """Rows of w * c values with repeated statistics: the same float operations per element as
    ``(x - mean) / std``, so the results are bit-identical, in any memory layout."""
    from skhyper.features._intensity import normalize

    torch.manual_seed(0)
    x = torch.rand(2, 3, 7, 5)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        x = x[:, :, ::2]
    mean, std = torch.rand(1, 3, 1, 1), torch.rand(1, 3, 1, 1) + 0.1
    got = normalize(x, mean, std)
    assert torch.equal(got, (x - mean) / std)
    if layout == "channels_last":
        assert got.is_contiguous(memory_format=torch.channels_last)
