"""hwconv: convolutional networks to bit-exact streaming hardware pipelines."""

from .errors import FitError, HwconvError, LayerError, UnsupportedError

__version__ = "0.1.0"
__all__ = ["HwconvError", "LayerError", "UnsupportedError", "FitError", "__version__"]
