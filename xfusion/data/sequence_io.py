"""Frame and sequence IO: the one place that reads and writes frames.

Frames are single-channel images: PNG or TIFF files (8- or 16-bit) in a folder, ordered by
natural sort of their names, or arrays in an HDF5 file. Intensities become float32 in [0, 1]
by a fixed range for the whole sequence (the dtype's, or one the user gives), never per
frame, and go back to the same dtype and range on writing; 16-bit data never pass through
8 bits. Every error names the file at fault.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import tifffile

from xfusion.camera import SCALE
from xfusion.errors import InputError

H5_SUFFIXES = ('.h5', '.hdf5')
IMAGE_SUFFIXES = ('.png', '.tif', '.tiff')
INTEGER_DTYPES = (np.uint8, np.uint16)


class SequenceError(InputError):
    """Bad input data: the message names the file and what is wrong with it."""


def split_h5_spec(spec: str | Path) -> tuple[Path, str]:
    """``file.h5:/group/dataset`` -> (file, '/group/dataset'); any other path -> (path, '')."""
    spec = str(spec)
    for suffix in H5_SUFFIXES:
        head, sep, dataset = spec.partition(suffix + ':')
        if sep:
            return Path(head + suffix), dataset
    return Path(spec), ''


def natural_key(name: str) -> list:
    """Sort key that orders 'f2' before 'f10'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r'(\d+)', name)]


