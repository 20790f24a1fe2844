"""Labelled data sets bundled with the dependencies (nothing is downloaded).

``digits``: scikit-learn's 8x8 handwritten digits (1797 images, 10 classes).  Pixels are
scaled from 0..16 to 0..1 and laid out NCHW ``(N, 1, 8, 8)`` float32, as the example
model's ONNX input.  The split is fixed: :func:`sklearn.model_selection.train_test_split`
with ``test_size=0.2``, ``random_state=0`` and stratified by label, giving 1437 training
and 360 held-back test images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import HwconvError

__all__ = ["Split", "digits", "load", "NAMES"]

#: Data sets :func:`load` knows.
NAMES = ("digits",)


@dataclass(frozen=True)
class Split:
    """A fixed train/test split: inputs in the model's layout, integer labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def digits():
    """The digits split described in the module docstring."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    x_train, x_test, y_train, y_test = train_test_split(
        x, d.target, test_size=0.2, random_state=0, stratify=d.target)
    return Split("digits", x_train, y_train.astype(np.int64), x_test,
                 y_test.astype(np.int64))


def load(name):
    """The split named ``name`` (one of :data:`NAMES`)."""
    if name not in NAMES:
        raise HwconvError(f"unknown data set {name!r}; known: {', '.join(NAMES)}")
    return {"digits": digits}[name]()
