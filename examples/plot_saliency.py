"""
Where does the network look? Saliency maps
==========================================

:class:`~skimgcls.SaliencyDisplay` draws, over each image, a heat map of the
pixels the network's decision rests on; :func:`~skimgcls.saliency_maps` returns
the maps as an array. They use Captum's attribution methods
(``pip install "skimgcls[saliency]"``) and work with a Pipeline ending with a
:class:`~skimgcls.CNNClassifier`: the images go through the preprocessing
steps first.

We use scikit-learn's 8x8 digits so that it all runs in seconds on a CPU.
"""

# %%
# A pipeline to explain
# ---------------------
import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

from skimgcls import CNNClassifier, Normalize, SaliencyDisplay, saliency_maps

digits = load_digits()
X = digits.images.astype("uint8") * 16  # (1797, 8, 8) gray images, 0-255
X_train, X_test, y_train, y_test = train_test_split(
    X, digits.target, test_size=0.3, stratify=digits.target, random_state=0
)
pipe = make_pipeline(
    Normalize(),
    CNNClassifier(module__width=8, max_epochs=6, precision="fp32", random_state=0),
)
pipe.fit(X_train, y_train)
print(f"test accuracy: {pipe.score(X_test, y_test):.3f}")

# %%
# Integrated gradients
# --------------------
# The default method: how much each pixel moves the predicted class's score
# between a blank image and this one. Titles give the true label, the
# prediction and its probability.
display = SaliencyDisplay.from_estimator(pipe, X_test[:10], y_test[:10], n_cols=5)
print(f"maps: {display.maps.shape}")  # (10, 8, 8), aligned with the images

# %%
# Grad-CAM
# --------
# Grad-CAM weighs the last feature maps of the network by their gradients. It
# is coarser (those maps are 2x2 here, on 8x8 digits) but cheap; ``layer=``
# picks an earlier, finer one by its name in ``module_``.
SaliencyDisplay.from_estimator(pipe, X_test[:10], y_test[:10], method="gradcam",
                               n_cols=5)

# %%
# Why not another class?
# ----------------------
# ``target`` explains a class of your choice, given as a label: here, what in
# each image speaks for a 3.
SaliencyDisplay.from_estimator(pipe, X_test[:5], y_test[:5], target=3, n_cols=5)

# %%
# Five methods side by side
# -------------------------
# :func:`saliency_maps` returns the raw maps; plot them yourself, or pass your
# own axes to the display.
methods = ["integrated_gradients", "saliency", "gradient_shap", "occlusion",
           "gradcam"]
fig, axes = plt.subplots(1, len(methods), figsize=(10, 2.4), layout="constrained")
for axis, method in zip(axes, methods):
    maps = saliency_maps(pipe, X_test[:1], method=method, random_state=0)
    axis.imshow(X_test[0], cmap="gray")
    axis.imshow(maps[0] / maps[0].max(), cmap="jet", alpha=0.5)
    axis.set_title(method, fontsize=8)
    axis.set_axis_off()
