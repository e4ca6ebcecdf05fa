"""Intensities: one fixed map between stored values and [0, 1] for a whole camera, never per frame.

The range is the one the user gives (``--range``, or ``value_range`` in the options), else the one the
file's metadata give (the effective bit depth: 0..4095 for 12 bits in 16-bit words), else the dtype's
(float data are taken as already in [0, 1]). Frames go back to the same dtype and range on writing, so
16-bit data never pass through 8 bits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from xfusion.errors import InputError, SequenceError

RANGE_OPTION = '--range LOW HIGH / value_range: [low, high]'  # the two names one range has: command line, options


@dataclass(frozen=True)
class IntensityScale:
    """Fixed map between stored values and [0, 1]: unit = (stored - low) / (high - low)."""
    low: float
    high: float
    dtype: np.dtype

    @classmethod
    def for_dtype(cls, dtype, value_range: tuple[float, float] | None = None,
                  source: str = RANGE_OPTION) -> IntensityScale:
        """The scale of `value_range` when given, else the dtype's; `source` says where a bad range came from."""
        dtype = np.dtype(dtype)
        if value_range is not None:
            try:
                low, high = (float(v) for v in value_range)
            except (TypeError, ValueError):
                raise InputError(f'intensity range ({source}) must be two numbers LOW HIGH, '
                                 f'got {value_range!r}') from None
            if not (math.isfinite(low) and math.isfinite(high) and high > low):
                raise InputError(f'intensity range {low:g} {high:g} ({source}): HIGH must be above LOW '
                                 '(both finite), e.g. 0 4095 for 12-bit data')
            return cls(low, high, dtype)
        if dtype.kind in 'ui':
            return cls(0.0, float(np.iinfo(dtype).max), dtype)
        return cls(0.0, 1.0, dtype)  # float data are taken as already in [0, 1]

    def to_unit(self, stored: np.ndarray) -> np.ndarray:
        return ((stored.astype(np.float32) - self.low) / (self.high - self.low)).astype(np.float32)

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        stored = np.asarray(unit, dtype=np.float64) * (self.high - self.low) + self.low
        if self.dtype.kind in 'ui':
            info = np.iinfo(self.dtype)
            return np.clip(np.rint(stored), info.min, info.max).astype(self.dtype)
        return stored.astype(self.dtype)


def checked_unit(img: np.ndarray, where: str) -> np.ndarray:
    """A [0, 1] frame, with an error naming it if it holds NaN or Inf (float data only can)."""
    if not np.isfinite(img).all():
        raise SequenceError(f'{where}: frame holds NaN or Inf values')
    return img


def bits_range(bits: int, word_bits: int, side: str = 'lower') -> tuple[float, float]:
    """Stored range of `bits` effective bits in `word_bits`-bit words: the low bits (0..2^bits-1), or the high ones."""
    high = (1 << bits) - 1
    if side.lower() == 'higher':
        high <<= word_bits - bits
    return 0.0, float(high)
