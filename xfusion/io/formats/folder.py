"""A folder of frames (PNG or TIFF, natural order of names), with the Phantom .xml / Shimadzu .ini of its camera
inside it or beside it (``<folder>.xml``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from xfusion.io.frames import list_frames, read_frame
from xfusion.io.metadata import find_metadata
from xfusion.io.reader import CameraReader


class FolderReader(CameraReader):
    kind, format = 'folder', 'frame folder'

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self.files = list_frames(path)
        self._first = first = read_frame(self.files[0])
        self.length, self.shape, self.dtype = len(self.files), first.shape, np.dtype(first.dtype)
        self.format = f'frame folder ({self.files[0].suffix.lower().lstrip(".")})'
        self.bit_depth = self.dtype.itemsize * 8 if self.dtype.kind == 'u' else None
        self.apply_metadata(find_metadata(path))

    @classmethod
    def claims(cls, path: Path, dataset: str) -> bool:
        return path.is_dir()

    def read(self, i: int) -> np.ndarray:
        return read_frame(self.files[i])

    def where(self, i: int) -> str:
        return str(self.files[i])
