"""Photron MRAW: frames back to back in ``x.mraw``, described by ``x.cih`` / ``x.cihx`` (``metadata.photron_cih``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from xfusion.errors import SequenceError
from xfusion.io.metadata.photron_cih import read_cih
from xfusion.io.reader import CameraReader, times_from_rate

MRAW_HEADERS = ('.cih', '.cihx')


class MrawReader(CameraReader):
    """Photron MRAW: frames back to back in ``x.mraw`` (8-bit, 16-bit little-endian words, or 12-bit packed:
    two pixels in three bytes), described by ``x.cih`` (text) or ``x.cihx`` (XML), which pyMRAW reads.

    The intensity range is the header's *effective* bit depth (``EffectiveBit Depth``, in the low or high
    bits of the word as ``EffectiveBit Side`` says): 0..4095 for 12 bits in the low bits of 16-bit words.
    Frame times: frame ``Start Frame + i`` at that number / ``Record Rate(fps)`` (the trigger at 0).
    """
    kind, format = 'mraw', 'Photron MRAW'
    suffixes = MRAW_HEADERS

    def __init__(self, header: Path):
        super().__init__()
        self.path = self.header = header
        self.cih = cih = read_cih(header)
        self.length, self.shape, self.color_bit = cih.count, cih.shape, cih.color_bit
        h, w = self.shape
        self.dtype = np.dtype(np.uint8 if self.color_bit == 8 else np.uint16)
        self.bit_depth, self.value_range = cih.bit_depth, cih.value_range
        self.range_source = f'{cih.bit_depth}-bit effective in the {cih.bit_side.lower()} bits, {header.suffix} header'
        self.format = f'Photron MRAW ({header.suffix} header, {self.color_bit}-bit ' \
                      f'{"packed" if self.color_bit == 12 else "words"})'
        self.frame_rate = cih.frame_rate
        self.times = times_from_rate(self.length, self.frame_rate, cih.first_frame)
        if self.times is not None:
            self.time_source = cih.time_source
        mraw = [header.with_suffix(s) for s in ('.mraw', '.MRAW') if header.with_suffix(s).is_file()]
        if not mraw:
            raise SequenceError(f'{header}: no {header.with_suffix(".mraw").name} beside it (the frames)')
        self.mraw = mraw[0]
        self.frame_bytes = h * w * self.color_bit // 8
        size, expected = self.mraw.stat().st_size, self.length * self.frame_bytes
        if size < expected or self.length < 1:
            raise SequenceError(f'{self.mraw}: truncated: the header gives {self.length} frames of {h}x{w} at '
                                f'{self.color_bit} bits ({expected} bytes), the file has {size} bytes')

    @classmethod
    def claims(cls, path: Path, dataset: str) -> bool:
        return path.suffix.lower() in cls.suffixes + ('.mraw',)

    @classmethod
    def open(cls, path: Path, dataset: str = '', flat_correction: bool = True) -> CameraReader:
        if path.suffix.lower() == '.mraw':  # the frames: their header has the same name
            headers = [path.with_suffix(s) for s in MRAW_HEADERS if path.with_suffix(s).is_file()]
            if not headers:
                raise SequenceError(f'{path}: no {path.with_suffix(".cih").name} or .cihx header beside it; '
                                    'give the header of these frames')
            path = headers[-1]  # .cihx (newer software) before .cih
        return super().open(path, dataset, flat_correction)

    def read(self, i: int) -> np.ndarray:
        if self._handle is None:
            dtype = {8: np.uint8, 12: np.uint8, 16: np.dtype('<u2')}[self.color_bit]
            width = self.frame_bytes // np.dtype(dtype).itemsize
            self._handle = np.memmap(self.mraw, dtype=dtype, mode='r', shape=(self.length, width))
        words = self._handle[i]
        if self.color_bit == 12:  # two pixels in three bytes: aaaaaaaa aaaabbbb bbbbbbbb (pyMRAW's layout)
            b = words.reshape(-1, 3).astype(np.uint16)
            frame = np.empty((b.shape[0], 2), np.uint16)
            frame[:, 0] = (b[:, 0] << 4) | (b[:, 1] >> 4)
            frame[:, 1] = ((b[:, 1] & 0x0F) << 8) | b[:, 2]
            return frame.reshape(self.shape)
        return np.array(words, dtype=self.dtype).reshape(self.shape)

    def where(self, i: int) -> str:
        return f'{self.mraw} frame {i}'
