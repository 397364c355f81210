"""
Pixels as samples in a scikit-learn pipeline
============================================

A sample is a pixel: :func:`~skhyper.sample_pixels` draws pixels of the images as a
:class:`~skhyper.PixelSet`, a sliceable reference to ``(image, row, col)``, with their labels.
:class:`~skhyper.HypercolumnTransformer` turns a PixelSet into hypercolumn rows, so any
scikit-learn estimator, pipeline or cross-validation applies. ``X.groups`` names each pixel's
image, so ``GroupKFold`` never splits an image across folds.
"""

import matplotlib.pyplot as plt
from sklearn.decomposition import PCA
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skhyper import HypercolumnTransformer, grid_pixels, sample_pixels
from skhyper.datasets import load_horses

train = load_horses(split="train")
X, y = sample_pixels(train.images, train.masks, n_per_image=300, class_balance=True,
                     random_state=0)
print(X)

pipe = make_pipeline(
    HypercolumnTransformer(),  # EfficientNet-Lite0, all 5 stages
    StandardScaler(),
    PCA(32, random_state=0),
    SGDClassifier(loss="log_loss", random_state=0),
)
scores = cross_val_score(pipe, X, y, groups=X.groups, cv=GroupKFold(3))
print("pixel accuracy per fold:", scores.round(3))

# %%
# Fit on every sampled pixel, then predict every pixel of a test image:

pipe.fit(X, y)
image = load_horses(split="test").images[0]
labels = pipe.predict(grid_pixels(image)).reshape(image.shape[:2])

fig, axes = plt.subplots(1, 2, figsize=(7, 3.2))
axes[0].imshow(image)
axes[1].imshow(labels, cmap="gray")
for ax, title in zip(axes, ["image", "predicted labels"]):
    ax.set_title(title)
    ax.axis("off")
fig.tight_layout()
