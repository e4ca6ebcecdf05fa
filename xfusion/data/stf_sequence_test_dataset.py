"""STFSequenceTestDataset: every time step of whole sequences under a key-frame schedule."""
from __future__ import annotations

from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from xfusion.data.reds_stf_dataset import validation_clips
from xfusion.errors import InputError
from xfusion.io.sequence import Sequence, open_reds_clips, open_xray_root, read_reds_meta
from xfusion.schedule import FrameSource, KeySchedule, check_period


@DATASET_REGISTRY.register()
class STFSequenceTestDataset(data.Dataset):
    """Whole sequences under a key-frame schedule, as in a virtual experiment: what validation fuses.

    Validation (``STFModel.validation``) reads each sequence as a ``FrameSource`` (``frame_source``)
    and fuses every time step with sequence inference, which encodes each frame once; the dataset
    is not indexed item by item. Its length is the number of time steps of all sequences.

    Data, either
      - x-ray layout: ``dataroot`` (path or list) of ``<seq>/HR`` + ``<seq>/LR`` folders or ``<seq>.h5``;
      - REDS layout: ``dataroot_gt`` + ``dataroot_lq`` with ``meta_info_file``, clips chosen by
        ``clips`` (list) or ``val_partition`` (REDS4 | official).
    Schedule: ``period`` (key frames every D steps, 20), ``lr_sep`` (1); ``num_frame`` (3) bounds
    lr_sep for short sequences (``num_frame_hi`` is accepted for older option files: the network
    says whether it reads key frames). Optional ``sequences`` (names to keep) and ``value_range``.
    """
    option_keys = frozenset({'dataroot', 'dataroot_gt', 'dataroot_lq', 'meta_info_file', 'clips', 'val_partition',
                             'sequences', 'value_range', 'period', 'lr_sep', 'num_frame', 'num_frame_hi'})

    def __init__(self, opt: dict):
        super().__init__()
        self.opt = opt
        self.period = check_period(opt.get('period', 20), 'period')
        self.lr_sep = check_period(opt.get('lr_sep', 1), 'lr_sep')
        self.num_lr = opt.get('num_frame', 3)
        self.sequences = self._open(opt)
        for seq in self.sequences:
            if self.lr_sep * (self.num_lr // 2) >= seq.num_frames:
                raise InputError(f'{seq.name}: lr_sep {self.lr_sep} is too large for a sequence of '
                                 f'{seq.num_frames} frames (at most {(seq.num_frames - 1) // (self.num_lr // 2)})')

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
        return sum(seq.num_frames for seq in self.sequences)

    def schedule(self, seq: Sequence) -> KeySchedule:
        """Key frames every ``period`` steps from the first frame."""
        return KeySchedule.every(self.period, seq.num_frames)

    def frame_source(self, seq: Sequence) -> FrameSource:
        """The sequence as sequence inference reads it."""
        return FrameSource(seq.read_lr, seq.read_hr, self.schedule(seq), self.lr_sep)
