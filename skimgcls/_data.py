"""In-memory training data for skorch: NHWC tensors batched by slicing.

:class:`ImageTensorDataset` holds validated images, labels and weights;
:func:`image_batches` is skorch's ``iterator_train``/``iterator_valid``: it
slices that dataset directly (one ``randperm`` per epoch, no DataLoader, no
per-sample ``__getitem__`` + collate) and falls back to a DataLoader for
anything else (file paths via :class:`skimgcls.datasets.ImagePathDataset`,
workers, samplers).
"""

import numpy as np
import torch

__all__ = ["ImageTensorDataset", "collate_batch", "image_batches"]


class ImageTensorDataset(torch.utils.data.Dataset):
    """In-memory NHWC images, labels and sample weights, batched by slicing.

    Parameters
    ----------
    X : ndarray of shape (n_samples, H, W, C)
        Validated images (uint8, uint16 or float32).
    y : ndarray of shape (n_samples,), default=None
        Encoded labels (0 .. n_classes - 1).
    sample_weight : ndarray of shape (n_samples,), default=None
        Per-sample loss weights; ones when None.
    """

    def __init__(self, X, y=None, sample_weight=None):
        self.X = torch.from_numpy(np.ascontiguousarray(X))
        n = len(self.X)
        self.y = None if y is None else torch.as_tensor(y, dtype=torch.long)
        if sample_weight is None:
            sample_weight = np.ones(n, dtype=np.float32)
        self.sample_weight = torch.as_tensor(sample_weight, dtype=torch.float32)

    def __len__(self):
        return len(self.X)

    def _batch(self, idx):
        """The batch at ``idx`` (index tensor or slice), as ``__getitems__``."""
        Xb = {"X": self.X[idx], "sample_weight": self.sample_weight[idx]}
        return Xb, None if self.y is None else self.y[idx]

    def __getitems__(self, indices):
        return self._batch(torch.as_tensor(indices, dtype=torch.long))

    def __getitem__(self, i):
        Xb, yb = self.__getitems__([i])
        return {k: v[0] for k, v in Xb.items()}, None if yb is None else yb[0]


def collate_batch(batch):
    """Identity collate: :meth:`ImageTensorDataset.__getitems__` already batches."""
    return batch


class _SliceBatches:
    """Batches of an :class:`ImageTensorDataset` by tensor slicing.

    What a ``DataLoader`` with a batch sampler does, minus its per-batch
    Python work: one ``randperm`` per epoch when shuffling, else contiguous
    slices (views, no copy).
    """

    def __init__(self, dataset, batch_size, shuffle, drop_last):
        self.dataset, self.batch_size = dataset, batch_size
        self.shuffle, self.drop_last = shuffle, drop_last

    def __len__(self):
        n, b = len(self.dataset), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self):
        n, b = len(self.dataset), self.batch_size
        stop = n - n % b if self.drop_last else n
        # Draw from torch's RNG exactly as a DataLoader over a RandomSampler
        # does (its base seed, then the sampler's seed): in-memory images and
        # files then train the same model, with the same augmentation draws.
        torch.empty((), dtype=torch.int64).random_()
        order = None
        if self.shuffle:
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        for start in range(0, stop, b):
            end = min(start + b, n)
            yield self.dataset._batch(slice(start, end) if order is None
                                      else order[start:end])


def image_batches(dataset, batch_size=1, shuffle=False, collate_fn=collate_batch,
                  drop_last=False, **kwargs):
    """Iterate over ``dataset`` in batches; skorch's ``iterator_train/valid``.

    An :class:`ImageTensorDataset` with no other DataLoader option is sliced
    directly (the fast path); anything else (``num_workers``, a sampler, a
    custom dataset...) gets a :class:`torch.utils.data.DataLoader` with the
    same arguments.
    """
    if (isinstance(dataset, ImageTensorDataset) and not kwargs
            and collate_fn is collate_batch):
        return _SliceBatches(dataset, batch_size, shuffle, drop_last)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle,
                                       collate_fn=collate_fn, drop_last=drop_last,
                                       **kwargs)
