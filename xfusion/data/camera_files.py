"""Camera files as frame sources: the readers behind ``FrameStack`` (``xfusion.data.sequence_io``).

One reader per format. Each streams frame by frame (memory-mapped where the format allows)
and says what the camera recorded: frame count, size, dtype, the effective bit depth and the
intensity range it implies, the frame rate and the time of every frame.

=====================================================  ==================================================
source                                                 reader
=====================================================  ==================================================
frame folder (PNG/TIFF) [+ Phantom .xml / Shimadzu .ini]  ``FolderReader``
multi-page TIFF [+ ``<stem>.xml`` / ``<stem>.ini``]      ``TiffStackReader``
``file.h5:/dataset``                                   ``H5DatasetReader`` (``DataExchangeReader`` for ``<group>/data``
                                                       with ``data_white``/``data_dark`` beside it)
``file.h5`` holding ``/exchange/data``                 ``DataExchangeReader``
``x.cih`` / ``x.cihx`` (+ ``x.mraw``)                  ``MrawReader`` (pyMRAW reads the header)
``x.cine``                                             ``CineReader`` (pycine-lite reads the header)
=====================================================  ==================================================

Times are seconds from each camera's own trigger (t = 0 at the trigger), from per-frame
timestamps where the file has them, else from the frame rate and the number of the first
frame. Matching two cameras' times (``xfusion.schedule.schedule_from_times``) assumes both
were triggered by the same signal; a known trigger delay is ``--time-offset``.

pyMRAW and pycine-lite are the optional extra ``cameras`` (``pip install '.[cameras]'``); a
missing one is one line naming what to install.
"""
from __future__ import annotations

import configparser
import ctypes
import importlib
import os
import re
import struct
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import tifffile

from xfusion.data.sequence_io import (
    H5_SUFFIXES,
    SequenceError,
    list_frames,
    read_frame,
    split_h5_spec,
)
from xfusion.errors import InputError

MRAW_HEADERS = ('.cih', '.cihx')
CINE_SUFFIXES = ('.cine',)
TIFF_SUFFIXES = ('.tif', '.tiff')
METADATA_SUFFIXES = ('.xml', '.ini')
# every camera file a source may name (the x-ray sequence naming rule uses these too)
CAMERA_SUFFIXES = MRAW_HEADERS + CINE_SUFFIXES + H5_SUFFIXES + TIFF_SUFFIXES
DATAEXCHANGE_DETECTOR = '/measurement/instrument/detector'
PINS = {'pyMRAW': 'pyMRAW==0.33.0', 'pycine': 'pycine-lite==0.4.0'}


