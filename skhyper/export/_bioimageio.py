"""A fitted segmenter as a bioimage.io model package: :func:`to_bioimageio`.

The package (a zip with ``rdf.yaml``, spec 0.5) holds the network twice, as ONNX
(:func:`skhyper.export.to_onnx`) and as TorchScript (``torch.jit.trace`` of
:func:`skhyper.export.to_torch`), a test input (the raw image, in its own dtype) with the
expected probabilities, a cover image, the citation of the hypercolumn paper (and of the
training data when given), and the axes (``batch, channel, y, x``) and preprocessing of the
input: the engine's intensity step described as bioimage.io steps (``ensure_dtype``,
``scale_linear`` or ``scale_range`` and ``clip``), so that ilastik, Fiji / deepImageJ,
QuPath and napari feed the network what skhyper feeds it. Checked with bioimage.io's own
test (:func:`check_bioimageio`, ``bioimageio.core.test_model``).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._paths import check_output_path
from ._onnx import ONNX_OPSET, to_onnx
from ._runtime import prepare_image
from ._torch import to_torch

__all__ = ["HYPERCOLUMNS_CITATION", "check_bioimageio", "to_bioimageio"]

HYPERCOLUMNS_CITATION = {
    "text": "Hariharan, Arbelaez, Girshick, Malik. Hypercolumns for object segmentation and "
            "fine-grained localization. CVPR 2015.",
    "doi": "10.1109/CVPR.2015.7298642",
}
_UPSAMPLING_DOC = {  # the README's line on how score maps reach the image
    "bilinear": "score maps upsampled bilinearly.",
    "edge_aware": "the score maps of coarse layers (stride 8 and more) upsampled edge-aware "
                  "(joint bilateral upsampling guided by the image), the others bilinearly.",
}


def _preprocessing(dtype: np.dtype, intensity_range: Any) -> list:
    """The engine's intensity step (:func:`skhyper.features.to_float_image`) as bioimage.io
    preprocessing."""
    from bioimageio.spec.model import v0_5 as bio

    steps: list = [bio.EnsureDtypeDescr(kwargs=bio.EnsureDtypeKwargs(dtype="float32"))]
    clip = bio.ClipDescr(kwargs=bio.ClipKwargs(min=0.0, max=1.0))
    if intensity_range is None:
        if dtype.kind in "ui":
            gain = 1.0 / float(np.iinfo(dtype).max)
            steps.append(bio.ScaleLinearDescr(kwargs=bio.ScaleLinearKwargs(gain=gain)))
            if dtype.kind == "i":
                steps.append(bio.ClipDescr(kwargs=bio.ClipKwargs(min=-1.0, max=1.0)))
        return steps
    if intensity_range[0] == "percentile":
        steps.append(bio.ScaleRangeDescr(kwargs=bio.ScaleRangeKwargs(
            axes=[bio.AxisId("y"), bio.AxisId("x")], min_percentile=float(intensity_range[1]),
            max_percentile=float(intensity_range[2]))))
    else:
        lo, hi = float(intensity_range[0]), float(intensity_range[1])
        steps.append(bio.ScaleLinearDescr(kwargs=bio.ScaleLinearKwargs(
            gain=1.0 / (hi - lo), offset=-lo / (hi - lo))))
    return [*steps, clip]


def _cover(image: np.ndarray, labels: np.ndarray, path: Path) -> Path:
    """Image and predicted labels side by side (2:1), as bioimage.io recommends."""
    from PIL import Image

    x = prepare_image(image, 3, None)
    x = x.transpose(1, 2, 0)
    lo, hi = float(x.min()), float(x.max())
    x = (255 * (x - lo) / (hi - lo if hi > lo else 1.0)).astype(np.uint8)
    palette = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
                        [245, 130, 48], [145, 30, 180], [70, 240, 240]], dtype=np.uint8)
    codes = np.unique(labels, return_inverse=True)[1].reshape(labels.shape)
    lab = palette[codes % len(palette)]
    side = 256
    left = Image.fromarray(x).resize((side, side))
    right = Image.fromarray(lab).resize((side, side), Image.NEAREST)
    canvas = Image.new("RGB", (2 * side, side))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (side, 0))
    canvas.save(path)
    return path


def to_bioimageio(
    model: Any,
    path: str | os.PathLike,
    *,
    test_image: np.ndarray,
    name: str = "skhyper hypercolumn segmenter",
    description: str | None = None,
    authors: list[dict] | None = None,
    cite: list[dict] | None = None,
    training_data: dict | None = None,
    license: str = "MIT",
    tags: list[str] | None = None,
) -> Path:
    """Write a fitted segmenter as a bioimage.io model package (zip, spec 0.5).

    Parameters
    ----------
    model : HypercolumnSegmenter
        Fitted, with a classifier that folds (see :func:`skhyper.export.check_exportable`).
    path : str or path-like
        The ``.zip`` package to write.
    test_image : ndarray of shape (height, width[, channels])
        A representative image, in its own dtype (the package's test input; the expected
        output is ``model.predict_proba(test_image)``; its sides must be at least 64).
    name : str, default="skhyper hypercolumn segmenter"
        The model's name in the package.
    description : str, default=None
        A one-paragraph description of what the model segments; None: a generic one.
    authors : list of dict, default=None
        ``{"name": ..., "affiliation": ..., "orcid": ...}``; None: ``[{"name": "unknown"}]``.
    cite : list of dict, default=None
        Further citations ``{"text": ..., "doi": ...}`` or ``{"text": ..., "url": ...}``;
        the hypercolumn paper is always cited.
    training_data : dict, default=None
        The citation of the training data, when known (same keys as ``cite``).
    license : str, default="MIT"
        An SPDX license identifier of the weights.
    tags : list of str, default=None
        Keywords that find the model on bioimage.io; None: ``["skhyper", "hypercolumns",
        "semantic-segmentation", "2d"]``.

    Returns
    -------
    Path
        ``path``.
    """
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5 as bio

    from .._version import __version__

    path = check_output_path(path, param="path", suffixes=(".zip",))
    net = to_torch(model)
    config = net.config
    img = np.asarray(test_image)
    gray = img.ndim == 2
    if min(img.shape[:2]) < 64:
        raise ValueError(
            f"The 'test_image' parameter must be at least 64 pixels on each side; got shape "
            f"{img.shape}."
        )
    n_in = config["n_channels"]
    raw = img[..., None] if gray else img
    if raw.shape[2] == 1 and n_in != 1:
        raw = np.repeat(raw, n_in, axis=2)
    raw_bcyx = np.ascontiguousarray(raw.transpose(2, 0, 1)[None])
    proba = np.asarray(model.predict_proba(img), dtype=np.float32)
    expected = np.ascontiguousarray(proba.transpose(2, 0, 1)[None])
    classes = [str(c) for c in config["classes"]]
    work = Path(tempfile.mkdtemp(prefix="skhyper-bioimageio-"))
    np.save(work / "test_input.npy", raw_bcyx)
    np.save(work / "test_output.npy", expected)
    onnx_path = to_onnx(net, work / "weights.onnx")
    x = torch.from_numpy(prepare_image(raw, n_in, config["intensity_range"]))[None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net, x, check_trace=False)
    traced.save(str(work / "weights.torchscript.pt"))
    cover = _cover(img, model.classes_[proba.argmax(-1)], work / "cover.png")
    step = 1
    min_side = min(64, int(config["min_size"]))  # test images are at least 64 px
    doc = work / "README.md"
    doc.write_text(
        f"# {name}\n\n{description or 'A hypercolumn pixel classifier made with skhyper.'}\n\n"
        f"Hypercolumns (Hariharan et al., CVPR 2015) of backbone `{config['backbone']}` (maps "
        f"{config['maps']}, scales {config['scales'] or [1.0]}), classified per pixel by a "
        f"folded linear head (grid size {config['grid_size']}); "
        f"{_UPSAMPLING_DOC[config.get('upsampling', 'bilinear')]} Output: probabilities of the "
        f"classes {classes}. Exported by skhyper {__version__}.\n\n"
        "Input: the raw image; preprocessing maps its intensities to [0, 1] as skhyper does "
        f"(intensity_range={config['intensity_range']!r}). The network sees whole images; "
        "tile huge images with a halo of the backbone's receptive field.\n"
    )
    ids = {a: bio.AxisId(a) for a in ("y", "x")}
    inp = bio.TensorId("raw")
    data = bio.IntervalOrRatioDataDescr(type="float32")  # what the network gets
    input_descr = bio.InputTensorDescr(
        id=inp,
        axes=[bio.BatchAxis(),
              bio.ChannelAxis(channel_names=[bio.Identifier(f"c{i}") for i in range(n_in)]),
              bio.SpaceInputAxis(id=ids["y"], size=bio.ParameterizedSize(min=min_side,
                                                                        step=step)),
              bio.SpaceInputAxis(id=ids["x"], size=bio.ParameterizedSize(min=min_side,
                                                                        step=step))],
        test_tensor=bio.FileDescr(source=work / "test_input.npy"),
        data=data,
        preprocessing=_preprocessing(raw.dtype, config["intensity_range"]),
    )
    output_descr = bio.OutputTensorDescr(
        id=bio.TensorId("probabilities"),
        axes=[bio.BatchAxis(),
              bio.ChannelAxis(channel_names=[bio.Identifier(f"class_{c}") for c in classes]),
              bio.SpaceOutputAxis(id=ids["y"], size=bio.SizeReference(tensor_id=inp,
                                                                      axis_id=ids["y"])),
              bio.SpaceOutputAxis(id=ids["x"], size=bio.SizeReference(tensor_id=inp,
                                                                      axis_id=ids["x"]))],
        test_tensor=bio.FileDescr(source=work / "test_output.npy"),
        data=bio.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
    )
    citations = [HYPERCOLUMNS_CITATION, *(cite or [])]
    if training_data is not None:
        citations.append(training_data)
    descr = bio.ModelDescr(
        name=name,
        description=description or "A hypercolumn pixel classifier made with skhyper.",
        authors=[bio.Author(**a) for a in (authors or [{"name": "unknown"}])],
        cite=[bio.CiteEntry(**c) for c in citations],
        license=bio.LicenseId(license),
        tags=list(tags or ["skhyper", "hypercolumns", "semantic-segmentation", "2d"]),
        documentation=bio.FileDescr(source=doc),
        covers=[bio.FileDescr(source=cover)],
        inputs=[input_descr],
        outputs=[output_descr],
        weights=bio.WeightsDescr(
            onnx=bio.OnnxWeightsDescr(source=onnx_path, opset_version=ONNX_OPSET),
            torchscript=bio.TorchscriptWeightsDescr(
                source=work / "weights.torchscript.pt",
                pytorch_version=bio.Version(torch.__version__.split("+")[0]), parent="onnx"),
        ),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(save_bioimageio_package(descr, output_path=path))


def check_bioimageio(path: str | os.PathLike) -> Any:
    """bioimage.io's own test of a package (``bioimageio.core.test_model``): its summary.

    ``summary.status`` is ``"passed"`` when the package is valid and every weights format
    reproduces the test output.

    Parameters
    ----------
    path : str or path-like
        A package written by :func:`to_bioimageio`.

    Returns
    -------
    summary : ValidationSummary
        bioimage.io's summary of the test; ``summary.status`` is ``"passed"`` or
        ``"failed"``, its details say which check failed.

    See Also
    --------
    to_bioimageio : Write the package.
    """
    from bioimageio.core import test_model

    return test_model(os.fspath(path))
