"""A fitted segmenter as an ONNX model: :func:`to_onnx`, dynamic height and width.

The network of :func:`skhyper.export.to_torch` goes through ``torch.export`` (height and
width symbolic) and the ``torch.onnx`` exporter (opset 18: antialiased ``Resize`` for
multi-scale). What a runtime needs besides the graph (classes, input channels, the intensity
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
            verbose: bool = False) -> Path:
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
    verbose : bool, default=False
        Print the exporter's progress.

    Returns
    -------
    Path
        ``path``.

    See Also
    --------
    skhyper.export.OnnxSegmenter : predict with the file in ONNX Runtime, without torch.
    """
    import onnx

    path = check_output_path(path, param="path")
    net = model if isinstance(model, HypercolumnNet) else to_torch(model, output=output)
    program = export_program(net)
    out_name = "probabilities" if net.link is not None else "scores"
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
