"""Hostile and unusual inputs across skhyper's public API (issue 15): clear, handled, unclear,
silent.

Every case is one call with a declared expectation:

- ``"error"``: it must raise ``ValueError`` / ``TypeError`` (or a package exception subclassing
  them) whose message names the given parameter;
- ``"ok"``: it must return, and a validator checks the result (shape, dtype, finite, labels in
  ``classes_``, equality with a reference computed the normal way).

Each outcome is classified automatically:

- **clear**: an error of the right type, raised by the package (not from deep inside torch or
  numpy), whose message names the parameter (an expected-ok case that raises such an error
  counts as clear too);
- **handled**: the call returned and its validator passed (an expected-error case can be handled
  only when it has a validator, i.e. when accepting the input is also right);
- **unclear**: another exception type, an exception raised inside torch / numpy, a message that
  does not name the parameter, an error raised only after the work was done, or a keyword this
  version does not know (API absent: counted unclear, honestly);
- **silent**: no error where one was due, or the validator failed.

The sweep imports ``skhyper`` from whatever is on ``PYTHONPATH``, so it runs against any checkout::

    PYTHONPATH=/work/wt_before python benchmarks/hostile_inputs.py --label before
    PYTHONPATH=/work/main python benchmarks/hostile_inputs.py --label after

Tiny models (``resnet18``, random weights, layers ``relu`` + ``layer1``; a 3-conv module) on
32-64 px images keep the sweep to a few minutes on 2 CPU cores. Files go to a temporary folder;
the JSON goes to ``benchmarks/results/hostile_inputs_<label>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import pickle
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import skhyper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_results  # noqa: E402

from skhyper import (  # noqa: E402
    GridLocationClassifier,
    HypercolumnKeypointLocator,
    HypercolumnSegmenter,
    HypercolumnTransformer,
    MapCache,
    PixelSet,
    build_backbone,
    extract_dense,
    extract_hypercolumns,
    grid_pixels,
    list_layers,
    sample_pixels,
    split_planes,
    stack_planes,
)

OUTCOMES = ("clear", "handled", "unclear", "silent")
CASE_TIMEOUT_S = 90
RESULTS = Path(__file__).resolve().parent / "results"


# --------------------------------------------------------------------------------------------
# cases and their classification
# --------------------------------------------------------------------------------------------


@dataclass
class Case:
    kind: str
    call: str  # the call, as a user would write it
    fn: Callable[[], Any]
    expect: str  # "error" or "ok"
    param: str  # names (a|b) or "re:<regex>" the error message must contain
    check: Callable[[Any, list], str | None] | None = None  # None/"" = pass, text = failure
    accept: tuple = ()  # further exception types that count as clear for this case
    after: Callable[[], str | None] | None = None  # an error raised too late -> text
    warn_names: bool = False  # a warning given before the error may name it instead
    note: str = ""
    result: dict = field(default_factory=dict)


CASES: list[Case] = []


def add(kind: str, call: str, fn: Callable[[], Any], expect: str, param: str,
        check: Callable[[Any, list], str | None] | None = None, **kw: Any) -> None:
    assert expect in ("error", "ok"), expect
    if expect == "ok" and check is None:
        raise AssertionError(f"expected-ok case without a validator: {call}")
    CASES.append(Case(kind, call, fn, expect, param, check, **kw))


def _param_regex(param: str) -> re.Pattern:
    if param.startswith("re:"):
        return re.compile(param[3:], re.IGNORECASE)
    names = "|".join(re.escape(p) for p in param.split("|"))
    return re.compile(rf"(?<![A-Za-z0-9_])(?:{names})(?![A-Za-z0-9_])")


class _CaseTimeout(BaseException):
    pass


def _on_alarm(signum, frame):  # noqa: ARG001
    raise _CaseTimeout


def _origin(exc: BaseException) -> str:
    """The file the exception was raised in (its innermost traceback frame)."""
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    return last or ""


_DEEP = re.compile(r"[/\\](torch|numpy|PIL|safetensors)[/\\]")


def classify(case: Case) -> dict:
    res: dict[str, Any] = {"kind": case.kind, "call": case.call, "expect": case.expect,
                           "param": case.param}
    value, exc, caught, seconds = _run_case(case)
    res["seconds"] = seconds
    res["warnings"] = [f"{w.category.__name__}: {str(w.message)[:160]}" for w in caught]
    if exc is not None:
        return _classify_error(case, exc, caught, res)
    if case.check is None:
        res["outcome"], res["reason"] = "silent", "returned without an error"
        res["returned"] = _describe(value)
        return res
    try:
        problem = case.check(value, caught)
    except Exception as err:  # noqa: BLE001 - a validator that cannot read the result failed
        problem = f"validator raised {type(err).__name__}: {err}"
    res["returned"] = _describe(value)
    if problem:
        res["outcome"], res["reason"] = "silent", str(problem)[:400]
    else:
        res["outcome"], res["reason"] = "handled", ""
    return res


def _run_case(case: Case) -> tuple[Any, BaseException | None, list, float]:
    """Call the case under a time limit, recording warnings: its value or exception, the
    warnings and the seconds it took."""
    caught: list = []
    signal.signal(signal.SIGALRM, _on_alarm)
    t0 = time.perf_counter()
    exc = None
    value = None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            signal.alarm(CASE_TIMEOUT_S)
            try:
                value = case.fn()
            finally:
                signal.alarm(0)
    except _CaseTimeout:
        exc = TimeoutError(f"no answer within {CASE_TIMEOUT_S} s")
    except (Exception, SystemExit) as err:  # noqa: BLE001 - classifying is the point
        exc = err
    return value, exc, caught, round(time.perf_counter() - t0, 3)


def _classify_error(case: Case, exc: BaseException, caught: list, res: dict) -> dict:
    """clear or unclear, and why, for a case that raised."""
    msg = f"{type(exc).__name__}: {exc}"
    res["exception"] = type(exc).__name__
    res["message"] = msg[:600]
    origin = _origin(exc)
    res["origin"] = origin
    right_type = isinstance(exc, (ValueError, TypeError, *case.accept))
    said = str(exc)
    if case.warn_names:
        said += " ".join(str(w.message) for w in caught)
    names = bool(_param_regex(case.param).search(said))
    late = case.after() if case.after is not None else None
    if isinstance(exc, TypeError) and "unexpected keyword argument" in str(exc):
        res["outcome"] = "unclear"
        res["reason"] = "API absent in this version (unknown keyword)"
    elif not right_type:
        res["outcome"] = "unclear"
        res["reason"] = f"wrong exception type {type(exc).__mro__[:3]}"
        if names:
            res["reason"] += " (the message names the parameter)"
        if late:
            res["reason"] += "; " + late
    elif (_DEEP.search(origin) and "skhyper" not in origin
          and not isinstance(exc, case.accept)):
        res["outcome"], res["reason"] = "unclear", f"raised inside a dependency ({origin})"
    elif not names:
        res["outcome"] = "unclear"
        res["reason"] = f"message does not name {case.param!r}"
    elif late:
        res["outcome"], res["reason"] = "unclear", late
    else:
        res["outcome"], res["reason"] = "clear", ""
    res["traceback_tail"] = "".join(traceback.format_tb(exc.__traceback__)[-2:])[-600:]
    return res


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"ndarray{value.shape} {value.dtype}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_describe(v) for v in value[:3])
        return f"{type(value).__name__}[{len(value)}]({inner}{', ...' if len(value) > 3 else ''})"
    return f"{type(value).__name__}: {str(value)[:80]}"


# --------------------------------------------------------------------------------------------
# fixtures: tiny data, tiny models (built once, lazily)
# --------------------------------------------------------------------------------------------

H, W = 40, 48
LAYERS = ["relu", "layer1"]


def scene(seed: int, h: int = H, w: int = W,
          channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A dark noisy image with a bright rectangle (label 1) on background (label 0)."""
    rng = np.random.default_rng(seed)
    img = (rng.random((h, w, channels)) * 80).astype(np.uint8)
    mask = np.zeros((h, w), np.int64)
    r0, c0 = rng.integers(2, max(3, h // 4)), rng.integers(2, max(3, w // 4))
    mask[r0:r0 + h // 2, c0:c0 + w // 2] = 1
    img[mask == 1] += 140
    return img, mask


IMGS, MASKS = map(list, zip(*[scene(s) for s in range(4)]))
IMG = IMGS[0]


def hc(**kw: Any) -> HypercolumnTransformer:
    kw.setdefault("layers", LAYERS)
    kw.setdefault("device", "cpu")
    return HypercolumnTransformer("resnet18", weights=None, **kw)


def seg(**kw: Any) -> HypercolumnSegmenter:
    hyper = kw.pop("hypercolumns", None) or hc()
    kw.setdefault("n_pixels_per_image", 150)
    kw.setdefault("random_state", 0)
    return HypercolumnSegmenter(hyper, **kw)


class TinyNet(nn.Module):
    """Three convolutions; counts forward passes on anything but the 224 px layer probe."""

    passes = 0

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.c3 = nn.Conv2d(8, 8, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (224, 224):
            TinyNet.passes += 1
        return self.c3(torch.relu(self.c2(torch.relu(self.c1(x)))))


def tiny_hc(**kw: Any) -> HypercolumnTransformer:
    return HypercolumnTransformer(TinyNet(), layers=["c1", "c3"], device="cpu", **kw)


class Fix:
    """Fitted models and references, built on first use."""

    _cache: dict[str, Any] = {}

    @classmethod
    def get(cls, key: str) -> Any:
        if key not in cls._cache:
            cls._cache[key] = getattr(cls, "_" + key)()
        return cls._cache[key]

    @staticmethod
    def _seg() -> HypercolumnSegmenter:
        return seg().fit(IMGS, MASKS)

    @staticmethod
    def _ref() -> np.ndarray:
        return Fix.get("seg").predict(IMG)

    @staticmethod
    def _ref_proba() -> np.ndarray:
        return Fix.get("seg").predict_proba(IMG)

    @staticmethod
    def _pixels() -> tuple:
        return sample_pixels(IMGS, MASKS, n_per_image=60, random_state=0)

    @staticmethod
    def _hc() -> HypercolumnTransformer:
        return hc().fit(Fix.get("pixels")[0])

    @staticmethod
    def _hc_ref() -> np.ndarray:
        return Fix.get("hc").transform(Fix.get("pixels")[0])

    @staticmethod
    def _grid() -> tuple:
        from sklearn.linear_model import LogisticRegression

        rng = np.random.default_rng(0)
        X = np.column_stack([rng.normal(size=(300, 3)), rng.random((300, 2))])
        y = (X[:, 0] + (X[:, 3] > 0.5) > 0.5).astype(int)
        return GridLocationClassifier(LogisticRegression(), grid_size=2).fit(X, y), X, y

    @staticmethod
    def _kp() -> tuple:
        rng = np.random.default_rng(0)
        images = (rng.random((5, 48, 48, 3)) * 60).astype(np.uint8)
        kps = rng.uniform(12, 36, (5, 2, 2))
        for img, kp in zip(images, kps):
            x, y = kp[0].round().astype(int)
            img[y - 2:y + 3, x - 2:x + 3] = 255
            x, y = kp[1].round().astype(int)
            img[y - 3:y + 4, x - 3:x + 4, 1] = 200
        loc = HypercolumnKeypointLocator(hc(), grid_size=1, frame_size=48, random_state=0)
        return loc.fit(images, kps), images, kps

    @staticmethod
    def _gray_seg() -> HypercolumnSegmenter:
        return seg().fit([im[..., 0] for im in IMGS], MASKS)

    @staticmethod
    def _perchannel_seg() -> HypercolumnSegmenter:
        return seg(hypercolumns=hc(channel_strategy="per_channel")).fit(
            [im[..., :2] for im in IMGS], MASKS)

    @staticmethod
    def _tmp() -> str:
        return tempfile.mkdtemp(prefix="skhyper_hostile_")

    @staticmethod
    def _resnet_state() -> dict:
        return build_backbone("resnet18", weights=None).model.state_dict()


def tmp(name: str) -> str:
    return os.path.join(Fix.get("tmp"), name)


# --------------------------------------------------------------------------------------------
# validators
# --------------------------------------------------------------------------------------------


def _label_problem(res: Any, shape: tuple, classes: np.ndarray) -> str | None:
    if not isinstance(res, np.ndarray):
        return f"expected an ndarray, got {type(res).__name__}"
    if res.shape != shape:
        return f"shape {res.shape}, expected {shape}"
    extra = np.setdiff1d(np.unique(res), classes)
    if extra.size:
        return f"labels {extra.tolist()[:5]} not in classes_ {classes.tolist()}"
    return None


def labels(shape: tuple, model: str = "seg") -> Callable:
    """A label map of ``shape`` with values in the model's classes_."""
    def check(res, ws):
        return _label_problem(res, shape, Fix.get(model).classes_)
    return check


def label_list(shapes: list[tuple], model: str = "seg") -> Callable:
    def check(res, ws):
        if len(res) != len(shapes):
            return f"{len(res)} results for {len(shapes)} images"
        for i, (r, s) in enumerate(zip(res, shapes)):
            p = _label_problem(np.asarray(r), s, Fix.get(model).classes_)
            if p:
                return f"item {i}: {p}"
        return None
    return check


def equals(ref: Callable[[], Any], min_agree: float = 1.0) -> Callable:
    """Equal to a reference computed the normal way (labels: at least ``min_agree`` agree)."""
    def check(res, ws):
        want = ref()
        got = res
        if isinstance(want, list):
            if len(got) != len(want):
                return f"{len(got)} results, reference has {len(want)}"
            pairs = list(zip(got, want))
        else:
            pairs = [(got, want)]
        for i, (g, w) in enumerate(pairs):
            g = np.asarray(g)
            if g.shape != w.shape:
                return f"item {i}: shape {g.shape}, reference {w.shape}"
            if g.dtype.kind == "f":
                if not np.isfinite(g).all():
                    return f"item {i}: non-finite values"
                if not np.allclose(g, w, atol=1e-4, rtol=1e-4):
                    return f"item {i}: max |diff| {np.abs(g - w).max():.3g} from the reference"
            else:
                agree = float((g == w).mean())
                if agree < min_agree:
                    return f"item {i}: {agree:.3f} of labels agree with the reference"
        return None
    return check


def finite_array(shape: tuple | None = None, dtype_kind: str | None = None) -> Callable:
    def check(res, ws):
        a = np.asarray(res)
        if shape is not None and a.shape != shape:
            return f"shape {a.shape}, expected {shape}"
        if dtype_kind and a.dtype.kind not in dtype_kind:
            return f"dtype {a.dtype}"
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            return "non-finite values"
        return None
    return check


def warned(category: str, inner: Callable | None = None) -> Callable:
    """Returned with a warning of ``category`` (e.g. an IntensityWarning), and ``inner`` passes."""
    def check(res, ws):
        if not any(w.category.__name__ == category for w in ws):
            return f"no {category}; a likely mistake passed silently"
        return inner(res, ws) if inner else None
    return check


def both(*checks: Callable) -> Callable:
    def check(res, ws):
        for c in checks:
            p = c(res, ws)
            if p:
                return p
        return None
    return check


def pixelset_labels(classes: set | None = None, max_n: int | None = None) -> Callable:
    def check(res, ws):
        X, y = res
        if not isinstance(X, PixelSet) or len(X) != len(y):
            return f"got {type(X).__name__} of {len(X)} and {len(y)} labels"
        if len(y) == 0:
            return "no pixels drawn"
        if classes is not None and set(np.unique(y).tolist()) != set(classes):
            return f"labels {sorted(set(np.unique(y).tolist()))}, expected {sorted(classes)}"
        if max_n is not None and len(y) > max_n:
            return f"{len(y)} pixels drawn, at most {max_n} exist"
        return None
    return check


def is_pixelset(n: int) -> Callable:
    def check(res, ws):
        if not isinstance(res, PixelSet):
            return f"got {type(res).__name__}"
        if len(res) != n:
            return f"{len(res)} pixels, expected {n}"
        return None
    return check


def gives(value: Any) -> Callable:
    def check(res, ws):
        return None if res == value else f"returned {res!r}, expected {value!r}"
    return check


def returned(res, ws):
    return None


# --------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------


def S():  # noqa: N802 - short name for the fitted segmenter in case lambdas
    return Fix.get("seg")


def ref():
    return Fix.get("ref")


def _images_shape_cases() -> None:
    """The images: shape cases."""
    k = "images: shape"
    pred = lambda x: S().predict(x)  # noqa: E731
    for shape in [(0, 0, 3), (0, W, 3), (H, 0, 3), (0, H, W, 3)]:
        add(k, f"seg.predict(np.zeros({shape}, uint8))",
            lambda s=shape: pred(np.zeros(s, np.uint8)), "error", "images")
    for shape in [(1, 1, 3), (1, W, 3), (H, 1, 3), (2, 2, 3), (3, 5, 3)]:
        add(k, f"seg.predict(image of shape {shape})",
            lambda s=shape: pred(scene(1, s[0], s[1])[0]), "ok", "images", labels(shape[:2]))
    add(k, "seg.predict(2-D grayscale image)", lambda: pred(IMG[..., 0]), "ok", "images",
        labels((H, W)))
    add(k, "seg.predict((H, W, 1) image)", lambda: pred(IMG[..., :1]), "ok", "images",
        labels((H, W)))
    add(k, "seg.predict(stack (3, H, W, 3))", lambda: pred(np.stack(IMGS[:3])), "ok", "images",
        equals(lambda: [S().predict(im) for im in IMGS[:3]]))
    add(k, "seg.predict(stack (1, H, W, 3))", lambda: pred(IMG[None]), "ok", "images",
        equals(lambda: [ref()]))
    add(k, "seg.predict(5-D array (2, 2, H, W, 3))",
        lambda: pred(np.zeros((2, 2, H, W, 3), np.uint8)), "error", "images")
    add(k, "seg.predict(1-D array)", lambda: pred(np.zeros(W, np.uint8)), "error", "images")
    add(k, "seg.predict(0-D array)", lambda: pred(np.array(5)), "error", "images")
    add(k, "seg.predict(channel-first (3, H, W) array)",
        lambda: pred(np.ascontiguousarray(IMG.transpose(2, 0, 1))), "error", "images")
    add(k, "seg.predict([stack (2, H, W, 3)]) (a list holding a 4-D array)",
        lambda: pred([np.stack(IMGS[:2])]), "error", "images")
    add(k, "seg.predict(huge-aspect image (1, 4000, 3))",
        lambda: pred(np.full((1, 4000, 3), 100, np.uint8)), "ok", "images", labels((1, 4000)))


def _images_channels_cases() -> None:
    """The images: channels cases."""
    pred = lambda x: S().predict(x)  # noqa: E731
    k = "images: channels"
    for c in (2, 4, 5, 16):
        add(k, f"seg.predict({c}-channel image) [RGB model, no channel strategy]",
            lambda c=c: pred(np.repeat(IMG[..., :1], c, axis=2)), "error", "images")
    add(k, "seg.predict(2-channel) with a model fitted per_channel on 2 channels",
        lambda: Fix.get("perchannel_seg").predict(IMG[..., :2]), "ok", "images",
        labels((H, W), "perchannel_seg"))
    add(k, "per_channel model fitted on 2 channels .predict(3-channel image)",
        lambda: Fix.get("perchannel_seg").predict(IMG), "error", "images")
    add(k, "per_channel model fitted on 2 channels .predict(grayscale image)",
        lambda: Fix.get("perchannel_seg").predict(IMG[..., 0]), "error", "images",
        labels((H, W), "perchannel_seg"))
    add(k, "model fitted on grayscale .predict(RGB image)",
        lambda: Fix.get("gray_seg").predict(IMG), "ok", "images", labels((H, W), "gray_seg"))
    add(k, "first_conv model fitted on 4 channels .predict(3-channel image)",
        lambda: seg(hypercolumns=hc(channel_strategy="first_conv")).fit(
            [np.dstack([im, im[..., :1]]) for im in IMGS[:2]], MASKS[:2]).predict(IMG),
        "error", "images")
    add(k, "HypercolumnTransformer(channel_strategy='replicate').fit on RGB pixels",
        lambda: hc(channel_strategy="replicate").fit(Fix.get("pixels")[0]).transform(
            Fix.get("pixels")[0]), "error", "images|X|channel_strategy")


def _images_dtype_cases() -> None:
    """The images: dtype cases."""
    pred = lambda x: S().predict(x)  # noqa: E731
    k = "images: dtype"
    f32 = lambda: IMG.astype(np.float32) / 255  # noqa: E731
    add(k, "seg.predict(bool image)", lambda: pred(IMG > 100), "ok", "images", labels((H, W)))
    add(k, "seg.predict(uint16 image = uint8 * 257)",
        lambda: pred(IMG.astype(np.uint16) * 257), "ok", "images", equals(ref, 0.99))
    add(k, "seg.predict(int8 image with negative values)",
        lambda: pred((IMG.astype(np.int16) - 128).astype(np.int8)), "ok", "images",
        labels((H, W)))
    add(k, "seg.predict(int32 image, values 0..255)", lambda: pred(IMG.astype(np.int32)),
        "ok", "images", warned("IntensityWarning", labels((H, W))))
    add(k, "seg.predict(int64 image, values 0..255)", lambda: pred(IMG.astype(np.int64)),
        "ok", "images", warned("IntensityWarning", labels((H, W))))
    add(k, "seg.predict(float16 image in [0, 1])", lambda: pred(f32().astype(np.float16)),
        "ok", "images", equals(ref, 0.98))
    add(k, "seg.predict(float32 image in [0, 1])", lambda: pred(f32()), "ok", "images",
        equals(ref, 0.995))
    add(k, "seg.predict(float64 image in [0, 1])", lambda: pred(f32().astype(np.float64)),
        "ok", "images", equals(ref, 0.995))
    add(k, "seg.predict(float32 image in 0..255, not rescaled)",
        lambda: pred(IMG.astype(np.float32)), "ok", "images",
        warned("IntensityWarning", labels((H, W))))
    add(k, "seg.predict(float image with negative values)",
        lambda: pred(f32() - 0.5), "ok", "images", warned("IntensityWarning", labels((H, W))))
    add(k, "seg.predict(complex image)", lambda: pred(IMG.astype(np.complex64)), "error",
        "images")
    add(k, "seg.predict(object array of numbers)", lambda: pred(IMG.astype(object)), "error",
        "images", labels((H, W)))
    add(k, "seg.predict(str array)", lambda: pred(IMG.astype(str)), "error", "images")
    add(k, "seg.predict(datetime64 array)",
        lambda: pred(IMG.astype("datetime64[s]")), "error", "images")
    add(k, "seg.predict(structured dtype array)",
        lambda: pred(np.zeros((H, W), dtype=[("r", "u1"), ("g", "u1")])), "error", "images")
    add(k, "seg.predict(all-zero uint8 image)", lambda: pred(np.zeros_like(IMG)), "ok",
        "images", labels((H, W)))
    add(k, "seg.predict(constant float image 1.0)", lambda: pred(np.ones((H, W, 3))), "ok",
        "images", labels((H, W)))
    add(k, "seg.predict(uint16 image using 1/100 of its range)",
        lambda: pred(IMG.astype(np.uint16) * 2), "ok", "images",
        warned("IntensityWarning", labels((H, W))))


def _images_values_cases() -> None:
    """The images: values cases."""
    pred = lambda x: S().predict(x)  # noqa: E731
    f32 = lambda: IMG.astype(np.float32) / 255  # noqa: E731
    k = "images: values"
    for name, v in [("NaN", np.nan), ("+inf", np.inf), ("-inf", -np.inf)]:
        add(k, f"seg.predict(float image with one {name})",
            lambda v=v: pred(np.where(np.arange(H * W).reshape(H, W, 1) == 7, v, f32())),
            "error", "images")
    add(k, "seg.predict([good, image with NaN])",
        lambda: pred([f32(), np.full((H, W, 3), np.nan, np.float32)]), "error",
        "re:images\\[1\\]")
    add(k, "seg.predict(float16 image with inf (overflow))",
        lambda: pred(np.full((H, W, 3), 7e4, np.float32).astype(np.float16)), "error", "images")
    add(k, "sample_pixels(NaN image, mask)",
        lambda: sample_pixels(np.full((H, W, 3), np.nan), MASKS[0]), "error", "images")
    add(k, "hc.transform_dense(NaN image)",
        lambda: Fix.get("hc").transform_dense(np.full((H, W, 3), np.nan)), "error", "images")


def _images_memory_layout_cases() -> None:
    """The images: memory layout cases."""
    pred = lambda x: S().predict(x)  # noqa: E731
    f32 = lambda: IMG.astype(np.float32) / 255  # noqa: E731
    k = "images: memory layout"
    add(k, "seg.predict(uint8 view with negative strides img[:, ::-1])",
        lambda: pred(IMG[:, ::-1]), "ok", "images",
        equals(lambda: S().predict(np.ascontiguousarray(IMG[:, ::-1]))))
    add(k, "seg.predict(float32 view with negative strides img[::-1])",
        lambda: pred(f32()[::-1]), "ok", "images",
        equals(lambda: S().predict(np.ascontiguousarray(f32()[::-1]))))
    add(k, "seg.predict(BGR view img[..., ::-1])", lambda: pred(IMG[..., ::-1]), "ok", "images",
        equals(lambda: S().predict(np.ascontiguousarray(IMG[..., ::-1]))))
    add(k, "seg.predict(strided view img[::2, ::2])", lambda: pred(IMG[::2, ::2]), "ok",
        "images", equals(lambda: S().predict(np.ascontiguousarray(IMG[::2, ::2]))))
    add(k, "seg.predict(Fortran-ordered image)", lambda: pred(np.asfortranarray(IMG)), "ok",
        "images", equals(ref))
    add(k, "seg.predict(transposed view img.transpose(1, 0, 2))",
        lambda: pred(IMG.transpose(1, 0, 2)), "ok", "images",
        equals(lambda: S().predict(np.ascontiguousarray(IMG.transpose(1, 0, 2)))))
    add(k, "seg.predict(read-only image)", lambda: pred(_readonly(IMG)), "ok", "images",
        equals(ref))
    add(k, "seg.predict(np.memmap image)", lambda: pred(_memmap(IMG)), "ok", "images",
        equals(ref))
    add(k, "seg.predict(np.ma masked array)", lambda: pred(np.ma.array(IMG)), "ok", "images",
        equals(ref))
    add(k, "seg.predict(broadcast view np.broadcast_to)",
        lambda: pred(np.broadcast_to(IMG[:1], (H, W, 3))), "ok", "images",
        equals(lambda: S().predict(np.ascontiguousarray(np.broadcast_to(IMG[:1], (H, W, 3))))))
    add(k, "sample_pixels(float view with negative strides, mask)",
        lambda: sample_pixels(f32()[:, ::-1], MASKS[0], n_per_image=20, random_state=0),
        "ok", "images", pixelset_labels())
    add(k, "hc.transform_dense(float view with negative strides)",
        lambda: Fix.get("hc").transform_dense(f32()[:, ::-1]), "ok", "images",
        equals(lambda: Fix.get("hc").transform_dense(np.ascontiguousarray(f32()[:, ::-1]))))


def _images_containers_cases() -> None:
    """The images: containers cases."""
    pred = lambda x: S().predict(x)  # noqa: E731
    f32 = lambda: IMG.astype(np.float32) / 255  # noqa: E731
    k = "images: containers"
    add(k, "seg.predict(list of images)", lambda: pred(IMGS[:2]), "ok", "images",
        equals(lambda: [S().predict(im) for im in IMGS[:2]]))
    add(k, "seg.predict(tuple of images)", lambda: pred(tuple(IMGS[:2])), "ok", "images",
        equals(lambda: [S().predict(im) for im in IMGS[:2]]))
    add(k, "seg.predict([])", lambda: pred([]), "error", "images")
    add(k, "seg.predict(())", lambda: pred(()), "error", "images")
    add(k, "seg.predict([img, None])", lambda: pred([IMG, None]), "error", "re:images\\[1\\]")
    add(k, "seg.predict(generator of images)", lambda: pred(im for im in IMGS[:2]), "error",
        "images", equals(lambda: [S().predict(im) for im in IMGS[:2]]))
    add(k, "seg.predict(map object)", lambda: pred(map(np.asarray, IMGS[:2])), "error",
        "images", equals(lambda: [S().predict(im) for im in IMGS[:2]]))
    add(k, "seg.predict(dict of images)", lambda: pred({0: IMG}), "error", "images")
    add(k, "seg.predict(set of bytes)", lambda: pred({b"x"}), "error", "images")
    add(k, "seg.predict('image.png')", lambda: pred("image.png"), "error", "images")
    add(k, "seg.predict(pathlib.Path of an existing PNG)", lambda: pred(Path(_png(IMG))),
        "error", "images", equals(ref))
    add(k, "seg.predict(None)", lambda: pred(None), "error", "images")
    add(k, "seg.predict(5)", lambda: pred(5), "error", "images")
    add(k, "seg.predict(b'bytes')", lambda: pred(b"\x00" * 12), "error", "images")
    add(k, "seg.predict(img.tolist()) (a list is a list of images: H images of (W, 3))",
        lambda: pred(IMG.tolist()), "ok", "images", label_list([(W, 3)] * H),
        note="documented: a list holds images, so each row is read as a grayscale image")
    add(k, "seg.predict(ragged nested lists)", lambda: pred([[1, 2, 3], [4, 5]]), "error",
        "images")
    add(k, "seg.predict(list of mixed sizes)",
        lambda: pred([IMG, scene(5, 33, 57)[0], scene(6, 17, 9)[0]]), "ok", "images",
        label_list([(H, W), (33, 57), (17, 9)]))
    add(k, "seg.predict(list of mixed dtypes uint8 + float32 + uint16)",
        lambda: pred([IMG, f32(), IMG.astype(np.uint16) * 257]), "ok", "images",
        equals(lambda: [ref(), ref(), ref()], 0.99))
    add(k, "seg.predict(list of gray + RGB)", lambda: pred([IMG[..., 0], IMG]), "ok", "images",
        label_list([(H, W), (H, W)]))
    add(k, "seg.predict(list with a 2-channel image among RGB)",
        lambda: pred([IMG, IMG[..., :2]]), "error", "re:images\\[1\\]")
    add(k, "seg.predict(empty stack (0, H, W, 3))", lambda: pred(np.zeros((0, H, W, 3))),
        "error", "images")


def _images_pil_torch_cases() -> None:
    """The images: PIL / torch cases."""
    pred = lambda x: S().predict(x)  # noqa: E731
    f32 = lambda: IMG.astype(np.float32) / 255  # noqa: E731
    k = "images: PIL / torch"
    from PIL import Image
    add(k, "seg.predict(PIL RGB image)", lambda: pred(Image.fromarray(IMG)), "ok", "images",
        equals(ref))
    add(k, "seg.predict([PIL RGB images])",
        lambda: pred([Image.fromarray(im) for im in IMGS[:2]]), "ok", "images",
        equals(lambda: [S().predict(im) for im in IMGS[:2]]))
    add(k, "seg.predict(PIL 'L' image)", lambda: pred(Image.fromarray(IMG[..., 0])), "ok",
        "images", equals(lambda: S().predict(IMG[..., 0])))
    add(k, "seg.predict(PIL 'I;16' image)",
        lambda: pred(Image.fromarray(IMG[..., 0].astype(np.uint16) * 257)), "ok", "images",
        labels((H, W)))
    add(k, "seg.predict(PIL 'P' palette image)",
        lambda: pred(Image.fromarray(IMG).convert("P")), "ok", "images", labels((H, W)))
    add(k, "seg.predict(PIL 'RGBA' image)",
        lambda: pred(Image.fromarray(IMG).convert("RGBA")), "error", "images",
        equals(ref))
    add(k, "seg.predict(PIL '1' bilevel image)",
        lambda: pred(Image.fromarray(IMG[..., 0] > 100)), "ok", "images", labels((H, W)))
    add(k, "seg.predict(torch uint8 tensor (H, W, 3))", lambda: pred(torch.from_numpy(IMG)),
        "ok", "images", equals(ref))
    add(k, "seg.predict(torch float tensor requiring grad)",
        lambda: pred(torch.from_numpy(f32()).requires_grad_()), "ok", "images",
        equals(ref, 0.995))
    add(k, "seg.predict(torch channel-first tensor (3, H, W))",
        lambda: pred(torch.from_numpy(f32()).permute(2, 0, 1)), "error", "images")
    add(k, "seg.predict(torch stack (2, H, W, 3))",
        lambda: pred(torch.from_numpy(np.stack(IMGS[:2]))), "ok", "images",
        equals(lambda: [S().predict(im) for im in IMGS[:2]]))
    add(k, "seg.predict([torch tensor, numpy array])",
        lambda: pred([torch.from_numpy(IMG), IMG]), "ok", "images",
        equals(lambda: [ref(), ref()]))
    add(k, "seg.predict(torch bfloat16 tensor)",
        lambda: pred(torch.from_numpy(f32()).to(torch.bfloat16)), "ok", "images",
        equals(ref, 0.95))


def _images_other_entry_points_cases() -> None:
    """The images: other entry points cases."""
    k = "images: other entry points"
    add(k, "sample_pixels(5-D array, masks)",
        lambda: sample_pixels(np.zeros((1, 1, H, W, 3)), MASKS[0]), "error", "images")
    add(k, "sample_pixels(generator, masks)",
        lambda: sample_pixels((im for im in IMGS), MASKS), "error", "images")
    add(k, "grid_pixels(0-size image)", lambda: grid_pixels(np.zeros((0, 4, 3))), "error",
        "images")
    add(k, "hc.transform_dense(complex image)",
        lambda: Fix.get("hc").transform_dense(IMG.astype(complex)), "error", "images")
    add(k, "hc.transform_dense(1x1 image)",
        lambda: Fix.get("hc").transform_dense(IMG[:1, :1]), "ok", "images",
        finite_array((1, 1, 128), "f"))
    add(k, "extract_dense(list of mixed sizes, 'resnet18', weights via Backbone)",
        lambda: extract_dense([IMG, IMG[:17, :9]], build_backbone("resnet18", weights=None),
                              LAYERS),
        "ok", "images", lambda r, w: (None if [a.shape for a in r] == [(H, W, 128), (17, 9, 128)]
                                      else f"shapes {[a.shape for a in r]}"))
    add(k, "extract_dense(None, 'resnet18')",
        lambda: extract_dense(None, build_backbone("resnet18", weights=None), LAYERS), "error",
        "images")
    add(k, "extract_hypercolumns(ndarray instead of PixelSet)",
        lambda: extract_hypercolumns(np.zeros((5, 3), int),
                                     build_backbone("resnet18", weights=None), LAYERS),
        "error", "X")
    add(k, "hc.transform(ndarray (n, 3) instead of PixelSet)",
        lambda: Fix.get("hc").transform(np.zeros((5, 3), int)), "error", "X")
    add(k, "hc.transform(PixelSet of images never seen at fit)",
        lambda: Fix.get("hc").transform(grid_pixels(scene(9)[0], step=8)), "ok", "X",
        finite_array((30, 128), "f"))
    add(k, "hc.transform(empty PixelSet)",
        lambda: Fix.get("hc").transform(Fix.get("pixels")[0][:0]), "ok", "X",
        finite_array((0, 128), "f"))


def image_cases() -> None:
    for section in (
        _images_shape_cases, _images_channels_cases, _images_dtype_cases, _images_values_cases,
        _images_memory_layout_cases, _images_containers_cases, _images_pil_torch_cases,
        _images_other_entry_points_cases,
    ):
        section()


def _readonly(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


def _memmap(a: np.ndarray) -> np.ndarray:
    m = np.memmap(tmp("img.dat"), dtype=a.dtype, mode="w+", shape=a.shape)
    m[:] = a
    m.flush()
    return np.memmap(tmp("img.dat"), dtype=a.dtype, mode="r", shape=a.shape)


def _png(a: np.ndarray, name: str = "img.png") -> str:
    from PIL import Image

    path = tmp(name)
    Image.fromarray(a).save(path)
    return path


# --------------------------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------------------------


def _rare_masks() -> list[np.ndarray]:
    masks = [m.copy() for m in MASKS]
    masks[2][0, 0:3] = 2  # 3 pixels of class 2 in one image
    masks[3][H - 1, W - 2:] = 3  # 2 pixels of class 3
    return masks


def _many_masks() -> list[np.ndarray]:
    masks = [m.copy() for m in MASKS]
    for c in range(2, 30):  # 28 classes of 1-4 pixels each
        masks[c % 4][c % H, (3 * c) % W: (3 * c) % W + 1 + c % 4] = c
    return masks


def classes_complete(masks: Callable[[], list], ignore: int | None = None) -> Callable:
    def check(model, ws):
        present = set(np.unique(np.concatenate([np.ravel(m) for m in masks()])).tolist())
        present.discard(ignore)
        learnt = set(np.asarray(model.classes_).tolist())
        missing = sorted(present - learnt)
        if missing:
            return (f"{len(missing)} labelled classes never learnt: {missing[:10]} "
                    f"(classes_ has {len(learnt)} of {len(present)})")
        return None
    return check


def mask_cases() -> None:
    k = "masks"
    sp = lambda masks, **kw: sample_pixels(IMGS, masks, n_per_image=50, random_state=0,  # noqa
                                           **kw)
    add(k, "sample_pixels(masks of the wrong shape (H, W-1))",
        lambda: sp([m[:, :-1] for m in MASKS]), "error", "re:masks(\\[0\\])?")
    add(k, "sample_pixels(masks (H, W, 1))", lambda: sp([m[..., None] for m in MASKS]),
        "error", "masks", pixelset_labels({0, 1}))
    add(k, "sample_pixels(RGB masks (H, W, 3))",
        lambda: sp([np.repeat(m[..., None], 3, 2) for m in MASKS]), "error", "masks")
    add(k, "sample_pixels(transposed masks (W, H))", lambda: sp([m.T for m in MASKS]),
        "error", "masks")
    add(k, "sample_pixels(float masks 0.0 / 1.0)",
        lambda: sp([m.astype(np.float32) for m in MASKS]), "ok", "masks",
        pixelset_labels({0, 1}))
    add(k, "sample_pixels(float masks with 0.5)",
        lambda: sp([m * 0.5 for m in MASKS]), "error", "masks")
    add(k, "sample_pixels(float masks with NaN)",
        lambda: sp([np.where(m == 1, np.nan, 0.0) for m in MASKS]), "error", "masks")
    add(k, "sample_pixels(negative labels -1 / 1)", lambda: sp([m * 2 - 1 for m in MASKS]),
        "ok", "masks", pixelset_labels({-1, 1}))
    add(k, "sample_pixels(bool masks)", lambda: sp([m.astype(bool) for m in MASKS]), "ok",
        "masks", pixelset_labels({0, 1}))
    add(k, "sample_pixels(uint16 labels 1000 / 40000)",
        lambda: sp([(m * 39000 + 1000).astype(np.uint16) for m in MASKS]), "ok", "masks",
        pixelset_labels({1000, 40000}))
    add(k, "sample_pixels(int64 label 2**40)",
        lambda: sp([m.astype(np.int64) << 40 for m in MASKS]), "ok", "masks",
        pixelset_labels({0, 2 ** 40}))
    add(k, "sample_pixels(masks stack (n, H, W))", lambda: sp(np.stack(MASKS)), "ok", "masks",
        pixelset_labels({0, 1}))
    add(k, "sample_pixels(3 masks for 4 images)", lambda: sp(MASKS[:3]), "error", "masks")
    add(k, "sample_pixels(masks=None)", lambda: sp(None), "error", "masks")
    add(k, "sample_pixels(masks generator)", lambda: sp(m for m in MASKS), "error", "masks")
    add(k, "sample_pixels(object masks)", lambda: sp([m.astype(object) for m in MASKS]),
        "error", "masks", pixelset_labels({0, 1}))
    add(k, "sample_pixels(string masks)", lambda: sp([m.astype(str) for m in MASKS]), "error",
        "masks")
    add(k, "sample_pixels(ignore_label=255)",
        lambda: sp([np.where(m == 1, 255, m) for m in MASKS], ignore_label=255), "ok", "masks",
        pixelset_labels({0}))
    add(k, "sample_pixels(ignore_label=7, not in masks)", lambda: sp(MASKS, ignore_label=7),
        "ok", "masks", pixelset_labels({0, 1}))
    add(k, "sample_pixels(all pixels ignore_label)",
        lambda: sp([np.full_like(m, 255) for m in MASKS], ignore_label=255), "error", "masks")
    add(k, "sample_pixels(class_balance=True, a class of 1 pixel)",
        lambda: sample_pixels(IMG, _one_pixel_mask(), n_per_image=40, class_balance=True,
                              random_state=0), "ok", "masks", pixelset_labels({0, 1, 2}))
    add(k, "sample_pixels(n_per_image > pixels in image)",
        lambda: sample_pixels(IMG[:4, :4], MASKS[0][:4, :4], n_per_image=1000, random_state=0),
        "ok", "n_per_image", pixelset_labels(max_n=16))
    add(k, "sample_pixels(rare classes, min_per_class=3)",
        lambda: sp(_rare_masks(), min_per_class=3), "ok", "masks",
        pixelset_labels({0, 1, 2, 3}))

    k = "masks: segmenter"
    add(k, "HypercolumnSegmenter.fit(single-class masks)",
        lambda: seg().fit(IMGS, [np.zeros_like(m) for m in MASKS]), "error", "masks")
    add(k, "HypercolumnSegmenter.fit(rare classes of 2-3 pixels)",
        lambda: seg(n_pixels_per_image=50).fit(IMGS, _rare_masks()), "ok", "masks",
        classes_complete(_rare_masks))
    add(k, "HypercolumnSegmenter.fit(30 classes, most of 1-4 pixels)",
        lambda: seg(n_pixels_per_image=50).fit(IMGS, _many_masks()), "ok", "masks",
        classes_complete(_many_masks))
    add(k, "HypercolumnSegmenter(class_balance=True).fit(rare classes)",
        lambda: seg(n_pixels_per_image=50, class_balance=True).fit(IMGS, _rare_masks()), "ok",
        "masks", classes_complete(_rare_masks))
    add(k, "HypercolumnSegmenter(ignore_label=255).fit(all-ignore masks)",
        lambda: seg(ignore_label=255).fit(IMGS, [np.full_like(m, 255) for m in MASKS]),
        "error", "masks")
    add(k, "HypercolumnSegmenter(ignore_label=255).fit(scribbles), predict never 255",
        lambda: seg(ignore_label=255).fit(IMGS, _scribbles()).predict(IMG), "ok", "masks",
        lambda r, w: _label_problem(r, (H, W), np.array([0, 1])))
    add(k, "HypercolumnSegmenter.fit(bool masks).predict",
        lambda: seg().fit(IMGS, [m.astype(bool) for m in MASKS]).predict(IMG), "ok", "masks",
        lambda r, w: _label_problem(np.asarray(r).astype(int), (H, W), np.array([0, 1])))
    add(k, "HypercolumnSegmenter.fit(labels -1 / 7).predict",
        lambda: seg().fit(IMGS, [m * 8 - 1 for m in MASKS]).predict(IMG), "ok", "masks",
        lambda r, w: _label_problem(r, (H, W), np.array([-1, 7])))
    add(k, "HypercolumnSegmenter.fit(float masks 0.5)",
        lambda: seg().fit(IMGS, [m * 0.5 for m in MASKS]), "error", "masks")
    add(k, "HypercolumnSegmenter.fit(masks of other sizes than images)",
        lambda: seg().fit(IMGS, [m[:-2] for m in MASKS]), "error", "masks")
    add(k, "seg.score(masks with a class never seen in training) counts it",
        lambda: S().score(IMGS[:2], _unseen_masks()), "ok", "masks", _honest_score)
    add(k, "seg.score(masks of the wrong shape)",
        lambda: S().score(IMGS[:2], [m[:, :-1] for m in MASKS[:2]]), "error", "masks")
    add(k, "seg.score(1 mask for 2 images)", lambda: S().score(IMGS[:2], MASKS[:1]), "error",
        "masks")
    add(k, "seg.score(perfect masks = own predictions) == 1",
        lambda: S().score(IMGS[:2], S().predict(IMGS[:2])), "ok", "masks", gives(1.0))


def _one_pixel_mask() -> np.ndarray:
    m = MASKS[0].copy()
    m[0, 0] = 2
    return m


def _scribbles() -> list[np.ndarray]:
    out = []
    for m in MASKS:
        s = np.full_like(m, 255)
        s[::5, ::5] = m[::5, ::5]
        out.append(s)
    return out


def _unseen_masks() -> list[np.ndarray]:
    out = [m.copy() for m in MASKS[:2]]
    for m in out:
        m[: H // 3] = 2  # a third of each image is a class the model never saw
    return out


def _honest_score(res, ws):
    from skhyper.metrics import mean_iou

    pred = S().predict(IMGS[:2])
    truth = _unseen_masks()
    labels_all = np.union1d(np.unique(np.concatenate([t.ravel() for t in truth])),
                            S().classes_)
    want = mean_iou(truth, pred, labels=labels_all)
    if abs(res - want) > 1e-6:
        return f"score {res:.3f}, but the mean IoU over every true label is {want:.3f}"
    return None


# --------------------------------------------------------------------------------------------
# parameters of functions and estimators
# --------------------------------------------------------------------------------------------


def _params_sampling_cases() -> None:
    """The params: sampling cases."""
    k = "params: sampling"
    sp = lambda **kw: sample_pixels(IMGS, MASKS, **{"random_state": 0, **kw})  # noqa: E731
    for v in (0, -1, 1.5, "100", True, [10]):
        add(k, f"sample_pixels(n_per_image={v!r})", lambda v=v: sp(n_per_image=v), "error",
            "n_per_image")
    add(k, "sample_pixels(n_per_image=np.int64(20))", lambda: sp(n_per_image=np.int64(20)),
        "ok", "n_per_image", pixelset_labels({0, 1}, 80))
    add(k, "sample_pixels(n_per_image=None) (all pixels)", lambda: sp(n_per_image=None), "ok",
        "n_per_image", pixelset_labels({0, 1}, 4 * H * W))
    add(k, "sample_pixels(n_per_image=10**12)", lambda: sp(n_per_image=10 ** 12), "ok",
        "n_per_image", pixelset_labels({0, 1}, 4 * H * W))
    add(k, "sample_pixels(random_state='x')", lambda: sp(random_state="x"), "error",
        "random_state")
    add(k, "sample_pixels(class_balance='yes')", lambda: sp(class_balance="yes"), "error",
        "class_balance")
    add(k, "sample_pixels(ignore_label='none')", lambda: sp(ignore_label="none"), "error",
        "ignore_label")
    add(k, "sample_pixels(ignore_label=np.uint8(255))",
        lambda: sp(ignore_label=np.uint8(255), n_per_image=20), "ok", "ignore_label",
        pixelset_labels({0, 1}))
    add(k, "sample_pixels(min_per_class=0)", lambda: sp(min_per_class=0), "error",
        "min_per_class")
    add(k, "sample_pixels(boxes of shape (4, 3))", lambda: sp(boxes=np.ones((4, 3))), "error",
        "boxes")


def _params_grid_pixels_cases() -> None:
    """The params: grid_pixels cases."""
    k = "params: grid_pixels"
    gp = lambda **kw: grid_pixels(IMG, **kw)  # noqa: E731
    for v in (0, -1, 1.5, "2", None, [2]):
        add(k, f"grid_pixels(step={v!r})", lambda v=v: gp(step=v), "error", "step")
    add(k, "grid_pixels(step=True)", lambda: gp(step=True), "error", "step",
        is_pixelset(H * W))
    add(k, "grid_pixels(step=np.int64(2))", lambda: gp(step=np.int64(2)), "ok", "step",
        is_pixelset(20 * 24))
    add(k, "grid_pixels(step=np.uint8(3))", lambda: gp(step=np.uint8(3)), "ok", "step",
        is_pixelset(14 * 16))
    add(k, "grid_pixels(step=1000)", lambda: gp(step=1000), "ok", "step", is_pixelset(1))
    add(k, "grid_pixels(boxes=[[0, 0, -5, 3]])", lambda: gp(boxes=[[0, 0, -5, 3]]), "error",
        "boxes")


def _params_pixelset_cases() -> None:
    """The params: PixelSet cases."""
    k = "params: PixelSet"
    add(k, "PixelSet(images, float coords)", lambda: PixelSet([IMG], [[0, 1.5, 2]]), "error",
        "coords")
    add(k, "PixelSet(images, coords outside the image)",
        lambda: PixelSet([IMG], [[0, H, 0]]), "error", "coords")
    add(k, "PixelSet(images, negative coords)", lambda: PixelSet([IMG], [[0, -1, 0]]), "error",
        "coords")
    add(k, "PixelSet(images, image index 3 of 1)", lambda: PixelSet([IMG], [[3, 0, 0]]),
        "error", "coords")
    add(k, "PixelSet(images, coords of shape (2,))", lambda: PixelSet([IMG], [0, 1]), "error",
        "coords")
    add(k, "PixelSet(images, empty coords (0, 3))",
        lambda: PixelSet([IMG], np.zeros((0, 3), int)), "ok", "coords", is_pixelset(0))
    add(k, "PixelSet(single image array, coords)", lambda: PixelSet(IMG, [[0, 1, 1]]), "error",
        "images", lambda r, w: None if r.n_images == 1 and r.images[0].shape[:2] == (H, W)
        else f"read as {r.n_images} images of shape {r.images[0].shape}")
    add(k, "PixelSet(images, coords, boxes wrong count)",
        lambda: PixelSet([IMG], [[0, 1, 1]], boxes=np.ones((2, 4))), "error", "boxes")


def _params_hypercolumntransformer_cases() -> None:
    """The params: HypercolumnTransformer cases."""
    k = "params: HypercolumnTransformer"
    X = lambda: Fix.get("pixels")[0]  # noqa: E731
    fit_t = lambda **kw: hc(**kw).fit(X()).transform(X())  # noqa: E731
    same_t = equals(lambda: Fix.get("hc_ref"))
    add(k, "HypercolumnTransformer('resnet1888')",
        lambda: HypercolumnTransformer("resnet1888", weights=None, device="cpu").fit(X()),
        "error", "backbone")
    add(k, "HypercolumnTransformer('')",
        lambda: HypercolumnTransformer("", weights=None, device="cpu").fit(X()), "error",
        "backbone")
    add(k, "HypercolumnTransformer(backbone=123)",
        lambda: HypercolumnTransformer(123, device="cpu").fit(X()), "error", "backbone")
    add(k, "HypercolumnTransformer(backbone=nn.Linear(10, 2))",
        lambda: HypercolumnTransformer(nn.Linear(10, 2), device="cpu").fit(X()), "error",
        "backbone")
    add(k, "HypercolumnTransformer(backbone=nn.Identity())",
        lambda: HypercolumnTransformer(nn.Identity(), device="cpu").fit(X()), "error",
        "backbone|layers")
    add(k, "HypercolumnTransformer(backbone=the class torchvision.models.resnet18)",
        lambda: HypercolumnTransformer(_tv_resnet18_fn(), device="cpu").fit(X()), "error",
        "backbone")
    for v in (["nope"], "relu", [], [99], [True], [1.5], ["relu", "relu"], [None]):
        add(k, f"HypercolumnTransformer(layers={v!r})", lambda v=v: fit_t(layers=v), "error",
            "layers")
    add(k, "HypercolumnTransformer(layers=('relu', 'layer1')) (tuple)",
        lambda: fit_t(layers=("relu", "layer1")), "ok", "layers", same_t)
    add(k, "HypercolumnTransformer(layers=[np.int64(0), np.int64(1)])",
        lambda: fit_t(layers=[np.int64(0), np.int64(1)]), "ok", "layers", same_t)
    add(k, "HypercolumnTransformer(layers=[-5, -4]) (negative stage indices)",
        lambda: fit_t(layers=[-5, -4]), "ok", "layers", same_t)
    for v in ("gpu9", "cuda:7", "tpu", 3.5, "", "cpu:x"):
        add(k, f"HypercolumnTransformer(device={v!r})", lambda v=v: fit_t(device=v), "error",
            "device")
    add(k, "HypercolumnTransformer(device=torch.device('cpu'))",
        lambda: fit_t(device=torch.device("cpu")), "ok", "device", same_t)
    for v in (0, -1, "8", 2.5):
        add(k, f"HypercolumnTransformer(batch_size={v!r})", lambda v=v: fit_t(batch_size=v),
            "error", "batch_size")
    add(k, "HypercolumnTransformer(batch_size=np.int64(2))",
        lambda: fit_t(batch_size=np.int64(2)), "ok", "batch_size", same_t)
    for v in ("float8", "int", torch.float32, None):
        add(k, f"HypercolumnTransformer(dtype={v!r})", lambda v=v: fit_t(dtype=v), "error",
            "dtype", same_t if v is torch.float32 else None)
    for v in (0, -5, "big", 3.7):
        add(k, f"HypercolumnTransformer(image_size={v!r})", lambda v=v: fit_t(image_size=v),
            "error", "image_size")
    add(k, "HypercolumnTransformer(image_size=np.int64(32))",
        lambda: fit_t(image_size=np.int64(32)), "ok", "image_size",
        finite_array((len(X()), 128), "f"))
    add(k, "HypercolumnTransformer(image_size=1)", lambda: fit_t(image_size=1), "error",
        "image_size", finite_array((len(X()), 128), "f"))
    for v in (0, -1, "x"):
        add(k, f"HypercolumnTransformer(tile_size={v!r})", lambda v=v: fit_t(tile_size=v),
            "error", "tile_size")
    add(k, "HypercolumnTransformer(tile_size=16) (smaller than the image)",
        lambda: fit_t(tile_size=16), "ok", "tile_size",
        equals(lambda: Fix.get("hc_ref")))
    add(k, "HypercolumnTransformer(cache='yes')", lambda: fit_t(cache="yes"), "error", "cache")
    add(k, "HypercolumnTransformer(cache=MapCache(max_bytes='1GB'))",
        lambda: fit_t(cache=MapCache(max_bytes="1GB")), "error", "max_bytes")
    add(k, "MapCache(max_bytes=-1)", lambda: fit_t(cache=MapCache(max_bytes=-1)), "error",
        "max_bytes")
    add(k, "MapCache(max_bytes=0) (caches nothing)",
        lambda: fit_t(cache=MapCache(max_bytes=0)), "ok", "max_bytes", same_t)
    add(k, "HypercolumnTransformer(append_location='yes')",
        lambda: fit_t(append_location="yes"), "error", "append_location")
    add(k, "HypercolumnTransformer(channel_strategy='bogus')",
        lambda: fit_t(channel_strategy="bogus"), "error", "channel_strategy")
    for v in ((5, 1), (0, 0), ("percentile", 99, 1), "auto", (float("nan"), 1), (0, 1, 2)):
        add(k, f"HypercolumnTransformer(intensity_range={v!r})",
            lambda v=v: fit_t(intensity_range=v), "error", "intensity_range")
    add(k, "HypercolumnTransformer(intensity_range=[0, 255]) (list)",
        lambda: fit_t(intensity_range=[0, 255]), "ok", "intensity_range", same_t)
    for v in ((0,), (-1.0,), "2", (), (float("inf"),)):
        add(k, f"HypercolumnTransformer(scales={v!r})", lambda v=v: fit_t(scales=v), "error",
            "scales")
    add(k, "HypercolumnTransformer(scales=[1.0])", lambda: fit_t(scales=[1.0]), "ok", "scales",
        finite_array((len(X()), 128), "f"))
    add(k, "HypercolumnTransformer(verbose='loud')", lambda: fit_t(verbose="loud"), "error",
        "verbose")


def _params_weights_cases() -> None:
    """The params: weights cases."""
    X = lambda: Fix.get("pixels")[0]  # noqa: E731
    k = "params: weights"
    wt = lambda w, **kw: HypercolumnTransformer(  # noqa: E731
        "resnet18", weights=w, layers=LAYERS, device="cpu", **kw).fit(X()).transform(X())
    add(k, "weights='/no/such/file.pth'", lambda: wt("/no/such/file.pth"), "error", "weights")
    add(k, "weights=<a folder>", lambda: wt(Fix.get("tmp") + os.sep), "error", "weights")
    add(k, "weights=<corrupt .pth (random bytes)>", lambda: wt(_corrupt("bad.pth")), "error",
        "weights")
    add(k, "weights=<truncated state dict .pth>", lambda: wt(_truncated()), "error", "weights")
    add(k, "weights=<a whole pickled model (torch.save(model))>",
        lambda: wt(_whole_model()), "error", "weights")
    add(k, "weights=<state dict with a fine-tuned 10-class head>",
        lambda: wt(_finetuned()), "error", "weights")
    add(k, "weights=<state dict without the head tensors (fc.*)>",
        lambda: wt(_headless()), "ok", "weights", equals(_full_weights_ref))
    add(k, "weights=<state dict wrapped as {'state_dict': ...}>",
        lambda: wt(_wrapped()), "ok", "weights", equals(_full_weights_ref))
    add(k, "weights=<corrupt .safetensors>", lambda: wt(_corrupt("bad.safetensors")), "error",
        "weights")
    add(k, "weights=<valid .safetensors>", lambda: wt(_safetensors()), "ok", "weights",
        equals(_full_weights_ref))
    add(k, "weights=<state dict of resnet34 for resnet18>", lambda: wt(_other_arch()),
        "error", "weights")
    add(k, "weights=<empty file>", lambda: wt(_empty_file()), "error", "weights")
    add(k, "weights=123", lambda: wt(123), "error", "weights")
    add(k, "weights='IMAGENET1K_BOGUS'", lambda: wt("IMAGENET1K_BOGUS"), "error", "weights")
    add(k, "weights=<a state dict object, not a path>", lambda: wt(Fix.get("resnet_state")),
        "error", "weights", equals(_full_weights_ref))
    add(k, "build_backbone('resnet18', weights=<truncated file>)",
        lambda: build_backbone("resnet18", weights=_truncated()), "error", "weights")
    add(k, "list_layers('nope')", lambda: list_layers("nope"), "error", "backbone")
    add(k, "list_layers(123)", lambda: list_layers(123), "error", "backbone")


def _params_hypercolumnsegmenter_cases() -> None:
    """The params: HypercolumnSegmenter cases."""
    k = "params: HypercolumnSegmenter"
    for name, v in [("n_pixels_per_image", 0), ("n_pixels_per_image", -3),
                    ("n_pixels_per_image", "many"), ("class_balance", "yes"),
                    ("ignore_label", 0.5), ("batch_size", 0), ("chunk_pixels", 0),
                    ("chunk_pixels", -1), ("random_state", "seed"),
                    ("min_pixels_per_class", -1)]:
        add(k, f"HypercolumnSegmenter({name}={v!r}).fit",
            lambda name=name, v=v: seg(**{name: v}).fit(IMGS, MASKS), "error", name)
    add(k, "HypercolumnSegmenter(hypercolumns='resnet18').fit",
        lambda: HypercolumnSegmenter("resnet18").fit(IMGS, MASKS), "error", "hypercolumns")
    add(k, "HypercolumnSegmenter(n_pixels_per_image=np.int64(50)).fit.predict",
        lambda: seg(n_pixels_per_image=np.int64(50)).fit(IMGS, MASKS).predict(IMG), "ok",
        "n_pixels_per_image", labels((H, W)))
    add(k, "HypercolumnSegmenter(chunk_pixels=7) (tiny bands)",
        lambda: seg(chunk_pixels=7, classifier=_forest()).fit(IMGS, MASKS).predict(IMG), "ok",
        "chunk_pixels", lambda r, w: _label_problem(r, (H, W), np.array([0, 1])))


def _params_classifier_cases() -> None:
    """The params: classifier cases."""
    k = "params: classifier"
    from sklearn.cluster import KMeans
    from sklearn.linear_model import LinearRegression, LogisticRegression, Perceptron
    from sklearn.svm import SVC

    def before_features() -> str | None:
        return ("refused only after features were computed" if TinyNet.passes else None)

    def tiny_fit(clf):
        TinyNet.passes = 0
        return HypercolumnSegmenter(tiny_hc(), clf, n_pixels_per_image=50,
                                    random_state=0).fit(IMGS, MASKS)

    add(k, "HypercolumnSegmenter(classifier=LinearRegression()).fit (regressor)",
        lambda: tiny_fit(LinearRegression()), "error", "classifier", after=before_features)
    add(k, "HypercolumnSegmenter(classifier=KMeans(2)).fit (clusterer)",
        lambda: tiny_fit(KMeans(2, n_init=1)), "error", "classifier", after=before_features)
    add(k, "HypercolumnSegmenter(classifier='logreg').fit",
        lambda: tiny_fit("logreg"), "error", "classifier", after=before_features)
    add(k, "HypercolumnSegmenter(classifier=LogisticRegression) (the class)",
        lambda: tiny_fit(LogisticRegression), "error", "classifier", after=before_features)
    add(k, "HypercolumnSegmenter(classifier=SVC()).predict_proba (no predict_proba)",
        lambda: tiny_fit(SVC(max_iter=50)).predict_proba(IMG), "error",
        "re:predict_proba|classifier", accept=(AttributeError,),
        note="AttributeError accepted: sklearn duck typing (hasattr) relies on it")
    add(k, "HypercolumnSegmenter(classifier=Perceptron()).predict (no predict_proba)",
        lambda: tiny_fit(Perceptron(random_state=0)).predict(IMG), "ok", "classifier",
        lambda r, w: _label_problem(r, (H, W), np.array([0, 1])))
    add(k, "HypercolumnKeypointLocator(classifier=LinearRegression()).fit",
        lambda: HypercolumnKeypointLocator(tiny_hc(), LinearRegression(), grid_size=1,
                                           frame_size=48).fit(*Fix.get("kp")[1:]),
        "error", "classifier")
    add(k, "GridLocationClassifier(LinearRegression()).fit",
        lambda: GridLocationClassifier(LinearRegression(), grid_size=2).fit(*Fix.get("grid")[1:]),
        "error", "estimator")


def _params_unfitted_mismatched_cases() -> None:
    """The params: unfitted / mismatched cases."""
    X = lambda: Fix.get("pixels")[0]  # noqa: E731
    k = "params: unfitted / mismatched"
    from sklearn.base import clone
    add(k, "HypercolumnTransformer().transform before fit",
        lambda: hc().transform(X()), "error", "re:fit")
    add(k, "HypercolumnTransformer().transform_dense before fit",
        lambda: hc().transform_dense(IMG), "error", "re:fit")
    add(k, "HypercolumnSegmenter().predict before fit", lambda: seg().predict(IMG), "error",
        "re:fit")
    add(k, "HypercolumnSegmenter().score before fit", lambda: seg().score(IMGS, MASKS), "error",
        "re:fit")
    add(k, "HypercolumnKeypointLocator().predict before fit",
        lambda: HypercolumnKeypointLocator(hc()).predict(IMG), "error", "re:fit")
    add(k, "GridLocationClassifier(...).predict before fit",
        lambda: clone(Fix.get("grid")[0]).predict(Fix.get("grid")[1]), "error", "re:fit")


def param_cases() -> None:
    for section in (
        _params_sampling_cases, _params_grid_pixels_cases, _params_pixelset_cases,
        _params_hypercolumntransformer_cases, _params_weights_cases,
        _params_hypercolumnsegmenter_cases, _params_classifier_cases,
        _params_unfitted_mismatched_cases,
    ):
        section()


def _tv_resnet18_fn():
    import torchvision

    return torchvision.models.resnet18


def _forest():
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0)


def _save_state(name: str, state: dict) -> str:
    path = tmp(name)
    torch.save(state, path)
    return path


def _full_path() -> str:
    if "full.pth" not in Fix._cache:
        Fix._cache["full.pth"] = _save_state("full.pth", Fix.get("resnet_state"))
    return Fix._cache["full.pth"]


def _full_weights_ref():
    X = Fix.get("pixels")[0]
    return HypercolumnTransformer("resnet18", weights=_full_path(), layers=LAYERS,
                                  device="cpu").fit(X).transform(X)


def _corrupt(name: str) -> str:
    path = tmp(name)
    Path(path).write_bytes(np.random.default_rng(0).bytes(4096))
    return path


def _truncated() -> str:
    data = Path(_full_path()).read_bytes()
    path = tmp("truncated.pth")
    Path(path).write_bytes(data[: len(data) // 2])
    return path


def _empty_file() -> str:
    path = tmp("empty.pth")
    Path(path).write_bytes(b"")
    return path


def _whole_model() -> str:
    path = tmp("whole_model.pth")
    torch.save(build_backbone("resnet18", weights=None).model, path)
    return path


def _finetuned() -> str:
    state = dict(Fix.get("resnet_state"))
    state["fc.weight"] = torch.zeros(10, 512)
    state["fc.bias"] = torch.zeros(10)
    return _save_state("finetuned.pth", state)


def _headless() -> str:
    state = {k: v for k, v in Fix.get("resnet_state").items() if not k.startswith("fc.")}
    return _save_state("headless.pth", state)


def _wrapped() -> str:
    return _save_state("wrapped.pth", {"state_dict": Fix.get("resnet_state"), "epoch": 3})


def _safetensors() -> str:
    from safetensors.torch import save_file

    path = tmp("good.safetensors")
    save_file({k: v.contiguous() for k, v in Fix.get("resnet_state").items()}, path)
    return path


def _other_arch() -> str:
    import torchvision

    return _save_state("resnet34.pth", torchvision.models.resnet34().state_dict())


# --------------------------------------------------------------------------------------------
# grid, keypoints, boxes
# --------------------------------------------------------------------------------------------


def grid_cases() -> None:
    from sklearn.linear_model import LogisticRegression

    k = "params: GridLocationClassifier"
    data = lambda: Fix.get("grid")[1:]  # noqa: E731
    gfit = lambda **kw: GridLocationClassifier(  # noqa: E731
        LogisticRegression(), **{"grid_size": 2, **kw}).fit(*data())
    for name, v in [("grid_size", 0), ("grid_size", -1), ("grid_size", "3"), ("grid_size", 1.5),
                    ("location_columns", (5, 6)), ("location_columns", (0, 0)),
                    ("location_columns", "uv"), ("assignment", "nearest"),
                    ("min_samples_cell", -1), ("clip_locations", "yes")]:
        add(k, f"GridLocationClassifier({name}={v!r}).fit",
            lambda name=name, v=v: gfit(**{name: v}), "error", name)
    add(k, "GridLocationClassifier(grid_size=np.int64(2)).fit.predict",
        lambda: gfit(grid_size=np.int64(2)).predict(data()[0]), "ok", "grid_size",
        lambda r, w: _label_problem(r, (300,), np.array([0, 1])))
    add(k, "GridLocationClassifier(grid_size=True).fit.predict",
        lambda: gfit(grid_size=True).predict(data()[0]), "error", "grid_size",
        lambda r, w: _label_problem(r, (300,), np.array([0, 1])))
    add(k, "GridLocationClassifier.fit(X with locations 5.0 outside [0, 1])",
        lambda: GridLocationClassifier(LogisticRegression(), grid_size=2).fit(
            np.column_stack([data()[0][:, :3], data()[0][:, 3:] + 5]), data()[1]),
        "error", "X|location_columns|clip_locations")
    add(k, "GridLocationClassifier.fit(X with NaN)",
        lambda: gfit().__class__(LogisticRegression(), grid_size=2).fit(
            np.where(np.eye(300, 5, dtype=bool), np.nan, data()[0]), data()[1]), "error", "X")
    add(k, "GridLocationClassifier.fit(1-D X)",
        lambda: GridLocationClassifier(LogisticRegression(), grid_size=2).fit(
            data()[0][:, 0], data()[1]), "error", "X")
    add(k, "GridLocationClassifier.fit(single-class y)",
        lambda: GridLocationClassifier(LogisticRegression(), grid_size=2).fit(
            data()[0], np.zeros(300, int)), "error", "y")
    add(k, "GridLocationClassifier.predict(X with 4 columns, fitted on 5)",
        lambda: Fix.get("grid")[0].predict(data()[0][:, 1:]), "error", "X")

    k = "keypoints & boxes"
    loc = lambda: Fix.get("kp")[0]  # noqa: E731
    kimgs = lambda: Fix.get("kp")[1]  # noqa: E731
    kps = lambda: Fix.get("kp")[2]  # noqa: E731
    kfit = lambda keypoints=None, boxes=None, **kw: HypercolumnKeypointLocator(  # noqa: E731
        hc(), **{"grid_size": 1, "frame_size": 48, "random_state": 0, **kw}).fit(
            kimgs(), kps() if keypoints is None else keypoints, boxes=boxes)
    n = 5
    add(k, "locator.fit(keypoints of shape (n, 2), no keypoint axis)",
        lambda: kfit(kps()[:, 0]), "error", "keypoints")
    add(k, "locator.fit(keypoints (n, k, 3))",
        lambda: kfit(np.dstack([kps(), kps()[..., :1]])), "error", "keypoints")
    add(k, "locator.fit(keypoints for 4 of 5 images)", lambda: kfit(kps()[:4]), "error",
        "keypoints")
    add(k, "locator.fit(one keypoint outside every image)",
        lambda: kfit(_kp_outside()), "error", "keypoints", _kp_consistent)
    add(k, "locator.fit(one keypoint NaN in every image)",
        lambda: kfit(_kp_nan_column()), "error", "keypoints", _kp_consistent)
    add(k, "locator.fit(all keypoints NaN)", lambda: kfit(np.full_like(kps(), np.nan)),
        "error", "keypoints")
    add(k, "locator.fit(string keypoints)", lambda: kfit(kps().astype(str)), "error",
        "keypoints")
    add(k, "locator.fit(keypoints with inf)",
        lambda: kfit(np.where(kps() > 30, np.inf, kps())), "error", "keypoints")
    add(k, "locator.fit(boxes of shape (n, 3))", lambda: kfit(boxes=np.ones((n, 3))), "error",
        "boxes")
    add(k, "locator.fit(boxes for 4 of 5 images)",
        lambda: kfit(boxes=np.tile([0, 0, 48, 48], (4, 1))), "error", "boxes")
    add(k, "locator.fit(empty boxes x1 == x0)",
        lambda: kfit(boxes=np.tile([10, 0, 10, 48], (n, 1))), "error", "boxes")
    add(k, "locator.fit(inverted boxes x1 < x0)",
        lambda: kfit(boxes=np.tile([40, 0, 5, 48], (n, 1))), "error", "boxes")
    add(k, "locator.fit(boxes with NaN)",
        lambda: kfit(boxes=np.tile([0, 0, np.nan, 48], (n, 1))), "error", "boxes")
    add(k, "locator.fit(boxes of shape (0, 4))", lambda: kfit(boxes=np.zeros((0, 4))),
        "error", "boxes")
    add(k, "locator.fit(boxes entirely outside the images)",
        lambda: kfit(boxes=np.tile([100, 100, 140, 140], (n, 1))), "error", "boxes")
    add(k, "locator.fit(negative boxes reaching outside) (clipped, warned)",
        lambda: kfit(boxes=np.tile([-10, -10, 50, 50], (n, 1))).predict(kimgs()), "ok", "boxes",
        warned("UserWarning", finite_array((n, 2, 2), "f")))
    add(k, "locator.fit(boxes as nested lists)",
        lambda: kfit(boxes=[[0, 0, 48, 48]] * n).predict(kimgs()), "ok", "boxes",
        finite_array((n, 2, 2), "f"))
    for name, v in [("radius", 0), ("radius", 0.6), ("frame_size", 4), ("strategy", "x"),
                    ("score_normalizer", "iod"), ("n_negatives_per_image", 0),
                    ("grid_size", 0), ("score_threshold", -1)]:
        add(k, f"HypercolumnKeypointLocator({name}={v!r}).fit",
            lambda name=name, v=v: kfit(**{name: v}), "error", name)
    add(k, "locator.score(score_normalizer=(0, 9)) (index out of range)",
        lambda: kfit(score_normalizer=(0, 9)).score(kimgs(), kps()), "error",
        "score_normalizer")
    add(k, "locator.predict(boxes of shape (n, 3))",
        lambda: loc().predict(kimgs(), boxes=np.ones((n, 3))), "error", "boxes")
    add(k, "locator.predict(images with other channels (2))",
        lambda: loc().predict(kimgs()[..., :2]), "error", "images")
    add(k, "locator.predict(1x1 images)", lambda: loc().predict(kimgs()[:, :1, :1]), "ok",
        "images", finite_array((n, 2, 2), "f"))
    add(k, "locator.score(keypoints of another count)",
        lambda: loc().score(kimgs(), kps()[:, :1]), "error", "keypoints")
    add(k, "seg.fit(boxes wrong shape) with append_location",
        lambda: seg(hypercolumns=hc(append_location=True)).fit(IMGS, MASKS,
                                                             boxes=np.ones((4, 3))),
        "error", "boxes")
    add(k, "seg.predict(boxes=[[0, 0, -5, 3]]) with append_location",
        lambda: Fix.get("seg").predict(IMG, boxes=[[0, 0, -5, 3]]), "error", "boxes")


def _kp_outside() -> np.ndarray:
    kp = Fix.get("kp")[2].copy()
    kp = np.concatenate([kp, np.full((len(kp), 1, 2), 500.0)], axis=1)  # keypoint 2 never inside
    return kp


def _kp_nan_column() -> np.ndarray:
    kp = Fix.get("kp")[2].copy()
    return np.concatenate([kp, np.full((len(kp), 1, 2), np.nan)], axis=1)


def _kp_consistent(model, ws):
    pred = model.predict(Fix.get("kp")[1])
    heat = model.predict_heatmaps(Fix.get("kp")[1])
    if model.n_keypoints_ != 3 or pred.shape[1] != 3 or heat[0].shape[0] != 3:
        return (f"n_keypoints_={model.n_keypoints_}, predict {pred.shape}, heatmaps "
                f"{heat[0].shape} for 3 keypoints given")
    return None


# --------------------------------------------------------------------------------------------
# metrics, stacks, location, keypoints module
# --------------------------------------------------------------------------------------------


def metric_cases() -> None:
    from skhyper import keypoints as kpmod
    from skhyper import location
    from skhyper import metrics as M

    k = "metrics"
    a, b = MASKS[0], MASKS[1]
    add(k, "mean_iou(shapes differ)", lambda: M.mean_iou(a, b[:, :-1]), "error",
        "y_pred|y_true")
    add(k, "mean_iou([], [])", lambda: M.mean_iou([], []), "error", "y_true|y_pred")
    add(k, "mean_iou(2 maps vs 1 map)", lambda: M.mean_iou([a, b], [a]), "error",
        "y_pred|y_true")
    add(k, "mean_iou(labels='all')", lambda: M.mean_iou(a, b, labels="all"), "error",
        "labels")
    add(k, "mean_iou(float maps with 0.5)", lambda: M.mean_iou(a * 0.5, b), "error", "y_true")
    add(k, "mean_iou(ignore_label='x')", lambda: M.mean_iou(a, b, ignore_label="x"), "error",
        "ignore_label")
    add(k, "mean_iou(a, a) == 1", lambda: M.mean_iou(a, a), "ok", "y_true", gives(1.0))
    add(k, "mean_iou(bool maps)", lambda: M.mean_iou(a.astype(bool), a.astype(bool)), "ok",
        "y_true", gives(1.0))
    add(k, "foreground_iou(average='mean')", lambda: M.foreground_iou(a, b, average="mean"),
        "error", "average")
    add(k, "foreground_iou(background='x')", lambda: M.foreground_iou(a, b, background="x"),
        "error", "background")
    add(k, "confusion_matrix(labels=[]) ", lambda: M.confusion_matrix(a, b, labels=[]),
        "error", "labels")
    add(k, "iou_per_class(labels with duplicates)",
        lambda: M.iou_per_class(a, b, labels=[0, 0, 1]), "error", "labels")
    add(k, "get_scorer('nope')", lambda: M.get_scorer("nope"), "error", "name")
    kp = np.random.default_rng(0).uniform(0, 40, (3, 4, 2))
    add(k, "pck(threshold=-0.1)", lambda: M.pck(kp, kp, threshold=-0.1), "error", "threshold")
    add(k, "pck(shapes differ)", lambda: M.pck(kp, kp[:, :3]), "error", "y_pred|y_true")
    add(k, "pck(normalizer of wrong length)", lambda: M.pck(kp, kp, normalizer=np.ones(5)),
        "error", "normalizer")
    add(k, "pck(normalizer with zeros)", lambda: M.pck(kp, kp, normalizer=np.zeros(3)),
        "error", "normalizer")
    add(k, "nme(all-NaN truth)", lambda: M.nme(np.full_like(kp, np.nan), kp), "error",
        "y_true")
    add(k, "pck(y_pred with NaN) counts misses",
        lambda: M.pck(kp, np.where(np.arange(24).reshape(3, 4, 2) == 0, np.nan, kp)), "ok",
        "y_pred", lambda r, w: None if abs(r - 11 / 12) < 1e-9 else f"pck {r}, expected 11/12")
    add(k, "inter_ocular_distance(left=9)",
        lambda: M.inter_ocular_distance(kp, left=9, right=1), "error", "left")

    k = "stacks"
    stack = np.zeros((4, 2, 8, 9), np.uint16)
    plane_shape = {"ZCXY": (9, 8, 2), "zcyx": (8, 9, 2)}  # accepting these is right too
    for axes in ("ZCY", "ZZYX", "ABCD", "ZCXY", "zcyx", ""):
        add(k, f"split_planes((4, 2, 8, 9), {axes!r})",
            lambda axes=axes: split_planes(stack, axes), "error", "axes",
            (lambda r, w, s=plane_shape.get(axes): None if len(r) == 4 and r[0].shape == s
             else f"{len(r)} planes of {r[0].shape}") if axes in plane_shape else None)
    add(k, "split_planes((4, 2, 8, 9), 'ZCYX')", lambda: split_planes(stack, "ZCYX"), "ok",
        "axes", lambda r, w: None if len(r) == 4 and r[0].shape == (8, 9, 2) else "bad planes")
    add(k, "split_planes(list, 'ZYX')", lambda: split_planes([[1, 2]], "ZYX"), "error",
        "stack|axes")
    add(k, "split_planes(None, 'YX')", lambda: split_planes(None, "YX"), "error", "stack")
    add(k, "stack_planes([], 'ZYX')", lambda: stack_planes([], "ZYX"), "error", "planes")
    add(k, "stack_planes(planes of mixed shapes, 'ZYX')",
        lambda: stack_planes([np.zeros((4, 4)), np.zeros((4, 5))], "ZYX"), "error", "planes")
    add(k, "stack_planes(planes, 'ZYX', shape=(9, 9, 9))",
        lambda: stack_planes([np.zeros((4, 4))] * 2, "ZYX", shape=(9, 9, 9)), "error",
        "shape")
    add(k, "stack_planes(split_planes(x, 'CZYX'), 'CZYX') (C moves last)",
        lambda: stack_planes(split_planes(stack, "CZYX"), "CZYX", shape=stack.shape), "ok",
        "planes", lambda r, w: None if np.array_equal(r, np.moveaxis(stack, 0, -1))
        else f"got shape {r.shape}, expected {np.moveaxis(stack, 0, -1).shape}")

    k = "location & keypoint geometry"
    add(k, "location.frame_of(box=(0, 0, -5, 3), (10, 10))",
        lambda: location.frame_of((0, 0, -5, 3), (10, 10)), "error", "box")
    add(k, "location.frame_of(box='abc', (10, 10))",
        lambda: location.frame_of("abc", (10, 10)), "error", "box")
    add(k, "location.cell_weights(locations (n, 3), 2)",
        lambda: location.cell_weights(np.zeros((5, 3)), 2), "error", "locations")
    add(k, "location.cell_weights(grid_size=0)",
        lambda: location.cell_weights(np.zeros((5, 2)), 0), "error", "grid_size")
    add(k, "keypoints.heatmap_peaks(2-D scores)",
        lambda: kpmod.heatmap_peaks(np.zeros((8, 8))), "error", "scores")
    add(k, "keypoints.to_frame(points (n, 2), boxes (n, 4))",
        lambda: kpmod.to_frame(np.zeros((2, 2)), np.ones((2, 4)), 16), "error", "points")
    add(k, "keypoints.crop_frames(frame_size=0)",
        lambda: kpmod.crop_frames([IMG], np.array([[0, 0, 10, 10.0]]), 0), "error",
        "frame_size")
    add(k, "keypoints.check_keypoints(keypoints (2, 3), n_images=2)",
        lambda: kpmod.check_keypoints(np.zeros((2, 3)), 2), "error", "keypoints")


# --------------------------------------------------------------------------------------------
# parallel, pickles, CLI
# --------------------------------------------------------------------------------------------


def parallel_cases() -> None:
    from skhyper.parallel import predict_collection, predict_large

    k = "parallel"
    pc = lambda images, **kw: predict_collection(S(), images, **kw)  # noqa: E731
    add(k, "predict_collection(seg, [good, good, NaN image, good])",
        lambda: pc([IMG, IMG, np.full((H, W, 3), np.nan), IMG]), "error",
        "re:images\\[2\\]|item 2|image 2|index 2")
    add(k, "predict_collection(seg, [good, 2-channel image])",
        lambda: pc([IMG, IMG[..., :2]]), "error", "re:images\\[1\\]|item 1|image 1|index 1")
    add(k, "predict_collection(seg, [paths..., a missing file])",
        lambda: pc([_png(IMG), _png(IMG, "b.png"), tmp("missing.png")]), "error",
        "re:missing\\.png", accept=(FileNotFoundError,),
        note="FileNotFoundError naming the file accepted for a missing path")
    add(k, "predict_collection(seg, [paths..., a corrupt file])",
        lambda: pc([_png(IMG), _corrupt("corrupt.png")]), "error", "re:corrupt\\.png")
    add(k, "predict_collection(seg, [good paths])",
        lambda: pc([_png(IMG), _png(IMGS[1], "c.png")]), "ok", "images",
        equals(lambda: [ref(), S().predict(IMGS[1])]))
    add(k, "predict_collection(seg, stack (3, H, W, 3))", lambda: pc(np.stack(IMGS[:3])), "ok",
        "images", equals(lambda: np.stack([S().predict(im) for im in IMGS[:3]])))
    add(k, "predict_collection(seg, [])", lambda: pc([]), "error", "images")
    add(k, "predict_collection(seg, generator)", lambda: pc(im for im in IMGS[:2]), "error",
        "images", equals(lambda: [S().predict(im) for im in IMGS[:2]]))
    add(k, "predict_collection(method='predict_logits')",
        lambda: pc([IMG], method="predict_logits"), "error", "method")
    add(k, "predict_collection(batch_size=0)", lambda: pc([IMG], batch_size=0), "error",
        "batch_size")
    add(k, "predict_collection(batch_size=True)", lambda: pc([IMG], batch_size=True), "error",
        "batch_size", equals(lambda: [ref()]))
    add(k, "predict_collection(n_threads=-1)", lambda: pc([IMG], n_threads=-1), "error",
        "n_threads")
    add(k, "predict_collection(device='gpu9')", lambda: pc([IMG], device="gpu9"), "error",
        "device")
    add(k, "predict_collection(unfitted segmenter)",
        lambda: predict_collection(seg(), [IMG]), "error", "re:fit")
    add(k, "predict_collection(model=LogisticRegression())",
        lambda: predict_collection(_sk_model(), [IMG]), "error", "model|method")
    add(k, "predict_collection(method='predict_proba') equals seg.predict_proba",
        lambda: pc([IMG], method="predict_proba"), "ok", "method",
        equals(lambda: [Fix.get("ref_proba")]))
    big = lambda: np.tile(IMG, (2, 2, 1))  # noqa: E731
    pl = lambda image, **kw: predict_large(S(), image, **kw).compute()  # noqa: E731
    add(k, "predict_large(seg, 80x96 image, chunks=32)", lambda: pl(big(), chunks=32), "ok",
        "image", equals(lambda: S().predict(big())))
    for v in (0, -5, "x", (32,), 2.5):
        add(k, f"predict_large(chunks={v!r})", lambda v=v: pl(big(), chunks=v), "error",
            "chunks")
    add(k, "predict_large(4-D image)", lambda: pl(np.stack([IMG, IMG])), "error", "image")
    add(k, "predict_large(method='bogus')", lambda: pl(big(), method="bogus"), "error",
        "method")
    add(k, "predict_large(NaN image)", lambda: pl(np.full((64, 64, 3), np.nan), chunks=32),
        "error", "image")
    add(k, "predict_large(2-channel image)", lambda: pl(big()[..., :2], chunks=32), "error",
        "image")
    add(k, "predict_large(unfitted segmenter)", lambda: predict_large(seg(), big()), "error",
        "re:fit")


def _sk_model():
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression().fit([[0.0], [1.0]], [0, 1])


# fitted attributes of HypercolumnTransformer before the feature engine (engine_) came
LEGACY_TRANSFORMER = {"feature_info_": [{"name": "relu"}, {"name": "layer1"}],
                      "device_": "cpu", "n_features_out_": 128}


def _stripped(obj: Any, path: str, attr: str, legacy: dict | None = None) -> Any:
    """An older pickle: ``obj`` pickled without ``attr`` of its part at ``path``, then loaded.

    The attribute is removed before pickling, so loading sees a state that lacks it, as it
    would with a file written by a version that did not have it.
    """
    older = copy.deepcopy(obj)
    target = older
    for part in filter(None, path.split(".")):
        target = getattr(target, part)
    target.__dict__.pop(attr, None)
    target.__dict__.update(legacy or {})
    return pickle.loads(pickle.dumps(older))


def pickle_cases() -> None:
    k = "old pickles"
    # expected ok; or an error that a message (or an InconsistentVersionWarning given on
    # loading) explains: another version, fit again
    why = "re:version|re-?fit|fit again|pickle"

    def old(call, fn, check):
        add(k, call, fn, "ok", why, check, warn_names=True)

    old("pickle round trip of the fitted segmenter, predict",
        lambda: pickle.loads(pickle.dumps(S())).predict(IMG), equals(ref))
    old("unpickled transformer with pre-engine_ fitted attributes (older pickle), transform",
        lambda: _stripped(Fix.get("hc"), "", "engine_", LEGACY_TRANSFORMER).transform(
            Fix.get("pixels")[0]),
        equals(lambda: Fix.get("hc_ref")))
    for attr in ("prediction_path_", "folded_", "min_pixels_per_class", "classes_"):
        old(f"unpickled segmenter without {attr} (older pickle), predict",
            lambda attr=attr: _stripped(S(), "", attr).predict(IMG), equals(ref))
    old("unpickled segmenter without min_pixels_per_class, clone + repr",
        lambda: _clone_repr(_stripped(S(), "", "min_pixels_per_class")), returned)
    old("unpickled segmenter whose hypercolumns_ has pre-engine_ attributes, predict",
        lambda: _stripped(S(), "hypercolumns_", "engine_", LEGACY_TRANSFORMER).predict(IMG),
        equals(ref))
    old("unpickled locator without n_keypoints_, predict",
        lambda: _stripped(Fix.get("kp")[0], "", "n_keypoints_").predict(Fix.get("kp")[1]),
        finite_array((5, 2, 2), "f"))
    old("pickle from a 'future' version (stamp patched), predict",
        lambda: _future_pickle().predict(IMG), equals(ref))


def _clone_repr(model: Any) -> str:
    from sklearn.base import clone

    clone(model)
    return repr(model)


def _future_pickle() -> Any:
    """Pickle with every attribute that holds the package version replaced by '99.0'."""
    model = copy.deepcopy(S())
    for obj in (model, model.hypercolumns_):
        for key, val in list(vars(obj).items()):
            if isinstance(val, str) and val == skhyper.__version__:
                setattr(obj, key, "99.0")
    state = pickle.dumps(model)
    state = state.replace(skhyper.__version__.encode(), b"99.0.0.dev")
    return pickle.loads(state)


def cli_cases() -> None:
    k = "CLI"
    quick = ["--image-size", "32", "--n-per-image", "10", "--device", "cpu"]
    add(k, "python -m skhyper --output <a path under an existing file>",
        lambda: _cli(["--output", os.path.join(_a_file(), "out.png"), *quick]), "error",
        "output", after=_cli_late)
    add(k, "python -m skhyper --output /proc/skhyper_demo.png (not writable)",
        lambda: _cli(["--output", "/proc/skhyper_demo.png", *quick]), "error", "output",
        after=_cli_late)
    add(k, "python -m skhyper --output <an existing folder>",
        lambda: _cli(["--output", Fix.get("tmp"), *quick]), "error", "output", after=_cli_late)
    add(k, "python -m skhyper --output x.txt (not an image format)",
        lambda: _cli(["--output", tmp("x.unknownext"), *quick]), "error", "output",
        after=_cli_late)
    add(k, "python -m skhyper --device gpu9",
        lambda: _cli(["--output", tmp("d.png"), "--image-size", "32", "--n-per-image", "10",
                      "--device", "gpu9"]), "error", "device", after=_cli_late)
    add(k, "python -m skhyper --data /no/such/folder",
        lambda: _cli(["--output", tmp("e.png"), "--data", "/no/such/folder", *quick]), "error",
        "data", after=_cli_late)
    add(k, "python -m skhyper --data <a folder without images/ and masks/>",
        lambda: _cli(["--output", tmp("f.png"), "--data", Fix.get("tmp"), *quick]), "error",
        "data", after=_cli_late)
    add(k, "python -m skhyper --n-per-image 0", lambda: _cli(["--n-per-image", "0"]), "error",
        "n-per-image")
    add(k, "python -m skhyper --image-size -3", lambda: _cli(["--image-size", "-3"]), "error",
        "image-size")
    add(k, "python -m skhyper --seed x", lambda: _cli(["--seed", "x"]), "error", "seed")
    add(k, "python -m skhyper trian (unknown command)", lambda: _cli(["trian"]), "error",
        "command|COMMAND")
    sample = os.path.join(os.path.dirname(skhyper.__file__), "data", "horses")
    images, masks = os.path.join(sample, "images"), os.path.join(sample, "masks")
    add(k, "skhyper train <missing folder> LABELS -o m.skhyper",
        lambda: _cli(["train", "/no/such/folder", masks, "-o", tmp("m.skhyper")]), "error",
        "IMAGES")
    add(k, "skhyper train IMAGES <labels named otherwise> -o m.skhyper",
        lambda: _cli(["train", images, masks, "-o", tmp("m.skhyper"), "--label-suffix",
                      "_labels"]), "error", "re:do not match by name")
    add(k, "skhyper train ... --backbone nonet",
        lambda: _cli(["train", images, masks, "-o", tmp("m.skhyper"), "--backbone", "nonet"]),
        "error", "--backbone")
    add(k, "skhyper layers nonet", lambda: _cli(["layers", "nonet"]), "error", "BACKBONE")
    add(k, "skhyper predict <a file that is not a model> IMAGES -o out",
        lambda: _cli(["predict", _a_file(), images, "-o", tmp("pred")]), "error", "MODEL")
    add(k, "skhyper predict MODEL IMAGES -o <a path under a file>",
        lambda: _cli(["predict", _a_file(), images, "-o", os.path.join(_a_file(), "sub")]),
        "error", "-o/--output")
    add(k, "python -m skhyper --output ok.png (a working run)",
        lambda: _cli(["--output", tmp("ok.png"), *quick]), "ok", "output",
        lambda r, w: None if r == 0 and os.path.getsize(tmp("ok.png")) > 0 else f"status {r}")


_CLI_OUT: dict[str, str] = {}


def _a_file() -> str:
    path = tmp("a_file")
    Path(path).write_text("x")
    return path


class CLIError(ValueError):
    """A CLI run that exited with a non-zero status (its stderr is the message)."""


def _cli(argv: list[str]) -> int:
    """Run ``python -m skhyper`` in-process; a non-zero exit becomes a CLIError with stderr."""
    from skhyper.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    _CLI_OUT.clear()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(argv)
    except SystemExit as exc:
        _CLI_OUT["stdout"] = out.getvalue()
        if exc.code not in (0, None):
            raise CLIError(err.getvalue().strip().splitlines()[-1] if err.getvalue().strip()
                           else f"exit status {exc.code}") from None
        return 0
    finally:
        _CLI_OUT["stdout"] = out.getvalue()
    if status not in (0, None):  # errors found after parsing return 2 with one line on stderr
        raise CLIError(err.getvalue().strip().splitlines()[-1] if err.getvalue().strip()
                       else f"exit status {status}")
    return status


def _cli_late() -> str | None:
    if "fitted in" in _CLI_OUT.get("stdout", ""):
        return "refused only after training and predicting (check outputs before the work)"
    return None


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def build_cases() -> None:
    image_cases()
    mask_cases()
    param_cases()
    grid_cases()
    metric_cases()
    parallel_cases()
    pickle_cases()
    cli_cases()


def _checkout_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
            cwd=Path(skhyper.__file__).resolve().parent,
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--label", default="run", help="name of this run, e.g. before / after")
    parser.add_argument("--only", default=None, help="run only cases whose kind or call "
                        "contains this text")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"skhyper {skhyper.__version__} from {skhyper.__file__} "
          f"(commit {_checkout_commit()})", flush=True)
    t_start = time.perf_counter()
    build_cases()
    cases = [c for c in CASES if not args.only or args.only in c.kind or args.only in c.call]
    results = []
    for i, case in enumerate(cases):
        r = classify(case)
        if case.note:
            r["note"] = case.note
        results.append(r)
        mark = {"clear": ".", "handled": "+", "unclear": "?", "silent": "!"}[r["outcome"]]
        print(mark, end="" if (i + 1) % 80 else "\n", flush=True)
    print()
    seconds = time.perf_counter() - t_start

    kinds = list(dict.fromkeys(r["kind"] for r in results))
    table = {kd: Counter(r["outcome"] for r in results if r["kind"] == kd) for kd in kinds}
    totals = Counter(r["outcome"] for r in results)
    width = max(len(kd) for kd in kinds + ["total"]) + 2
    head = f"{'kind':<{width}}" + "".join(f"{o:>9}" for o in OUTCOMES) + f"{'cases':>7}"
    print(f"\nHostile inputs, {args.label}: {len(results)} cases in {seconds:.0f} s\n")
    print(head)
    print("-" * len(head))
    for kd in kinds:
        row = table[kd]
        print(f"{kd:<{width}}" + "".join(f"{row[o]:>9}" for o in OUTCOMES)
              + f"{sum(row.values()):>7}")
    print("-" * len(head))
    print(f"{'total':<{width}}" + "".join(f"{totals[o]:>9}" for o in OUTCOMES)
          + f"{len(results):>7}")
    for outcome in ("unclear", "silent"):
        bad = [r for r in results if r["outcome"] == outcome]
        if not bad:
            continue
        print(f"\n{outcome.upper()} ({len(bad)}):")
        for r in bad:
            msg = r.get("message") or f"returned {r.get('returned', '')}"
            print(f"- [{r['kind']}] {r['call']}  (expect {r['expect']}, param {r['param']})")
            print(f"    why: {r['reason']}")
            print(f"    got: {msg[:200]!s}".replace("\n", " "))

    record = {
        "label": args.label,
        "skhyper_file": skhyper.__file__,
        "skhyper_commit": _checkout_commit(),
        "seconds": round(seconds, 1),
        "n_cases": len(results),
        "totals": {o: totals[o] for o in OUTCOMES},
        "by_kind": {kd: {o: table[kd][o] for o in OUTCOMES} for kd in kinds},
        "machine": machine_info(torch.device("cpu")),
        "cases": results,
    }
    if args.only:
        print("(--only: a partial run, no JSON written)")
    else:
        write_results(record, RESULTS / f"hostile_inputs_{args.label}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
