"""STFSequenceTestDataset: every time step of whole sequences under a key-frame schedule."""
from __future__ import annotations

import numpy as np
import torch
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from xfusion.data.reds_stf_dataset import validation_clips
from xfusion.data.sequence_io import Sequence, open_reds_clips, open_xray_root, read_reds_meta
from xfusion.errors import InputError
from xfusion.inference import FrameSource
from xfusion.schedule import is_key_frame


@DATASET_REGISTRY.register()
class STFSequenceTestDataset(data.Dataset):
    """One item per time step t of every sequence, as in a virtual experiment.

    Data, either
      - x-ray layout: ``dataroot`` (path or list) of ``<seq>/HR`` + ``<seq>/LR`` folders or ``<seq>.h5``;
      - REDS layout: ``dataroot_gt`` + ``dataroot_lq`` with ``meta_info_file``, clips chosen by
        ``clips`` (list) or ``val_partition`` (REDS4 | official).
    Schedule: ``period`` (key frames every D steps, 20), ``lr_sep`` (1), ``num_frame`` (3),
    ``num_frame_hi`` (2, or 0 for LR-only networks). Optional ``sequences`` (names to keep) and
    ``value_range``.
    Each item: ``lq`` (T,1,h,w), ``hq`` (K,1,H,W), ``gt`` (1,H,W), ``key_weights`` (K,),
    ``lq_key`` (K,1,h,w: LR frames at the key times), ``key_idx`` (K,), ``folder``, ``idx`` (t),
    ``is_key``, ``lq_path``.
    """

    def __init__(self, opt: dict):
        super().__init__()
        self.opt = opt
        self.period = int(opt.get('period', 20))
        self.lr_sep = int(opt.get('lr_sep', 1))
        self.num_lr = opt.get('num_frame', 3)
        self.num_hi = opt.get('num_frame_hi', 2)
        if self.period < 1:
            raise InputError(f'period must be >= 1, got {self.period}')
        if self.lr_sep < 1:
            raise InputError(f'lr_sep must be >= 1, got {self.lr_sep}')
        self.sequences = self._open(opt)
        for seq in self.sequences:
            if self.lr_sep * (self.num_lr // 2) >= seq.num_frames:
                raise InputError(f'{seq.name}: lr_sep {self.lr_sep} is too large for a sequence of '
                                 f'{seq.num_frames} frames (at most {(seq.num_frames - 1) // (self.num_lr // 2)})')
        self.items = [(i, t) for i, seq in enumerate(self.sequences) for t in range(seq.num_frames)]

    @staticmethod
    def _open(opt: dict) -> list[Sequence]:
        names = opt.get('sequences')
        if opt.get('dataroot') is not None:
            roots = opt['dataroot'] if isinstance(opt['dataroot'], (list, tuple)) else [opt['dataroot']]
            return [seq for root in roots for seq in open_xray_root(root, opt.get('value_range'), names)]
        frame_counts = read_reds_meta(opt['meta_info_file'])
        clips = opt.get('clips') or names or [c for c in validation_clips(opt.get('val_partition', 'REDS4'))
                                              if c in frame_counts]
        missing = [c for c in clips if c not in frame_counts]
        if missing or not clips:
            raise InputError(f"{opt['meta_info_file']}: clips {missing or clips} not listed in the meta file")
        return open_reds_clips(opt['dataroot_gt'], opt['dataroot_lq'], clips, frame_counts)

    def __len__(self) -> int:
        return len(self.items)

    def frame_source(self, seq: Sequence) -> FrameSource:
        """The sequence as sequence inference reads it: key frames every `period` steps."""
        return FrameSource(seq.num_frames, seq.read_lr, seq.read_hr, list(range(0, seq.num_frames, self.period)),
                           self.lr_sep)

    def is_key(self, t: int) -> bool:
        return is_key_frame(t, self.period)

    def __getitem__(self, index: int) -> dict:
        seq_index, t = self.items[index]
        seq = self.sequences[seq_index]
        lr_indices, keys, weights = self.frame_source(seq).window(t, self.num_lr)
        lq = np.stack([seq.read_lr(i) for i in lr_indices])[:, None]
        gt = seq.read_hr(t)[None]
        if self.num_hi:
            hq = torch.from_numpy(np.stack([seq.read_hr(k) for k in keys])[:, None])
        else:
            hq = torch.zeros(0, *gt.shape)
        # the LR camera's frames at the key times, for the classical baselines
        lq_key = np.stack([seq.read_lr(k) for k in keys])[:, None]
        return {
            'lq': torch.from_numpy(lq),
            'hq': hq,
            'gt': torch.from_numpy(gt),
            'lq_key': torch.from_numpy(lq_key),
            'key_weights': torch.tensor(weights, dtype=torch.float32),
            'key_idx': torch.tensor(keys),
            'folder': seq.name,
            'idx': t,
            'is_key': self.is_key(t),
            'lq_path': seq.lr_path(t),
        }
