"""DataExchange (APS): ``<group>/data`` raw counts, with the flats (``data_white``) and darks (``data_dark``) that
make them a transmission, and the detector's bit depth, frame rate and frame times."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from xfusion.errors import SequenceError
from xfusion.io.formats.hdf5 import H5DatasetReader, h5_memmap
from xfusion.io.frames import H5_SUFFIXES
from xfusion.io.intensity import bits_range
from xfusion.io.reader import CameraReader, times_from_rate

DATAEXCHANGE_DETECTOR = '/measurement/instrument/detector'


def _mean_frames(ds, shape: tuple[int, int], where: str) -> np.ndarray:
    """Mean of an (n, H, W) or (H, W) dataset, frame by frame (float64)."""
    if ds.ndim == 2:
        ds_shape, frames = tuple(ds.shape), [ds]
    elif ds.ndim == 3:
        ds_shape, frames = tuple(ds.shape[1:]), range(ds.shape[0])
    else:
        raise SequenceError(f'{where}: expected (frames, height, width), got {ds.shape}')
    if ds_shape != shape:
        raise SequenceError(f'{where}: frames are {ds_shape[0]}x{ds_shape[1]}, the data are {shape[0]}x{shape[1]}')
    if ds.ndim == 2:
        return np.asarray(ds, dtype=np.float64)
    if ds.shape[0] == 0:
        raise SequenceError(f'{where}: no frames')
    total = np.zeros(shape, np.float64)
    for i in frames:
        total += ds[i]
    return total / ds.shape[0]


def _scalar(f, path: str):
    """A scalar dataset of an HDF5 file as a Python number, None when absent or not a number."""
    if path not in f:
        return None
    try:
        value = np.asarray(f[path][()]).ravel()
        return value[0].item() if value.size else None
    except (TypeError, ValueError):
        return None


class DataExchangeReader(H5DatasetReader):
    """DataExchange: ``<group>/data`` (N, H, W) raw counts, flat/dark corrected with ``data_white`` / ``data_dark``.

    Corrected frame = (I - mean dark) / max(mean white - mean dark, eps): a float32 transmission
    (eps = 1 count for integer data, so that a dead pixel does not explode). Without ``data_white``, or
    with ``flat_correction=False``, frames are the raw counts. Optional metadata: the detector's
    ``bit_depth`` and ``frame_rate`` (``/measurement/instrument/detector/``), and ``<group>/time``, the
    time of each frame in seconds (the dimension scale of axis 0, as ``theta`` is for tomography).
    """
    kind, format = 'dxchange', 'DataExchange HDF5'
    suffixes = H5_SUFFIXES

    def __init__(self, path: Path, group: str = '/exchange', flat_correction: bool = True):
        CameraReader.__init__(self)  # its own checks of the file; H5DatasetReader's reading and naming
        import h5py
        self.path, self.group = path, group.rstrip('/') or '/exchange'
        self.dataset = f'{self.group}/data'
        try:
            with h5py.File(path, 'r') as f:
                if self.dataset not in f:
                    raise SequenceError(f'{path}: no dataset {self.dataset} (DataExchange data)')
                ds = f[self.dataset]
                if ds.ndim != 3:
                    raise SequenceError(f'{path}:{self.dataset}: expected (frames, height, width), got {ds.shape}')
                self.length, self.shape, raw_dtype = ds.shape[0], tuple(ds.shape[1:]), np.dtype(ds.dtype)
                self._mappable = h5_memmap(path, ds) is not None
                means = {}
                for name in ('data_white', 'data_dark'):
                    key = f'{self.group}/{name}'
                    if key in f:
                        means[name] = _mean_frames(f[key], self.shape, f'{path}:{key}')
                counts = {name: (f[f'{self.group}/{name}'].shape[0] if f[f'{self.group}/{name}'].ndim == 3 else 1)
                          for name in means}
                bit_depth = _scalar(f, f'{DATAEXCHANGE_DETECTOR}/bit_depth')
                self.frame_rate = _scalar(f, f'{DATAEXCHANGE_DETECTOR}/frame_rate')
                times = np.asarray(f[f'{self.group}/time'], np.float64).ravel() if f'{self.group}/time' in f \
                    else None
        except OSError as error:
            raise SequenceError(f'{path}: unreadable HDF5 file ({error})') from error
        self.raw_dtype = raw_dtype
        if self.frame_rate is not None and self.frame_rate <= 0:
            self.frame_rate = None
        if times is not None:
            if len(times) != self.length or not np.isfinite(times).all():
                raise SequenceError(f'{path}:{self.group}/time: {len(times)} times for {self.length} frames '
                                    '(one finite time in seconds per frame expected)')
            self.times, self.time_source = times, f'the frame times of {self.group}/time'
        else:
            self.times = times_from_rate(self.length, self.frame_rate)
            self.time_source = 'detector/frame_rate' if self.times is not None else None
        if bit_depth is not None and raw_dtype.kind == 'u' and 0 < int(bit_depth) <= raw_dtype.itemsize * 8:
            self.bit_depth = int(bit_depth)
        elif raw_dtype.kind == 'u':
            self.bit_depth = raw_dtype.itemsize * 8
        white, dark = means.get('data_white'), means.get('data_dark')
        self.corrected = bool(flat_correction and white is not None)
        self.flat_field = {'whites': counts.get('data_white', 0), 'darks': counts.get('data_dark', 0),
                           'applied': self.corrected}
        if self.corrected:
            dark = np.zeros(self.shape) if dark is None else dark
            eps = 1.0 if raw_dtype.kind in 'ui' else 1e-6
            self._dark = dark.astype(np.float32)
            self._gain = (1.0 / np.maximum(white - dark, eps)).astype(np.float32)
            self.dtype = np.dtype(np.float32)
            self.format = 'DataExchange HDF5 (flat/dark corrected: transmission)'
            self.range_source = 'transmission, float32'
        else:
            self.dtype = raw_dtype
            self.format = 'DataExchange HDF5 (raw counts)'
            if self.bit_depth is not None and self.bit_depth < raw_dtype.itemsize * 8:
                self.value_range = bits_range(self.bit_depth, raw_dtype.itemsize * 8)
                self.range_source = f'{self.bit_depth}-bit effective, detector/bit_depth'
            if white is None and dark is not None and flat_correction:
                self.notes.append('data_dark without data_white: not corrected (a transmission needs a flat)')
            elif not flat_correction and white is not None:
                self.notes.append('flat correction skipped (--no-flat-correction)')

    @classmethod
    def claims(cls, path: Path, dataset: str) -> bool:
        return path.suffix.lower() in cls.suffixes and path.is_file() and is_dataexchange(path, dataset) is not None

    @classmethod
    def open(cls, path: Path, dataset: str = '', flat_correction: bool = True) -> CameraReader:
        return cls(path, is_dataexchange(path, dataset), flat_correction)

    def read(self, i: int) -> np.ndarray:
        raw = super().read(i)
        if not self.corrected:
            return raw
        return (raw.astype(np.float32) - self._dark) * self._gain


def is_dataexchange(path: Path, dataset: str = '') -> str | None:
    """The DataExchange group of an HDF5 source, or None: ``file.h5`` holding /exchange/data,
    ``file.h5:/exchange/data``, or ``file.h5:<group>/data`` with ``data_white`` or ``data_dark`` beside it."""
    import h5py
    try:
        with h5py.File(path, 'r') as f:
            if not dataset:
                return '/exchange' if '/exchange/data' in f else None
            group, _, name = ('/' + dataset.strip('/')).rpartition('/')
            if name == 'data' and f'{group}/data' in f and (
                    group == '/exchange' or any(f'{group}/{extra}' in f for extra in ('data_white', 'data_dark'))):
                return group
    except OSError as error:
        raise SequenceError(f'{path}: unreadable HDF5 file ({error})') from error
    return None

