"""skhyper: hypercolumn pixel descriptors from CNN backbones, for scikit-learn.

Hariharan, Arbelaez, Girshick, Malik, *Hypercolumns for object segmentation
and fine-grained localization*, CVPR 2015.
"""

from ._version import __version__, install_retired_module_finder
from .estimators import (
    GridLocationClassifier,
    HypercolumnKeypointLocator,
    HypercolumnSegmenter,
    HypercolumnTransformer,
)
from .export import load, save
from .features import (
    Backbone,
    FeatureEngine,
    MapCache,
    build_backbone,
    extract_dense,
    extract_hypercolumns,
    list_layers,
)
from .io import read_image, read_labels
from .sampling import PixelSet, grid_pixels, sample_pixels
from .stacks import split_planes, stack_planes

install_retired_module_finder()

__all__ = [
    "__version__",
    "Backbone",
    "FeatureEngine",
    "GridLocationClassifier",
    "HypercolumnKeypointLocator",
    "HypercolumnSegmenter",
    "HypercolumnTransformer",
    "MapCache",
    "PixelSet",
    "build_backbone",
    "extract_dense",
    "extract_hypercolumns",
    "grid_pixels",
    "load",
    "read_image",
    "read_labels",
    "list_layers",
    "sample_pixels",
    "save",
    "split_planes",
    "stack_planes",
]
