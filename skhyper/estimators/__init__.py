"""scikit-learn estimators: thin wrappers that validate and call skhyper's functions."""

from ._grid import GridLocationClassifier
from ._segmenter import HypercolumnSegmenter, default_classifier
from ._transformer import HypercolumnTransformer

__all__ = [
    "GridLocationClassifier",
    "HypercolumnSegmenter",
    "HypercolumnTransformer",
    "default_classifier",
]
