"""CNNClassifier: a scikit-learn classifier that trains a CNN through skorch."""

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.model_selection import train_test_split
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.validation import _check_sample_weight, check_is_fitted
from skorch.helper import predefined_split
from torch import nn

from ._accelerate import accelerator_precision, make_accelerator, shared_random_state
from ._build import (
    AUTO_VALIDATION_FRACTION,
    AUTO_VALIDATION_MIN_SAMPLES,
    OPTIMIZERS,
    ROUTED_PREFIXES,
    auto_batch_size,
    auto_max_epochs,
    auto_patience,
    build_callbacks,
    build_module,
    build_net,
    default_workers,
    is_main_process,
    net_params,
    resolve_auto,
)
from ._checkpoint import Checkpointer, fit_fingerprint
from ._data import ImageTensorDataset, collate_batch
from ._device import (
    inference_batch_size,
    predict_precision,
    resolve_device,
    resolve_precision,
    torch_threads,
    training_precision,
)
from ._docstring import Substitution
from ._selection import (
    can_hold_out,
    candidate_recipes,
    install_linear_head,
    install_linear_head_streamed,
    select_recipe,
    selection_rows,
    unselected,
)
from ._tta import TTA_PRESETS, resolve_tta
from .datasets import ImagePathDataset, decode_for_fit
from .preprocessing import ImageReader
from .utils._progress import track
from .utils._random import seeded
from .utils.validation import check_image_shape, check_images, check_labels, read_images

__all__ = ["CNNClassifier"]
# The package-internal door of a fitted classifier (end of this file):
# final_estimator, is_multilabel, decision_rule, DecisionRule, input_spec,
# InputSpec, rebuild_net. Not public API.

#: Largest batch of predict/predict_proba on a CPU: large enough to amortize
#: the per-batch overhead on small images, small enough that activations stay
#: in cache; networks with larger inputs take fewer images per batch
#: (``inference_batch_size``: 8 at 224 px).
PREDICT_BATCH_SIZE = 128


