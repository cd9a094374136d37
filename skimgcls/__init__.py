"""skimgcls: image classification the scikit-learn way, on PyTorch and skorch."""

from .classifier import CNNClassifier
from .exceptions import NonFiniteLossError, UnsafeModelFileError
from .inspection import (
    MisclassifiedImagesDisplay,
    TrainingHistoryDisplay,
    make_top_k_scorer,
)
from .networks import list_networks, register_network
from .persistence import export_onnx, load, save

__version__ = "0.1.0.dev0"

__all__ = [
    "CNNClassifier",
    "export_onnx",
    "list_networks",
    "load",
    "make_top_k_scorer",
    "MisclassifiedImagesDisplay",
    "NonFiniteLossError",
    "register_network",
    "save",
    "TrainingHistoryDisplay",
    "UnsafeModelFileError",
    "__version__",
]