def list_frames(folder: str | Path) -> list[Path]:
    """Image files of a folder in natural order; an error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SequenceError(f'{folder}: not a folder')
    frames = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith('.')),
                    key=lambda p: natural_key(p.name))
    if not frames:
        raise SequenceError(f'{folder}: no frames (.png, .tif, .tiff) in this folder')
    return frames


def read_frame(path: str | Path) -> np.ndarray:
    """One frame as stored (uint8, uint16 or float), 2-D; colour frames become gray."""
    path = Path(path)
    tiff_log = logging.getLogger('tifffile')
    level = tiff_log.level
    tiff_log.setLevel(logging.CRITICAL)  # a broken file gets our one-line error, not tifffile's log too
    try:
        if path.suffix.lower() in ('.tif', '.tiff'):
            img = tifffile.imread(path)
        else:
            img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except Exception as error:  # tifffile raises its own errors on truncated files
        raise SequenceError(f'{path}: unreadable frame ({error})') from error
    finally:
        tiff_log.setLevel(level)
    if img is None or img.size == 0:
        raise SequenceError(f'{path}: unreadable frame')
    if img.ndim == 3 and img.shape[-1] in (3, 4):
        code = cv2.COLOR_BGRA2GRAY if img.shape[-1] == 4 else cv2.COLOR_BGR2GRAY
        if path.suffix.lower() in ('.tif', '.tiff'):  # tifffile gives RGB order
            code = cv2.COLOR_RGBA2GRAY if img.shape[-1] == 4 else cv2.COLOR_RGB2GRAY
        img = cv2.cvtColor(img, code)
    elif img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim != 2:
        raise SequenceError(f'{path}: expected a single image, got an array of shape {img.shape}')
    return img


def write_frame(path: str | Path, img: np.ndarray) -> None:
    """Write a uint8 / uint16 frame (2-D, or H x W x 3 in BGR order) as PNG or TIFF (by the suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in ('.tif', '.tiff'):
        tifffile.imwrite(path, img)
    elif not cv2.imwrite(str(path), img):
        raise SequenceError(f'{path}: could not write frame')


@dataclass(frozen=True)
class IntensityScale:
    """Fixed map between stored values and [0, 1]: unit = (stored - low) / (high - low)."""
    low: float
    high: float
    dtype: np.dtype

    @classmethod
    def for_dtype(cls, dtype, value_range: tuple[float, float] | None = None) -> IntensityScale:
        dtype = np.dtype(dtype)
        if value_range is not None:
            low, high = float(value_range[0]), float(value_range[1])
            if not high > low:
                raise ValueError(f'value_range must be (low, high) with high > low, got {value_range}')
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


class Sequence:
    """A paired LR/HR sequence: frame t of both cameras at the same time.

    ``read_lr(t)`` / ``read_hr(t)`` give float32 (h, w) / (4h, 4w) arrays in [0, 1].
    ``hr_index`` lists the time steps with an HR frame (all of them in a virtual experiment).
    """
    name: str
    num_frames: int
    lr_shape: tuple[int, int]
    hr_shape: tuple[int, int]
    scale: IntensityScale
    hr_index: list[int]

    def read_lr(self, t: int) -> np.ndarray:
        raise NotImplementedError

    def read_hr(self, t: int) -> np.ndarray:
        raise NotImplementedError

    def lr_path(self, t: int) -> str:
        return f'{self.name}:lr[{t}]'

    def _check_pair(self, where: str) -> None:
        h, w = self.lr_shape
        if self.hr_shape != (h * SCALE, w * SCALE):
            raise SequenceError(f'{where}: HR frames are {self.hr_shape[0]}x{self.hr_shape[1]} but LR frames are '
                                f'{h}x{w}; HR must be exactly {SCALE}x LR')


class FolderSequence(Sequence):
    """HR and LR frames in two folders (x-ray ``<seq>/HR``, ``<seq>/LR``; REDS ``<gt>/<clip>``, ``<lq>/<clip>``)."""

    def __init__(self, hr_dir: str | Path, lr_dir: str | Path, name: str | None = None,
                 value_range: tuple[float, float] | None = None):
        self.hr_files = list_frames(hr_dir)
        self.lr_files = list_frames(lr_dir)
        self.name = name or Path(hr_dir).name
        if len(self.hr_files) != len(self.lr_files):
            raise SequenceError(f'{hr_dir} has {len(self.hr_files)} frames but {lr_dir} has {len(self.lr_files)}; '
                                'the two cameras must have the same number of frames')
        self.num_frames = len(self.lr_files)
        self.hr_index = list(range(self.num_frames))
        first_lr, first_hr = read_frame(self.lr_files[0]), read_frame(self.hr_files[0])
        self.lr_shape, self.hr_shape = first_lr.shape, first_hr.shape
        self._check_pair(f'{self.lr_files[0]} (LR) vs {self.hr_files[0]} (HR)')
        if first_lr.dtype != first_hr.dtype:
            raise SequenceError(f'{self.lr_files[0]} is {first_lr.dtype} but {self.hr_files[0]} is {first_hr.dtype}; '
                                'both cameras must have the same bit depth')
        self.scale = IntensityScale.for_dtype(first_lr.dtype, value_range)
        checked_unit(self.scale.to_unit(first_lr), str(self.lr_files[0]))
        checked_unit(self.scale.to_unit(first_hr), str(self.hr_files[0]))

    def _read(self, path: Path, shape: tuple[int, int]) -> np.ndarray:
        img = read_frame(path)
        if img.shape != shape:
            raise SequenceError(f'{path}: frame is {img.shape[0]}x{img.shape[1]}, '
                                f'the sequence is {shape[0]}x{shape[1]}')
        if img.dtype != self.scale.dtype:
            raise SequenceError(f'{path}: frame is {img.dtype}, the sequence is {self.scale.dtype} (mixed bit depths)')
        return checked_unit(self.scale.to_unit(img), str(path))

    def read_lr(self, t: int) -> np.ndarray:
        return self._read(self.lr_files[t], self.lr_shape)

    def read_hr(self, t: int) -> np.ndarray:
        return self._read(self.hr_files[t], self.hr_shape)

    def lr_path(self, t: int) -> str:
        return str(self.lr_files[t])


class H5Sequence(Sequence):
    """One HDF5 file with datasets ``lr`` (T, h, w), ``hr`` (T or K, H, W) and optional ``hr_index``.

    The file is opened on first read, so the object can be sent to DataLoader workers.
    """

    def __init__(self, path: str | Path, name: str | None = None, value_range: tuple[float, float] | None = None):
        import h5py
        self.path = Path(path)
        self.name = name or self.path.stem
        try:
            with h5py.File(self.path, 'r') as f:
                missing = [k for k in ('lr', 'hr') if k not in f]
                if missing:
                    raise SequenceError(f'{self.path}: no dataset {missing[0]!r} (expected lr (T,h,w) and hr (T,H,W))')
                lr, hr = f['lr'], f['hr']
                if lr.ndim != 3 or hr.ndim != 3:
                    raise SequenceError(f'{self.path}: lr and hr must be 3-D (T, height, width), '
                                        f'got {lr.shape}, {hr.shape}')
                self.num_frames = lr.shape[0]
                self.lr_shape, self.hr_shape = tuple(lr.shape[1:]), tuple(hr.shape[1:])
                dtypes = (lr.dtype, hr.dtype)
                hr_index = list(np.asarray(f['hr_index']).astype(int)) if 'hr_index' in f else None
                num_hr = hr.shape[0]
        except OSError as error:
            raise SequenceError(f'{self.path}: unreadable HDF5 file ({error})') from error
        if self.num_frames == 0:
            raise SequenceError(f'{self.path}: the lr dataset has no frames')
        self._check_pair(str(self.path))
        if dtypes[0] != dtypes[1]:
            raise SequenceError(f'{self.path}: lr is {dtypes[0]} but hr is {dtypes[1]}; '
                                'both must have the same bit depth')
        if hr_index is None:
            if num_hr != self.num_frames:
                raise SequenceError(f'{self.path}: lr has {self.num_frames} frames but hr has {num_hr}; give '
                                    'hr_index when hr holds key frames only')
            hr_index = list(range(self.num_frames))
        elif len(hr_index) != num_hr or any(not 0 <= i < self.num_frames for i in hr_index):
            raise SequenceError(f'{self.path}: hr_index must give one LR time step in 0..{self.num_frames - 1} '
                                f'per hr frame ({num_hr})')
        self.hr_index = hr_index
        self._hr_position = {t: i for i, t in enumerate(hr_index)}
        self.scale = IntensityScale.for_dtype(dtypes[0], value_range)
        self._file = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state['_file'] = None  # h5py handles do not cross processes
        return state

    def _dataset(self, key: str):
        if self._file is None:
            import h5py
            self._file = h5py.File(self.path, 'r')
        return self._file[key]

    def read_lr(self, t: int) -> np.ndarray:
        return checked_unit(self.scale.to_unit(self._dataset('lr')[t]), f'{self.path}:lr[{t}]')

    def read_hr(self, t: int) -> np.ndarray:
        if t not in self._hr_position:
            raise SequenceError(f'{self.path}: no HR frame at time step {t}')
        return checked_unit(self.scale.to_unit(self._dataset('hr')[self._hr_position[t]]), f'{self.path}:hr[{t}]')


CAMERA_NAMES = ('HR', 'LR')


def camera_files_of(folder: str | Path) -> dict[str, Path] | None:
    """The camera files of a sequence folder by the naming rule: ``<seq>/HR.<ext>`` and ``<seq>/LR.<ext>``, one per
    camera, ``<ext>`` one of .cih .cihx (+ .mraw), .cine, .h5 .hdf5 (DataExchange), .tif .tiff (a stack, with an
    optional .xml/.ini of the same name). None when the folder holds no such file."""
    from xfusion.data.camera_files import CAMERA_SUFFIXES
    folder = Path(folder)
    found: dict[str, list[Path]] = {name: [] for name in CAMERA_NAMES}
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.stem.upper() in found and entry.suffix.lower() in CAMERA_SUFFIXES:
            found[entry.stem.upper()].append(entry)
    if not any(found.values()):
        return None
    for name, files in found.items():
        if len(files) > 1:
            raise SequenceError(f'{folder}: several {name} camera files ({", ".join(p.name for p in files)}); '
                                'keep one')
        if not files:
            other = next(n for n in CAMERA_NAMES if n != name)
            raise SequenceError(f'{folder}: {found[other][0].name} but no {name} camera file '
                                f'({name}.cih/.cihx/.cine/.h5/.tif)')
    return {name: files[0] for name, files in found.items()}


class CameraSequence(Sequence):
    """A sequence folder holding one camera file per camera (``camera_files_of``): ``<seq>/HR.cih`` + ``HR.mraw``,
    ``<seq>/LR.cine``, ``<seq>/HR.h5`` (DataExchange, flat/dark corrected), ...

    Each camera keeps its own fixed intensity scale (its effective bit depth, or transmission); ``scale`` is the
    HR camera's. HR frames are paired with LR time steps one to one when both cameras have the same number of
    frames and no clock; by their times (``schedule_from_times``) when both files carry them.
    """

    def __init__(self, hr_spec: str | Path, lr_spec: str | Path, name: str | None = None,
                 value_range: tuple[float, float] | None = None, flat_correction: bool = True,
                 time_offset: float = 0.0):
        from xfusion.schedule import schedule_from_times
        self.hr, self.lr = FrameStack(hr_spec, value_range, flat_correction), FrameStack(lr_spec, value_range,
                                                                                         flat_correction)
        self.name = name or Path(hr_spec).parent.name
        self.num_frames = len(self.lr)
        self.lr_shape, self.hr_shape = self.lr.shape, self.hr.shape
        self._check_pair(f'{lr_spec} (LR) vs {hr_spec} (HR)')
        self.scale = self.hr.scale
        self.time_match = None
        if self.lr.times is not None and self.hr.times is not None:
            self.time_match = schedule_from_times(self.lr.times, self.hr.times, time_offset)
            self.hr_index = list(self.time_match.schedule.key_times)
            self._hr_frame = dict(zip(self.hr_index, self.time_match.hr_frames))
        elif len(self.hr) == len(self.lr):
            self.hr_index = list(range(self.num_frames))
            self._hr_frame = {t: t for t in self.hr_index}
        else:
            raise SequenceError(f'{hr_spec} has {len(self.hr)} frames but {lr_spec} has {len(self.lr)}, and not both '
                                'carry frame times to match them; give both cameras the same frames')

    def read_lr(self, t: int) -> np.ndarray:
        return self.lr.read_unit(t)

    def read_hr(self, t: int) -> np.ndarray:
        if t not in self._hr_frame:
            raise SequenceError(f'{self.hr.spec}: no HR frame at LR time step {t}')
        return self.hr.read_unit(self._hr_frame[t])

    def lr_path(self, t: int) -> str:
        return self.lr.reader.where(t)


def open_xray_root(root: str | Path, value_range: tuple[float, float] | None = None,
                   names: list[str] | None = None) -> list[Sequence]:
    """Every sequence under an x-ray root: ``<seq>/HR`` + ``<seq>/LR`` folders, ``<seq>/HR.<ext>`` + ``<seq>/LR.<ext>``
    camera files (``camera_files_of``) and ``<seq>.h5`` files."""
    root = Path(root)
    if not root.is_dir():
        raise SequenceError(f'{root}: data root not found')
    sequences: list[Sequence] = []
    for entry in sorted(root.iterdir(), key=lambda p: natural_key(p.name)):
        if names is not None and entry.stem not in names:
            continue
        if entry.is_dir() and (entry / 'HR').is_dir() and (entry / 'LR').is_dir():
            sequences.append(FolderSequence(entry / 'HR', entry / 'LR', entry.name, value_range))
        elif entry.is_dir() and (cameras := camera_files_of(entry)) is not None:
            sequences.append(CameraSequence(cameras['HR'], cameras['LR'], entry.name, value_range))
        elif entry.suffix.lower() in H5_SUFFIXES:
            sequences.append(H5Sequence(entry, value_range=value_range))
    if not sequences:
        raise SequenceError(f'{root}: no sequences (expected <seq>/HR + <seq>/LR folders, <seq>/HR.<ext> + '
                            '<seq>/LR.<ext> camera files or <seq>.h5 files)')
    return sequences


def read_reds_meta(meta_file: str | Path) -> dict[str, int]:
    """Clip name -> frame count from a REDS meta file ('<clip> <nframes> (<h>,<w>,<c>)' per line)."""
    clips = {}
    for line_no, line in enumerate(Path(meta_file).read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            raise SequenceError(f'{meta_file}:{line_no}: expected "<clip> <nframes> (<h>,<w>,<c>)", got {line!r}')
        clips[parts[0]] = int(parts[1])
    return clips


def open_reds_clips(dataroot_gt: str | Path, dataroot_lq: str | Path, clips: list[str],
                    frame_counts: dict[str, int] | None = None) -> list[Sequence]:
    """REDS-layout clips as sequences; frame counts (from the meta file) are checked against the folders."""
    sequences = []
    for clip in clips:
        seq = FolderSequence(Path(dataroot_gt) / clip, Path(dataroot_lq) / clip, clip)
        if frame_counts is not None and frame_counts[clip] != seq.num_frames:
            raise SequenceError(f'{Path(dataroot_gt) / clip}: {seq.num_frames} frames, the meta file says '
                                f'{frame_counts[clip]}')
        sequences.append(seq)
    return sequences


class FrameStack:
    """Frames of one camera, read one at a time: any source ``xfusion.data.camera_files`` reads.

    ``spec`` is a frame folder, ``file.tif``, ``file.h5[:/dataset/path]`` (an (N, H, W) dataset, or
    DataExchange), a Photron ``x.cih``/``x.cihx`` (+ ``x.mraw``) or a Phantom ``x.cine``. ``read(i)`` gives
    the stored frame (2-D, stored dtype); ``scale`` maps it to [0, 1] by one fixed range: ``value_range``
    when given, else the one the file's metadata give (the effective bit depth: 0..4095 for 12 bits in
    16-bit words), else the dtype's. What time matching and ``xfusion info`` need: ``format``,
    ``bit_depth``, ``frame_rate``, ``times`` (seconds from the camera's trigger, or None), ``time_source``,
    ``flat_field``, ``range_source``, ``notes``.
    """

    def __init__(self, spec: str | Path, value_range: tuple[float, float] | None = None,
                 flat_correction: bool = True):
        from xfusion.data.camera_files import open_source  # the readers import this module
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
            self.scale = IntensityScale.for_dtype(self.dtype, reader.value_range)
            self.range_source = reader.range_source
        if value_range is None and reader.value_range is not None:
            self._check_first_frame()

    def _check_first_frame(self) -> None:
        """Values beyond the range the metadata give mean the frames were rescaled (e.g. 12 -> 16 bits on export)."""
        peak = float(np.max(self.read(0)))
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

    def read(self, i: int) -> np.ndarray:
        if not 0 <= i < self.length:
            raise IndexError(f'{self.spec}: frame {i} of {self.length}')
        img = self.reader.read(i)
        if img.shape != self.shape or img.dtype != self.dtype:
            raise SequenceError(f'{self.reader.where(i)}: {img.dtype} frame of {img.shape}, the stack is '
                                f'{self.dtype} {self.shape}')
        return img

    def read_unit(self, i: int) -> np.ndarray:
        """Frame i as float32 in [0, 1] (the fixed scale); NaN/Inf are an error."""
        return checked_unit(self.scale.to_unit(self.read(i)), f'{self.spec} frame {i}')

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
