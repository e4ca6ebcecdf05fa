"""A plain (N, H, W) dataset of an HDF5 file, ``file.h5:/group/dataset``: memory-mapped when it is contiguous and
uncompressed, read through h5py otherwise."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from xfusion.errors import SequenceError
from xfusion.io.frames import H5_SUFFIXES
from xfusion.io.reader import CameraReader


def h5_memmap(path: Path, ds) -> np.memmap | None:
    """A memory map of a contiguous, uncompressed HDF5 dataset (None when the layout does not allow one)."""
    if ds.chunks is not None or ds.compression is not None:
        return None
    offset = ds.id.get_offset()
    if offset is None:  # not allocated
        return None
    nbytes = int(np.prod(ds.shape)) * ds.dtype.itemsize
    if offset + nbytes > os.path.getsize(path):
        raise SequenceError(f'{path}:{ds.name}: truncated file ({ds.shape} {ds.dtype} does not fit in it)')
    return np.memmap(path, dtype=ds.dtype, mode='r', offset=offset, shape=ds.shape)


class H5DatasetReader(CameraReader):
    """An (N, H, W) dataset of an HDF5 file, memory-mapped when it is contiguous and uncompressed."""
    kind, format = 'h5', 'HDF5 dataset'
    suffixes = H5_SUFFIXES

    def __init__(self, path: Path, dataset: str):
        super().__init__()
        import h5py
        self.path, self.dataset = path, dataset
        try:
            with h5py.File(path, 'r') as f:
                if dataset not in f:
                    raise SequenceError(f'{path}: no dataset {dataset}')
                ds = f[dataset]
                if not isinstance(ds, h5py.Dataset) or ds.ndim != 3:
                    raise SequenceError(f'{path}:{dataset}: expected (frames, height, width), '
                                        f'got {getattr(ds, "shape", "a group")}')
                self.length, self.shape, self.dtype = ds.shape[0], tuple(ds.shape[1:]), np.dtype(ds.dtype)
                self._mappable = h5_memmap(path, ds) is not None
        except OSError as error:
            raise SequenceError(f'{path}: unreadable HDF5 file ({error})') from error
        self.bit_depth = self.dtype.itemsize * 8 if self.dtype.kind == 'u' else None

    @classmethod
    def open(cls, path: Path, dataset: str = '', flat_correction: bool = True) -> CameraReader:
        if not path.exists():
            raise SequenceError(f'{path}: not found')
        if not dataset:
            raise SequenceError(f'{path}: give the dataset path too, e.g. {path}:/exchange/data')
        return cls(path, dataset)

    def _open(self):
        if self._handle is None:
            import h5py
            f = h5py.File(self.path, 'r')
            mm = h5_memmap(self.path, f[self.dataset]) if self._mappable else None
            self._handle = mm if mm is not None else f[self.dataset]
            if mm is not None:
                f.close()
        return self._handle

    def read(self, i: int) -> np.ndarray:
        try:
            return np.asarray(self._open()[i])
        except OSError as error:
            raise SequenceError(f'{self.where(i)}: unreadable ({error})') from error

    def where(self, i: int) -> str:
        return f'{self.path}:{self.dataset}[{i}]'
