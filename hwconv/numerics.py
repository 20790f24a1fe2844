"""Integer building blocks shared by the golden model and the hardware generators.

Rounding: hwconv's quantizer uses **round half up**, ``floor(v * M / 2**s + 1/2)``,
computed exactly as ``(v * M + 2**(s-1)) >> s`` with an arithmetic (flooring) shift.
Models imported from onnxruntime use **round half to even** (ties go to the even
neighbour), as onnxruntime's own integer kernels do:
``(v * M + 2**(s-1) - 1 + bit_s(v * M)) >> s``.  The mode is a parameter of every
rescaling (:class:`Requant`, :class:`~hwconv.quant.QAdd`), and the hardware implements
both.  Saturation clamps to the output type's range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import HwconvError

#: Largest right shift a requantizer uses; keeps ``acc * M`` inside int64 with margin.
MAX_SHIFT = 46
#: Default fixed-point multiplier width (unsigned bits).
MULT_BITS = 16

DTYPES = {"int8": (-128, 127), "uint8": (0, 255)}
#: Rounding modes of :func:`round_shift`.
ROUNDING = ("half_up", "half_even")


@dataclass(frozen=True)
class QParams:
    """Per-tensor affine quantization: ``real = scale * (q - zero_point)``.

    Parameters
    ----------
    scale : float
        Positive step size.
    zero_point : int
        The integer that represents real 0.0; padding uses it.
    dtype : {"int8", "uint8"}
    """

    scale: float
    zero_point: int
    dtype: str = "int8"

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise HwconvError(f"activation dtype must be int8 or uint8, not {self.dtype!r}")
        if not np.isfinite(self.scale) or self.scale <= 0:
            raise HwconvError(f"quantization scale must be positive and finite, "
                              f"not {self.scale!r}")
        lo, hi = DTYPES[self.dtype]
        if not lo <= self.zero_point <= hi:
            raise HwconvError(f"zero point {self.zero_point} is outside {self.dtype} "
                              f"[{lo}, {hi}]")
        object.__setattr__(self, "scale", float(self.scale))
        object.__setattr__(self, "zero_point", int(self.zero_point))

    @property
    def qmin(self):
        return DTYPES[self.dtype][0]

    @property
    def qmax(self):
        return DTYPES[self.dtype][1]

    @property
    def signed(self):
        return self.dtype == "int8"

    @classmethod
    def from_range(cls, rmin, rmax, dtype="int8", symmetric=False):
        """Affine parameters covering ``[min(rmin, 0), max(rmax, 0)]``."""
        lo, hi = DTYPES[dtype]
        rmin, rmax = min(float(rmin), 0.0), max(float(rmax), 0.0)
        if symmetric:
            m = max(-rmin, rmax)
            rmin, rmax = -m, m
        if rmax - rmin <= 0:
            return cls(1.0, 0 if dtype == "int8" else 0, dtype)
        if symmetric and dtype == "int8":
            return cls(rmax / hi, 0, dtype)
        if symmetric:
            return cls((rmax - rmin) / (hi - lo), (lo + hi + 1) // 2, dtype)
        scale = (rmax - rmin) / (hi - lo)
        zp = int(np.clip(np.round(lo - rmin / scale), lo, hi))
        return cls(scale, zp, dtype)

    def quantize(self, x):
        """Float to integer: round half to even (as ONNX QuantizeLinear), saturate."""
        q = np.rint(np.asarray(x, dtype=np.float64) / self.scale) + self.zero_point
        return np.clip(q, self.qmin, self.qmax).astype(np.int64)

    def dequantize(self, q):
        return ((np.asarray(q, dtype=np.float64) - self.zero_point) * self.scale)\
            .astype(np.float32)

    def to_json(self):
        return {"scale": self.scale, "zero_point": self.zero_point, "dtype": self.dtype}


def round_shift(v, shift, rounding="half_up"):
    """``v / 2**shift`` rounded to an integer, exactly, element-wise.

    ``rounding`` is ``"half_up"`` (ties towards +inf) or ``"half_even"``.
    """
    v = np.asarray(v, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    half = np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 0)
    if rounding == "half_up":
        return np.right_shift(v + half, shift)
    if rounding == "half_even":
        odd = np.where(shift > 0, np.right_shift(v, shift) & 1, 0)
        return np.right_shift(v + np.maximum(half - 1, 0) + odd, shift)
    raise HwconvError(f"rounding must be one of {ROUNDING}, not {rounding!r}")


@dataclass(frozen=True, eq=False)
class Requant:
    """Fixed-point scaling ``v -> round_half_up(v * multiplier / 2**shift)``.

    ``multiplier`` and ``shift`` are scalars or per-channel arrays (last axis).
    The multiplier is unsigned, at most ``mult_bits`` wide; a real ratio of 0 gives
    multiplier 0.
    """

    multiplier: np.ndarray
    shift: np.ndarray
    mult_bits: int = MULT_BITS
    rounding: str = "half_up"

    @classmethod
    def from_ratio(cls, ratio, mult_bits=MULT_BITS, rounding="half_up"):
        """Nearest fixed-point representation of a non-negative real ``ratio``."""
        ratio = np.atleast_1d(np.asarray(ratio, dtype=np.float64))
        if np.any(~np.isfinite(ratio)) or np.any(ratio < 0):
            raise HwconvError(f"requantization ratio must be finite and >= 0, "
                              f"got {ratio.min()}")
        mult = np.zeros(ratio.shape, dtype=np.int64)
        shift = np.zeros(ratio.shape, dtype=np.int64)
        for i, r in enumerate(ratio):
            if r == 0:
                continue
            e = int(np.floor(np.log2(r)))
            s = mult_bits - 1 - e
            if s < 0:
                raise HwconvError(f"requantization ratio {r:.3g} needs more than "
                                  f"{mult_bits} multiplier bits")
            s = min(s, MAX_SHIFT)
            m = int(round(r * 2.0 ** s))
            if m >= 1 << mult_bits:
                m, s = m >> 1, s - 1
            mult[i], shift[i] = m, s
        return cls(mult, shift, mult_bits, rounding)

    @classmethod
    def identity(cls, channels=1, mult_bits=MULT_BITS, rounding="half_up"):
        s = mult_bits - 1
        return cls(np.full(channels, 1 << s, dtype=np.int64), np.full(channels, s, np.int64),
                   mult_bits, rounding)

    @property
    def ratio(self):
        return self.multiplier / 2.0 ** self.shift

    def apply(self, v):
        """``v * multiplier / 2**shift`` rounded (:attr:`rounding`), exact in int64."""
        v = np.multiply(np.asarray(v, dtype=np.int64), self.multiplier)
        shift = self.shift
        if self.rounding != "half_up":
            return round_shift(v, shift, self.rounding)
        if np.all(shift == shift.flat[0]):
            shift = int(shift.flat[0])
            if shift:
                v += 1 << (shift - 1)
                v >>= shift
            return v
        v += np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0)
        v >>= shift
        return v

    def check_range(self, acc_bound, what):
        """Refuse a requantizer whose product could leave int64."""
        prod = int(acc_bound) * int(np.max(self.multiplier, initial=0))
        if prod >= 1 << 62:
            raise HwconvError(f"{what}: accumulator bound {acc_bound} times multiplier "
                              f"overflows 62 bits; use fewer multiplier bits")

    def to_json(self):
        return {"multiplier": self.multiplier.tolist(), "shift": self.shift.tolist(),
                "mult_bits": self.mult_bits, "rounding": self.rounding}


def saturate(v, lo, hi):
    return np.clip(v, lo, hi)


def signed_bits(bound):
    """Two's-complement width holding every integer in ``[-bound, bound]``."""
    return int(bound).bit_length() + 1
