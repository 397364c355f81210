"""
A 16-bit, two-channel z-stack
=============================

Microscopy images have one or many channels, 16-bit intensities and extra axes.
:func:`~skhyper.split_planes` names the axes of a stack and returns its planes as images;
``channel_strategy="per_channel"`` runs each channel through the backbone as a grayscale image;
``intensity_range`` rescales intensities per image. :func:`~skhyper.stack_planes` puts the
per-plane results back.
"""

import matplotlib.pyplot as plt
import numpy as np

from skhyper import HypercolumnSegmenter, HypercolumnTransformer, split_planes, stack_planes

# a synthetic 2-channel uint16 stack (Z, C, Y, X): cells bright in channel 1
rng = np.random.default_rng(0)
stack = rng.normal(300, 40, (4, 2, 96, 96)).clip(0).astype(np.uint16)
truth = np.zeros((4, 96, 96), dtype=np.uint8)
yy, xx = np.mgrid[:96, :96]
for z in range(4):
    for cy, cx in rng.integers(15, 81, size=(3, 2)):
        truth[z][(yy - cy) ** 2 + (xx - cx) ** 2 < 10**2] = 1
stack[:, 1][truth == 1] += 1500

planes = split_planes(stack, "ZCYX")  # 4 planes of (96, 96, 2)
masks = split_planes(truth, "ZYX")
hc = HypercolumnTransformer(channel_strategy="per_channel", layers=[0, 1, 2],
                            intensity_range=("percentile", 1, 99.8))
seg = HypercolumnSegmenter(hc, n_pixels_per_image=300, random_state=0)
seg.fit(planes[:3], masks[:3])
pred = stack_planes(seg.predict(planes), "ZYX")  # back to (Z, Y, X)
print("pred shape:", pred.shape, " agreement on the held-out plane:",
      round(float((pred[3] == truth[3]).mean()), 3))

# %%
# Channel 1 of the held-out plane, its truth and the prediction:

fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
for ax, picture, title in zip(axes, [stack[3, 1], truth[3], pred[3]],
                              ["channel 1", "truth", "prediction"]):
    ax.imshow(picture, cmap="gray")
    ax.set_title(title)
    ax.axis("off")
fig.tight_layout()
