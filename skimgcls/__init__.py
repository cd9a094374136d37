"""skimgcls: image classification the scikit-learn way, on PyTorch and skorch."""

from .augmentation import RandomAugment
from .classifier import CNNClassifier
from .datasets import load_image_csv, load_image_folder
from .networks import list_networks, register_network
from .preprocessing import (
    CenterCrop,
    ImageReader,
    Normalize,
    Resize,
    ToFloat,
    ToGrayscale,
    ToRGB,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "CNNClassifier",
    "CenterCrop",
    "ImageReader",
    "RandomAugment",
    "Normalize",
    "Resize",
    "ToFloat",
    "ToGrayscale",
    "ToRGB",
    "list_networks",
    "load_image_csv",
    "load_image_folder",
    "register_network",
    "__version__",
]
