"""skimgcls: image classification the scikit-learn way, on PyTorch and skorch."""

from .augmentation import RandomAugment
from .classifier import CNNClassifier
from .datasets import load_image_csv, load_image_dataframe, load_image_folder
from .exceptions import NonFiniteLossError, UnsafeModelFileError
from .features import BackboneFeatures
from .inspection import MisclassifiedImagesDisplay, TrainingHistoryDisplay
from .metrics import make_top_k_scorer
from .networks import list_networks, register_network
from .persistence import export_onnx, load, save
from .preprocessing import (
    CenterCrop,
    ImageReader,
    Normalize,
    Resize,
    ToFloat,
    ToGrayscale,
    ToRGB,
)
from .saliency import SaliencyDisplay, saliency_maps

from ._version import __version__

__all__ = [
    "BackboneFeatures",
    "CenterCrop",
    "CNNClassifier",
    "export_onnx",
    "ImageReader",
    "list_networks",
    "load",
    "load_image_csv",
    "load_image_dataframe",
    "load_image_folder",
    "make_top_k_scorer",
    "MisclassifiedImagesDisplay",
    "NonFiniteLossError",
    "Normalize",
    "RandomAugment",
    "register_network",
    "Resize",
    "SaliencyDisplay", "saliency_maps",
    "save",
    "ToFloat",
    "ToGrayscale",
    "ToRGB",
    "TrainingHistoryDisplay",
    "UnsafeModelFileError",
    "__version__",
]
