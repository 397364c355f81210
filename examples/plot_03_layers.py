"""
Which layers? Early and late hypercolumns
=========================================

:func:`~skhyper.list_layers` lists a backbone's layers with their channels and stride. Early
layers (small stride) carry edges and colour, late layers (large stride) carry what the object
is. :func:`~skhyper.plotting.hypercolumns_to_rgb` shows dense hypercolumns as colours (their
first three principal components).
"""

import matplotlib.pyplot as plt

from skhyper import HypercolumnTransformer, list_layers
from skhyper.datasets import load_horses
from skhyper.plotting import hypercolumns_to_rgb

for layer in list_layers("efficientnet_lite0"):
    if layer["stage"]:
        print(f"{layer['name']:10s} channels {layer['num_chs']:4d}  stride {layer['reduction']:g}")

# %%
# Dense hypercolumns of an early and a late stage, for three images:

test = load_horses(split="test")
images = [test.images[i] for i in (0, 4, 7)]  # three test horses, no people in them
fig, axes = plt.subplots(3, 3, figsize=(9, 7))
for row, (title, layers) in enumerate([("image", None), ("stage 1 (stride 4)", [1]),
                                       ("stage 4 (stride 32)", [4])]):
    if layers is None:
        shown = images
    else:
        hc = HypercolumnTransformer(layers=layers).fit()
        shown = hypercolumns_to_rgb(hc.transform_dense(images))
    for col, picture in enumerate(shown):
        axes[row, col].imshow(picture)
        axes[row, col].axis("off")
    axes[row, 0].set_title(title, loc="left")
fig.tight_layout()
