"""The key-frame schedule: when the HR camera recorded, and which frames feed the output at time t.

One home for it: the datasets, validation, the baselines, sequence inference, ``xfusion fuse`` and
``xfusion evaluate`` all call these.

- ``KeySchedule``: the LR time steps of the key frames (every ``period`` steps from ``offset``, or
  an index a real experiment gives), with the bracketing rule: for target t, k0 is the last key
  frame at or before t (the first one if t comes before all) and k1 the next one (k0 itself after
  the last key frame); ``key_weights`` say how close t is to each.
- ``lr_window``: the LR frames t - r, t, t + r (r = LR frame separation), clamped at the ends.
- ``FrameSource``: what sequence inference reads, the two cameras' frames and the schedule.
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
