"""
Segment horses with the default segmenter
=========================================

:class:`~skhyper.HypercolumnSegmenter` goes from images and masks to label maps. With no
settings it uses EfficientNet-Lite0's five stages, feeds small images at up to twice their
size, folds its logistic regression into 1x1 heads on the native maps and upsamples the coarse
score maps guided by the image (edge-aware).
"""

import matplotlib.pyplot as plt

from skhyper import HypercolumnSegmenter
from skhyper.datasets import load_horses
from skhyper.metrics import foreground_iou
from skhyper.plotting import plot_overlay

train = load_horses(split="train")  # 16 images and masks (0 = background, 255 = horse)
test = load_horses(split="test")  # 8 more

seg = HypercolumnSegmenter(random_state=0).fit(train.images, train.masks)
labels = seg.predict(test.images)  # one (H, W) label map per image
print("prediction path:", seg.prediction_path_)
print(f"test foreground IoU: {foreground_iou(test.masks, labels):.3f}")

# %%
# The predicted masks over four test images (those without people in them):

fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
for ax, i in zip(axes, [0, 1, 4, 7]):
    plot_overlay(test.images[i], labels[i], ax=ax)
fig.tight_layout()
