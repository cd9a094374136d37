"""skimgcls: image classification the scikit-learn way, on PyTorch and skorch."""

from .classifier import CNNClassifier
from .exceptions import NonFiniteLossError, UnsafeModelFileError
from .networks import list_networks, register_network
from .persistence import export_onnx, load, save

__version__ = "0.1.0.dev0"

__all__ = [
    "CNNClassifier",
    "NonFiniteLossError",
    "UnsafeModelFileError",
    "export_onnx",
    "list_networks",
    "load",
    "register_network",
    "save",
    "__version__",
]
