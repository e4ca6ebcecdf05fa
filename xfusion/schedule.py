"""The key-frame schedule: when the HR camera recorded, and which frames feed the output at time t.

One home for it: the datasets, validation, the baselines, sequence inference, ``xfusion fuse`` and
``xfusion evaluate`` all call these.

- ``KeySchedule``: the LR time steps of the key frames (every ``period`` steps from ``offset``, or
  an index a real experiment gives), with the bracketing rule: for target t, k0 is the last key
  frame at or before t (the first one if t comes before all) and k1 the next one (k0 itself after
  the last key frame); ``key_weights`` say how close t is to each.
- ``lr_window``: the LR frames t - r, t, t + r (r = LR frame separation), clamped at the ends.
- ``FrameSource``: what sequence inference reads, the two cameras' frames and the schedule.
- ``schedule_from_times``: the schedule of a real experiment from the two cameras' clocks (each HR
  frame at its nearest LR step), with the HR frames that fall between two LR steps.
"""
from __future__ import annotations

import bisect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xfusion.errors import InputError


def lr_window(t: int, lr_sep: int, num_frames: int, num_lr: int = 3) -> list[int]:
    """LR frame indices t-r*k .. t+r*k (k = num_lr // 2), clamped to the sequence."""
    if num_lr % 2 != 1:
        raise InputError(f'num_lr must be odd (a centre frame and equal sides), got {num_lr}')
    half = num_lr // 2
    return [min(max(t + lr_sep * k, 0), num_frames - 1) for k in range(-half, half + 1)]


def key_weights(t: int, k0: int, k1: int) -> tuple[float, float]:
    """Temporal-closeness weights of the key frames k0 and k1 for target t (they sum to 1)."""
    if k1 == k0:
        return 1.0, 0.0
    w1 = min(max((t - k0) / (k1 - k0), 0.0), 1.0)
    return 1.0 - w1, w1


def check_period(period, where: str = 'period') -> int:
    """A key-frame period (or LR separation): an integer >= 1."""
    if isinstance(period, bool) or not isinstance(period, (int, np.integer)) or period < 1:
        raise InputError(f'{where} must be an integer >= 1, got {period!r}')
    return int(period)


def check_lr_sep(lr_sep, num_frames: int) -> int:
    """An LR frame separation (``--lr-sep``) that fits a sequence of num_frames."""
    lr_sep = check_period(lr_sep, '--lr-sep')
    if lr_sep >= num_frames:
        raise InputError(f'--lr-sep {lr_sep} must be between 1 and {num_frames - 1} for {num_frames} LR frames')
    return lr_sep


@dataclass(frozen=True)
class KeySchedule:
    """The LR time steps at which the HR camera recorded a key frame, in a sequence of ``num_frames`` steps."""
    key_times: tuple[int, ...]
    num_frames: int

    def __post_init__(self):
        times = tuple(int(k) for k in self.key_times)
        object.__setattr__(self, 'key_times', times)
        if not times:
            raise InputError('no key frames')
        if any(b <= a for a, b in zip(times, times[1:])):
            raise InputError('key-frame indices must increase strictly')
        if times[0] < 0 or times[-1] >= self.num_frames:
            bad = times[0] if times[0] < 0 else times[-1]
            raise InputError(f'key frame at LR step {bad} is beyond the LR sequence (0..{self.num_frames - 1})')

    @classmethod
    def every(cls, period: int, num_frames: int, offset: int = 0) -> KeySchedule:
        """Key frames at offset, offset + period, ... (a virtual experiment, or a camera triggered regularly)."""
        period = check_period(period)
        if not 0 <= offset < num_frames:
            raise InputError(f'key-frame offset {offset} is outside a sequence of {num_frames} frames')
        return cls(tuple(range(offset, num_frames, period)), num_frames)

    def is_key(self, t: int) -> bool:
        """Whether the HR camera recorded frame t."""
        i = bisect.bisect_left(self.key_times, t)
        return i < len(self.key_times) and self.key_times[i] == t

    def bracket(self, t: int) -> tuple[int, int]:
        """(k0, k1): the key frames that bracket t (see the module docstring)."""
        pos = max(bisect.bisect_right(self.key_times, t) - 1, 0)
        k0 = self.key_times[pos]
        if t < k0:
            return k0, k0
        return k0, self.key_times[min(pos + 1, len(self.key_times) - 1)]

    def weights(self, t: int) -> tuple[float, float]:
        return key_weights(t, *self.bracket(t))

    def segments(self) -> list[tuple[int, int]]:
        """The time steps a segment network fuses together, as half-open ranges [start, stop): up to the
        first key frame, from each key frame to the next, from the last key frame to the end."""
        bounds = sorted({0, *self.key_times, self.num_frames})
        return list(zip(bounds[:-1], bounds[1:]))

    def without(self, k: int) -> KeySchedule:
        """The same schedule with key frame k held out."""
        return KeySchedule(tuple(key for key in self.key_times if key != k), self.num_frames)


