"""What every camera reader gives (``CameraReader``), and what the readers share.

A reader streams the frames of one source frame by frame (memory-mapped where the format allows) and
says what the camera recorded: frame count, size, dtype, the effective bit depth and the intensity
range it implies, the frame rate and the time of every frame (seconds from the camera's trigger).
Each format is one module of ``xfusion.io.formats``, listed in its registry.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import numpy as np

from xfusion.errors import InputError, SequenceError
from xfusion.io.intensity import bits_range
from xfusion.io.metadata.record import CameraMetadata

# the optional extra ``cameras`` (pip install '.[cameras]'): the pins a missing library's message names
PINS = {'pyMRAW': 'pyMRAW==0.33.0', 'pycine': 'pycine-lite==0.4.0'}


def require(module: str, where: Path, what: str) -> ModuleType:
    """Import an optional camera library, or one line saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = PINS[module.split('.')[0]]
        raise InputError(f'{where}: reading {what} needs {package.split("==")[0]}: pip install "{package}" '
                         "(or pip install '.[cameras]')") from None


def times_from_rate(count: int, rate: float | None, first_frame: int = 0) -> np.ndarray | None:
    """Frame times from a frame rate: frame ``first_frame + i`` at (first_frame + i) / rate (the trigger at 0)."""
    if not rate or rate <= 0:
        return None
    return (first_frame + np.arange(count, dtype=np.float64)) / float(rate)


class CameraReader:
    """What every reader gives: ``read(i)`` (the stored frame, 2-D) and what the camera says about it.

    ``value_range`` is the stored range the file's metadata give (effective bit depth), None for the
    dtype's; ``times`` the seconds from the trigger of each frame, None when the file says nothing.

    The registry (``xfusion.io.formats``) asks each reader class in turn whether it ``claims`` a source,
    and the first that does ``open``s it. ``suffixes`` are the file suffixes of the format, those a camera
    file may have under the x-ray sequence naming rule (``<seq>/HR.<ext>``).
    """
    kind = ''
    format = ''
    suffixes: tuple[str, ...] = ()
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
        self._first: np.ndarray | None = None  # frame 0 when the reader read it to learn the frame size

    @classmethod
    def claims(cls, path: Path, dataset: str) -> bool:
        """Whether this reader reads the source `path` (`dataset`: what follows ``file.h5:``, else '').
        By name; a reader that looks inside a file to decide does so only when the file exists."""
        return path.suffix.lower() in cls.suffixes

    @classmethod
    def open(cls, path: Path, dataset: str = '', flat_correction: bool = True) -> CameraReader:
        """The reader of a source it claims; an error naming the file when it is not there."""
        if not path.exists():
            raise SequenceError(f'{path}: not found')
        return cls(path)

    def read(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def first_frame(self, read: bool = True) -> np.ndarray | None:
        """Frame 0: the one the reader read to learn the frame size, if it kept it (then let go: frames are not
        kept), else read now (None when `read` is False)."""
        first, self._first = self._first, None
        return first if first is not None or not read else self.read(0)

    def where(self, i: int) -> str:
        return f'{self.path} frame {i}'

    def close(self) -> None:
        self._handle = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state['_handle'] = None  # file handles and memory maps are reopened in the process that reads
        state['_first'] = None
        state.pop('_lock', None)  # a reader's lock (TiffStackReader) is made again where it reads
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
            if not 0 < meta.bit_depth <= word:
                raise SequenceError(f'{meta.path}: {meta.bit_depth}-bit data cannot be {self.dtype} frames')
            self.bit_depth = meta.bit_depth
            self.value_range = bits_range(meta.bit_depth, word)
            self.range_source = f'{meta.bit_depth}-bit effective, {meta.path.name}'
        self.notes.extend(meta.notes)
