"""``FrameStack``: the frames of one camera, from any source the readers of ``xfusion.io.formats`` read."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from xfusion.errors import SequenceError
from xfusion.io.formats import open_source
from xfusion.io.intensity import IntensityScale, checked_unit


def _size(shape) -> str:
    return 'x'.join(str(n) for n in shape)


class FrameStack:
    """Frames of one camera, read one at a time: any source ``xfusion.io.formats`` reads.

    ``spec`` is a frame folder, ``file.tif``, ``file.h5[:/dataset/path]`` (an (N, H, W) dataset, or
    DataExchange), a Photron ``x.cih``/``x.cihx`` (+ ``x.mraw``) or a Phantom ``x.cine``. ``read(i)`` gives
    the stored frame (2-D, stored dtype); ``scale`` maps it to [0, 1] by one fixed range: ``value_range``
    when given, else the one the file's metadata give (the effective bit depth: 0..4095 for 12 bits in
    16-bit words), else the dtype's. What time matching and ``xfusion info`` need: ``format``,
    ``bit_depth``, ``frame_rate``, ``times`` (seconds from the camera's trigger, or None), ``time_source``,
    ``flat_field``, ``range_source``, ``notes``.

    ``check_first``: refuse frame 0 when it holds NaN or Inf (what a sequence checks when it is opened).
    The stack pickles without its open files (DataLoader workers reopen them).
    """

    def __init__(self, spec: str | Path, value_range: tuple[float, float] | None = None,
                 flat_correction: bool = True, check_first: bool = False):
        self.spec = str(spec)
        self.reader = reader = open_source(spec, flat_correction)
        self.path, self.kind, self.format = reader.path, reader.kind, reader.format
        self.length, self.shape, self.dtype = reader.length, tuple(reader.shape), np.dtype(reader.dtype)
        if self.length == 0:
            raise SequenceError(f'{self.spec}: no frames')
        self.bit_depth, self.frame_rate = reader.bit_depth, reader.frame_rate
        self.times, self.time_source = reader.times, reader.time_source
        self.flat_field, self.metadata_file, self.notes = reader.flat_field, reader.metadata_file, reader.notes
        if value_range is not None:
            self.scale, self.range_source = IntensityScale.for_dtype(self.dtype, value_range), 'given (--range)'
        else:
            self.scale = IntensityScale.for_dtype(self.dtype, reader.value_range,
                                                  f'{self.spec}: {reader.range_source}')
            self.range_source = reader.range_source
        check_range = value_range is None and reader.value_range is not None
        first = reader.first_frame(read=check_range or check_first)  # frame 0 read once for both checks
        if check_range:
            self._check_range(first)
        if check_first:
            checked_unit(self.scale.to_unit(self._checked(first, 0)), reader.where(0))

    def _check_range(self, first: np.ndarray) -> None:
        """Values beyond the range the metadata give mean the frames were rescaled (e.g. 12 -> 16 bits on export)."""
        peak = float(np.max(self._checked(first, 0)))
        if peak > self.scale.high:
            full = np.iinfo(self.dtype).max if self.dtype.kind in 'ui' else peak
            raise SequenceError(f'{self.reader.where(0)}: values up to {peak:g} exceed the range '
                                f'{self.scale.low:g}..{self.scale.high:g} of its {self.range_source}; the frames '
                                f'were rescaled: give --range 0 {full:g}')

    def __len__(self) -> int:
        return self.length

    @property
    def files(self) -> list[Path]:
        """The frame files of a folder source."""
        return getattr(self.reader, 'files', [])

    def _checked(self, img: np.ndarray, i: int) -> np.ndarray:
        """Frame i as read, refused when its size or dtype is not the stack's (a frame of another camera)."""
        if img.shape != self.shape:
            raise SequenceError(f'{self.reader.where(i)}: frame is {_size(img.shape)}, '
                                f'the stack is {_size(self.shape)}')
        if img.dtype != self.dtype:
            raise SequenceError(f'{self.reader.where(i)}: frame is {img.dtype}, the stack is {self.dtype} '
                                '(mixed bit depths)')
        return img

    def read(self, i: int) -> np.ndarray:
        """Frame i as stored (2-D, the stack's dtype)."""
        if not 0 <= i < self.length:
            raise IndexError(f'{self.spec}: frame {i} of {self.length}')
        return self._checked(self.reader.read(i), i)

    def read_unit(self, i: int) -> np.ndarray:
        """Frame i as float32 in [0, 1] (the fixed scale); NaN/Inf are an error naming the frame's file."""
        return checked_unit(self.scale.to_unit(self.read(i)), self.reader.where(i))

    def describe(self) -> dict:
        """What the readers see, for ``xfusion info`` and the sidecar of ``xfusion fuse``."""
        times = self.times
        return {
            'source': self.spec, 'format': self.format, 'frames': self.length, 'shape': list(self.shape),
            'dtype': str(self.dtype), 'bit_depth': self.bit_depth,
            'intensity_range': [self.scale.low, self.scale.high], 'range_source': self.range_source,
            'frame_rate': self.frame_rate, 'time_source': self.time_source,
            'time_span': None if times is None else [float(times[0]), float(times[-1])],
            'metadata_file': None if self.metadata_file is None else str(self.metadata_file),
            'flat_field': self.flat_field, 'notes': list(self.notes),
        }
