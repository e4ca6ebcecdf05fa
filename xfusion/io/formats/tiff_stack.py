"""A multi-page TIFF, one frame per page, with a ``<stem>.xml`` (Phantom) or ``<stem>.ini`` (Shimadzu) beside it."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import tifffile

from xfusion.errors import SequenceError
from xfusion.io.frames import TIFF_SUFFIXES
from xfusion.io.metadata import find_metadata
from xfusion.io.reader import CameraReader


class TiffStackReader(CameraReader):
    kind, format = 'tiff', 'multi-page TIFF'
    suffixes = TIFF_SUFFIXES

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        try:
            with tifffile.TiffFile(path) as tif:
                self.length = len(tif.pages)
                first = tif.pages[0].asarray()
        except Exception as error:  # tifffile raises its own errors on truncated files
            raise SequenceError(f'{path}: unreadable TIFF ({error})') from error
        if first.ndim != 2:
            raise SequenceError(f'{path}: expected single-channel pages, got {first.shape}')
        self._first = first
        self.shape, self.dtype = first.shape, np.dtype(first.dtype)
        self.bit_depth = self.dtype.itemsize * 8 if self.dtype.kind == 'u' else None
        self.apply_metadata(find_metadata(path))

    def read(self, i: int) -> np.ndarray:
        # one open file for all pages: a reader thread reading ahead and the caller must not seek it at once
        with self.__dict__.setdefault('_lock', threading.Lock()):
            if self._handle is None:
                self._handle = tifffile.TiffFile(self.path)
            try:
                return self._handle.pages[i].asarray()
            except Exception as error:
                raise SequenceError(f'{self.where(i)}: unreadable page ({error})') from error

    def where(self, i: int) -> str:
        return f'{self.path} page {i}'