@Substitution("image_shape", "precision", "device")
class CNNClassifier(ClassifierMixin, BaseEstimator):
    """Image classifier that trains a PyTorch CNN through skorch.

    ``CNNClassifier`` behaves like any scikit-learn classifier (``fit``,
    ``predict``, ``predict_proba``, ``score``, ``clone``, pipelines, searches,
    ensembles, pickling) and builds its network from the data in ``fit``: the
    number of channels, the image size and the number of classes.

    Given a 2-D 0/1 indicator ``y`` of shape ``(n_samples, n_labels)`` (as
    from :class:`sklearn.preprocessing.MultiLabelBinarizer`), it is a
    multi-label classifier, like :class:`sklearn.neural_network.MLPClassifier`:
    one sigmoid per label trained with binary cross-entropy, ``predict``
    returns the indicator matrix and ``predict_proba`` an
    ``(n_samples, n_labels)`` array of per-label probabilities (see the
    multi-label guide).

    Parameters
    ----------
    module : 'auto', str, torch.nn.Module subclass or instance, default='auto'
        The network. ``'auto'``: ``fit`` chooses the recipe on the training
        data (see *Recipe selection* in the Notes) when ``pretrained`` and
        ``max_epochs`` are ``'auto'`` too; otherwise ``'auto'`` is
        ``'compact_cnn'``, or ``'efficientnet_lite0'`` when ``pretrained``
        asks for weights. ``recipe_`` and ``best_params_`` say what was used.
        A registered name (see
        :func:`skimgcls.networks.list_networks`): ``'compact_cnn'``, a small
        BatchNorm CNN with global pooling that works for any image size, or
        ``'simple_cnn'``, the classic Keras/PyTorch MNIST network. Or the name
        of any torchvision classification model (``'resnet18'``, ``'vgg11'``,
        ``'efficientnet_b0'``, ``'mobilenet_v3_small'``, ``'convnext_tiny'``,
        ``'vit_b_16'``..., see :func:`skimgcls.backbones.list_backbones`), or
        of a timm model as ``'timm/<name>'`` (``'timm/convnext_atto'``; needs
        ``pip install 'skimgcls[timm]'``):
        its head is replaced for the classes of ``y``, and images are resized,
        repeated to RGB and normalized inside the network as its weights
        expect (``module__input_size``, ``module__head_dropout``,
        ``module__head_hidden``: see :class:`skimgcls.backbones.BackboneNet`
        and the transfer learning guide). A class is
        instantiated with the ``module__<name>`` parameters, plus
        ``in_channels``, ``n_classes`` and ``image_size`` if its ``__init__``
        accepts them. An instance is copied in ``fit`` and used as is; it must
        return one logit per class.
    optimizer : str or torch.optim.Optimizer subclass, default='adamw'
        ``'adam'``, ``'adamw'``, ``'sgd'``, ``'rmsprop'``, ``'adadelta'``,
        ``'adagrad'`` or an optimizer class. Its other arguments are set with
        ``optimizer__<name>`` parameters, e.g. ``optimizer__weight_decay=1e-4``.
    lr : float, default=5e-3
        Learning rate; the peak learning rate of the one-cycle schedule.
    max_epochs : int or 'auto', default='auto'
        Number of passes over the training data. ``'auto'`` gives the network
        at least 500 optimizer steps: ``ceil(500 / steps per epoch)`` epochs,
        clipped to [8, 200]; 20 images get 167 short epochs, and from about
        16,000 images on (at batch 32) it is 8. The value used is
        ``max_epochs_``; ``bench/accuracy.py`` measures the defaults.
    batch_size : int or 'auto', default='auto'
        Images per training step. ``'auto'``: ``n_train / 8`` rounded down to a
        power of two, clipped to [8, 32] (8 below 128 training images, 16 below
        256, then 32): small sets get small batches, hence more steps and
        BatchNorm statistics over more batches. The value used is
        ``batch_size_``.
    lr_schedule : {'onecycle', 'cosine', 'plateau'} or None, default='onecycle'
        ``'onecycle'``: warm up to ``lr`` then anneal, stepped every batch;
        ``'cosine'``: cosine annealing over ``max_epochs``; ``'plateau'``: divide
        the learning rate by 10 when the monitored loss stops improving for
        ``patience`` epochs; None: constant ``lr``.
    validation_fraction : float, 'auto' or None, default='auto'
        Fraction of the training data held out, stratified on ``y`` (a plain
        random split for a multi-label ``y``, which cannot be stratified), to compute
        ``valid_loss`` and ``valid_acc`` each epoch (and to stop early). None
        trains on all the data. ``'auto'`` holds out 10 % from 10,000 images on
        (as ``HistGradientBoostingClassifier``'s ``early_stopping='auto'``) and
        trains on everything below, or when the classes are too small to split;
        ``validation_fraction_`` says what was used. An explicit fraction that
        cannot be split stratified raises a ``ValueError``.
    early_stopping : bool or 'auto', default='auto'
        Stop when the validation loss (the training loss if there is no
        validation split) has not improved for ``patience`` epochs, and restore
        the weights of the best epoch. With ``lr_schedule='onecycle'`` it
        starts watching after the schedule's warm-up (the first 30 % of the
        epochs, while the learning rate rises), as Keras's
        ``start_from_epoch``: on a few images an epoch is a few steps, and
        ``patience`` epochs would otherwise end training before it learned
        anything. ``'auto'``: on when ``validation_fraction='auto'`` held out
        a split (10,000 images or more). The value used is
        ``early_stopping_``.
    patience : int or 'auto', default='auto'
        Epochs without improvement before early stopping or a plateau step.
        ``'auto'``: 5, or a tenth of the epochs when that is more (17 of the
        167 short epochs that ``max_epochs='auto'`` gives 20 images; a large
        set's 8 epochs keep 5): on a few images an epoch is a few steps, and 5
        of them without a lower loss on a held-out part of a few images come
        by chance (``bench/_explore_defaults.py --experiments es_patience``:
        +2.7 +- 1.6 points over 5 on 3-fold CV of small training sets). The
        value used is ``patience_``.
    class_weight : dict, 'balanced' or None, default=None
        Weights of the classes in the loss, as in scikit-learn: a dict
        ``{label: weight}``, or ``'balanced'`` for weights inversely
        proportional to class frequencies. Multiplies ``sample_weight``.
        For a multi-label ``y`` it weighs the positive examples of each label
        (``BCEWithLogitsLoss``'s ``pos_weight``): ``{label_index: weight}``
        (other labels 1), or ``'balanced'``: ``n_negative / n_positive`` per
        label (1 for a label without positives).
    update_bn : bool, default=True
        At the end of ``fit``, recompute the BatchNorm statistics that
        ``predict`` uses over the training images with the final weights (one
        forward pass, no augmentation), as :func:`torch.optim.swa_utils.update_bn`
        does. Their running averages lag behind the weights and, on small
        training sets, stay near their initial values. Trainable BatchNorm
        layers only; skipped by ``partial_fit``. In data-parallel training
        each process passes its shard and the statistics are averaged.
    augment : callable, None or 'auto', default='auto'
        Training-time augmentation, e.g. :class:`skimgcls.RandomAugment`. It
        gets every training batch of every epoch as a float tensor of shape
        ``(n, C, H, W)`` and returns one of the same shape; it never sees the
        validation split or images passed to ``predict``. ``'auto'``:
        ``RandomAugment()`` (rotations up to 10 degrees, shifts and zooms up
        to 10 %, no flips) when the network is ``'compact_cnn'`` trained from
        scratch (chosen by cross-validation on digits and MNIST training
        parts: +14 points on 5 digits per class, within noise on 4,000 MNIST
        digits); None for any other network (the fine-tuning recipe of
        ``module='auto'`` sets its own). None turns it off.
    mixup_alpha : float, default=0.0
        MixUp on training batches: each image is blended with another of the
        batch, ``lam * x_i + (1 - lam) * x_j``, and so is the loss of their
        labels, with ``lam ~ Beta(mixup_alpha, mixup_alpha)`` (0.2 is usual).
        0 turns it off. Never applied to validation or prediction.
    cutmix_alpha : float, default=0.0
        CutMix on training batches: a box of another image of the batch is
        pasted in, labels weighted by area, ``1 - lam`` of the image with
        ``lam ~ Beta(cutmix_alpha, cutmix_alpha)`` (1.0 is usual). 0 turns it
        off. With both alphas set, each batch uses one of the two at random.
    reader : ImageReader or None, default=None
        How to decode ``X`` given as a 1-D array of file paths (color mode,
        size): a :class:`skimgcls.ImageReader`; None means
        ``ImageReader()`` (RGB, the files' own size). Paths are decoded batch
        by batch in DataLoader worker processes during fit and predict, so
        memory does not grow with the number of files. The number of workers
        is ``iterator_train__num_workers`` / ``iterator_valid__num_workers``
        (default: up to 4, one less than the CPU cores).
    {image_shape}
    {precision}
    {device}
    tta : {'flip', 'shift', 'flip+shift'}, list or None, default=None
        Test-time augmentation: ``predict_proba`` averages the softmax
        probabilities of several views of each image, and ``predict`` and
        ``score`` (hence ``cross_val_score``, soft voting, stacking) use that
        average. ``'flip'``: the image and its horizontal mirror;
        ``'shift'``: the image and four copies shifted up, down, left and
        right by 1/16 of the shorter side (at least one pixel, edges
        repeated); ``'flip+shift'``: all six. A list picks views by name
        (``'identity'``, ``'hflip'``, ``'vflip'``, ``'rot180'``,
        ``'shift_up'``, ``'shift_down'``, ``'shift_left'``,
        ``'shift_right'``) or gives callables that take and return a float
        tensor of shape ``(n, C, H, W)``. Only prediction is affected, never
        training nor the validation scores in ``history_``; it can be set
        after ``fit`` with ``set_params(tta=...)``. Costs one forward pass
        per view. A multi-label classifier averages the sigmoid
        probabilities of the views instead.
    threshold : float or array-like of shape (n_labels,), default=0.5
        Multi-label ``y`` only (no effect on single-label classification):
        ``predict`` sets label ``j`` of an image when its probability
        ``predict_proba(X)[:, j]`` is above ``threshold`` (or
        ``threshold[j]``), and ``score`` (subset accuracy) and ``valid_acc``
        use that. Lower it to favour recall, raise it for precision, or pick
        one per label on held-out data; it can be changed after ``fit`` with
        ``set_params(threshold=...)``.
    accelerator : accelerate.Accelerator, dict or None, default=None
        Train through Hugging Face Accelerate (skorch's ``AccelerateMixin``):
        on several GPUs when the script is started with ``accelerate launch``,
        and in the accelerator's mixed precision. A dict holds the keyword
        arguments of ``Accelerator(...)``, created in ``fit`` (clonable,
        e.g. ``{'mixed_precision': 'bf16'}``). Leave ``device`` and
        ``precision`` at ``'auto'``: the accelerator decides them. Needs
        ``pip install "skimgcls[accelerate]"``.
    n_threads : int or None, default=None
        CPU threads torch uses during ``fit``, ``predict`` and
        ``predict_proba`` (set with ``torch.set_num_threads`` and restored
        afterwards). None keeps torch's own setting, ``torch.get_num_threads()``:
        the ``OMP_NUM_THREADS`` environment variable, else one per core. Pass
        1 when several fits run in parallel (e.g. ``GridSearchCV(n_jobs=-1)``),
        so that they do not fight over the cores.
    compile : bool, default=False
        Compile the network with ``torch.compile`` (skorch's ``compile``
        option; its arguments are routed with ``compile__<name>``). Compiling
        takes tens of seconds to minutes before the first batch; worth it for
        long fits of large networks, rarely for small ones. Needs a C++
        compiler on the CPU.
    warm_start : bool, default=False
        When True, ``fit`` continues from the fitted network instead of
        building a new one (same classes and image shape required).
    callbacks : list or None, default=None
        skorch callbacks, or ``(name, callback)`` tuples, added to the
        defaults. Their parameters are routed with
        ``callbacks__<name>__<param>``.
    checkpoint : str, path-like or None, default=None
        A directory where ``fit`` saves, atomically at the end of every epoch,
        all it needs to continue: weights, optimizer, learning-rate schedule,
        early stopping, history and random generator states. When the
        directory already holds a checkpoint of the same fit (same parameters
        and data), ``fit`` resumes from it, so a crashed or killed fit loses at
        most the epoch in progress and, with an int ``random_state`` on the
        CPU, ends with the same model as an uninterrupted fit. A checkpoint of
        a different fit is refused with a ``ValueError``. Used by ``fit`` only
        (not by ``partial_fit`` or a ``warm_start`` continuation).
    pretrained : 'auto', bool, str, path-like or dict, default='auto'
        Initial weights of a backbone ``module``. ``'auto'``: chosen with the
        recipe when ``module='auto'`` selects; False (random initialization)
        for an explicit ``module``. False: random
        initialization. True: torchvision's default weights (e.g. ImageNet),
        downloaded once into torch's cache (``$TORCH_HOME/hub/checkpoints``)
        and read from there afterwards; offline without the cached file, a
        :class:`skimgcls.backbones.PretrainedWeightsError` says where to put
        it. A path to a ``.pth``/``.pt`` or ``.safetensors`` state dict, or a
        state dict: loaded into the backbone (the original classifier layer is
        dropped; a matching ``head.*`` is kept). For ``'timm/...'`` modules,
        True reads timm's pretrained weights from the Hugging Face cache.
    freeze : {'none', 'backbone', 'bn'} or int, default='none'
        What of a backbone does not train: ``'backbone'`` everything but the
        new head (a linear probe trained end to end); an int, that many
        leading blocks (stem first); ``'bn'``, its BatchNorm layers (weights
        and statistics; everything else trains), which keeps the small
        batches of fine-tuning on a few images from overwriting the pretrained
        statistics; ``'none'``: nothing. Frozen blocks keep their weights and
        BatchNorm statistics unchanged.
    unfreeze_at_epoch : int or None, default=None
        Epoch (1-based) from which the frozen blocks train too: with
        ``freeze='backbone'``, ``unfreeze_at_epoch=3`` trains the head alone
        for two epochs, then the whole network. No effect when nothing is
        frozen.
    head_init : {'random', 'probe'}, default='random'
        How a backbone's new head starts. ``'probe'``: as the logistic
        regression of the pretrained body's features of the training images
        (one forward pass before the first epoch; ``C`` by 3-fold
        cross-validation), so fine-tuning starts from a head that already
        separates the classes and distorts the pretrained features less
        ("LP-FT", Kumar et al., ICLR 2022). Backbone modules only; not with a
        multi-label ``y`` or ``partial_fit``; a ``warm_start`` refit keeps the
        head it has. ``'random'``: PyTorch's initialization.
    wise_alpha : float or None, default=None
        End a fine-tuning between the weights it started from (the pretrained
        body and its head, e.g. the ``head_init='probe'`` one) and the
        trained ones: ``(1 - wise_alpha) * start + wise_alpha * trained``, a
        weight-space ensemble that keeps the pretrained model's robustness to
        images unlike the training ones ("WiSE-FT", Wortsman et al., CVPR
        2022; 0.5 needs no tuning there). In (0, 1]; None or 1: the trained
        weights. For pretrained networks only: from a random initialization
        the result is meaningless. See
        :class:`skimgcls.callbacks.InterpolateWeights`.
    frozen_ensemble : bool, default=False
        Predict with the mean of the probabilities of the trained network and
        of a frozen copy of the pretrained one at its native input size (224
        px for ``efficientnet_lite0``), with the same feature levels and a
        linear probe as its head (fitted on the training images at the start
        of ``fit``, as ``head_init='probe'`` fits one): an output-space
        ensemble of the pretrained features and the fine-tuned network
        (Wortsman et al., CVPR 2022). Training and the training loss are the
        network's alone; validation scores and predictions are the
        ensemble's. Prediction costs both forward passes. The fine-tuning
        recipe of ``module='auto'`` uses it: on validation crops from another
        region of the photo training parts than the fitting crops
        (``bench/_explore_defaults.py --experiments ft_recipe``, 12 folds x 2
        seeds) it took the recipe from 85.6 to 87.9 %, against 87.5 % for the
        frozen features alone. Pretrained backbone modules only; not with a
        multi-label ``y`` or ``partial_fit``. See
        :meth:`skimgcls.backbones.BackboneNet.set_partner`.
    backbone_lr_mult : float, default=1.0
        Learning rate of a torchvision backbone's body relative to ``lr``
        (discriminative fine-tuning, e.g. 0.1): the body and the head are two
        optimizer parameter groups, and the learning-rate schedule scales
        both.
    random_state : int, RandomState instance or None, default=None
        Seeds the weight initialization, the validation split, the batch
        order and the augmentation. With an int, a CPU fit repeats bit for bit.
    verbose : int, default=0
        0 is silent. 1 prints one summary line per epoch (losses, accuracy,
        duration), shows a progress bar during each epoch with the running
        training loss and accuracy (erased when the epoch ends), and a
        progress bar for ``predict``/``predict_proba`` calls that last more
        than 2 seconds. 2 or more also keeps each epoch's bar on screen and
        shows the prediction bar at once. Bars are written to stderr with
        tqdm (``pip install "skimgcls[progress]"``); without tqdm only the
        lines are printed.
    **kwargs : dict
        Parameters routed to skorch, with the prefixes ``module__``,
        ``optimizer__``, ``criterion__``, ``iterator_train__``,
        ``iterator_valid__``, ``callbacks__`` and ``compile__``. They are
        grid-searchable like the named parameters.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels; for a multi-label indicator ``y``, the label
        (column) indices ``np.arange(n_labels)``, as in ``MLPClassifier``.
    multilabel_ : bool
        Whether ``fit`` got a multi-label indicator ``y``.
    n_features_in_ : int
        Number of values per image (``H * W * C``).
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names, defined only when ``X`` was a DataFrame.
    image_shape_ : tuple of int
        ``(H, W, C)`` of the images seen in ``fit``.
    net_ : skorch.NeuralNetClassifier
        The skorch net that trained the network.
    module_ : torch.nn.Module
        The trained network (``net_.module_``).
    history_ : skorch.History
        Per epoch: ``train_loss``, ``valid_loss``, ``valid_acc``, ``dur``
        (seconds) and more; e.g. ``history_[:, 'valid_acc']``.
    device_ : str
        The device the network was trained on.
    precision_ : {'fp32', 'bf16', 'fp16'}
        The precision ``'auto'`` resolved to for training (``'fp16'`` only
        through an accelerator). On a CPU with native bf16, ``'auto'`` trains a
        network with trainable depthwise convolutions (a fine-tuned
        EfficientNet or MobileNet) in fp32, which is faster there
        (``bench/bench_precision.py``: 0.86x the seconds for
        EfficientNet-Lite0), and every other one in bf16. Predictions run in
        this precision, except that such a network predicts in bf16: a forward
        pass has no backward to slow down, and bf16 predicted the fine-tuning
        recipe 1.94x faster than fp32, every class the same. Without an
        accelerator ``predict`` reads ``precision`` when it runs, as it does
        ``tta``: ``set_params(precision='fp32')`` after ``fit`` predicts in
        fp32.
    max_epochs_ : int
        The epochs of the last ``fit`` (``max_epochs`` or what ``'auto'``
        resolved to); early stopping may end training before.
    batch_size_ : int
        The training batch size (``batch_size`` or what ``'auto'`` resolved to).
    validation_fraction_ : float or None
        The fraction held out for validation in the last ``fit``; None when
        training used every image.
    early_stopping_ : bool
        Whether the last ``fit`` stopped early on the monitored loss.
    patience_ : int
        The patience of the last ``fit`` (``patience`` or what ``'auto'``
        resolved to).
    recipe_ : {'compact_cnn', 'frozen_features', 'fine_tune'} or None
        The recipe that the selection of ``module='auto'`` chose, or the
        simplest candidate when no two classes have two images to hold out
        (``selection_results_`` is None then); None when no selection applies
        (a parameter that fixes the recipe was set, or the data rule out the
        pretrained candidates: see the Notes).
    best_params_ : dict
        The parameters that replaced ``'auto'`` ones in the last ``fit``: the
        winning recipe's (``CNNClassifier(**best_params_)`` trains it without
        selection), or ``{'module': 'compact_cnn', 'pretrained': False}`` &co.
        when nothing was selected.
    selection_results_ : dict of lists or None
        One entry per candidate of the selection, as ``cv_results_``:
        ``'recipe'``, ``'steps'``
        (optimizer steps; 0 for the frozen features; fewer than the recipe's
        budget when ``compact_cnn`` already significantly beat the frozen
        features on the held-out images and stopped there: it wins whatever
        the rest would add, and its refit trains the whole budget), ``'valid_score'``
        (accuracy on the held-out part of the training data),
        ``'valid_log_loss'`` (log-loss there, reported) and ``'fit_s'``
        (seconds), simplest recipe first; scores are NaN for a recipe that
        was not trained because it could no longer be chosen (a simpler one
        made too few held-out errors to be beaten significantly), or, for
        fine-tuning, because ``compact_cnn`` significantly beat the frozen
        features it starts from.
        None when no selection ran (nothing could be held out: see
        ``recipe_``).
    selection_steps_ : int
        Optimizer steps the selection spent (0 without selection).
    selection_seconds_ : float
        Wall-clock seconds of the selection, refit excluded.

    See Also
    --------
    skimgcls.networks.register_network : Add a network name.

    Notes
    -----
    Images are taken as NumPy arrays ``(n, H, W)``, ``(n, H, W, C)`` or
    ``(n, C, H, W)`` with ``C`` in 1, 3, 4; as 2-D arrays with ``image_shape``;
    as lists of PIL images or torch tensors (NCHW); or as a 1-D array of image
    file paths (e.g. from :func:`skimgcls.load_image_folder` with
    ``lazy=True``), decoded batch by batch with ``reader``. uint8 images are scaled to
    [0, 1] at the network's input; float images are used as they are, so
    normalize them (e.g. with :class:`skimgcls.Normalize`) if their range is
    far from [0, 1]. Values beyond +-1e5 (in any dtype but uint8/uint16), NaN
    and infinity are refused with a ``ValueError``.

    **Recipe selection.** With ``module``, ``pretrained`` and ``max_epochs``
    at ``'auto'``, ``fit`` compares candidate recipes on a held-out fifth of
    each class of the training data (about 2,000 images looked at at most;
    the image of a class of one is trained on, never held out) and
    refits the winner on all of it, as ``LogisticRegressionCV`` does. The
    held-out images of a class are one of a stratified random draw and its
    nearest neighbours in the pretrained features, so that few held-out
    images keep a near-duplicate (a crop of the same part of a photo, a
    frame of the same scene) in the training part, which flatters the
    recipes that memorize. Without pretrained weights the held-out part is
    stratified at random. Below 500 images a fifth is too few to tell recipes
    apart: the images are cut into five such parts, and parts are held out in
    turn (each candidate trained on the rest every time) until 100 images or
    all of them have been held out. The candidates, simplest (fewest
    parameters fitted) first, are
    ``'frozen_features'``, the pretrained EfficientNet-Lite0 body (ImageNet
    weights installed with pip, no download) frozen, with a linear head
    fitted by logistic regression on its features, computed once;
    ``'compact_cnn'`` trained from scratch; ``'fine_tune'``, the pretrained
    network trained whole from that head (``head_init='probe'``) with its
    BatchNorm layers frozen (``freeze='bn'``), at 128 px, 100 steps of 8
    images, ending halfway between the fine-tuned and the starting weights
    (``wise_alpha=0.5``) and predicting with the frozen features' probe
    (``frozen_ensemble=True``). Each trained recipe is trained on the rest with the
    budget of its refit. The simplest recipe that no other significantly
    beats on the held-out images wins (McNemar's test at 5 %, on the images
    where two recipes disagree): a small held-out part, or crops of the same
    photos as the training ones, cannot tell close recipes apart. A recipe
    that can no longer win is not trained, nor is fine-tuning when
    ``compact_cnn`` significantly beat the frozen features it starts from.
    A multi-label ``y`` compares the frozen features (a logistic regression
    per label) and ``compact_cnn``, held out per label set, an image right
    when all its labels are. File paths whose decoded images exceed the
    reader's memory budget are selected on a decoded subsample (about 2,000
    images, fewer when large) and the winner is refit on every file. When
    fewer than two classes have 2 images (a multi-label ``y``: fewer than 2
    images), nothing can be held
    out: the simplest candidate (the frozen features) is trained, as the
    selection's rule keeps it when no held-out image shows another to be
    better. No selection runs (and ``'compact_cnn'`` is used) for
    ``partial_fit``, an ``accelerator``, images
    with a side under 32 pixels (digits, MNIST: ``compact_cnn`` won every
    validation fold there), or when the pretrained weights are not
    installed. ``verbose`` prints each candidate's score. ``bench/accuracy.py``
    measures the result against baselines.

    The defaults adapt to the data: the training budget is counted in
    optimizer steps (``batch_size`` and ``max_epochs`` ``'auto'``), a
    validation split is held out only when there is plenty of data, BatchNorm
    statistics are recomputed at the end of ``fit`` (``update_bn``), and the
    default network's stem halves large images with strided convolutions
    until they are at most 48 pixels (a 50 px image becomes 25 px), so a fit
    on a few dozen images, on tens of thousands, on 8x8 or on 256x256 images
    needs no tuning to be reasonable (``bench/accuracy.py`` measures it).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skimgcls import CNNClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = CNNClassifier(max_epochs=2, random_state=0).fit(X[:200] / 16, y[:200])
    >>> clf.predict(X[:3] / 16).shape
    (3,)
    >>> clf.image_shape_
    (8, 8, 1)

    What the selection of the defaults chose, and why (``max_epochs`` is left
    at ``'auto'`` here, so the recipe is selected), on 64 px crops of two
    photos:

    >>> import numpy as np
    >>> from sklearn.datasets import load_sample_images
    >>> photos = load_sample_images().images
    >>> X = np.stack([p[r:r + 64, c:c + 64] for p in photos
    ...               for r in range(0, 320, 32) for c in range(0, 320, 64)])
    >>> y = np.repeat(['china', 'flower'], len(X) // 2)
    >>> clf = CNNClassifier(random_state=0).fit(X, y)  # doctest: +SKIP
    >>> clf.recipe_  # doctest: +SKIP
    'frozen_features'
    >>> clf.selection_results_['recipe']  # doctest: +SKIP
    ['frozen_features', 'compact_cnn', 'fine_tune']
    >>> clf.selection_results_['valid_score']  # doctest: +SKIP
    [1.0, nan, nan]

    The frozen features were perfect on the held-out part, so the other
    recipes could not win and were not trained (NaN).
    """

    _parameter_constraints = {
        "module": [str, type, nn.Module],
        "optimizer": [StrOptions(set(OPTIMIZERS)), type],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "max_epochs": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "lr_schedule": [StrOptions({"onecycle", "cosine", "plateau"}), None],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither"), None,
                                StrOptions({"auto"})],
        "early_stopping": ["boolean", StrOptions({"auto"})],
        "update_bn": ["boolean"],
        "patience": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "class_weight": [StrOptions({"balanced"}), dict, None],
        "augment": [callable, None, StrOptions({"auto"})],
        "mixup_alpha": [Interval(Real, 0, None, closed="left")],
        "cutmix_alpha": [Interval(Real, 0, None, closed="left")],
        "reader": [HasMethods(["read"]), None],
        "image_shape": [tuple, list, None],
        "precision": [StrOptions({"auto", "fp32", "bf16"})],
        "device": [str, torch.device],
        "tta": [StrOptions(set(TTA_PRESETS)), list, tuple, None],
        "threshold": [Interval(Real, 0, 1, closed="both"), "array-like"],
        "accelerator": [dict, HasMethods(["prepare", "backward", "autocast"]), None],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "compile": ["boolean"],
        "warm_start": ["boolean"],
        "callbacks": [list, None],
        "checkpoint": [str, os.PathLike, None],
        "pretrained": ["boolean", str, os.PathLike, Mapping],
        "head_init": [StrOptions({"random", "probe"})],
        "wise_alpha": [Interval(Real, 0, 1, closed="right"), None],
        "frozen_ensemble": ["boolean"],
        "freeze": [StrOptions({"none", "backbone", "bn"}),
                   Interval(Integral, 0, None, closed="left")],
        "unfreeze_at_epoch": [Interval(Integral, 1, None, closed="left"), None],
        "backbone_lr_mult": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        module="auto",
        *,
        optimizer="adamw",
        lr=5e-3,
        max_epochs="auto",
        batch_size="auto",
        lr_schedule="onecycle",
        validation_fraction="auto",
        early_stopping="auto",
        patience="auto",
        class_weight=None,
        update_bn=True,
        augment="auto",
        mixup_alpha=0.0,
        cutmix_alpha=0.0,
        reader=None,
        image_shape=None,
        precision="auto",
        device="auto",
        tta=None,
        threshold=0.5,
        accelerator=None,
        n_threads=None,
        compile=False,
        warm_start=False,
        callbacks=None,
        checkpoint=None,
        pretrained="auto",
        freeze="none",
        unfreeze_at_epoch=None,
        head_init="random",
        wise_alpha=None,
        frozen_ensemble=False,
        backbone_lr_mult=1.0,
        random_state=None,
        verbose=0,
        **kwargs,
    ):
        self.module = module
        self.optimizer = optimizer
        self.lr = lr
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr_schedule = lr_schedule
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.patience = patience
        self.class_weight = class_weight
        self.update_bn = update_bn
        self.augment = augment
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.reader = reader
        self.image_shape = image_shape
        self.precision = precision
        self.device = device
        self.tta = tta
        self.threshold = threshold
        self.accelerator = accelerator
        self.n_threads = n_threads
        self.compile = compile
        self.warm_start = warm_start
        self.callbacks = callbacks
        self.checkpoint = checkpoint
        self.pretrained = pretrained
        self.freeze = freeze
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.head_init = head_init
        self.wise_alpha = wise_alpha
        self.frozen_ensemble = frozen_ensemble
        self.backbone_lr_mult = backbone_lr_mult
        self.random_state = random_state
        self.verbose = verbose
        # Kept in a private dict, not as attributes, so that the parameter
        # names stay exactly those that get_params reports.
        self._routed = kwargs

    # -- parameters ---------------------------------------------------------
    def _routed_params(self, prefix=None):
        return {key: value for key, value in self._routed.items()
                if prefix is None or key.startswith(prefix)}

    def get_params(self, deep=True):
        """Get parameters, including the routed ``module__`` & co.

        Parameters
        ----------
        deep : bool, default=True
            If True, also return the parameters of nested estimators (e.g.
            ``augment__degrees``).

        Returns
        -------
        params : dict
            Parameter names mapped to their values.
        """
        params = super().get_params(deep=deep)
        params.update(self._routed_params())
        return params

    def set_params(self, **params):
        """Set parameters, including routed ones such as ``module__width``.

        Parameters
        ----------
        **params : dict
            Estimator parameters.

        Returns
        -------
        self : CNNClassifier
            This estimator.
        """
        own = set(self._get_param_names())
        rest = {k: v for k, v in params.items()
                if k.partition("__")[0] in own and not k.startswith(ROUTED_PREFIXES)}
        self._routed = {**self._routed,
                        **{k: v for k, v in params.items() if k not in rest}}
        return super().set_params(**rest) if rest else self

    def _validate_params(self):
        """Check the declared constraints, the routed parameters and ``tta``.

        ``_parameter_constraints`` cannot express "names starting with
        ``module__`` & co." or "a list of view names", so those two checks
        run here, where ``fit`` (through ``_fit_context``), ``partial_fit``
        and scikit-learn's tooling validate parameters.
        """
        super()._validate_params()
        _check_routed(self._routed)
        resolve_tta(self.tta)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.classifier_tags.multi_label = True
        return tags

    # -- fitting -------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    @Substitution("sample_weight")
    def fit(self, X, y, sample_weight=None):
        """Train the network on images ``X`` with labels ``y``.

        Parameters
        ----------
        X : array-like, torch.Tensor, list of PIL.Image.Image or array of paths
            Images of shape ``(n, H, W)``, ``(n, H, W, C)``, ``(n, C, H, W)``, or
            ``(n, H*W*C)`` with ``image_shape``; or a 1-D array of image file
            paths, decoded batch by batch with ``reader``.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels of any hashable kind (strings, ints...), or a
            multi-label indicator matrix of 0 and 1 (dense or sparse), one
            column per label.
        {sample_weight}

        Returns
        -------
        self : CNNClassifier
            The fitted estimator.

        Raises
        ------
        skimgcls.exceptions.NonFiniteLossError
            When the loss or the weights become NaN or infinite. The message
            names the epoch and the batch; the estimator keeps the weights of
            the last complete epoch and can predict.
        KeyboardInterrupt
            When training is interrupted (Ctrl-C) inside an epoch. It is raised
            again after the network is rolled back to the last complete epoch
            (weights, optimizer and ``history_``), so a search or a script
            stops, while the estimator stays fitted and usable: catch the
            exception to go on with it. A callback that raises
            ``KeyboardInterrupt`` at the end of an epoch (skorch's
            ``EarlyStopping`` does) ends training normally instead.
        """
        warm = self.warm_start and hasattr(self, "net_")
        return self._fit(X, y, sample_weight, warm=warm, epochs=None)

    @Substitution("sample_weight")
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Train for one epoch on ``X, y``, continuing from the last call.

        The first call builds the network; it needs every class, either in
        ``y`` or in ``classes``. Later calls continue the same network at the
        constant learning rate ``lr`` (no schedule, no early stopping).

        Parameters
        ----------
        X : array-like, torch.Tensor or list of PIL.Image.Image
            Images, as in :meth:`fit`.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, or a multi-label indicator matrix (as in :meth:`fit`).
        classes : array-like of shape (n_classes,), default=None
            All class labels; required on the first call if ``y`` lacks some.
            Not needed for an indicator ``y`` (its columns are the labels);
            if given, it must have one entry per column.
        {sample_weight}

        Returns
        -------
        self : CNNClassifier
            The updated estimator.
        """
        first = not hasattr(self, "net_")
        if first:
            self._validate_params()
        return self._fit(X, y, sample_weight, warm=not first, epochs=1,
                         classes=classes, partial=True)

    def _fit(self, X, y, sample_weight, *, warm, epochs, classes=None,
             partial=False):
        X, shape = check_images(
            X, image_shape=check_image_shape(self.image_shape), estimator=self,
            reset=not warm, fitted_shape=self.image_shape_ if warm else None,
            allow_paths=True, reader=self._reader(), return_image_shape=True)
        if X.ndim == 1:  # paths: every file decoded now, kept in memory if it fits
            X = decode_for_fit(self._reader(), X, shape)
        y_enc = self._encode_labels(X, y, classes=classes, reset=not warm)
        # Both fit a multi-class logistic regression (a probe) at the start of fit.
        for asked, what, off in ((self.head_init == "probe", "head_init='probe'",
                                  "head_init='random'"),
                                 (self.frozen_ensemble, "frozen_ensemble",
                                  "frozen_ensemble=False")):
            if asked and (partial or self._multilabel):
                raise ValueError(
                    f"{what} fits a multi-class logistic regression at the start of "
                    "fit; it does not apply to "
                    f"{'partial_fit' if partial else 'a multi-label y'}. Use "
                    f"{'fit' if partial else 'a 1-D y'}, or {off}."
                )
        weights = self._sample_weights(X, y_enc, sample_weight)
        pos_weight = self._pos_weight(y_enc) if self._multilabel else None
        if not warm:
            self.image_shape_ = shape  # file datasets check every batch against it
        # Before seeding: the processes of a data-parallel fit share one seed.
        accelerator = (getattr(self.net_, "accelerator", None) if warm
                       else self._make_accelerator())
        random_state = shared_random_state(self.random_state, accelerator)
        if warm and isinstance(random_state, Integral):
            # A continuation (partial_fit, warm_start) must not replay the batch
            # order and augmentation draws of the first call: seed it from the
            # seed and the epochs done, so it stays repeatable.
            random_state = int(np.random.SeedSequence(
                [random_state, len(self.net_.history)]).generate_state(1)[0])
        with seeded(random_state) as rng, torch_threads(self.n_threads):
            selection = None
            if not warm:
                if accelerator is None:
                    self.device_ = resolve_device(self.device)
                    self.precision_ = resolve_precision(self.precision, self.device_)
                selection = self._choose_recipe(X, y_enc, weights, rng, partial=partial,
                                                pos_weight=pos_weight)
            train, valid = self._split(X, y_enc, weights, rng, partial=partial)
            self._resolve_budget(len(train), valid is not None, warm=warm)
            if epochs is None:
                epochs = self.max_epochs_
            if not warm:
                self.net_ = self._build_net(accelerator, paths=X.ndim == 1)
                if accelerator is None:  # the network is known now: trained how?
                    self.precision_ = self.net_.precision = training_precision(
                        self.precision, self.device_, self.net_.module_)
            if selection is not None and selection.recipe.linear_head:
                # Frozen features + linear head: no optimizer steps to take.
                if X.ndim == 1:
                    install_linear_head_streamed(self.net_, selection,
                                                 self._dataset(X, y_enc, weights),
                                                 pos_weight=pos_weight)
                else:
                    install_linear_head(self.net_.module_, selection, X, y_enc, weights,
                                        device=self.device_, precision=self.precision_,
                                        pos_weight=pos_weight)
                self.max_epochs_ = 0
                return self
            self.net_.train_split = None if valid is None else predefined_split(valid)
            if self._multilabel:
                self.net_.threshold = self.threshold
                self.net_.set_pos_weight(pos_weight)
            self.net_.callbacks = build_callbacks(
                net_params(self), self.net_, train=train, partial=partial, warm=warm)
            self.net_.initialize_callbacks()
            self.net_.checkpoint_, epochs = self._checkpointer(
                X, y_enc, weights, epochs, resume=not (warm or partial))
            try:
                self.net_.partial_fit(train, y=None, epochs=epochs)
            finally:
                self.net_.checkpoint_ = None
        if self.net_.interrupted_ is not None:
            raise KeyboardInterrupt(
                f"Training interrupted during epoch {self.net_.interrupted_}; "
                f"{type(self).__name__} keeps the weights of the "
                f"{len(self.net_.history)} complete epoch(s) and can predict."
            )
        return self

    def _choose_recipe(self, X, y_enc, weights, rng, *, partial, pos_weight=None):
        """Resolve ``module='auto'`` / ``pretrained='auto'``, by selection when it runs.

        Sets ``recipe_``, ``best_params_``, ``selection_results_``,
        ``selection_steps_`` and ``selection_seconds_``; returns the
        :class:`~skimgcls._selection.Selection` or None.
        """
        self.best_params_ = resolve_auto(self.module, self.pretrained, self.augment)
        self.recipe_ = self.selection_results_ = None
        n_images = len(X)
        self.selection_steps_, self.selection_seconds_ = 0, 0.0
        recipes = (candidate_recipes(self.image_shape_, multilabel=self._multilabel)
                   if self._selects(partial=partial) else [])
        if len(recipes) < 2:
            return None
        if not can_hold_out(y_enc):
            selection = unselected(recipes, self.verbose)
        else:
            if X.ndim == 1:  # file paths too many to keep: select on a decoded subsample
                rows = selection_rows(y_enc, self.image_shape_, rng)
                X, y_enc, weights = (read_images(self._reader(), X[rows],
                                                 fitted_shape=self.image_shape_),
                                     y_enc[rows], weights[rows])
            selection = select_recipe(
                self, X, y_enc, weights, recipes, rng=rng, device=self.device_,
                precision=self.precision_, pos_weight=pos_weight, n_images=n_images,
                verbose=self.verbose,
                build_module=lambda params: build_module(
                    {**net_params(self), **params}, image_shape=self.image_shape_,
                    n_classes=len(self.classes_)))
        recipe = selection.recipe
        self.recipe_ = recipe.name
        # The recipe's parameters, and what its 'auto' ones stand for.
        self.best_params_ = {**resolve_auto(recipe.params["module"],
                                            recipe.params["pretrained"], self.augment),
                             **recipe.params}
        if recipe.steps is not None:  # the recipe's own budget, for all the data
            batch_size = recipe.params.get("batch_size") or auto_batch_size(n_images)
            self.best_params_["max_epochs"] = max(
                1, math.ceil(recipe.steps / math.ceil(n_images / batch_size)))
        self.selection_results_ = selection.results
        self.selection_steps_ = selection.steps
        self.selection_seconds_ = selection.seconds
        return selection

    def _selects(self, *, partial):
        """Whether ``fit`` chooses the recipe: nothing that fixes it was set.
        (With too few images to hold any out, the simplest candidate is
        taken: see ``can_hold_out``.)

        ``module__*`` parameters fix it too: they configure one network (the
        one ``module='auto'`` resolves to without a selection), and no
        candidate built from another would take them."""
        auto = all(isinstance(value, str) and value == "auto"
                   for value in (self.module, self.pretrained, self.max_epochs))
        auto = auto and not self._routed_params("module__")
        return auto and not partial and self.accelerator is None

    def _checkpointer(self, X, y_enc, weights, epochs, *, resume):
        """The checkpointer of this fit and the number of epochs left to train."""
        if self.checkpoint is None or not resume:
            return None, epochs
        fingerprint = fit_fingerprint(self.get_params(deep=False), self.classes_,
                                      X, y_enc, weights)
        checkpointer = Checkpointer(self.checkpoint, fingerprint)
        done, stopped = checkpointer.load()
        return checkpointer, 0 if stopped else max(epochs - done, 0)

    def _encode_labels(self, X, y, *, classes, reset):
        if reset:
            y = check_labels(y, n_samples=len(X), estimator=self, multilabel="auto")
            if y.ndim == 2 and classes is not None and len(classes) != y.shape[1]:
                raise ValueError(
                    f"classes has {len(classes)} entries but the multi-label y "
                    f"has {y.shape[1]} label columns. Leave classes=None for an "
                    "indicator y: its columns are the labels."
                )
            self.multilabel_ = y.ndim == 2
            if self.multilabel_:  # columns are the labels, as in MLPClassifier
                self.classes_ = np.arange(y.shape[1])
                return y
            labels = y if classes is None else np.asarray(classes)
            self.classes_ = np.unique(labels)
            if len(self.classes_) < 2:
                raise ValueError(
                    "CNNClassifier needs samples of at least 2 classes in the data, "
                    f"but the data contains only one class: {self.classes_[0]!r}."
                )
        y = check_labels(y, n_samples=len(X), classes=self.classes_, estimator=self,
                         seen_in="fit" if reset else "the first fit",
                         multilabel=self._multilabel)
        return y if self._multilabel else np.searchsorted(self.classes_, y)

    @property
    def _multilabel(self):
        return is_multilabel(self)

    def _sample_weights(self, X, y_enc, sample_weight):
        weights = _check_sample_weight(sample_weight, X, dtype=np.float64)
        if self.class_weight is not None and not self._multilabel:
            class_weight = self.class_weight
            if isinstance(class_weight, dict):
                unknown = set(class_weight) - set(self.classes_.tolist())
                if unknown:
                    raise ValueError(
                        f"class_weight has labels that are not classes: "
                        f"{sorted(map(str, unknown))}; classes are "
                        f"{self.classes_.tolist()}."
                    )
                class_weight = {np.searchsorted(self.classes_, k): v
                                for k, v in class_weight.items()}
            weights = weights * compute_sample_weight(class_weight, y_enc)
        return weights.astype(np.float32)

    def _pos_weight(self, y):
        """Multi-label ``class_weight`` as the weight of each label's positives."""
        if self.class_weight is None:
            return None
        if isinstance(self.class_weight, dict):
            unknown = set(self.class_weight) - set(self.classes_.tolist())
            if unknown:
                raise ValueError(
                    f"class_weight has labels that are not label indices: "
                    f"{sorted(map(str, unknown))}; a multi-label y has the labels "
                    f"0 to {len(self.classes_) - 1} (its columns)."
                )
            weight = np.ones(len(self.classes_))
            for label, value in self.class_weight.items():
                weight[label] = value
            return weight
        positives = y.sum(axis=0)
        return np.where(positives > 0, (len(y) - positives) / np.maximum(positives, 1),
                        1.0)

    def _split(self, X, y_enc, weights, rng, *, partial):
        """Hold out the validation split; record the fraction used.

        ``validation_fraction='auto'`` holds out ``AUTO_VALIDATION_FRACTION``
        from ``AUTO_VALIDATION_MIN_SAMPLES`` images on, when a stratified
        split exists; an explicit fraction that cannot be honoured raises.
        """
        fraction = self.validation_fraction
        if fraction == "auto":
            fraction = (AUTO_VALIDATION_FRACTION
                        if len(X) >= AUTO_VALIDATION_MIN_SAMPLES else None)
        if fraction is None or partial:
            self.validation_fraction_ = None
            return self._dataset(X, y_enc, weights), None
        idx = np.arange(len(X))
        # Label sets are too many to stratify on: a multi-label split is random.
        stratify = None if self._multilabel else y_enc
        try:
            train_idx, valid_idx = train_test_split(
                idx, test_size=fraction, stratify=stratify, random_state=rng,
            )
        except ValueError as exc:
            if self.validation_fraction == "auto":  # too few images per class
                self.validation_fraction_ = None
                return self._dataset(X, y_enc, weights), None
            how = ("" if self._multilabel else
                   f" stratified over {len(self.classes_)} classes")
            raise ValueError(
                f"Cannot hold out validation_fraction={fraction} of "
                f"{len(X)} images{how} "
                f"({exc}). Pass more images, a larger validation_fraction, or "
                "validation_fraction=None (or 'auto') to train without a validation "
                "split when the data are too few."
            ) from None
        self.validation_fraction_ = fraction
        return (self._dataset(X[train_idx], y_enc[train_idx], weights[train_idx]),
                self._dataset(X[valid_idx], y_enc[valid_idx], weights[valid_idx]))

    def _resolve_budget(self, n_train, validated, *, warm):
        """Resolve the ``'auto'`` training budget from the number of images.

        Sets ``batch_size_`` (when the network is built), ``max_epochs_``,
        ``early_stopping_`` and ``patience_``; see the parameters for the rules.
        """
        recipe = getattr(self, "best_params_", {})
        if not warm or not hasattr(self, "batch_size_"):
            batch_size = recipe.get("batch_size", self.batch_size)
            self.batch_size_ = (auto_batch_size(n_train) if batch_size == "auto"
                                else batch_size)
        max_epochs = recipe.get("max_epochs", self.max_epochs)
        self.max_epochs_ = (auto_max_epochs(n_train, self.batch_size_)
                            if max_epochs == "auto" else max_epochs)
        # 'auto' stops early on the split that 'auto' validation held out; an
        # explicit validation_fraction keeps training its full budget, as before.
        self.early_stopping_ = (
            validated and self.validation_fraction == "auto"
            if self.early_stopping == "auto" else bool(self.early_stopping))
        self.patience_ = (auto_patience(self.max_epochs_) if self.patience == "auto"
                          else self.patience)

    def _make_accelerator(self):
        if self.accelerator is None:
            return None
        accelerator = make_accelerator(self.accelerator, device=self.device,
                                       precision=self.precision)
        self.device_ = str(accelerator.device)
        self.precision_ = accelerator_precision(accelerator)
        return accelerator

    def _reader(self):
        return ImageReader() if self.reader is None else self.reader

    def _dataset(self, X, y_enc=None, weights=None):
        """In-memory images -> tensor slices; file paths -> decoded per batch."""
        if X.ndim == 1:
            return ImagePathDataset(X, y_enc, weights, reader=self._reader(),
                                    image_shape=self.image_shape_)
        return ImageTensorDataset(X, y_enc, weights)

    def _build_net(self, accelerator=None, *, paths=False):
        return build_net(net_params(self), image_shape=self.image_shape_,
                         n_classes=len(self.classes_), device=self.device_,
                         precision=self.precision_, accelerator=accelerator, paths=paths,
                         multilabel=self._multilabel)

    # -- prediction ----------------------------------------------------------
    def _check_X(self, X):
        check_is_fitted(self)
        return check_images(X, image_shape=self.image_shape_, estimator=self,
                            reset=False, fitted_shape=self.image_shape_,
                            allow_paths=True, reader=self._reader())

    def _batches(self, X, batch_size):
        """Prediction batches of validated input, and how many there are.

        In-memory images are sliced; file paths are decoded in DataLoader
        workers, batch by batch, so memory stays flat however many files.
        """
        if X.ndim == 1:
            workers = self._routed.get("iterator_valid__num_workers",
                                       default_workers())
            loader = torch.utils.data.DataLoader(
                self._dataset(X), batch_size=batch_size, shuffle=False,
                num_workers=workers, collate_fn=collate_batch)
            return (Xb for Xb, _ in loader), len(loader)
        images = torch.from_numpy(X)
        starts = range(0, len(images), batch_size)
        return (images[i:i + batch_size] for i in starts), len(starts)

    def _logits(self, X):
        """Return the float32 logits of validated images, batch by batch.

        With ``tta``, the logits of the probabilities averaged over the views:
        their softmax (sigmoid for multi-label) is that average.
        """
        views = resolve_tta(self.tta)
        # On the CPU, larger batches spill the activations out of cache and
        # get slower; accelerators like them large.
        if torch.device(self.device_).type == "cpu":
            batch_size = min(PREDICT_BATCH_SIZE, inference_batch_size(
                "cpu", self.image_shape_ and self.image_shape_[:2], self.net_.module_))
        else:
            batch_size = max(self.net_.batch_size, PREDICT_BATCH_SIZE)
        batches, n_batches = self._batches(X, batch_size)
        batches = track(batches, total=n_batches, desc="predict", unit="batch",
                        verbose=self.verbose, delay=2.0 if self.verbose == 1 else 0.0,
                        disable=not is_main_process(self.net_))
        precision = self._predict_precision()
        with torch.inference_mode(), torch_threads(self.n_threads):
            return torch.cat([self.net_.predict_logits(batch, views, precision)
                              for batch in batches]).cpu()

    def _predict_precision(self):
        """The precision of predictions (see ``precision_``); an accelerated net
        predicts in its accelerator's."""
        if getattr(self.net_, "accelerator", None) is not None:
            return self.net_.precision
        return predict_precision(self.precision, self.precision_, self.device_,
                                 self.net_.module_)

    @Substitution("X_fitted")
    def predict_proba(self, X):
        """Return class probabilities (softmax of the network's outputs).

        For a multi-label classifier, the probability of each label on its
        own (sigmoid of each output): rows need not sum to 1. This is
        ``MLPClassifier``'s multi-label format, an array, not the list of
        ``(n_samples, 2)`` arrays of ``MultiOutputClassifier``; scikit-learn's
        ``roc_auc_score`` and ``average_precision_score`` take it as it is.

        Parameters
        ----------
        {X_fitted}

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities, columns in the order of ``classes_`` (of the
            labels, for a multi-label classifier).
        """
        X = self._check_X(X)
        logits = self._logits(X)
        if self._multilabel:
            return torch.sigmoid(logits).numpy()
        return torch.softmax(logits, dim=1).numpy()

    @Substitution("X_fitted")
    def predict(self, X):
        """Return the most probable class label of each image.

        For a multi-label classifier, the indicator matrix of the labels
        whose probability is above ``threshold``.

        Parameters
        ----------
        {X_fitted}

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_labels)
            Labels from ``classes_``; for a multi-label classifier, int64
            rows of 0 and 1 (an image may get no label or several).
        """
        X = self._check_X(X)
        if self._multilabel:
            return decision_rule(self).indicators(torch.sigmoid(self._logits(X)).numpy())
        return self.classes_[self._logits(X).argmax(dim=1).numpy()]

    def score(self, X, y, sample_weight=None):
        """Return the mean accuracy on images ``X`` with labels ``y``.

        Unlike most scikit-learn classifiers, labels that were not seen in
        :meth:`fit` are an error rather than silent misclassifications: they
        usually mean mismatched labels (e.g. ``'1'`` against ``1``). For a
        multi-label classifier this is the subset accuracy (an image counts
        as right when all its labels are), as for any scikit-learn
        classifier; pass ``scoring='f1_samples'`` or another multi-label
        metric to searches and ``cross_val_score`` for a finer measure.

        Parameters
        ----------
        X : array-like, torch.Tensor or list of PIL.Image.Image
            Images with the shape seen in :meth:`fit`.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            True labels, all from ``classes_``, or the indicator matrix.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
            Mean accuracy of ``self.predict(X)`` against ``y``.
        """
        check_is_fitted(self)
        check_labels(y, classes=self.classes_, estimator=self,
                     multilabel=self._multilabel)
        return super().score(X, y, sample_weight=sample_weight)

    @property
    def module_(self):
        """The trained torch module (``net_.module_``)."""
        check_is_fitted(self)
        return self.net_.module_

    @property
    def history_(self):
        """Per-epoch training history (``net_.history``)."""
        check_is_fitted(self)
        return self.net_.history


