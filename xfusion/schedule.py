"""The key-frame schedule: which LR frames and HR key frames feed the output at time t.

One home for it: datasets, validation, baselines and `xfusion fuse` all call these.
"""
from __future__ import annotations

import bisect


def lr_window(t: int, lr_sep: int, num_frames: int, num_lr: int = 3) -> list[int]:
    """LR frame indices t-r*k .. t+r*k (k = num_lr // 2), clamped to the sequence."""
    if num_lr % 2 != 1:
        raise ValueError(f'num_lr must be odd (a centre frame and equal sides), got {num_lr}')
    half = num_lr // 2
    return [min(max(t + lr_sep * k, 0), num_frames - 1) for k in range(-half, half + 1)]


def key_frames_for(t: int, period: int, num_frames: int, offset: int = 0) -> tuple[int, int]:
    """The two key frames (k0, k1) bracketing t for key frames at offset + n * period.

    k0 = the last key frame at or before t, k1 = k0 + period, clamped to the last key frame
    of the sequence (so near the end k0 == k1). Before the first key frame both are the first.
    """
    if period < 1:
        raise ValueError(f'period must be >= 1, got {period}')
    if not 0 <= offset < num_frames:
        raise ValueError(f'key-frame offset {offset} is outside a sequence of {num_frames} frames')
    last_key = offset + (num_frames - 1 - offset) // period * period
    if t < offset:
        return offset, offset
    k0 = offset + (t - offset) // period * period
    return k0, min(k0 + period, last_key)


def bracketing_keys(t: int, key_times: list[int]) -> tuple[int, int]:
    """(k0, k1) for key frames at arbitrary sorted time steps (a real experiment's HR index).

    Same rule as key_frames_for: k0 = the last key time at or before t (the first one if t
    comes before all), k1 = the next key time after k0 (k0 itself at the end).
    """
    if not key_times:
        raise ValueError('no key frames')
    pos = bisect.bisect_right(key_times, t) - 1
    pos = max(pos, 0)
    k0 = key_times[pos]
    if t < k0:
        return k0, k0
    return k0, key_times[min(pos + 1, len(key_times) - 1)]


def is_key_frame(t: int, period: int, offset: int = 0) -> bool:
    """Whether the HR camera recorded frame t."""
    return t >= offset and (t - offset) % period == 0


def key_weights(t: int, k0: int, k1: int) -> tuple[float, float]:
    """Temporal-closeness weights of the key frames k0 and k1 for target t (they sum to 1)."""
    if k1 == k0:
        return 1.0, 0.0
    w1 = min(max((t - k0) / (k1 - k0), 0.0), 1.0)
    return 1.0 - w1, w1
