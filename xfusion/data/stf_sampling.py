"""Training samples for STF, shared by the REDS and x-ray training datasets.

For one sample: a key-frame gap D from ``period_range`` and key frames k0 and k1 = k0 + D inside
the sequence; then

- for window networks: a target t uniform in [k0, k1], an LR separation r from ``lr_sep``, the LR
  window t-r..t+r (clamped at the ends);
- for segment networks (``segment: true``): the whole segment, every LR frame k0..k1 with the key
  frames at both ends (or, with ``single_key_prob``, at one end only, as at the ends of a
  sequence), the HR frames of every position, and ``num_supervised`` positions the output is
  compared at. The samples of one batch share their gap (one draw per ``batch_size_per_gpu``
  consecutive samples: a DataLoader worker builds whole batches), so that the model trims a batch
  to its own gap: propagation through the padding would cost as much as through the segment.
  They are padded to the longest gap of ``period_range`` (the last LR frame repeated), so that
  they stack whatever the grouping;

then one random crop (HR patch and the LR patch at the same place), the same flips/rotation for
every frame, and optional Poisson noise on the LR frames.
"""
from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils import data

from xfusion.camera import SCALE, poisson_noise
from xfusion.errors import InputError
from xfusion.io.sequence import Sequence
from xfusion.schedule import check_period, key_weights, lr_window


def as_choices(value, name: str) -> list[int]:
    """An int or a list of ints from the options, as a non-empty list."""
    choices = [value] if isinstance(value, int) else list(value)
    if not choices:
        raise InputError(f'{name} must be a positive integer or a list of them, got {value!r}')
    return [check_period(v, name) for v in choices]


def sample_schedule(num_frames: int, period_range: tuple[int, int], lr_seps: list[int], num_lr: int,
                    rng=random) -> dict:
    """Draw (t, LR window, key frames) for one training sample from a sequence of num_frames."""
    if num_frames < 2:
        raise InputError('a training sequence needs at least 2 frames')
    period = rng.randint(min(period_range[0], num_frames - 1), min(period_range[1], num_frames - 1))
    k0 = rng.randint(0, num_frames - 1 - period)
    k1 = k0 + period
    t = rng.randint(k0, k1)
    lr_sep = rng.choice(lr_seps)
    return dict(t=t, k0=k0, k1=k1, period=period, lr_sep=lr_sep, lr_indices=lr_window(t, lr_sep, num_frames, num_lr))


def augment(frames: list[np.ndarray], hflip: bool, vflip: bool, rot90: bool) -> list[np.ndarray]:
    """The same flips and transposition applied to every 2-D frame."""
    out = []
    for img in frames:
        if hflip:
            img = img[:, ::-1]
        if vflip:
            img = img[::-1, :]
        if rot90:
            img = img.T
        out.append(np.ascontiguousarray(img))
    return out


