"""
Location-specific classifiers on a grid
=======================================

What a pixel's features mean depends on where it lies in the object. A
:class:`~skhyper.GridLocationClassifier` cuts the frame (here the whole image) into K x K cells
with one classifier each and blends the nearest cells' scores per pixel. Inside
:class:`~skhyper.HypercolumnSegmenter` the grid of linear classifiers folds, like a plain one.
"""

import matplotlib.pyplot as plt

from skhyper import GridLocationClassifier, HypercolumnSegmenter, HypercolumnTransformer
from skhyper.datasets import load_horses
from skhyper.estimators import default_classifier
from skhyper.metrics import foreground_iou
from skhyper.plotting import plot_grid_cells

train, test = load_horses(split="train"), load_horses(split="test")

scores = {}
for name, grid_size in [("global", 1), ("3 x 3 grid", 3)]:
    seg = HypercolumnSegmenter(
        HypercolumnTransformer(append_location=True, layers=[1, 2, 3, 4]),
        GridLocationClassifier(default_classifier(), grid_size=grid_size),
        n_pixels_per_image=500, upsampling="bilinear", random_state=0,
    ).fit(train.images, train.masks)
    scores[name] = foreground_iou(test.masks, seg.predict(test.images))
    print(f"{name}: test foreground IoU {scores[name]:.3f}, path {seg.prediction_path_}")

# %%
# How many training pixels each cell of the 3 x 3 grid saw, over one training image:

ax = plot_grid_cells(seg.classifier_, image=train.images[0])
ax.set_title("training pixels per cell")
plt.show()
