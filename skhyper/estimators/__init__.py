"""scikit-learn estimators: thin wrappers that validate and call skhyper's functions."""

from ._transformer import HypercolumnTransformer

__all__ = ["HypercolumnTransformer"]