def _check_routed(params):
    bad = [key for key in params if not key.startswith(ROUTED_PREFIXES)]
    if bad:
        raise TypeError(
            f"CNNClassifier got unexpected parameters {sorted(bad)}. Parameters "
            f"routed to skorch must start with one of {list(ROUTED_PREFIXES)}, e.g. "
            "module__width=16 or optimizer__weight_decay=1e-4."
        )


# -- the door ----------------------------------------------------------------
# What the modules around the estimator (persistence, ONNX, saliency,
# inspection, the CLI) may ask of a fitted classifier. They use these, never
# the classifier's private methods (tests/test_layers.py checks it).

def final_estimator(estimator, X=None):
    """The estimator at the end of ``estimator``, and ``X`` as it receives it.

    Walks through fitted searches (``best_estimator_``) and Pipelines (their
    last step; ``X`` goes through the other steps' ``transform`` when given),
    also nested ones. Anything else is returned as it is.
    """
    for _ in range(10):
        if hasattr(estimator, "best_estimator_"):
            estimator = estimator.best_estimator_
        elif hasattr(estimator, "steps"):
            if X is not None and len(estimator.steps) > 1:
                X = estimator[:-1].transform(X)
            estimator = estimator.steps[-1][1]
        else:
            break
    return estimator, X


