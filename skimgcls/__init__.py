"""skimgcls: image classification the scikit-learn way, on PyTorch and skorch."""

from .classifier import CNNClassifier
from .features import BackboneFeatures
from .networks import list_networks, register_network

__version__ = "0.1.0.dev0"

__all__ = [
    "BackboneFeatures",
    "CNNClassifier",
    "list_networks",
    "register_network",
    "__version__",
]
