"""skorch callbacks of skimgcls, for ``CNNClassifier(callbacks=[...])`` and plain skorch nets.

:class:`UnfreezeBackbone` (added by ``unfreeze_at_epoch``),
:class:`UpdateBatchNorm` (added by ``update_bn``) and :class:`ProbeHead`
(added by ``head_init='probe'``) are what the estimator uses itself; :class:`EpochProgressBar` is its ``verbose`` progress bar.
"""

from ._callbacks import EpochProgressBar, ProbeHead, UnfreezeBackbone, UpdateBatchNorm

__all__ = ["EpochProgressBar", "ProbeHead", "UnfreezeBackbone", "UpdateBatchNorm"]
