"""ONNX export of a fitted CNNClassifier or a Pipeline ending with one.

Public as :func:`skimgcls.persistence.export_onnx` and
:func:`skimgcls.export_onnx`.
"""

import copy
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from ._version import __version__
from .classifier import CNNClassifier, decision_rule, input_spec

__all__ = ["export_onnx"]




# -- ONNX ----------------------------------------------------------------------
class _ProbaGraph(torch.nn.Module):
    """Pipeline steps' torch modules, the network and a softmax (or sigmoid)."""

    def __init__(self, steps, network, channels_last_input, multilabel=False):
        super().__init__()
        self.steps = torch.nn.ModuleList(steps)
        self.network = network
        self.channels_last_input = channels_last_input
        self.multilabel = multilabel

    def forward(self, images):
        x = images.permute(0, 3, 1, 2) if self.channels_last_input else images
        for step in self.steps:
            x = step(x)
        logits = self.network(x).float()
        if self.multilabel:  # independent labels, as predict_proba
            return torch.sigmoid(logits)
        return torch.softmax(logits, dim=1)


def _split_pipeline(estimator):
    steps = getattr(estimator, "steps", None)
    if steps is None:
        return [], estimator
    return [(name, step) for name, step in steps[:-1]
            if step is not None and step != "passthrough"], steps[-1][1]


def export_onnx(estimator, path, *, input_shape=None, layout="NHWC"):
    """Export a fitted CNNClassifier, or a Pipeline ending with one, to ONNX.

    The graph takes a float32 batch of images and returns class
    probabilities, the softmax of the network's outputs, as
    ``predict_proba`` does (for a multi-label classifier, the sigmoid of
    each output: per-label probabilities). The class labels are stored in
    the model's metadata (``classes``, a JSON list), with ``multilabel``
    (``"true"``/``"false"``) and, for multi-label models, ``threshold`` (a
    JSON number or list): a label is predicted when its probability is
    above it.

    Parameters
    ----------
    estimator : CNNClassifier or Pipeline
        Fitted. In a pipeline, every step before the classifier must have an
        ``as_torch_module()`` method returning a ``torch.nn.Module`` that maps
        a float ``(n, C, H, W)`` batch to a float ``(n, C', H', W')`` batch
        exactly as its ``transform`` does (skimgcls's image transformers do).
    path : str or path-like
        The ``.onnx`` file to write.
    input_shape : tuple of int or None, default=None
        ``(H, W, C)`` of the images the graph takes. None uses the
        classifier's ``image_shape_``, or the first step's ``image_shape_in_``
        for a pipeline.
    layout : {'NHWC', 'NCHW'}, default='NHWC'
        Layout of the graph's input, named ``images``; the batch axis is
        dynamic. The output is named ``probabilities``.

    Returns
    -------
    path : pathlib.Path
        The written file.

    Notes
    -----
    The input holds the values ``predict_proba`` would see as float32: uint8
    images must be divided by 255, as :class:`~skimgcls.CNNClassifier` does
    internally. The graph computes in float32; for a classifier trained with
    ``precision='fp32'`` it matches ``predict_proba`` within 1e-4, while bf16
    autocast makes ``predict_proba`` itself differ by bf16 rounding.
    """
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:  # pragma: no cover - tested with it installed
        raise ImportError(
            'ONNX export needs onnx and onnxscript: pip install "skimgcls[onnx]"'
        ) from exc
    if layout not in ("NHWC", "NCHW"):
        raise ValueError(f"layout must be 'NHWC' or 'NCHW'; got {layout!r}.")
    steps, clf = _split_pipeline(estimator)
    if not isinstance(clf, CNNClassifier):
        raise TypeError(f"export_onnx needs a CNNClassifier or a Pipeline ending "
                        f"with one; got {type(clf).__name__}.")
    check_is_fitted(clf)
    modules = []
    for name, step in steps:
        if not hasattr(step, "as_torch_module"):
            raise TypeError(
                f"Pipeline step {name!r} ({type(step).__name__}) has no "
                "as_torch_module() method, so it cannot be part of an ONNX graph. "
                "Export the classifier alone and apply that step before it."
            )
        modules.append(step.as_torch_module())
    if input_shape is None:
        input_shape = (getattr(steps[0][1], "image_shape_in_", None) if steps
                       else input_spec(clf).image_shape)
    if input_shape is None:
        raise ValueError("Pass input_shape=(H, W, C): the first pipeline step does "
                         "not record the shape of the images it was fitted on.")
    h, w, c = input_shape
    network = copy.deepcopy(clf.module_).float().cpu().eval()
    rule = decision_rule(clf)
    multilabel = rule.multilabel
    graph = _ProbaGraph(modules, network, layout == "NHWC", multilabel).eval()
    example = torch.rand((2, h, w, c) if layout == "NHWC" else (2, c, h, w))
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        program = torch.onnx.export(
            graph, (example,), None, dynamo=True, verbose=False,
            input_names=["images"], output_names=["probabilities"],
            dynamic_shapes=({0: batch},),
        )
    classes = [c.item() if isinstance(c, np.generic) else c for c in clf.classes_.tolist()]
    program.model.metadata_props.update({
        "classes": json.dumps(classes, default=str),
        "input_layout": layout,
        "multilabel": json.dumps(multilabel),
        "producer": f"skimgcls {__version__}",
    })
    if multilabel:
        program.model.metadata_props["threshold"] = json.dumps(rule.threshold.tolist())
    path = Path(path)
    program.save(str(path))
    return path
