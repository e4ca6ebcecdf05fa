"""REDSSTFDataset: STF training samples from REDS-layout clips (pretraining)."""
from __future__ import annotations

from basicsr.utils.registry import DATASET_REGISTRY

from xfusion.data.stf_sampling import STFTrainingDataset
from xfusion.errors import InputError
from xfusion.io.sequence import open_reds_clips, read_reds_meta

REDS4_CLIPS = ['000', '011', '015', '020']
OFFICIAL_VAL_CLIPS = [f'{i:03d}' for i in range(240, 270)]  # REDS val clips as renamed by BasicSR


def validation_clips(partition: str | None) -> list[str]:
    """The clips a partition holds out: 'REDS4', 'official' (240-269), or none."""
    if partition in (None, 'none'):
        return []
    if partition == 'REDS4':
        return REDS4_CLIPS
    if partition == 'official':
        return OFFICIAL_VAL_CLIPS
    raise InputError(f"val_partition must be 'REDS4', 'official' or 'none', got {partition!r}")


@DATASET_REGISTRY.register()
class REDSSTFDataset(STFTrainingDataset):
    """Training samples from ``dataroot_gt/<clip>`` (HR) and ``dataroot_lq/<clip>`` (x4 LR).

    Clips and frame counts come from ``meta_info_file``; the clips of ``val_partition``
    (REDS4 | official | none) are left out. Frames are read as one channel (RGB becomes gray),
    so the gray copies of ``xfusion reds-gray`` and the RGB originals both work. Sampling
    options: see STFTrainingDataset.
    """
    option_keys = STFTrainingDataset.option_keys | {'dataroot_gt', 'dataroot_lq', 'meta_info_file', 'val_partition'}

    def __init__(self, opt: dict):
        super().__init__(opt)
        frame_counts = read_reds_meta(opt['meta_info_file'])
        held_out = set(validation_clips(opt.get('val_partition', 'REDS4')))
        clips = [c for c in frame_counts if c not in held_out]
        if not clips:
            raise InputError(f"{opt['meta_info_file']}: no training clips left after holding out "
                             f"{opt.get('val_partition', 'REDS4')}")
        self.sequences = open_reds_clips(opt['dataroot_gt'], opt['dataroot_lq'], clips, frame_counts)
        self._index_sequences()
