"""skorch callbacks of skimgcls, for ``CNNClassifier(callbacks=[...])`` and plain skorch nets.

:class:`UnfreezeBackbone` (added by ``unfreeze_at_epoch``),
:class:`UpdateBatchNorm` (added by ``update_bn``), :class:`ProbeHead`
(added by ``head_init='probe'``) and :class:`InterpolateWeights` (added by
``wise_alpha``) are what the estimator uses itself, and so is
:class:`EarlyStoppingAfterWarmup` (added by ``early_stopping``);
:class:`EpochProgressBar` is its ``verbose`` progress bar.
"""

from ._callbacks import (
    EarlyStoppingAfterWarmup,
    EpochProgressBar,
    InterpolateWeights,
    ProbeHead,
    UnfreezeBackbone,
    UpdateBatchNorm,
)

__all__ = ["EarlyStoppingAfterWarmup", "EpochProgressBar", "InterpolateWeights",
           "ProbeHead", "UnfreezeBackbone", "UpdateBatchNorm"]
