"""One process of the data-parallel fits of ``test_distributed.py``.

Started by ``torchrun --nproc_per_node 2`` (see the test) as
``distributed_worker.py OUT`` (in-memory arrays: a checkpointed fit, an
interrupted and resumed one), ``distributed_worker.py OUT FOLDER`` (the PNG
files of :func:`digit_files` in FOLDER, then a backbone unfrozen mid-fit) or
``distributed_worker.py OUT probe`` (a ``head_init='probe'`` fit); each
process writes what it saw to ``OUT/rank<k>.pt``. Not a test module: it only
runs as a script.
"""

import hashlib
import os
import sys

import numpy as np
import torch
from skorch.callbacks import Callback

from skimgcls import CNNClassifier, save
from skimgcls._probe import last_linear
from skimgcls.preprocessing import ImageReader

#: Images of the file-path fits, and their validation batch size: 192
#: training images make 12 full batches of 16 (6 per process), the 64
#: validation images 3 batches of 24, 24 and 16, so that one process is
#: short of a validation batch and Accelerate pads its shard.
N_FILES, VALID_BATCH_SIZE = 256, 24


def digits(n):
    from sklearn.datasets import load_digits

    data = load_digits()
    idx = np.random.RandomState(0).permutation(len(data.target))[:n]
    return (data.images[idx] / 16).astype(np.float32)[..., None], data.target[idx]


