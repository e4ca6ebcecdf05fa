"""The first stage of a fusion run: a real two-camera experiment, opened and checked.

``Experiment`` opens both sources (any ``FrameStack`` source), checks that they are of one kind, finds the
key-frame schedule (``--period``/``--hr-index``, else the cameras' clocks), checks the LR frame separation and
the photon count, and brings the HR key frames onto the x4 LR grid (directly, or through the transform of
``xfusion register``, which also says which LR pixels the HR camera saw). Nothing is written here, so every
problem with the input is found before a command makes anything.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np

from xfusion.camera import SCALE, hr_field_of_view
from xfusion.errors import InputError
from xfusion.fusion.config import SourceOptions
from xfusion.io.stack import FrameStack
from xfusion.registration import load_transform, warp_to_lr_grid
from xfusion.schedule import KeySchedule, TimeMatch, check_lr_sep, schedule_for, schedule_from_times


def open_cameras(lr: str, hr: str, value_range: tuple[float, float] | None = None,
                 flat_correction: bool = True) -> tuple[FrameStack, FrameStack]:
    """The LR and HR sources of a real experiment, checked to be of one kind (counts of one dtype, or both
    transmissions)."""
    lr_stack = FrameStack(lr, value_range, flat_correction)
    hr_stack = FrameStack(hr, value_range, flat_correction)
    if (lr_stack.dtype.kind == 'f') != (hr_stack.dtype.kind == 'f'):  # a transmission and raw counts
        raise InputError(f'LR frames are {lr_stack.dtype} but HR frames are {hr_stack.dtype}: give both cameras as '
                         'transmissions (DataExchange with flats) or both as counts (--no-flat-correction)')
    if lr_stack.dtype != hr_stack.dtype:
        raise InputError(f'LR frames are {lr_stack.dtype} but HR frames are {hr_stack.dtype}; '
                         'both cameras must have the same bit depth (or give --range)')
    return lr_stack, hr_stack


def key_frame_schedule(lr_stack: FrameStack, hr_stack: FrameStack, period: int | None, offset: int,
                       hr_index: str | None,
                       time_offset: float = 0.0) -> tuple[KeySchedule, tuple[int, ...], TimeMatch | None]:
    """(schedule, HR frame of each key frame, TimeMatch or None): ``--period``/``--hr-index`` when given, else the
    sources' frame times."""
    if period is None and hr_index is None:
        if lr_stack.times is None or hr_stack.times is None:
            missing = [name for name, stack in (('LR', lr_stack), ('HR', hr_stack)) if stack.times is None]
            which = 'the LR and HR sources carry' if len(missing) == 2 else f'the {missing[0]} source carries'
            raise InputError('give --period (and --offset) or --hr-index to say when the HR frames were taken '
                             f'({which} no frame times or frame rate to match them by)')
        match = schedule_from_times(lr_stack.times, hr_stack.times, time_offset)
        return match.schedule, match.hr_frames, match
    schedule = schedule_for(len(lr_stack), len(hr_stack), period, offset, hr_index)
    return schedule, tuple(range(len(schedule.key_times))), None


def check_b0(b0: float | None) -> float | None:
    """``--b0``: a positive photon count, or None."""
    if b0 is not None and not (np.isfinite(b0) and b0 > 0):
        raise InputError(f'--b0 must be a positive number of photons per unit intensity, got {b0:g}')
    return b0


def grid_warp(transform: str | None, hr_stack: FrameStack,
              lr_shape: tuple[int, int]) -> tuple[dict | None, np.ndarray | None]:
    """(registration, seen): how HR frames reach the x4 LR grid (None: they are on it) and the LR pixels the HR
    camera saw too (None: all of them), from ``--transform``; an error when the frames cannot be put on the grid."""
    h, w = lr_shape
    grid = (h * SCALE, w * SCALE)
    if transform is None:
        if hr_stack.shape != grid:
            raise InputError(f'HR frames are {hr_stack.shape[0]}x{hr_stack.shape[1]} but 4x the LR frames is '
                             f'{grid[0]}x{grid[1]}; register the cameras (xfusion register) and give --transform')
        return None, None
    registration = load_transform(transform)
    if registration.get('fit', 'ok') != 'ok':  # written by register --keep-failed-fit
        raise InputError(f'{transform}: its registration {registration["fit"]}; register frames of the same instant '
                         'and field of view (xfusion register) and give that transform')
    out_shape = tuple(registration.get('output_shape') or grid)
    if out_shape != grid:
        raise InputError(f'{transform}: maps onto a {out_shape[0]}x{out_shape[1]} grid but 4x the LR frames is '
                         f'{grid[0]}x{grid[1]}; register frames of these cameras')
    seen = hr_field_of_view(registration, hr_stack.shape, (h, w))
    if not seen.any():
        raise InputError(f'{transform}: the HR field of view covers no LR pixel; register these cameras again')
    return registration, seen


