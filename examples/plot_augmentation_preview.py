"""
==============================
Preview what augmentation does
==============================

Before training with :class:`~skimgcls.RandomAugment`, look at what its
parameters do to an image. :func:`~skimgcls.augmentation.augmentation_preview`
draws augmented versions of one image in a grid (the first tile is the
original) and can save the grid as PNG.
"""

# %%
# One image, several settings
# ---------------------------
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

from skimgcls import RandomAugment
from skimgcls.augmentation import augmentation_preview

image = (load_digits().images[0] * 16).clip(0, 255).astype(np.uint8)

settings = {
    "geometry (default)": RandomAugment(),
    "strong rotation + zoom": RandomAugment(degrees=40, zoom=0.3),
    "random resized crop": RandomAugment(degrees=0, translate=0, zoom=0,
                                         crop_scale=0.4),
    "brightness, contrast, erasing": RandomAugment(degrees=0, translate=0, zoom=0,
                                                   brightness=0.4, contrast=0.5,
                                                   erasing=0.7),
}

out_dir = Path(tempfile.mkdtemp(prefix="skimgcls-preview-"))
fig, axes = plt.subplots(1, len(settings), figsize=(4 * len(settings), 4.3))
for ax, (title, augment) in zip(axes, settings.items()):
    path = out_dir / f"{title.split()[0]}.png"
    grid = augmentation_preview(augment, image, n_images=16, n_cols=4, path=path,
                                random_state=0)
    ax.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=255)
    ax.set_title(title)
    ax.axis("off")
plt.tight_layout()
plt.show()
print("PNG grids written to", out_dir)

# %%
# The same parameters train the classifier
# ----------------------------------------
# Pass the augmenter you like to ``CNNClassifier(augment=...)``: it then draws
# new variants for every training batch of every epoch, and never for the
# validation split or for prediction. Its magnitudes are searchable, e.g.
# ``GridSearchCV(clf, {"augment__degrees": [0, 15, 30]})``.
