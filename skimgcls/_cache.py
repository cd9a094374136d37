"""Decode once, train many epochs: a memory-mapped store of decoded images.

:class:`ImageReader(cache=directory) <skimgcls.ImageReader>` keeps every file
it decodes, resized and as uint8, in a memory-mapped file, so that the second
and later epochs of a fit on paths read array slices instead of decoding
JPEGs again. One :class:`DecodeCache` serves one reader configuration (size,
mode, interpolation, aspect) in a sub-folder of the directory::

    <directory>/64x64-RGB-bilinear-stretch-v1/
        index.jsonl   one line per entry: [path, file size, mtime in ns];
                      line i is slot i (append-only)
        images.u8     slot i: H*W*C bytes at offset i*H*W*C
        filled.u8     slot i: one byte, 1 once the slot's bytes are written
        lock          taken (flock / msvcrt) to append entries or grow files
        meta.json     what the folder holds, for people

Why it is safe for several processes (DataLoader workers, several training
processes, several fits) at once:

* an entry is keyed by the absolute path, the file's size and its
  modification time (ns), all read by ``os.stat`` at every read: a file that
  changes on disk gets a new key and is decoded again, never served stale;
* slots are allocated only under the lock, by appending to the index, and
  never reused, so every process maps a key to the same slot;
* the image bytes are written first and the slot's filled flag after them
  (two write calls); a reader takes a slot only when its flag is set and
  otherwise decodes the file itself (and fills the slot, with the same
  bytes), so a process that dies half-way leaves a slot that the next reader
  fills;
* the files only grow, under the lock; readers re-map them when a slot lies
  past what they mapped.

Entries of files that changed or disappeared stay in the files until the
directory is deleted; delete it to reclaim the space (never while a fit uses
it).
"""

import contextlib
import json
import os
from pathlib import Path

import numpy as np

from ._io import as_size, read_all, stack_images

__all__ = ["CHANNELS", "DecodeCache", "open_cache"]

#: Channels of each color mode that can be cached.
CHANNELS = {"RGB": 3, "L": 1, "RGBA": 4}

FORMAT_VERSION = 1
MIN_SLOTS = 256  # grow the files by at least this many slots (fewer re-maps)

_OPEN = {}  # (pid, folder) -> DecodeCache, one per process


def folder_name(read_kwargs):
    """The sub-folder of one reader configuration, e.g. ``64x64-RGB-bilinear-stretch-v1``."""
    h, w = read_kwargs["size"]
    aspect = read_kwargs["keep_aspect_ratio"] or "stretch"
    return (f"{h}x{w}-{read_kwargs['mode']}-{read_kwargs['interpolation']}-{aspect}"
            f"-v{FORMAT_VERSION}")


def open_cache(directory, read_kwargs):
    """The :class:`DecodeCache` of ``read_kwargs`` in ``directory``, opened once per process.

    Parameters
    ----------
    directory : str or path-like
        The cache directory (created if missing).
    read_kwargs : dict
        ``mode``, ``size`` (an ``(H, W)`` pair), ``interpolation`` and
        ``keep_aspect_ratio`` of :func:`skimgcls.datasets.read_image`; ``mode``
        and ``size`` must be set, since every entry has one shape.

    Returns
    -------
    cache : DecodeCache
    """
    if read_kwargs.get("size") is None or read_kwargs.get("mode") is None:
        raise ValueError(
            "ImageReader(cache=...) stores every image at one size and color mode; "
            f"got size={read_kwargs['size']!r} and mode={read_kwargs['mode']!r}. "
            "Pass both, e.g. ImageReader(size=(64, 64), mode='RGB', cache=directory)."
        )
    read_kwargs = {**read_kwargs, "size": as_size(read_kwargs["size"])}
    folder = Path(directory).expanduser().resolve() / folder_name(read_kwargs)
    key = (os.getpid(), str(folder))  # a forked worker opens its own files and lock
    if key not in _OPEN:
        _OPEN[key] = DecodeCache(folder, read_kwargs)
    return _OPEN[key]


@contextlib.contextmanager
def file_lock(path):
    """Hold an exclusive lock on ``path`` (created if missing) across processes."""
    with open(path, "a+b") as f:
        if os.name == "nt":  # pragma: no cover - Windows
            import msvcrt

            f.seek(0)
            msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)
            try:
                yield
            finally:
                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def write_at(fd, offset, data):
    """Write ``data`` at ``offset`` of an open file, in one system call."""
    if hasattr(os, "pwrite"):
        os.pwrite(fd, data, offset)
    else:  # pragma: no cover - Windows; reads use the memory maps, not the offset
        os.lseek(fd, offset, os.SEEK_SET)
        os.write(fd, data)


