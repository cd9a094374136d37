"""
=====================================
Any timm model as a backbone, by name
=====================================

Every
model of `timm <https://huggingface.co/docs/timm>`_ is a backbone name with the
prefix ``timm/``, wherever a torchvision name is accepted:
``CNNClassifier(module='timm/convnext_atto', pretrained=True)``,
``BackboneFeatures('timm/efficientnet_b0')``, or a grid search over
``module``. The input size and normalization come from the model's pretrained
configuration; gray images are repeated to RGB.

.. note::
   The documentation is built offline, so this example uses timm's tiny test
   networks with random weights and compares them on scikit-learn's 8x8
   digits. Online, ``pretrained=True`` reads the Hugging Face Hub weights of
   the name (``'timm/resnet18.a1_in1k'`` picks one set of them).
"""

# %%
# Find names
# ----------
from skimgcls.backbones import list_backbones

print(list_backbones("timm", pattern="timm/test_*"))
print(len(list_backbones("timm")), "timm architectures")

# %%
# Train two timm backbones and compare them
# -----------------------------------------
# A grid search over ``module`` treats each name as one candidate, exactly as
# it would torchvision names. ``module__input_size`` resizes the 8x8 digits
# to 32x32 inside the network.
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split

from skimgcls import CNNClassifier

digits = load_digits()
X = (digits.images / 16).astype(np.float32)
X_train, X_test, y_train, y_test = train_test_split(
    X, digits.target, train_size=400, test_size=300, stratify=digits.target,
    random_state=0)

search = GridSearchCV(
    CNNClassifier(module__input_size=32, max_epochs=6, precision="fp32",
                  random_state=0),
    {"module": ["timm/test_resnet", "timm/test_convnext"]},
    cv=2,
).fit(X_train, y_train)
for name, score in zip(search.cv_results_["param_module"],
                       search.cv_results_["mean_test_score"]):
    print(f"{name}: cross-validated accuracy {score:.3f}")
print(f"best: {search.best_params_['module']}, "
      f"test accuracy {search.score(X_test, y_test):.3f}")
