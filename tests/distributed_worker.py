"""One process of the data-parallel fit of ``test_distributed.py``.

Started by ``torchrun --nproc_per_node 2`` (see the test); each process
writes what it saw to ``<out>/rank<k>.pt``. Not a test module: it only runs
as a script.
"""

import hashlib
import os
import sys

import numpy as np
import torch
from skorch.callbacks import Callback

from skimgcls import CNNClassifier, save


def digits(n):
    from sklearn.datasets import load_digits

    data = load_digits()
    idx = np.random.RandomState(0).permutation(len(data.target))[:n]
    return (data.images[idx] / 16).astype(np.float32)[..., None], data.target[idx]


def classifier(**params):
    defaults = dict(module__width=4, max_epochs=2, batch_size=16, lr=0.02,
                    validation_fraction=0.25, early_stopping=False,
                    random_state=0, accelerator={"cpu": True})
    defaults.update(params)
    return CNNClassifier(**defaults)


def _unwrapped(net):
    return net.accelerator.unwrap_model(net.module_)


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
            logits = module(net.to_model_input(dataset_valid.X)).float()
        module.train(training)
        y = dataset_valid.y
        loss = torch.nn.functional.cross_entropy(logits, y)
        acc = (logits.argmax(1) == y).double().mean()
        self.full_valid_.append((float(loss), float(acc)))

    def on_train_end(self, net, X=None, **kwargs):
        # update_bn (an earlier callback) ran; redo it alone over all the
        # training batches of a single process, on a copy.
        module = _unwrapped(net)
        layers = [m for m in module.modules()
                  if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        saved = [(m.running_mean.clone(), m.running_var.clone(), m.momentum, m.training)
                 for m in layers]
        for m in layers:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        with torch.no_grad():
            for start in range(0, len(X), net.batch_size):
                images = net.to_model_input(X.X[start:start + net.batch_size])
                if len(images) > 1:
                    module(images)
        self.bn_reference_ = [(m.running_mean.clone(), m.running_var.clone())
                              for m in layers]
        for m, (mean, var, momentum, training) in zip(layers, saved):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.momentum = momentum
            m.train(training)


def state(clf):
    return {k: v.clone() for k, v in clf.module_.state_dict().items()}


def main(out):
    rank = int(os.environ["RANK"])
    X, y = digits(240)
    result = {}

    clf = classifier(callbacks=[("recorder", Recorder())],
                     checkpoint=os.path.join(out, "ckpt_full")).fit(X, y)
    recorder = dict(clf.net_.callbacks_)["recorder"]  # fit copies the callbacks
    schedule = dict(clf.net_.callbacks_)["lr_schedule"].lr_scheduler_
    result["full"] = {
        "distributed_type": str(clf.net_.accelerator.distributed_type),
        "num_processes": clf.net_.accelerator.num_processes,
        "state": state(clf),
        "history": clf.history_.to_list(),
        "batches": recorder.batches_,
        "full_valid": recorder.full_valid_,
        "bn": [(m.running_mean.clone(), m.running_var.clone())
               for m in clf.module_.modules()
               if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)],
        "bn_reference": recorder.bn_reference_,
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
    main(sys.argv[1])