def file_key(path):
    """``(absolute path, size, mtime_ns)`` of a file, or None when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns)


class DecodeCache:
    """Decoded images of one reader configuration, in memory-mapped files.

    Use :func:`open_cache`; see the module docstring for the layout and why
    several processes can fill and read one cache at once.

    Parameters
    ----------
    folder : path-like
        The configuration's sub-folder (created if missing).
    read_kwargs : dict
        Keyword arguments of :func:`skimgcls.datasets.read_image`.
    """

    def __init__(self, folder, read_kwargs):
        self.folder = Path(folder)
        self.read_kwargs = dict(read_kwargs)
        h, w = read_kwargs["size"]
        self.shape = (h, w, CHANNELS[read_kwargs["mode"]])
        self.item_bytes = h * w * self.shape[2]
        self.folder.mkdir(parents=True, exist_ok=True)
        self.lock_path = self.folder / "lock"
        with file_lock(self.lock_path):
            self._create_files()
        flags = os.O_RDWR | getattr(os, "O_BINARY", 0)
        self._data_fd = os.open(self.folder / "images.u8", flags)
        self._flag_fd = os.open(self.folder / "filled.u8", flags)
        self.slots = {}  # key -> slot
        self._n_lines = 0
        self._index_offset = 0
        self._data = self._flags = None
        self._mapped = 0

    def _create_files(self):
        for name in ("images.u8", "filled.u8", "index.jsonl"):
            (self.folder / name).touch(exist_ok=True)
        meta = self.folder / "meta.json"
        if not meta.exists():  # for people; written whole or not at all
            tmp = meta.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({
                "format_version": FORMAT_VERSION, "shape": list(self.shape),
                "dtype": "uint8", "reader": {k: v if not isinstance(v, tuple) else list(v)
                                             for k, v in self.read_kwargs.items()},
            }, indent=1))
            os.replace(tmp, meta)

    # -- the index -------------------------------------------------------------
    def _refresh_index(self, *, locked=False):
        """Read the index lines appended since the last call (complete lines only)."""
        with open(self.folder / "index.jsonl", "rb") as f:
            f.seek(self._index_offset)
            tail = f.read()
        end = tail.rfind(b"\n") + 1
        if locked and end < len(tail):
            # A partial last line under the lock: its writer died mid-write.
            # End it, so that it counts as one (unusable) slot for everybody.
            with open(self.folder / "index.jsonl", "ab") as f:
                f.write(b"\n")
            tail, end = tail + b"\n", len(tail) + 1
        for line in tail[:end].splitlines():
            try:
                path, size, mtime = json.loads(line)
                self.slots[(path, size, mtime)] = self._n_lines
            except (ValueError, TypeError):
                pass  # a damaged line still takes its slot number
            self._n_lines += 1
        self._index_offset += end

    def _allocate(self, keys):
        """Give slots to ``keys`` (under the lock) and grow the files to hold them.

        The files grow before the index lines are appended, so a slot that a
        process reads in the index always lies inside the files.
        """
        with file_lock(self.lock_path):
            self._refresh_index(locked=True)
            new = [k for k in dict.fromkeys(keys) if k not in self.slots]
            if not new:
                return
            needed = self._n_lines + len(new)
            capacity = os.fstat(self._flag_fd).st_size
            if needed > capacity:
                grown = max(needed, 2 * capacity, MIN_SLOTS)
                os.ftruncate(self._data_fd, grown * self.item_bytes)
                os.ftruncate(self._flag_fd, grown)
            lines = b"".join(json.dumps(list(k)).encode() + b"\n" for k in new)
            with open(self.folder / "index.jsonl", "ab") as f:
                f.write(lines)
            self._refresh_index(locked=True)

    def _map(self, n_slots):
        """Memory-map at least ``n_slots`` slots (re-map after the files grew)."""
        if n_slots <= self._mapped:
            return
        capacity = os.fstat(self._flag_fd).st_size
        self._flags = np.memmap(self.folder / "filled.u8", dtype=np.uint8, mode="r",
                                shape=(capacity,))
        self._data = np.memmap(self.folder / "images.u8", dtype=np.uint8, mode="r",
                               shape=(capacity, *self.shape))
        self._mapped = capacity

    # -- reading ---------------------------------------------------------------
    def read(self, paths, n_jobs=None):
        """Images of ``paths``: from the cache where filled, else decoded and stored.

        Parameters
        ----------
        paths : ndarray of shape (n,), dtype=object
            Image files.
        n_jobs : int or None, default=None
            Threads that decode the files not in the cache yet.

        Returns
        -------
        images : ndarray of shape (n, H, W, C), dtype=uint8
        """
        keys = [file_key(p) for p in paths]
        if any(k is not None and k not in self.slots for k in keys):
            self._refresh_index()  # another process may have added them
            missing = [k for k in keys if k is not None and k not in self.slots]
            if missing:
                self._allocate(missing)
        slots = np.array([-1 if k is None else self.slots[k] for k in keys], dtype=np.intp)
        self._map(int(slots.max(initial=-1)) + 1)
        known = slots >= 0
        hit = np.zeros(len(slots), dtype=bool)
        hit[known] = self._flags[slots[known]] == 1
        out = np.empty((len(paths), *self.shape), dtype=np.uint8)
        if hit.any():
            out[hit] = self._data[slots[hit]]
        todo = np.flatnonzero(~hit)
        if len(todo):
            out[todo] = self._decode(paths[todo], n_jobs)
            self._store(todo, out, keys, slots, paths)
        return out

    def _decode(self, paths, n_jobs):
        images, _, _ = read_all(paths, self.read_kwargs, "raise", n_jobs)
        images = stack_images(images, paths)
        if images.shape[1:] != self.shape or images.dtype != np.uint8:
            raise ValueError(  # read_image with a size and a mode cannot do this
                f"Decoded images of shape {images.shape[1:]} and dtype {images.dtype} "
                f"for a cache of {self.shape} uint8 images.")
        return images

    def _store(self, todo, out, keys, slots, paths):
        """Write decoded images to their slots: the bytes first, then the flag."""
        for i in todo:
            # Skip files that changed while they were decoded: their key is old.
            if slots[i] < 0 or file_key(paths[i]) != keys[i]:
                continue
            slot = int(slots[i])
            write_at(self._data_fd, slot * self.item_bytes, out[i].tobytes())
            write_at(self._flag_fd, slot, b"\x01")

    def close(self):
        """Close the files of this cache (and forget it in this process)."""
        self._data = self._flags = None
        self._mapped = 0
        for fd in (self._data_fd, self._flag_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        _OPEN.pop((os.getpid(), str(self.folder)), None)
