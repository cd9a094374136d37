"""skorch callbacks of skimgcls, for ``CNNClassifier(callbacks=[...])`` and plain skorch nets.

:class:`UnfreezeBackbone` (added by ``unfreeze_at_epoch``) and
:class:`UpdateBatchNorm` (added by ``update_bn``) are what the estimator uses
itself; :class:`EpochProgressBar` is its ``verbose`` progress bar.
"""

from ._callbacks import EpochProgressBar, UnfreezeBackbone, UpdateBatchNorm

__all__ = ["EpochProgressBar", "UnfreezeBackbone", "UpdateBatchNorm"]
