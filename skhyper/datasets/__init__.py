"""Bundled demo sample and loaders: horse images with masks, clothing parts, face keypoints."""

from ._clothing import load_clothing_parts
from ._faces import load_face_keypoints, simulate_detector_boxes
from ._images import load_horses, load_image_folder

__all__ = [
    "load_clothing_parts",
    "load_face_keypoints",
    "load_horses",
    "load_image_folder",
    "simulate_detector_boxes",
]
