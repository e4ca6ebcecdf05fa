"""Paired LR/HR sequences: two ``FrameStack``s and which LR time step each HR frame belongs to.

Three layouts, one class: ``<seq>/HR`` + ``<seq>/LR`` frame folders (and REDS clips), one HDF5 file with
datasets ``lr``, ``hr`` (and ``hr_index``), and a folder with one camera file per camera (``<seq>/HR.<ext>``,
``<seq>/LR.<ext>``). ``open_xray_root`` finds them under a data root.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from xfusion.camera import SCALE
from xfusion.errors import SequenceError
from xfusion.io.formats import CAMERA_SUFFIXES
from xfusion.io.frames import H5_SUFFIXES, natural_key
from xfusion.io.intensity import IntensityScale
from xfusion.io.stack import FrameStack
from xfusion.schedule import TimeMatch, schedule_from_times

CAMERA_NAMES = ('HR', 'LR')


class Sequence:
    """A paired LR/HR sequence: ``lr`` and ``hr`` frame stacks, HR frame ``hr_frame[t]`` taken at LR step t.

    ``read_lr(t)`` / ``read_hr(t)`` give float32 (h, w) / (4h, 4w) arrays in [0, 1], each camera by its own
    fixed scale (``scale`` is the HR camera's). ``hr_index`` lists the time steps with an HR frame (all of them
    in a virtual experiment). Opening a sequence checks that HR frames are exactly 4x the LR frames and that
    the first frame of each camera holds no NaN/Inf; every read checks the frame's size and dtype. A sequence
    pickles without open files (DataLoader workers reopen them).

    Build one with ``from_folders``, ``from_h5`` or ``from_camera_files``; ``layout`` says which ('folders', 'h5',
    'camera files'), ``time_match`` how the HR frames were matched to LR steps by their times (None otherwise).
    """

    def __init__(self, name: str, lr: FrameStack, hr: FrameStack, hr_frame: dict[int, int], layout: str,
                 time_match: TimeMatch | None = None):
        self.name, self.lr, self.hr, self.layout, self.time_match = name, lr, hr, layout, time_match
        self.num_frames = len(lr)
        self.lr_shape, self.hr_shape = lr.shape, hr.shape
        self.scale: IntensityScale = hr.scale
        self._hr_frame = hr_frame
        self.hr_index = list(hr_frame)
        h, w = self.lr_shape
        if self.hr_shape != (h * SCALE, w * SCALE):
            raise SequenceError(f'{self._pair()}: HR frames are {self.hr_shape[0]}x{self.hr_shape[1]} but LR frames '
                                f'are {h}x{w}; HR must be exactly {SCALE}x LR')

    def _pair(self) -> str:
        return f'{self.lr.reader.where(0)} (LR) vs {self.hr.reader.where(0)} (HR)'

    def _same_dtype(self) -> None:
        """One bit depth in both cameras: what frame folders and HDF5 sequences need (camera files keep theirs)."""
        if self.lr.dtype != self.hr.dtype:
            raise SequenceError(f'{self.lr.reader.where(0)} is {self.lr.dtype} but {self.hr.reader.where(0)} is '
                                f'{self.hr.dtype}; both cameras must have the same bit depth')

    @classmethod
    def from_folders(cls, hr_dir: str | Path, lr_dir: str | Path, name: str | None = None,
                     value_range: tuple[float, float] | None = None) -> Sequence:
        """HR and LR frames in two folders (x-ray ``<seq>/HR``, ``<seq>/LR``; REDS ``<gt>/<clip>``, ``<lq>/<clip>``),
        frame t of both at the same time."""
        for folder in (hr_dir, lr_dir):
            if not Path(folder).is_dir():
                raise SequenceError(f'{folder}: not a folder')
        hr = FrameStack(hr_dir, value_range, check_first=True)
        lr = FrameStack(lr_dir, value_range, check_first=True)
        if len(hr) != len(lr):
            raise SequenceError(f'{hr_dir} has {len(hr)} frames but {lr_dir} has {len(lr)}; '
                                'the two cameras must have the same number of frames')
        seq = cls(name or Path(hr_dir).name, lr, hr, {t: t for t in range(len(lr))}, 'folders')
        seq._same_dtype()
        return seq

    @classmethod
    def from_h5(cls, path: str | Path, name: str | None = None,
                value_range: tuple[float, float] | None = None) -> Sequence:
        """One HDF5 file with datasets ``lr`` (T, h, w), ``hr`` (T or K, H, W) and optional ``hr_index`` (the LR
        step of each HR frame, for an ``hr`` of key frames only)."""
        import h5py
        path = Path(path)
        try:
            with h5py.File(path, 'r') as f:
                missing = [k for k in ('lr', 'hr') if k not in f]
                if missing:
                    raise SequenceError(f'{path}: no dataset {missing[0]!r} (expected lr (T,h,w) and hr (T,H,W))')
                hr_index = [int(i) for i in np.asarray(f['hr_index']).ravel()] if 'hr_index' in f else None
        except OSError as error:
            raise SequenceError(f'{path}: unreadable HDF5 file ({error})') from error
        lr = FrameStack(f'{path}:lr', value_range, check_first=True)
        hr = FrameStack(f'{path}:hr', value_range, check_first=True)
        num_frames, num_hr = len(lr), len(hr)
        if hr_index is None:
            if num_hr != num_frames:
                raise SequenceError(f'{path}: lr has {num_frames} frames but hr has {num_hr}; give '
                                    'hr_index when hr holds key frames only')
            hr_index = list(range(num_frames))
        elif len(hr_index) != num_hr or any(not 0 <= i < num_frames for i in hr_index):
            raise SequenceError(f'{path}: hr_index must give one LR time step in 0..{num_frames - 1} '
                                f'per hr frame ({num_hr})')
        seq = cls(name or path.stem, lr, hr, {t: i for i, t in enumerate(hr_index)}, 'h5')
        seq.hr_index = hr_index  # as the file lists them
        seq._same_dtype()
        return seq

    @classmethod
    def from_camera_files(cls, hr_spec: str | Path, lr_spec: str | Path, name: str | None = None,
                          value_range: tuple[float, float] | None = None, flat_correction: bool = True,
                          time_offset: float = 0.0) -> Sequence:
        """One camera file per camera (``camera_files_of``): ``<seq>/HR.cih`` + ``HR.mraw``, ``<seq>/LR.cine``,
        ``<seq>/HR.h5`` (DataExchange, flat/dark corrected), ...

        Each camera keeps its own fixed intensity scale (its effective bit depth, or transmission). HR frames
        are paired with LR time steps by their times (``schedule_from_times``) when both files carry them,
        else one to one when both cameras have the same number of frames."""
        hr = FrameStack(hr_spec, value_range, flat_correction, check_first=True)
        lr = FrameStack(lr_spec, value_range, flat_correction, check_first=True)
        time_match = None
        if lr.times is not None and hr.times is not None:
            time_match = schedule_from_times(lr.times, hr.times, time_offset)
            hr_frame = dict(zip(time_match.schedule.key_times, time_match.hr_frames))
        elif len(hr) == len(lr):
            hr_frame = {t: t for t in range(len(lr))}
        else:
            raise SequenceError(f'{hr_spec} has {len(hr)} frames but {lr_spec} has {len(lr)}, and not both '
                                'carry frame times to match them; give both cameras the same frames')
        seq = cls(name or Path(hr_spec).parent.name, lr, hr, hr_frame, 'camera files', time_match)
        return seq

    @property
    def lr_files(self) -> list[Path]:
        """The LR frame files of a folder sequence."""
        return self.lr.files

    @property
    def hr_files(self) -> list[Path]:
        """The HR frame files of a folder sequence."""
        return self.hr.files

    def read_lr(self, t: int) -> np.ndarray:
        return self.lr.read_unit(t)

    def read_hr(self, t: int) -> np.ndarray:
        if t not in self._hr_frame:
            raise SequenceError(f'{self.hr.spec}: no HR frame at time step {t}')
        return self.hr.read_unit(self._hr_frame[t])

    def lr_path(self, t: int) -> str:
        """Where LR frame t is: its file (a frame folder), or the file and the frame in it."""
        return self.lr.reader.where(t)


def camera_files_of(folder: str | Path) -> dict[str, Path] | None:
    """The camera files of a sequence folder by the naming rule: ``<seq>/HR.<ext>`` and ``<seq>/LR.<ext>``, one per
    camera, ``<ext>`` one of .cih .cihx (+ .mraw), .cine, .h5 .hdf5 (DataExchange), .tif .tiff (a stack, with an
    optional .xml/.ini of the same name). None when the folder holds no such file."""
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
            sequences.append(Sequence.from_folders(entry / 'HR', entry / 'LR', entry.name, value_range))
        elif entry.is_dir() and (cameras := camera_files_of(entry)) is not None:
            sequences.append(Sequence.from_camera_files(cameras['HR'], cameras['LR'], entry.name, value_range))
        elif entry.suffix.lower() in H5_SUFFIXES:
            sequences.append(Sequence.from_h5(entry, value_range=value_range))
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
        seq = Sequence.from_folders(Path(dataroot_gt) / clip, Path(dataroot_lq) / clip, clip)
        if frame_counts is not None and frame_counts[clip] != seq.num_frames:
            raise SequenceError(f'{Path(dataroot_gt) / clip}: {seq.num_frames} frames, the meta file says '
                                f'{frame_counts[clip]}')
        sequences.append(seq)
    return sequences
