"""Deploy a fitted segmenter as a plain network: PyTorch, ONNX, bioimage.io; safe model files.

A segmenter whose classifier folds (:func:`skhyper.heads.fold_head`) is a feed-forward network
(the backbone cut at its deepest layer, one 1x1 convolution per map, bilinear upsampling, or
edge-aware for coarse maps, a sum, the grid blend, the link), so it runs where scikit-learn
does not:

* :func:`to_torch` -- a :class:`torch.nn.Module` (``torch.export`` works on it);
* :func:`to_onnx` -- an ONNX model with dynamic height and width, and
  :class:`OnnxSegmenter` to predict with it in ONNX Runtime without torch;
* :func:`to_bioimageio` -- a bioimage.io model package (ONNX and TorchScript weights) for
  ilastik, Fiji / deepImageJ, QuPath, napari;
* :func:`save` / :func:`load` -- model files without pickle (JSON, safetensors, skops).

The optional packages (``onnx``, ``onnxruntime``, ``skops``, ``bioimageio.core``) come with
``pip install "skhyper[export]"``.
"""

from ._bioimageio import HYPERCOLUMNS_CITATION as _HYPERCOLUMNS_CITATION
from ._bioimageio import check_bioimageio, to_bioimageio
from ._files import FORMAT as _FORMAT
from ._files import load, save
from ._onnx import ONNX_OPSET as _ONNX_OPSET
from ._onnx import export_program, to_onnx
from ._runtime import OnnxSegmenter, prepare_image
from ._torch import HypercolumnNet, check_exportable, export_config, to_torch

FORMAT: str = _FORMAT
"""The format tag written into model files by :func:`save` and checked by :func:`load`."""

HYPERCOLUMNS_CITATION: dict = _HYPERCOLUMNS_CITATION
"""The hypercolumn paper's citation (text and DOI), as bioimage.io packages cite it."""

ONNX_OPSET: int = _ONNX_OPSET
"""The ONNX opset :func:`to_onnx` exports with."""

__all__ = [
    "FORMAT",
    "HYPERCOLUMNS_CITATION",
    "ONNX_OPSET",
    "HypercolumnNet",
    "OnnxSegmenter",
    "check_bioimageio",
    "check_exportable",
    "export_config",
    "export_program",
    "load",
    "prepare_image",
    "save",
    "to_bioimageio",
    "to_onnx",
    "to_torch",
]
