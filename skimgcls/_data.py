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

__all__ = ["ImageTensorDataset", "SliceBatches", "collate_batch", "image_batches"]


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


class SliceBatches:
    """Batches of an :class:`ImageTensorDataset` by tensor slicing.

    What a ``DataLoader`` with a batch sampler does, minus its per-batch
    Python work: one ``randperm`` per epoch when shuffling, else contiguous
    slices (views, no copy).

    :meth:`shard` makes it yield one process's share of the batches in
    data-parallel training: every process draws the same permutation (their
    torch generators are seeded alike) and cuts the same global batches, and
    process ``i`` of ``n`` takes batches ``i, i + n, i + 2n...``, as
    Accelerate's ``BatchSamplerShard`` does for a ``DataLoader``.
    """

    def __init__(self, dataset, batch_size, shuffle, drop_last):
        self.dataset, self.batch_size = dataset, batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.num_shards, self.shard_index, self.even = 1, 0, True

    def shard(self, num_shards, shard_index, *, even):
        """Yield only the batches of process ``shard_index`` of ``num_shards``.

        Parameters
        ----------
        num_shards, shard_index : int
            Number of processes and this process's index.
        even : bool
            True (training): every process runs ``ceil(n_batches / num_shards)``
            batches, those short of a batch repeat the first global batches
            (each optimizer step needs all processes). False (evaluation):
            each batch is seen once, and a process short of a batch yields an
            empty one, so that all processes still take the same number of
            steps (the results are gathered per step).

        Returns
        -------
        self
        """
        if not 0 <= shard_index < num_shards:
            raise ValueError(f"shard_index must be in [0, {num_shards}); "
                             f"got {shard_index}.")
        self.num_shards, self.shard_index, self.even = num_shards, shard_index, even
        return self

    def _n_global(self):
        n, b = len(self.dataset), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __len__(self):
        return -(-self._n_global() // self.num_shards)

    def __iter__(self):
        n, b = len(self.dataset), self.batch_size
        n_global = self._n_global()
        # Draw from torch's RNG exactly as a DataLoader over a RandomSampler
        # does (its base seed, then the sampler's seed): in-memory images and
        # files then train the same model, with the same augmentation draws.
        torch.empty((), dtype=torch.int64).random_()
        order = None
        if self.shuffle:
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        for step in range(len(self)):
            k = step * self.num_shards + self.shard_index
            if k >= n_global:
                if not self.even:  # an empty batch: the step, no sample
                    yield self.dataset._batch(slice(n, n))
                    continue
                k %= n_global  # repeat from the start, as Accelerate does
            start, end = k * b, min(k * b + b, n)
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
        return SliceBatches(dataset, batch_size, shuffle, drop_last)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle,
                                       collate_fn=collate_fn, drop_last=drop_last,
                                       **kwargs)
