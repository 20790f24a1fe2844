"""Writing result files so that a failure never leaves a half-written file behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import HwconvError

__all__ = ["write_atomic", "save_npy"]


def write_atomic(path, write, mode="wb"):
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then rename it.

    The temporary file lives in the destination folder so that :func:`os.replace` is an
    atomic rename; if ``write`` raises, the temporary file is removed and ``path`` is
    left as it was.  A folder that cannot be written raises
    :class:`~hwconv.errors.HwconvError`.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise HwconvError(f"{path}: cannot write ({e.strerror})") from None
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _umask():
    # mkstemp creates 0600 files; give the result the permissions open() would.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_npy(path, array):
    """:func:`numpy.save` through :func:`write_atomic` (no ``.npy`` suffix is added)."""
    write_atomic(path, lambda f: np.save(f, array, allow_pickle=False))