def is_multilabel(estimator):
    """Whether ``estimator`` (any classifier) was fitted on a multi-label ``y``."""
    # Models saved before multi-label support have no multilabel_.
    return bool(getattr(estimator, "multilabel_", False))


@dataclass(frozen=True)
class DecisionRule:
    """How probabilities become predictions.

    ``multilabel``: one sigmoid per label, a label is on above ``threshold``
    (a scalar or one value per label); otherwise the most probable class.
    """

    multilabel: bool
    threshold: np.ndarray | None = None

    def indicators(self, proba):
        """The 0/1 int64 label rows of multi-label probabilities."""
        return (np.asarray(proba) > self.threshold).astype(np.int64)


def decision_rule(estimator):
    """The :class:`DecisionRule` of a fitted classifier (checked threshold)."""
    if not is_multilabel(estimator):
        return DecisionRule(multilabel=False)
    threshold = np.asarray(estimator.threshold, dtype=np.float64)
    n_labels = len(estimator.classes_)
    if threshold.ndim > 1 or (threshold.ndim == 1 and len(threshold) != n_labels):
        raise ValueError(
            f"threshold must be a number or have one value per label ({n_labels}); "
            f"got an array of shape {threshold.shape}."
        )
    if not np.all((threshold >= 0) & (threshold <= 1)):
        raise ValueError(
            f"threshold values must be in [0, 1]; got {estimator.threshold!r}.")
    return DecisionRule(multilabel=True, threshold=threshold)


class InputSpec(NamedTuple):
    """What the network of a fitted classifier takes.

    ``image_shape``: ``(H, W, C)`` of its images; ``reader``: the
    :class:`~skimgcls.preprocessing.ImageReader` that decodes file paths;
    ``device``: where its input goes.
    """

    image_shape: tuple
    reader: object
    device: str


def input_spec(clf):
    """The :class:`InputSpec` of a fitted :class:`CNNClassifier`."""
    check_is_fitted(clf)
    return InputSpec(image_shape=clf.image_shape_, reader=clf._reader(),
                     device=clf.device_)


def rebuild_net(clf):
    """A new skorch net for ``clf``, built from its parameters and fitted attributes.

    The network has fresh weights (the caller loads saved ones); it is built
    on ``clf.device_`` with ``clf.precision_``, as ``fit`` builds it.
    """
    return clf._build_net()