def largest_rectangle(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the largest axis-aligned rectangle of True pixels (histogram method, one pass)."""
    h, w = mask.shape
    heights = np.zeros(w, int)
    best, box = 0, (0, 0, 0, 0)
    for y in range(h):
        heights = np.where(mask[y], heights + 1, 0)
        stack: list[int] = []
        for x in range(w + 1):
            current = heights[x] if x < w else 0
            while stack and heights[stack[-1]] >= current:
                top = stack.pop()
                left = stack[-1] + 1 if stack else 0
                area = heights[top] * (x - left)
                if area > best:
                    best, box = area, (int(y - heights[top] + 1), y + 1, left, x)
            stack.append(x)
    return box


class Experiment:
    """A real two-camera experiment, opened and checked: ``lr`` and ``hr`` (FrameStacks), ``schedule`` (LR steps
    of the key frames), ``hr_frames`` (the HR frame of each key frame), ``time_match`` (when the clocks gave the
    schedule), ``lr_sep``, ``b0``, ``grid`` (the x4 LR grid), ``seen`` (LR pixels both cameras saw; None: all)."""

    def __init__(self, options: SourceOptions):
        self.options = options
        self.lr, self.hr = open_cameras(options.lr, options.hr, options.value_range, options.flat_correction)
        self.num_frames, self.lr_shape = len(self.lr), tuple(self.lr.shape)
        self.schedule, self.hr_frames, self.time_match = key_frame_schedule(
            self.lr, self.hr, options.period, options.offset, options.hr_index, options.time_offset)
        self.lr_sep = check_lr_sep(options.lr_sep, self.num_frames)
        self.b0 = check_b0(options.b0)
        self.grid = (self.lr_shape[0] * SCALE, self.lr_shape[1] * SCALE)
        self.registration, self.seen = grid_warp(options.transform, self.hr, self.lr_shape)
        self._hr_frame = dict(zip(self.schedule.key_times, self.hr_frames))

    def key_on_grid(self, k: int) -> np.ndarray:
        """The key frame of LR step k on the x4 LR grid, in [0, 1] units."""
        img = self.hr.read_unit(self._hr_frame[k])
        return img if self.registration is None else warp_to_lr_grid(img, self.registration, output_shape=self.grid)

    def quantum(self) -> float:
        """The step between stored LR values in [0, 1] units (0 for float data)."""
        scale = self.lr.scale
        return 1.0 / (scale.high - scale.low) if self.lr.dtype.kind in 'ui' else 0.0

    @cached_property
    def scored_region(self) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1) on the x4 grid: the largest rectangle of HR pixels both cameras saw."""
        h, w = self.lr_shape
        y0, y1, x0, x1 = (0, h, 0, w) if self.seen is None else largest_rectangle(self.seen)
        return y0 * SCALE, y1 * SCALE, x0 * SCALE, x1 * SCALE

    def time_matching_record(self) -> dict:
        """The sidecar's ``time_matching``: what was matched, or why the clocks were not used."""
        if self.time_match is not None:
            return dict(self.time_match.summary(), lr_time_source=self.lr.time_source,
                        hr_time_source=self.hr.time_source)
        if self.lr.times is not None and self.hr.times is not None:
            reason = '--period given' if self.options.period is not None else '--hr-index given'
        else:
            reason = 'the sources carry no frame times'
        return {'used': False, 'reason': reason}

    def inputs_record(self) -> dict:
        """The sidecar's ``inputs``: both sources as the readers see them."""
        lr, hr = self.lr, self.hr
        return {'lr': self.options.lr, 'hr': self.options.hr, 'frames': self.num_frames,
                'lr_shape': list(self.lr_shape), 'dtype': str(hr.dtype),
                'intensity_range': [hr.scale.low, hr.scale.high], 'lr_format': lr.format, 'hr_format': hr.format,
                'lr_bit_depth': lr.bit_depth, 'hr_bit_depth': hr.bit_depth,
                'lr_intensity_range': [lr.scale.low, lr.scale.high],
                'flat_correction': {'lr': lr.flat_field, 'hr': hr.flat_field},
                'lr_source': lr.describe(), 'hr_source': hr.describe()}

    def schedule_record(self) -> dict:
        """The sidecar's ``schedule``."""
        o = self.options
        return {'key_times': list(self.schedule.key_times), 'hr_frames': list(self.hr_frames), 'period': o.period,
                'offset': o.offset, 'hr_index': o.hr_index, 'lr_sep': self.lr_sep}
