"""scikit-learn estimators: thin wrappers that validate and call skhyper's functions."""

from ._grid import GridLocationClassifier
from ._segmenter import HypercolumnSegmenter
from ._transformer import HypercolumnTransformer

__all__ = ["GridLocationClassifier", "HypercolumnSegmenter", "HypercolumnTransformer"]
