"""skimgcls: image classification the scikit-learn way, on PyTorch and skorch."""

from .classifier import CNNClassifier
from .inspection import (
    MisclassifiedImagesDisplay,
    TrainingHistoryDisplay,
    make_top_k_scorer,
)
from .networks import list_networks, register_network

__version__ = "0.1.0.dev0"

__all__ = [
    "CNNClassifier",
    "MisclassifiedImagesDisplay",
    "TrainingHistoryDisplay",
    "list_networks",
    "make_top_k_scorer",
    "register_network",
    "__version__",
]
