"""Progress bars that follow a ``verbose`` level and degrade to silence.

One small API for every long loop of the package (training epochs,
prediction batches, reading image folders):

>>> from skimgcls.utils._progress import progress_bar, track
>>> total = 0
>>> for i in track(range(3), desc="reading", verbose=0):
...     total += i
>>> with progress_bar(total=10, desc="epoch 1/2", verbose=0) as bar:
...     bar.update(10)
...     bar.set_postfix(loss=0.5)
>>> total
3

``verbose=0`` never prints. With ``verbose >= 1`` a :mod:`tqdm` bar is
written to ``stderr``; when tqdm is not installed (it is the ``progress``
extra, ``pip install "skimgcls[progress]"``) the bar is silently replaced by
a stand-in that prints nothing, so callers never need to check.
"""

import contextlib
import sys

__all__ = ["bars_on_terminals_only", "progress_bar", "track", "has_tqdm"]

#: Whether bars are drawn only when ``stderr`` is a terminal (the command line
#: sets it, through :func:`bars_on_terminals_only`; a notebook's ``stderr`` is
#: no terminal but draws bars).
_TERMINALS_ONLY = False


@contextlib.contextmanager
def bars_on_terminals_only():
    """Within the block, progress bars are drawn only on a terminal.

    Output piped to a file or a log would otherwise hold every redraw of a
    bar. The command line runs under it.
    """
    global _TERMINALS_ONLY
    before, _TERMINALS_ONLY = _TERMINALS_ONLY, True
    try:
        yield
    finally:
        _TERMINALS_ONLY = before


def has_tqdm():
    """Return True if :mod:`tqdm` can be imported."""
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


class _SilentBar:
    """A stand-in for ``tqdm.tqdm`` that prints nothing."""

    def __init__(self, total=None):
        self.total = total
        self.n = 0

    def update(self, n=1):
        self.n += n

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        pass

    def set_description(self, desc=None, refresh=True):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def progress_bar(*, total=None, desc=None, unit="it", verbose=1, leave=False,
                 delay=0.0, disable=False):
    """Return a progress bar: a ``tqdm.tqdm`` or a silent stand-in.

    Parameters
    ----------
    total : int or None, default=None
        Expected number of steps; None shows a counter without a bar.
    desc : str or None, default=None
        Text in front of the bar, e.g. ``'epoch 3/15'``.
    unit : str, default='it'
        Name of one step, e.g. ``'batch'`` or ``'image'``.
    verbose : int, default=1
        0 returns the silent stand-in; any other value a tqdm bar (when tqdm
        is installed).
    leave : bool, default=False
        Keep the finished bar on screen (True) or erase it (False).
    delay : float, default=0.0
        Show the bar only after this many seconds, so that short loops stay
        quiet.
    disable : bool, default=False
        Force the silent stand-in, e.g. on all but the main process of a
        multi-GPU run.

    Returns
    -------
    bar : object
        Has ``update(n)``, ``set_postfix(**values)``, ``set_description(s)``,
        ``close()`` and works as a context manager.
    """
    if (not verbose or disable or not has_tqdm()
            or (_TERMINALS_ONLY and not sys.stderr.isatty())):
        return _SilentBar(total)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=leave, delay=delay,
                dynamic_ncols=True)


def track(iterable, *, total=None, desc=None, unit="it", verbose=1, leave=False,
          delay=0.0, disable=False):
    """Iterate over ``iterable`` while advancing a progress bar.

    Parameters
    ----------
    iterable : iterable
        What to iterate over.
    total : int or None, default=None
        Number of items; ``len(iterable)`` when None and it has a length.
    desc, unit, verbose, leave, delay, disable
        As in :func:`progress_bar`.

    Yields
    ------
    item : object
        The items of ``iterable``, unchanged.
    """
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    with progress_bar(total=total, desc=desc, unit=unit, verbose=verbose,
                      leave=leave, delay=delay, disable=disable) as bar:
        for item in iterable:
            yield item
            bar.update(1)