def require(module: str, where: Path, what: str):
    """Import an optional camera library, or one line saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = PINS[module.split('.')[0]]
        raise InputError(f'{where}: reading {what} needs {package.split("==")[0]}: pip install "{package}" '
                         "(or pip install '.[cameras]')") from None


def bits_range(bits: int, word_bits: int, side: str = 'lower') -> tuple[float, float]:
    """Stored range of `bits` effective bits in `word_bits`-bit words: the low bits (0..2^bits-1), or the high ones."""
    high = (1 << bits) - 1
    if side.lower() == 'higher':
        high <<= word_bits - bits
    return 0.0, float(high)


def times_from_rate(count: int, rate: float | None, first_frame: int = 0) -> np.ndarray | None:
    """Frame times from a frame rate: frame ``first_frame + i`` at (first_frame + i) / rate (the trigger at 0)."""
    if not rate or rate <= 0:
        return None
    return (first_frame + np.arange(count, dtype=np.float64)) / float(rate)


class CameraReader:
    """What every reader gives: ``read(i)`` (the stored frame, 2-D) and what the camera says about it.

    ``value_range`` is the stored range the file's metadata give (effective bit depth), None for the
    dtype's; ``times`` the seconds from the trigger of each frame, None when the file says nothing.
    """
    kind = ''
    format = ''
    path: Path
    length: int
    shape: tuple[int, int]
    dtype: np.dtype
    bit_depth: int | None = None
    value_range: tuple[float, float] | None = None
    range_source = 'dtype range'
    frame_rate: float | None = None
    times: np.ndarray | None = None
    time_source: str | None = None
    metadata_file: Path | None = None
    flat_field: dict | None = None

    def __init__(self):
        self.notes: list[str] = []
        self._handle = None

    def read(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def where(self, i: int) -> str:
        return f'{self.path} frame {i}'

    def close(self) -> None:
        self._handle = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state['_handle'] = None  # file handles and memory maps are reopened in the process that reads
        return state

    def apply_metadata(self, meta: CameraMetadata | None) -> None:
        """Frame rate, frame times and bit depth of a Phantom .xml / Shimadzu .ini beside TIFF frames."""
        if meta is None:
            return
        self.metadata_file, self.format = meta.path, f'{self.format} + {meta.format}'
        self.frame_rate = meta.frame_rate
        if meta.times is not None:
            if len(meta.times) != self.length:
                raise SequenceError(f'{meta.path}: {len(meta.times)} frame times for {self.length} frames in '
                                    f'{self.path}; export the metadata with the same frames')
            self.times, self.time_source = meta.times, f'the frame times of {meta.path.name}'
        else:
            self.times = times_from_rate(self.length, meta.frame_rate, meta.first_frame)
            self.time_source = meta.time_source if self.times is not None else None
        if self.times is not None and meta.time_shift:
            self.times = self.times + meta.time_shift
        if meta.count is not None and meta.count != self.length:
            self.notes.append(f'{meta.path.name} describes {meta.count} frames, {self.length} are here')
        if meta.bit_depth is not None and self.dtype.kind == 'u':
            word = self.dtype.itemsize * 8
            if meta.bit_depth > word:
                raise SequenceError(f'{meta.path}: {meta.bit_depth}-bit data cannot be {self.dtype} frames')
            self.bit_depth = meta.bit_depth
            self.value_range = bits_range(meta.bit_depth, word)
            self.range_source = f'{meta.bit_depth}-bit effective, {meta.path.name}'
        self.notes.extend(meta.notes)


# --- frame folders, TIFF stacks, plain HDF5 datasets


class FolderReader(CameraReader):
    kind, format = 'folder', 'frame folder'

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self.files = list_frames(path)
        first = read_frame(self.files[0])
        self.length, self.shape, self.dtype = len(self.files), first.shape, np.dtype(first.dtype)
        self.format = f'frame folder ({self.files[0].suffix.lower().lstrip(".")})'
        self.bit_depth = self.dtype.itemsize * 8 if self.dtype.kind == 'u' else None
        self.apply_metadata(find_metadata(path))

    def read(self, i: int) -> np.ndarray:
        return read_frame(self.files[i])

    def where(self, i: int) -> str:
        return str(self.files[i])


class TiffStackReader(CameraReader):
    kind, format = 'tiff', 'multi-page TIFF'

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
        self.shape, self.dtype = first.shape, np.dtype(first.dtype)
        self.bit_depth = self.dtype.itemsize * 8 if self.dtype.kind == 'u' else None
        self.apply_metadata(find_metadata(path))

    def read(self, i: int) -> np.ndarray:
        if self._handle is None:
            self._handle = tifffile.TiffFile(self.path)
        try:
            return self._handle.pages[i].asarray()
        except Exception as error:
            raise SequenceError(f'{self.where(i)}: unreadable page ({error})') from error

    def where(self, i: int) -> str:
        return f'{self.path} page {i}'


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


# --- DataExchange (APS): raw counts with flats and darks


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


# --- Photron MRAW


class MrawReader(CameraReader):
    """Photron MRAW: frames back to back in ``x.mraw`` (8-bit, 16-bit little-endian words, or 12-bit packed:
    two pixels in three bytes), described by ``x.cih`` (text) or ``x.cihx`` (XML), which pyMRAW reads.

    The intensity range is the header's *effective* bit depth (``EffectiveBit Depth``, in the low or high
    bits of the word as ``EffectiveBit Side`` says): 0..4095 for 12 bits in the low bits of 16-bit words.
    Frame times: frame ``Start Frame + i`` at that number / ``Record Rate(fps)`` (the trigger at 0).
    """
    kind, format = 'mraw', 'Photron MRAW'

    def __init__(self, header: Path):
        super().__init__()
        self.path = self.header = header
        pymraw = require('pyMRAW', header, 'Photron MRAW')
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')  # pyMRAW warns on anything but 12 bits; the range says it here
                cih = pymraw.get_cih(str(header))
        except Exception as error:  # pyMRAW raises plain exceptions on headers it cannot parse
            raise SequenceError(f'{header}: unreadable Photron header ({type(error).__name__}: {error})') from error
        self.cih = cih

        def field(key: str, kind=int):
            if key not in cih:
                raise SequenceError(f'{header}: no {key!r} in the header; is it a Photron .cih/.cihx?')
            try:
                return kind(cih[key])
            except (TypeError, ValueError):
                raise SequenceError(f'{header}: {key!r} is {cih[key]!r}, expected a number') from None
        if 'File Format' not in cih:
            raise SequenceError(f"{header}: no 'File Format' in the header; is it a Photron .cih/.cihx?")
        if str(cih['File Format']).lower() != 'mraw':
            raise SequenceError(f'{header}: File Format is {cih.get("File Format")!r}; only MRAW frames are read '
                                '(export TIFF frames as a folder instead)')
        if str(cih.get('Color Type', 'Mono')).lower() not in ('mono', 'monochrome'):
            raise SequenceError(f'{header}: Color Type {cih["Color Type"]!r}; a monochrome camera is expected')
        self.length, h, w = field('Total Frame'), field('Image Height'), field('Image Width')
        self.color_bit = field('Color Bit')
        if self.color_bit not in (8, 12, 16):
            raise SequenceError(f'{header}: Color Bit {self.color_bit}; 8-, 12- (packed) and 16-bit MRAW are read')
        effective = int(cih.get('EffectiveBit Depth', self.color_bit))
        side = str(cih.get('EffectiveBit Side', 'Lower'))
        if side.lower() not in ('lower', 'higher') or not 0 < effective <= self.color_bit:
            raise SequenceError(f'{header}: EffectiveBit Depth {effective} / Side {side!r} do not fit '
                                f'{self.color_bit}-bit words')
        if self.color_bit == 12 and (h * w) % 2:
            raise SequenceError(f'{header}: 12-bit packed frames need an even number of pixels, got {h}x{w}')
        self.shape = (h, w)
        self.dtype = np.dtype(np.uint8 if self.color_bit == 8 else np.uint16)
        self.bit_depth = effective
        self.value_range = bits_range(effective, self.color_bit, side)
        self.range_source = f'{effective}-bit effective in the {side.lower()} bits, {header.suffix} header'
        self.format = f'Photron MRAW ({header.suffix} header, {self.color_bit}-bit ' \
                      f'{"packed" if self.color_bit == 12 else "words"})'
        self.frame_rate = float(cih['Record Rate(fps)']) if _is_number(cih.get('Record Rate(fps)')) else None
        self.times = times_from_rate(self.length, self.frame_rate, self._start_frame())
        if self.times is not None:
            self.time_source = f'Record Rate and Start Frame of the {header.suffix} header'
        mraw = [header.with_suffix(s) for s in ('.mraw', '.MRAW') if header.with_suffix(s).is_file()]
        if not mraw:
            raise SequenceError(f'{header}: no {header.with_suffix(".mraw").name} beside it (the frames)')
        self.mraw = mraw[0]
        self.frame_bytes = h * w * self.color_bit // 8
        size, expected = self.mraw.stat().st_size, self.length * self.frame_bytes
        if size < expected or self.length < 1:
            raise SequenceError(f'{self.mraw}: truncated: the header gives {self.length} frames of {h}x{w} at '
                                f'{self.color_bit} bits ({expected} bytes), the file has {size} bytes')

    def _start_frame(self) -> int:
        """The number of the first stored frame relative to the trigger (0 when the header does not say)."""
        if 'Start Frame' in self.cih and _is_number(self.cih['Start Frame']):
            return int(self.cih['Start Frame'])
        if self.header.suffix.lower() == '.cihx':  # pyMRAW leaves it out of .cihx headers
            text = self.header.read_text(encoding='utf-8', errors='ignore')
            found = re.search(r'<startFrame>\s*(-?\d+)\s*</startFrame>', text)
            if found:
                return int(found.group(1))
        return 0

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


def _is_number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


# --- Phantom CINE


CINE_TIME_BLOCK = 1002  # tagged block of one TIME64 per image (the CINE file format's "time only" block)


class CineReader(CameraReader):
    """Phantom CINE: the headers (read by pycine-lite's ctypes structures), then each image at its offset.

    Frames are decoded as pycine decodes them (bottom-up rows flipped, packed 10/12-bit unpacked,
    black..white level mapped to 0..2^RealBPP - 1), so the intensity range is 0..2^RealBPP - 1.
    Frame times: the per-image TIME64 block (relative to TriggerTime, exact to 2^-32 s) when present,
    else frame ``FirstImageNo + i`` over the frame rate.
    """
    kind, format = 'cine', 'Phantom CINE'

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        pycine_file = require('pycine.file', path, 'Phantom CINE')
        self._raw = require('pycine.raw', path, 'Phantom CINE')
        size = path.stat().st_size
        with open(path, 'rb') as f:
            signature = f.read(2)
        if signature != b'CI':
            raise SequenceError(f'{path}: not a CINE file (it does not start with "CI")')
        try:
            header = pycine_file.read_header(str(path))
        except (OSError, ValueError, struct.error, IndexError) as error:
            raise SequenceError(f'{path}: truncated or unreadable CINE header ({error})') from error
        cfh, bih, setup = header['cinefileheader'], header['bitmapinfoheader'], header['setup']
        if cfh.OffSetup + ctypes.sizeof(setup) > size or len(header['pImage']) != cfh.ImageCount:
            raise SequenceError(f'{path}: truncated CINE file (the header runs past its end)')
        if bih.biCompression == 0 and bih.biBitCount not in (8, 16):
            raise SequenceError(f'{path}: {bih.biBitCount}-bit pixels; only gray 8- and 16-bit (or packed 10/12-bit) '
                                'CINE files are read')
        if bih.biCompression not in (0, 256, 1024):
            raise SequenceError(f'{path}: compression {bih.biCompression} is not read (uncompressed, P10 or P12L)')
        if bih.biHeight <= 0 or bih.biWidth <= 0:
            raise SequenceError(f'{path}: image size {bih.biWidth}x{bih.biHeight} is not read '
                                '(bottom-up frames expected)')
        self.length, self.shape = cfh.ImageCount, (bih.biHeight, bih.biWidth)
        if self.length < 1:
            raise SequenceError(f'{path}: no images')
        self.offsets = np.asarray(header['pImage'], np.int64)
        if (self.offsets < 0).any() or (self.offsets + 8 > size).any():
            raise SequenceError(f'{path}: truncated CINE file ({int((self.offsets + 8 > size).sum())} of '
                                f'{self.length} images are past its end)')
        if setup.WhiteLevel <= setup.BlackLevel:  # files of old software carry no levels: take the full range
            setup.BlackLevel, setup.WhiteLevel = 0, (1 << setup.RealBPP) - 1 if setup.RealBPP else 65535
            self.notes.append('no black/white level in the header: taken as 0..2^RealBPP - 1')
        self.header = header
        self.bit_depth = int(self._raw.read_bpp(header)) or (8 if bih.biBitCount == 8 else 16)
        self.dtype = np.dtype(np.uint16)  # pycine gives uint16 frames at every bit depth
        self.value_range = bits_range(self.bit_depth, 16)
        self.range_source = f'{self.bit_depth}-bit effective, RealBPP of the CINE header'
        self.format = f'Phantom CINE ({bih.biBitCount if bih.biCompression == 0 else self.bit_depth}-bit' \
                      f'{", packed" if bih.biCompression else ""})'
        rate = float(getattr(setup, 'dFrameRate', 0.0) or 0.0) or float(setup.FrameRate)
        self.frame_rate = rate if rate > 0 else None
        self.first_image = int(cfh.FirstImageNo)
        self._check_last_image(size)
        stamps = self._time_block(path, cfh, setup)
        if stamps is not None:
            self.times, self.time_source = stamps, 'the CINE time block (relative to TriggerTime)'
        else:
            self.times = times_from_rate(self.length, self.frame_rate, self.first_image)
            self.time_source = 'frame rate and FirstImageNo of the CINE header' if self.times is not None else None

    def _check_last_image(self, size: int) -> None:
        with open(self.path, 'rb') as f:
            f.seek(int(self.offsets[-1]))
            annotation = struct.unpack('<I', f.read(4))[0]
            f.seek(int(self.offsets[-1]) + annotation - 4)
            raw = f.read(4)
        image = struct.unpack('<I', raw)[0] if len(raw) == 4 else size
        if annotation < 8 or int(self.offsets[-1]) + annotation + image > size:
            raise SequenceError(f'{self.path}: truncated CINE file (the last image runs past its end)')

    def _time_block(self, path: Path, cfh, setup) -> np.ndarray | None:
        """Seconds from TriggerTime of each image, from the TIME64 tagged block (None when there is none).

        Read here rather than taken from pycine, whose float seconds since 1970 lose the microseconds
        that matter at a million frames per second."""
        start, end = cfh.OffSetup + setup.Length, cfh.OffImageOffsets
        with open(path, 'rb') as f:
            f.seek(start)
            blocks = f.read(max(end - start, 0))
        pos = 0
        while pos + 8 <= len(blocks):
            size, kind = struct.unpack_from('<IH', blocks, pos)
            if size < 8:
                break
            if kind == CINE_TIME_BLOCK:
                n = min((size - 8) // 8, (len(blocks) - pos - 8) // 8)
                if n != self.length:
                    raise SequenceError(f'{path}: the time block holds {n} times for {self.length} images')
                stamps = np.frombuffer(blocks, '<u4', count=2 * n, offset=pos + 8).reshape(n, 2).astype(np.int64)
                trigger = cfh.TriggerTime
                return (stamps[:, 1] - int(trigger.seconds)) + (stamps[:, 0] - int(trigger.fractions)) / 2.0 ** 32
            pos += size
        return None

    def read(self, i: int) -> np.ndarray:
        if self._handle is None:
            self._handle = np.memmap(self.path, dtype=np.uint8, mode='r')
        mm, offset = self._handle, int(self.offsets[i])
        annotation = int(mm[offset:offset + 4].view('<u4')[0])
        image_size = int(mm[offset + annotation - 4:offset + annotation].view('<u4')[0])
        data = mm[offset + annotation:offset + annotation + image_size]
        if annotation < 8 or len(data) < image_size:
            raise SequenceError(f'{self.where(i)}: truncated image')
        try:
            return self._raw.create_raw_array(data, self.header)
        except ValueError as error:
            raise SequenceError(f'{self.where(i)}: unreadable image ({error})') from error

    def where(self, i: int) -> str:
        return f'{self.path} image {i}'


# --- camera metadata beside TIFF frames


class CameraMetadata:
    """What a Phantom .xml or Shimadzu .ini says about TIFF frames exported beside it."""

    def __init__(self, path: Path, format: str):
        self.path, self.format = path, format
        self.frame_rate: float | None = None
        self.times: np.ndarray | None = None
        self.time_source = 'frame rate'
        self.first_frame = 0
        self.time_shift = 0.0  # seconds added to every frame time (a trigger delay)
        self.count: int | None = None
        self.bit_depth: int | None = None
        self.notes: list[str] = []


def find_metadata(path: Path) -> CameraMetadata | None:
    """The camera metadata of a TIFF folder (one .xml/.ini inside it, or ``<folder>.xml|.ini`` beside it)
    or of a stack (``<stem>.xml|.ini`` beside it); None when there is none."""
    if path.is_dir():
        inside = sorted(p for p in path.iterdir()
                        if p.is_file() and p.suffix.lower() in METADATA_SUFFIXES and not p.name.startswith('.'))
        if len(inside) > 1:
            raise SequenceError(f'{path}: several camera metadata files ({", ".join(p.name for p in inside)}); '
                                'keep the one of these frames')
        candidates = inside or [path.with_name(path.name + s) for s in METADATA_SUFFIXES]
    else:
        candidates = [path.with_suffix(s) for s in METADATA_SUFFIXES]
    found = [p for p in candidates if p.is_file()]
    if len(found) > 1:
        raise SequenceError(f'{path}: both {found[0].name} and {found[1].name} beside it; keep the one of these frames')
    if not found:
        return None
    return read_phantom_xml(found[0]) if found[0].suffix.lower() == '.xml' else read_shimadzu_ini(found[0])


def _local(tag: str) -> str:
    return tag.rsplit('}', 1)[-1].lower()


def _time_of_day(text: str) -> float:
    """'HH:MM:SS.fff fff fff' (digit groups of the fraction may be spaced) or plain seconds -> seconds."""
    text = text.strip()
    match = re.fullmatch(r'(\d+):(\d+):(\d+)(?:[.,]([\d ]*))?', text)
    if match:
        hours, minutes, seconds, fraction = match.groups()
        digits = (fraction or '').replace(' ', '')
        return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + (int(digits) / 10 ** len(digits) if digits else 0)
    return float(text.replace(' ', ''))


def read_phantom_xml(path: Path) -> CameraMetadata:
    """A Phantom .xml (what PCC writes beside exported TIFFs): the CINE header's fields as elements.

    Read (element names as in the CINE header, case-insensitive, anywhere in the file): ``dFrameRate``
    or ``FrameRate``, ``RealBPP``, ``FirstImageNo``, ``ImageCount``, ``TriggerTime/Time`` and the
    per-frame ``Time`` elements of ``TIMEBLOCK`` ('HH:MM:SS.ffffff...' or seconds). Frame times are
    relative to the trigger time (to the frame numbered 0 when there is none).
    """
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as error:
        raise SequenceError(f'{path}: unreadable Phantom .xml ({error})') from error
    meta = CameraMetadata(path, 'Phantom .xml')
    elements: dict[str, ET.Element] = {}
    for element in root.iter():
        elements.setdefault(_local(element.tag), element)
    if not {'framerate', 'dframerate', 'timeblock', 'cinefileheader', 'realbpp'} & set(elements):
        raise SequenceError(f'{path}: not a Phantom .xml (no FrameRate, RealBPP or TIMEBLOCK element)')

    def number(name: str, kind=float):
        element = elements.get(name)
        if element is None or not (element.text or '').strip():
            return None
        try:
            return kind(element.text.strip())
        except ValueError:
            raise SequenceError(f'{path}: <{element.tag}> is {element.text.strip()!r}, expected a number') from None
    rate = number('dframerate') or number('framerate')
    meta.frame_rate = rate if rate and rate > 0 else None
    meta.bit_depth = number('realbpp', int)
    meta.count = number('imagecount', int)
    meta.first_frame = number('firstimageno', int) or 0
    meta.time_source = f'FrameRate and FirstImageNo of {path.name}'
    trigger = None
    if 'triggertime' in elements:
        for child in elements['triggertime']:
            if _local(child.tag) == 'time' and (child.text or '').strip():
                trigger = _parse_time(child.text, path)
    if 'timeblock' in elements:
        stamps = [_parse_time(e.text or '', path) for e in elements['timeblock'].iter() if _local(e.tag) == 'time']
        if stamps:
            times = np.unwrap(np.asarray(stamps, np.float64), period=86400.0)  # a recording across midnight
            if trigger is not None:
                times = times - trigger
                times -= np.round(times[0] / 86400.0) * 86400.0  # the trigger on the other side of midnight
            else:
                times = times - times[0] + (meta.first_frame / meta.frame_rate if meta.frame_rate else 0.0)
            meta.times = times
    return meta


def _parse_time(text: str, path: Path) -> float:
    try:
        return _time_of_day(text)
    except ValueError:
        raise SequenceError(f'{path}: time {text.strip()!r} is neither HH:MM:SS.fraction nor seconds') from None


_UNITS = {'ns': 1e-9, 'us': 1e-6, 'µs': 1e-6, 'ms': 1e-3, 's': 1.0}


def _duration(text: str, where: str) -> float:
    """'10,000,000 ns' -> 0.01 (seconds); ns when no unit is given, as the HPV software writes them."""
    match = re.fullmatch(r'\s*([-+]?[\d,]*\.?\d+)\s*([a-zµ]*)\s*', text.lower())
    if not match or match.group(2) not in (*_UNITS, ''):
        raise SequenceError(f'{where} is {text.strip()!r}, expected a time such as "1,000 ns"')
    return float(match.group(1).replace(',', '')) * _UNITS.get(match.group(2) or 'ns')


def read_shimadzu_ini(path: Path) -> CameraMetadata:
    """A Shimadzu HPV .ini (the HPV-X2's metadata of saved images): ``[REC_INFO]`` keys ``RecSpeed`` (the
    frame interval, '1,000 ns' at 1 Mfps), ``RecFrame`` (frames) and ``TriggerDelay``.

    Frame i is taken at TriggerDelay + i x RecSpeed after the trigger. The .ini holds no bit depth:
    the intensity range is the TIFF dtype's unless ``--range`` is given.
    """
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(path.read_text(encoding='utf-8-sig', errors='replace'))
    except configparser.Error as error:
        raise SequenceError(f'{path}: unreadable .ini ({error.__class__.__name__})') from error
    values = {key.lower(): (section, value) for section in parser.sections() for key, value in parser[section].items()}
    if 'recspeed' not in values:
        raise SequenceError(f'{path}: not a Shimadzu HPV .ini (no RecSpeed in [REC_INFO])')
    meta = CameraMetadata(path, 'Shimadzu .ini')
    interval = _duration(values['recspeed'][1], f'{path}: RecSpeed')
    if interval <= 0:
        raise SequenceError(f'{path}: RecSpeed must be a positive frame interval')
    meta.frame_rate = 1.0 / interval
    if 'recframe' in values:
        try:
            meta.count = int(values['recframe'][1].replace(',', '').strip())
        except ValueError:
            raise SequenceError(f'{path}: RecFrame is {values["recframe"][1]!r}, expected a frame count') from None
    delay = _duration(values['triggerdelay'][1], f'{path}: TriggerDelay') if 'triggerdelay' in values else 0.0
    meta.time_shift = delay
    meta.time_source = f'RecSpeed and TriggerDelay of {path.name}'
    return meta


# --- which reader


def open_source(spec: str | Path, flat_correction: bool = True) -> CameraReader:
    """The reader of a source: a frame folder, ``x.tif``, ``file.h5[:/dataset]``, ``x.cih``/``x.cihx``/``x.mraw``
    or ``x.cine`` (see the module docstring)."""
    path, dataset = split_h5_spec(spec)
    suffix = path.suffix.lower()
    if path.is_dir():
        return FolderReader(path)
    if suffix == '.mraw':  # the frames: their header has the same name
        headers = [path.with_suffix(s) for s in MRAW_HEADERS if path.with_suffix(s).is_file()]
        if not headers:
            raise SequenceError(f'{path}: no {path.with_suffix(".cih").name} or .cihx header beside it; '
                                'give the header of these frames')
        path, suffix = headers[-1], headers[-1].suffix.lower()  # .cihx (newer software) before .cih
    if not path.exists():
        raise SequenceError(f'{path}: not found')
    if suffix in H5_SUFFIXES:
        group = is_dataexchange(path, dataset)
        if group is not None:
            return DataExchangeReader(path, group, flat_correction)
        if not dataset:
            raise SequenceError(f'{path}: give the dataset path too, e.g. {path}:/exchange/data')
        return H5DatasetReader(path, dataset)
    if suffix in TIFF_SUFFIXES:
        return TiffStackReader(path)
    if suffix in MRAW_HEADERS:
        return MrawReader(path)
    if suffix in CINE_SUFFIXES:
        return CineReader(path)
    raise SequenceError(f'{path}: expected a frame folder, a .tif stack, file.h5[:/dataset], a Photron .cih/.cihx '
                        '(+ .mraw) or a Phantom .cine')

