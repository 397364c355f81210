"""A fitted segmenter as an ONNX model: :func:`to_onnx`, dynamic height and width.

The network of :func:`skhyper.export.to_torch` goes through ``torch.onnx``'s tracing exporter
(sizes traced as tensors) or through ``torch.export`` (sizes symbolic) and the dynamo exporter;
either way height and width stay dynamic, and multi-scale resizes become antialiased ``Resize``
nodes (opset 18). What a runtime needs besides the graph (classes, input channels, the intensity
step) is stored as JSON in the model's metadata under ``"skhyper"``
(:func:`skhyper.export.export_config`), read by :class:`skhyper.export.OnnxSegmenter`.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from .._paths import check_output_path
from ._torch import HypercolumnNet, to_torch

__all__ = ["ONNX_OPSET", "export_program", "to_onnx"]

ONNX_OPSET = 18


def export_program(net: HypercolumnNet, *, size: tuple[int, int] | None = None
                   ) -> torch.export.ExportedProgram:
    """``torch.export`` of a :class:`HypercolumnNet` with dynamic batch, height and width.

    Traced at ``size`` (default: 257 x 259 pixels divided by the smallest scale: odd, and large
    enough that no map of the backbone, down to its last layer, is 1 pixel wide, so no size
    is specialized). The trace runs on fake tensors: its size costs nothing.

    Parameters
    ----------
    net : HypercolumnNet
        The network of a segmenter (:func:`to_torch`).
    size : tuple of int, default=None
        ``(height, width)`` of the example input traced; None for the default above.

    Returns
    -------
    program : torch.export.ExportedProgram
        The exported program, its batch, height and width dynamic.

    See Also
    --------
    to_onnx : Write the network as an ONNX model.
    """
    small = min(net.config["scales"] or [1.0])
    side = 2 * int(math.ceil(max(128, net.config["min_size"]) / small)) + 1
    h, w = size if size is not None else (side, side + 2)
    x = torch.rand(2, net.n_inputs, h, w)
    auto = torch.export.Dim.AUTO
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.export.export(net, (x,), dynamic_shapes=({0: auto, 2: auto, 3: auto},),
                                   strict=False)


def to_onnx(model: Any, path: str | os.PathLike, *, output: str = "predict_proba",
            exporter: str = "torchscript", verbose: bool = False) -> Path:
    """Write a fitted segmenter as an ONNX model with dynamic batch, height and width.

    Input ``"images"``: float32 ``(n, n_channels, height, width)`` in ``[0, 1]``; output
    ``"probabilities"`` (or ``"scores"``): ``(n, n_classes, height, width)``, equal to
    ``model.predict_proba`` within 1e-4 in ONNX Runtime (CPU). The metadata entry
    ``"skhyper"`` holds :func:`skhyper.export.export_config` as JSON.

    Parameters
    ----------
    model : HypercolumnSegmenter or HypercolumnNet
        A fitted segmenter whose classifier folds (see :func:`skhyper.export.check_exportable`),
        or a network from :func:`skhyper.export.to_torch`.
    path : str or path-like
        The ``.onnx`` file to write.
    output : {"predict_proba", "decision_function"}, default="predict_proba"
    exporter : {"torchscript", "dynamo"}, default="torchscript"
        ``"torchscript"``: ``torch.onnx``'s tracing exporter (sizes traced as tensors, so
        height and width stay dynamic; about a second, also for backbones whose padding depends
        on the input size, such as the default EfficientNet-Lite0). ``"dynamo"``: through
        :func:`export_program` (``torch.export``, symbolic sizes): seconds for ResNet / VGG
        style backbones, minutes for TF-"same"-padding ones. Both give the same model within
        float32 rounding.
    verbose : bool, default=False
        Print the exporter's progress (``"dynamo"``).

    Returns
    -------
    Path
        ``path``.

    See Also
    --------
    skhyper.export.OnnxSegmenter : predict with the file in ONNX Runtime, without torch.
    """
    import onnx

    if exporter not in ("torchscript", "dynamo"):
        raise ValueError(
            "The 'exporter' parameter must be 'torchscript' or 'dynamo'. Got "
            f"{exporter!r} instead."
        )
    path = check_output_path(path, param="path")
    net = model if isinstance(model, HypercolumnNet) else to_torch(model, output=output)
    out_name = "probabilities" if net.link is not None else "scores"
    if exporter == "torchscript":
        proto = _torchscript_export(net, out_name)
    else:
        program = export_program(net)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onnx_program = torch.onnx.export(
                program, input_names=["images"], output_names=[out_name], dynamo=True,
                opset_version=ONNX_OPSET, verbose=verbose, optimize=True,
            )
        proto = onnx_program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = "skhyper", json.dumps(net.config)
    proto.doc_string = (f"skhyper {net.config['skhyper_version']}: hypercolumn segmenter "
                        f"({net.config['backbone']}, maps {net.config['maps']})")
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, os.fspath(path))
    return Path(path)


def _torchscript_export(net: HypercolumnNet, out_name: str) -> Any:
    """The ``torch.jit.trace``-based ONNX exporter (sizes traced as tensors, so dynamic)."""
    import io

    import onnx

    small = min(net.config["scales"] or [1.0])
    side = 2 * int(math.ceil(max(128, net.config["min_size"]) / small)) + 1
    x = torch.rand(1, net.n_inputs, side, side + 2)
    torch.onnx.register_custom_op_symbolic("aten::_upsample_bilinear2d_aa", _resize_aa,
                                           ONNX_OPSET)
    buf = io.BytesIO()
    axes = {0: "n", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), buf, dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["images"], output_names=[out_name],
                          dynamic_axes={"images": axes, out_name: axes})
    return onnx.load_model_from_string(buf.getvalue())


def _resize_aa(g: Any, x: Any, output_size: Any, align_corners: Any, *scales: Any) -> Any:
    """``F.interpolate(..., mode="bilinear", antialias=True, align_corners=False)`` as ONNX
    ``Resize`` (opset 18: ``antialias=1``, half-pixel centres), sizes from the traced graph."""
    shape = g.op("Shape", x)
    lead = g.op("Slice", shape, g.op("Constant", value_t=torch.tensor([0])),
                g.op("Constant", value_t=torch.tensor([2])))
    size = g.op("Cast", output_size, to_i=7)  # int64
    sizes = g.op("Concat", lead, size, axis_i=0)
    empty = g.op("Constant", value_t=torch.tensor([], dtype=torch.float32))
    # exclude_outside=1: torch's antialias kernel drops out-of-bounds taps and renormalizes
    return g.op("Resize", x, empty, empty, sizes, mode_s="linear", antialias_i=1,
                exclude_outside_i=1, coordinate_transformation_mode_s="pytorch_half_pixel")