def read_key_index(path: str | Path) -> list[int]:
    """The LR step of each HR frame from an index file: text (numbers separated by spaces, commas or lines),
    JSON (a list) or .npy."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f'{path}: key-frame index file not found')
    try:
        if path.suffix == '.npy':
            return np.load(path).astype(int).tolist()
        if path.suffix == '.json':
            return [int(v) for v in json.loads(path.read_text())]
        return [int(v) for v in path.read_text().replace(',', ' ').split()]
    except (ValueError, TypeError) as error:
        raise InputError(f'{path}: not a list of LR time steps ({error})') from None


def schedule_for(num_lr: int, num_hr: int, period: int | None = None, offset: int = 0,
                 hr_index: str | Path | None = None) -> KeySchedule:
    """The schedule of a real experiment: ``num_hr`` HR frames every ``period`` LR steps from ``offset``, or at
    the steps an index file lists (``--period``/``--offset``/``--hr-index`` of the commands)."""
    if hr_index is not None:
        times = read_key_index(hr_index)
        if len(times) != num_hr:
            raise InputError(f'{hr_index}: {len(times)} key-frame indices for {num_hr} HR frames')
    else:
        if period is None:
            raise InputError('give --period (and --offset) or --hr-index to say when the HR frames were taken')
        period = check_period(period, '--period')
        times = [offset + n * period for n in range(num_hr)]
    try:
        return KeySchedule(tuple(times), num_lr)
    except InputError as error:
        raise InputError(f'{error}; check --period/--offset/--hr-index') from None


@dataclass
class FrameSource:
    """What sequence inference reads: LR frames at every step, HR frames at the key times.

    ``read_lr(t)`` -> (h, w) and ``read_key(k)`` -> (4h, 4w) float arrays or tensors in [0, 1].
    """
    read_lr: Callable[[int], np.ndarray]
    read_key: Callable[[int], np.ndarray]
    schedule: KeySchedule
    lr_sep: int = 1

    @property
    def num_frames(self) -> int:
        return self.schedule.num_frames

    def window(self, t: int, num_lr: int) -> tuple[list[int], tuple[int, int], tuple[float, float]]:
        """(LR frame indices, (k0, k1), key weights) of the window for target t."""
        k0, k1 = self.schedule.bracket(t)
        return lr_window(t, self.lr_sep, self.num_frames, num_lr), (k0, k1), key_weights(t, k0, k1)


MISALIGNED = 0.25  # an HR frame further than this (in LR frames) from its LR step is reported


def format_seconds(seconds: float) -> str:
    """A time for people: '14.000 µs', '2.5 ms', '1.2 s'."""
    size = abs(seconds)
    for unit, factor in (('s', 1.0), ('ms', 1e-3), ('µs', 1e-6)):
        if size >= factor * (1 - 1e-9):  # 1e-6 computed as 9.99...e-7 is still 1 µs
            return f'{seconds / factor:.6g} {unit}'
    return f'{seconds / 1e-9:.6g} ns' if size else '0 s'


@dataclass(frozen=True)
class TimeMatch:
    """HR frames matched to LR time steps by the cameras' clocks (``schedule_from_times``).

    ``hr_frames[n]`` is the HR frame used as the key frame at ``schedule.key_times[n]``, and
    ``misalignment[n]`` how far it was from that LR step: (t_HR + time_offset - t_LR) / LR frame period,
    signed. ``unmatched`` are the HR frames left out: outside the LR recording, or a second HR frame
    nearest the same LR step (the closer one is kept).
    """
    schedule: KeySchedule
    hr_frames: tuple[int, ...]
    misalignment: tuple[float, ...]
    lr_period: float
    time_offset: float
    unmatched: tuple[int, ...]

    @property
    def misaligned(self) -> list[tuple[int, int, float]]:
        """(HR frame, LR step, misalignment) of the key frames more than a quarter of an LR frame off."""
        return [(f, k, m) for f, k, m in zip(self.hr_frames, self.schedule.key_times, self.misalignment)
                if abs(m) > MISALIGNED]

    def summary(self) -> dict:
        """For the sidecar of ``xfusion fuse``."""
        return {'used': True, 'key_times': list(self.schedule.key_times), 'hr_frames': list(self.hr_frames),
                'misalignment_lr_frames': [round(m, 4) for m in self.misalignment],
                'lr_period_s': self.lr_period, 'time_offset_s': self.time_offset,
                'misaligned': [{'hr_frame': f, 'lr_step': k, 'misalignment_lr_frames': round(m, 4)}
                               for f, k, m in self.misaligned],
                'unmatched_hr_frames': list(self.unmatched), 'threshold_lr_frames': MISALIGNED}

    def report(self, limit: int = 12) -> list[str]:
        """Lines for people: the LR step of each HR frame, then the misaligned ones."""
        keys = self.schedule.key_times
        pairs = ', '.join(f'{f}->{k}' for f, k in zip(self.hr_frames[:limit], keys[:limit]))
        more = f', ... ({len(keys)} in all)' if len(keys) > limit else ''
        lines = [f'time matching (LR frame period {format_seconds(self.lr_period)}, time offset '
                 f'{format_seconds(self.time_offset)}): HR frame -> LR step {pairs}{more}']
        worst = max((abs(m) for m in self.misalignment), default=0.0)
        lines.append(f'  largest misalignment {worst:.3f} LR frames')
        for f, k, m in self.misaligned[:limit]:
            lines.append(f'  HR frame {f} falls between LR steps: {m:+.3f} LR frames from step {k} '
                         f'({format_seconds(m * self.lr_period)})')
        if len(self.misaligned) > limit:
            lines.append(f'  ... {len(self.misaligned) - limit} more misaligned HR frames')
        if self.unmatched:
            listed = ', '.join(map(str, self.unmatched[:limit])) + (' ...' if len(self.unmatched) > limit else '')
            lines.append(f'  {len(self.unmatched)} HR frames left out (outside the LR recording, or a closer HR frame '
                         f'at the same step): {listed}')
        return lines


def schedule_from_times(lr_times, hr_times, time_offset: float = 0.0) -> TimeMatch:
    """The key-frame schedule of a real experiment from the cameras' clocks: each HR frame at its nearest LR
    frame, the HR times shifted by ``time_offset`` seconds first (a known trigger delay of the HR camera).

    Times are seconds on a common clock (each camera's trigger at 0 when both were triggered together).
    HR frames more than half an LR frame outside the LR recording are left out, and so is the farther of
    two HR frames nearest one LR step."""
    lr = np.asarray(lr_times, np.float64).ravel()
    hr = np.asarray(hr_times, np.float64).ravel() + float(time_offset)
    if lr.size < 2 or not np.isfinite(lr).all() or (np.diff(lr) <= 0).any():
        raise InputError('LR frame times must be at least two finite times that increase strictly')
    if hr.size == 0 or not np.isfinite(hr).all():
        raise InputError('HR frame times must be finite (at least one)')
    period = float(np.median(np.diff(lr)))
    right = np.clip(np.searchsorted(lr, hr), 1, lr.size - 1)
    nearest = np.where(np.abs(hr - lr[right - 1]) <= np.abs(lr[right] - hr), right - 1, right)
    misalignment = (hr - lr[nearest]) / period
    inside = (hr >= lr[0] - period / 2) & (hr <= lr[-1] + period / 2)
    best: dict[int, int] = {}
    for frame in np.flatnonzero(inside):
        step = int(nearest[frame])
        if step not in best or abs(misalignment[frame]) < abs(misalignment[best[step]]):
            best[step] = int(frame)
    if not best:
        raise InputError(f'no HR frame time falls within the LR recording (LR {format_seconds(lr[0])} .. '
                         f'{format_seconds(lr[-1])}, HR {format_seconds(hr.min())} .. {format_seconds(hr.max())} with '
                         f'the time offset); check --time-offset')
    steps = sorted(best)
    frames = tuple(best[k] for k in steps)
    return TimeMatch(KeySchedule(tuple(steps), int(lr.size)), frames,
                     tuple(float(misalignment[f]) for f in frames), period, float(time_offset),
                     tuple(sorted(set(range(hr.size)) - set(frames))))