def digit_files(folder, n, *, write=False):
    """``n`` digits as PNG files in ``folder`` (8x8 gray, 0..240): (paths, labels).

    The same images as :func:`digits` (pixel values times 240/16, exactly
    integers); ``write=True`` writes the files.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    data = load_digits()
    idx = np.random.RandomState(0).permutation(len(data.target))[:n]
    paths = np.array([os.path.join(folder, f"{i:04d}.png") for i in range(n)],
                     dtype=object)
    if write:
        for path, image in zip(paths, data.images[idx]):
            Image.fromarray((image * 15).astype(np.uint8)).save(path)
    return paths, data.target[idx]


def classifier(**params):
    defaults = dict(max_epochs=2, batch_size=16, lr=0.02,
                    validation_fraction=0.25, early_stopping=False,
                    random_state=0, accelerator={"cpu": True})
    if "module" not in params:  # the default compact_cnn, narrow
        defaults["module__width"] = 4
    defaults.update(params)
    return CNNClassifier(**defaults)


def _unwrapped(net):
    return net.accelerator.unwrap_model(net.module_)


def _images(dataset, start=0, stop=None):
    """Images ``start:stop`` of an in-memory or file dataset, as one tensor."""
    stop = len(dataset) if stop is None else min(stop, len(dataset))
    if isinstance(dataset.X, torch.Tensor):
        return dataset.X[start:stop]
    return torch.from_numpy(dataset.read(np.arange(start, stop)))  # files


class Recorder(Callback):
    """Which images each training batch held, and a plain evaluation per epoch."""

    def __init__(self, stop_at=None):
        self.stop_at = stop_at  # (epoch, batch): raise KeyboardInterrupt there

    def initialize(self):
        self.batches_ = []  # (epoch, sorted image hashes)
        self.full_valid_ = []
        self.bn_reference_ = None
        return self

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        if not training:
            return
        epoch = len(net.history)
        images = batch[0]["X"].numpy()
        self.batches_.append((epoch, sorted(
            hashlib.sha1(image.tobytes()).hexdigest() for image in images)))
        seen = sum(e == epoch for e, _ in self.batches_)
        if self.stop_at == (epoch, seen):
            raise KeyboardInterrupt

    def on_epoch_end(self, net, dataset_valid=None, **kwargs):
        # One evaluation of the current weights over the whole split, in this
        # process alone (no gathering).
        module = _unwrapped(net)
        training = module.training
        module.eval()
        with torch.no_grad():
            logits = module(net.to_model_input(_images(dataset_valid))).float()
        module.train(training)
        y = dataset_valid.y
        loss = torch.nn.functional.cross_entropy(logits, y)
        acc = (logits.argmax(1) == y).double().mean()
        self.full_valid_.append((float(loss), float(acc)))

    def on_train_end(self, net, X=None, **kwargs):
        # update_bn (an earlier callback) ran; redo it alone over all the
        # training batches of a single process (in its evaluation batches),
        # on a copy.
        module = _unwrapped(net)
        size = net.get_params().get("iterator_valid__batch_size", net.batch_size)
        layers = [m for m in module.modules()
                  if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        saved = [(m.running_mean.clone(), m.running_var.clone(), m.momentum, m.training)
                 for m in layers]
        for m in layers:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        with torch.no_grad():
            for start in range(0, len(X), size):
                images = net.to_model_input(_images(X, start, start + size))
                if len(images) > 1:
                    module(images)
        self.bn_reference_ = [(m.running_mean.clone(), m.running_var.clone())
                              for m in layers]
        for m, (mean, var, momentum, training) in zip(layers, saved):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.momentum = momentum
            m.train(training)


class BodyRecorder(Callback):
    """A backbone's weights at the start of each epoch, its gradients and train
    mode per batch, its BatchNorm statistics at the end of each epoch."""

    def initialize(self):
        self.body_ = []  # state dict of the body when each epoch begins
        self.grads_ = []  # (epoch, [sum of each body parameter's gradient])
        self.eval_modules_ = []  # (epoch, body modules in eval mode in the batch)
        self.bn_ = []  # the body's BatchNorm running means when each epoch ends
        return self

    def on_epoch_begin(self, net, **kwargs):
        # After UnfreezeBackbone (CNNClassifier's callbacks come first).
        body = _unwrapped(net).body
        self.body_.append({k: v.clone() for k, v in body.state_dict().items()})

    def on_batch_end(self, net, training=None, **kwargs):
        # After the optimizer step: the gradients DistributedDataParallel
        # averaged (None for frozen parameters).
        if training:
            body = _unwrapped(net).body
            self.grads_.append((len(net.history), [
                None if p.grad is None else float(p.grad.double().sum())
                for p in body.parameters()]))
            self.eval_modules_.append((len(net.history), sum(
                not m.training for m in body.modules())))

    def on_epoch_end(self, net, **kwargs):
        # Before update_bn (at the end of training) recomputes the statistics.
        self.bn_.append([m.running_mean.clone() for m in _unwrapped(net).body.modules()
                         if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)])


def state(clf):
    return {k: v.clone() for k, v in clf.module_.state_dict().items()}


def recorded(clf):
    """What a fit with the :class:`Recorder` saw, as plain data."""
    recorder = dict(clf.net_.callbacks_)["recorder"]  # fit copies the callbacks
    return {
        "state": state(clf),
        "history": clf.history_.to_list(),
        "batches": recorder.batches_,
        "full_valid": recorder.full_valid_,
        "bn": [(m.running_mean.clone(), m.running_var.clone())
               for m in clf.module_.modules()
               if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)],
        "bn_reference": recorder.bn_reference_,
    }


def main_files_and_unfreezing(out, folder):
    rank = int(os.environ["RANK"])
    paths, y = digit_files(folder, N_FILES)
    result = {}

    # File paths, through the DataLoader that accelerator.prepare shards.
    clf = classifier(callbacks=[("recorder", Recorder())],
                     iterator_valid__batch_size=VALID_BATCH_SIZE).fit(paths, y)
    result["files"] = recorded(clf)

    # Without shuffling, the same batches as the same images in memory.
    unshuffled = dict(iterator_train__shuffle=False,
                      iterator_valid__batch_size=VALID_BATCH_SIZE)
    X = ImageReader().transform(paths)
    result["unshuffled"] = {
        "files": state(classifier(**unshuffled).fit(paths, y)),
        "arrays": state(classifier(**unshuffled).fit(X, y)),
    }

    # A frozen pretrained backbone (ImageNet weights installed with pip: no
    # download in either process), unfrozen for the second epoch: 64 images, 2
    # batches of 16 per process and epoch.
    X, y = digits(64)
    clf = classifier(module="efficientnet_lite0", pretrained=True, module__input_size=32,
                     freeze="backbone", unfreeze_at_epoch=2, validation_fraction=None,
                     lr=0.01, callbacks=[("body", BodyRecorder())]).fit(X, y)
    recorder = dict(clf.net_.callbacks_)["body"]
    result["unfreeze"] = {
        "parameters": [name for name, _ in clf.module_.body.named_parameters()],
        "history": clf.history_.to_list(),
        "body": recorder.body_ + [{k: v.clone()
                                   for k, v in clf.module_.body.state_dict().items()}],
        "grads": recorder.grads_,
        "eval_modules": recorder.eval_modules_,
        "bn": recorder.bn_,
        "frozen_blocks": clf.module_.frozen_blocks,
        "state": state(clf),
    }
    torch.save(result, os.path.join(out, f"rank{rank}.pt"))


#: The ``head_init='probe'`` fit: a pretrained backbone on 48 digits at 32 px,
#: no validation split, one epoch of 3 batches of 16: 2 on the main process, 1
#: on the other, so that the shard probes count 32 and 16 images.
N_PROBE = 48


class HeadRecorder(Callback):
    """The head of the first training batch (after ``ProbeHead``, before any step)."""

    def initialize(self):
        self.head_ = None
        return self

    def on_batch_begin(self, net, training=None, **kwargs):
        if training and self.head_ is None:
            linear = last_linear(_unwrapped(net))
            self.head_ = (linear.weight.detach().clone(), linear.bias.detach().clone())


def main_probe(out):
    """A ``head_init='probe'`` fit: each process's shard probe before averaging,
    the head the first training batch met, the final weights."""
    import skimgcls._callbacks as callbacks

    rank = int(os.environ["RANK"])
    probes = []  # what ProbeHead fitted on this process: its labels, the head
    fit_linear_head = callbacks.fit_linear_head  # ProbeHead's, recorded

    def recording_fit(features, y, weights, **kwargs):
        head = fit_linear_head(features, y, weights, **kwargs)
        probes.append({"y": y.copy(), "coef": head.coef.copy(),
                       "intercept": head.intercept.copy()})
        return head

    callbacks.fit_linear_head = recording_fit
    X, y = digits(N_PROBE)
    clf = classifier(module="efficientnet_lite0", pretrained=True, module__input_size=32,
                     head_init="probe", validation_fraction=None, max_epochs=1,
                     lr=1e-3, callbacks=[("head", HeadRecorder())]).fit(X, y)
    result = {"probes": probes, "start": dict(clf.net_.callbacks_)["head"].head_,
              "history": clf.history_.to_list(), "state": state(clf)}
    torch.save(result, os.path.join(out, f"rank{rank}.pt"))


def main(out):
    rank = int(os.environ["RANK"])
    X, y = digits(240)
    result = {}

    clf = classifier(callbacks=[("recorder", Recorder())],
                     checkpoint=os.path.join(out, "ckpt_full")).fit(X, y)
    schedule = dict(clf.net_.callbacks_)["lr_schedule"].lr_scheduler_
    result["full"] = {
        **recorded(clf),
        "distributed_type": str(clf.net_.accelerator.distributed_type),
        "num_processes": clf.net_.accelerator.num_processes,
        "scheduler_steps": schedule.last_epoch,
        "scheduler_total": schedule.total_steps,
        "proba": clf.predict_proba(X),
    }
    if clf.net_.accelerator.is_main_process:
        # without the test's callback, which load would refuse to import
        save(clf.set_params(callbacks=None), os.path.join(out, "model.skimgcls"))

    # Interrupted in epoch 2 (on every process at the same batch), then resumed.
    ckpt = os.path.join(out, "ckpt_resume")
    try:
        classifier(callbacks=[("recorder", Recorder(stop_at=(2, 2)))],
                   checkpoint=ckpt).fit(X, y)
        result["interrupted"] = False
    except KeyboardInterrupt:
        result["interrupted"] = True
    resumed = classifier(callbacks=[("recorder", Recorder())], checkpoint=ckpt).fit(X, y)
    recorder = dict(resumed.net_.callbacks_)["recorder"]
    result["resumed"] = {"state": state(resumed), "history": resumed.history_.to_list(),
                         "batches": recorder.batches_}
    torch.save(result, os.path.join(out, f"rank{rank}.pt"))


if __name__ == "__main__":
    if sys.argv[2:] == ["probe"]:
        main_probe(sys.argv[1])
    elif len(sys.argv) > 2:
        main_files_and_unfreezing(sys.argv[1], sys.argv[2])
    else:
        main(sys.argv[1])