class STFTrainingDataset(data.Dataset):
    """Random STF training samples from a list of sequences (subclasses say where they come from).

    Options: ``num_frame`` (LR frames, 3), ``num_frame_hi`` (key frames, 2; 0 for LR-only),
    ``period_range`` ([min, max] key-frame gap), ``lr_sep`` (int or list of choices),
    ``gt_size`` (HR patch), ``use_hflip``, ``use_rot``, ``b0_log10_range`` (optional
    [min, max] of log10 photons per unit intensity for LR Poisson noise), ``noise_prob``
    (share of samples that get noise, 1 by default).
    Each sample: ``lq`` (T,1,h,w), ``hq`` (K,1,H,W), ``gt`` (1,H,W), ``key_weights`` (K,),
    ``folder``, ``idx`` (t), ``period``, ``lr_sep``.
    Segment samples (``segment: true``, ``num_supervised`` M, ``single_key_prob``): ``lq`` (N,1,h,w)
    with N = 1 + the longest gap, ``gt`` (N,1,H,W) the HR frames of every position, ``hq`` (K,1,H,W)
    the key frames, ``key_pos`` (K,) their positions, ``out_pos`` (M,) the positions the output is
    compared at, ``folder``, ``idx`` (k0), ``period`` (D).
    """
    sequences: list[Sequence]
    option_keys = frozenset({'num_frame', 'num_frame_hi', 'period_range', 'lr_sep', 'gt_size', 'use_hflip', 'use_rot',
                             'b0_log10_range', 'noise_prob', 'segment', 'num_supervised', 'single_key_prob'})

    def __init__(self, opt: dict):
        super().__init__()
        self.opt = opt
        self.num_lr = opt.get('num_frame', 3)
        self.num_hi = opt.get('num_frame_hi', 2)
        if self.num_hi not in (0, 2):
            raise InputError(f'num_frame_hi must be 2 (the bracketing key frames) or 0 (LR-only), got {self.num_hi}')
        period_range = opt.get('period_range', [20, 20])
        self.period_range = as_choices(period_range, 'period_range')
        if len(self.period_range) == 1:
            self.period_range = self.period_range * 2
        if len(self.period_range) != 2 or self.period_range[0] > self.period_range[1]:
            raise InputError(f'period_range must be [min, max], got {period_range!r}')
        self.lr_seps = as_choices(opt.get('lr_sep', 1), 'lr_sep')
        self.gt_size = opt.get('gt_size', 256)
        if self.gt_size % SCALE:
            raise InputError(f'gt_size ({self.gt_size}) must be a multiple of the scale {SCALE}')
        self.b0_log10_range = opt.get('b0_log10_range')
        self.noise_prob = opt.get('noise_prob', 1.0)
        self.segment = bool(opt.get('segment', False))
        self.num_supervised = check_period(opt.get('num_supervised', 4), 'num_supervised')
        self.single_key_prob = float(opt.get('single_key_prob', 0.0))
        self.batch_size = max(1, int(opt.get('batch_size_per_gpu', 1)))
        self._gap, self._gap_uses = 0, 0

    def _index_sequences(self) -> None:
        """Call once self.sequences is set: one dataset item per frame, as in BasicSR's REDS dataset."""
        for seq in self.sequences:
            if min(seq.hr_shape) < self.gt_size:
                raise InputError(f'{seq.name}: frames ({seq.hr_shape[0]}x{seq.hr_shape[1]}) are smaller than '
                                 f'gt_size {self.gt_size}')
            if seq.hr_index != list(range(seq.num_frames)):
                raise InputError(f'{seq.name}: training needs an HR frame at every time step')
        self.items = [(i, t) for i, seq in enumerate(self.sequences) for t in range(seq.num_frames)]
        # segments of a batch stack when they have one length: 1 + the longest gap any sequence allows
        self.segment_length = 1 + min(self.period_range[1], min(seq.num_frames for seq in self.sequences) - 1)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        seq = self.sequences[self.items[index][0]]
        # the global generators, as in BasicSR: its set_random_seed and worker_init_fn seed them
        return self._segment_sample(seq) if self.segment else self._window_sample(seq)

    def _window_sample(self, seq: Sequence) -> dict:
        s = sample_schedule(seq.num_frames, self.period_range, self.lr_seps, self.num_lr)
        keys = [s['k0'], s['k1']] if self.num_hi else []
        lqs, hrs = self._patches(seq, s['lr_indices'], keys + [s['t']])
        hq = torch.from_numpy(np.stack(hrs[:-1])[:, None]) if keys else torch.zeros(0, 1, *hrs[-1].shape)
        return {
            'lq': torch.from_numpy(np.stack(lqs)[:, None]),
            'hq': hq,
            'gt': torch.from_numpy(hrs[-1][None]),
            'key_weights': torch.tensor(key_weights(s['t'], s['k0'], s['k1']), dtype=torch.float32),
            'folder': seq.name,
            'idx': s['t'],
            'period': s['period'],
            'lr_sep': s['lr_sep'],
        }

    def _shared_gap(self) -> int:
        """A key-frame gap drawn once for every batch_size_per_gpu consecutive samples (one batch)."""
        if self._gap_uses == 0:
            self._gap = random.randint(min(self.period_range[0], self.segment_length - 1), self.segment_length - 1)
        self._gap_uses = (self._gap_uses + 1) % self.batch_size
        return self._gap

    def _segment_sample(self, seq: Sequence) -> dict:
        gap = self._shared_gap()
        s = sample_schedule(seq.num_frames, (gap, gap), [1], 1)
        k0, period = s['k0'], s['period']
        # the supervised positions: distinct when the segment is long enough
        out_pos = sorted(random.sample(range(period + 1), self.num_supervised) if period + 1 >= self.num_supervised
                         else random.choices(range(period + 1), k=self.num_supervised))
        key_pos = [0, period]
        if random.random() < self.single_key_prob:  # as at the ends of a sequence: one key frame, given twice
            key_pos = [random.choice(key_pos)] * 2
        keys = [k0 + p for p in key_pos] if self.num_hi else []
        frames = [k0 + min(i, period) for i in range(self.segment_length)]  # padded by the last frame
        lqs, hrs = self._patches(seq, frames, frames)
        gt = torch.from_numpy(np.stack(hrs)[:, None])
        return {
            'lq': torch.from_numpy(np.stack(lqs)[:, None]),
            'hq': gt[key_pos] if keys else torch.zeros(0, *gt.shape[1:]),
            'key_pos': torch.tensor(key_pos if keys else [], dtype=torch.long),
            'out_pos': torch.tensor(out_pos, dtype=torch.long),
            'gt': gt,
            'folder': seq.name,
            'idx': k0,
            'period': period,
        }

    def _patches(self, seq: Sequence, lr_times: list[int], hr_times: list[int]) -> tuple[list, list]:
        """The LR and HR frames at these times, cropped at one random place, flipped alike, LR noise added."""
        lr_patch = self.gt_size // SCALE
        h, w = seq.lr_shape
        top, left = random.randint(0, h - lr_patch), random.randint(0, w - lr_patch)
        lr_box = np.s_[top:top + lr_patch, left:left + lr_patch]
        hr_box = np.s_[top * SCALE:(top + lr_patch) * SCALE, left * SCALE:(left + lr_patch) * SCALE]
        lr_frames = {t: seq.read_lr(t)[lr_box] for t in set(lr_times)}  # each frame read once
        hr_frames = {t: seq.read_hr(t)[hr_box] for t in set(hr_times)}
        flips = [self.opt.get('use_hflip', True) and random.random() < 0.5,
                 self.opt.get('use_rot', True) and random.random() < 0.5,
                 self.opt.get('use_rot', True) and random.random() < 0.5]
        lqs = augment([lr_frames[t] for t in lr_times], *flips)
        hrs = augment([hr_frames[t] for t in hr_times], *flips)
        if self.b0_log10_range is not None and random.random() < self.noise_prob:
            b0 = 10 ** random.uniform(*self.b0_log10_range)
            lqs = [poisson_noise(img, b0) for img in lqs]
        return lqs, hrs
