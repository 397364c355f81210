"""scikit-learn estimators: thin wrappers that validate and call skhyper's functions."""

from ._grid import GridLocationClassifier
from ._keypoints import HypercolumnKeypointLocator
from ._segmenter import HypercolumnSegmenter, default_classifier, default_hypercolumns
from ._transformer import HypercolumnTransformer

__all__ = [
    "GridLocationClassifier",
    "HypercolumnKeypointLocator",
    "HypercolumnSegmenter",
    "HypercolumnTransformer",
    "default_classifier",
    "default_hypercolumns",
]
