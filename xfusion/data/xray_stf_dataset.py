"""XraySTFDataset: STF training samples from x-ray sequence folders or HDF5 files (transfer learning)."""
from __future__ import annotations

from basicsr.utils.registry import DATASET_REGISTRY

from xfusion.data.stf_sampling import STFTrainingDataset
from xfusion.io.sequence import open_xray_root


@DATASET_REGISTRY.register()
class XraySTFDataset(STFTrainingDataset):
    """Training samples from one or more x-ray roots (``dataroot``: a path or a list of paths).

    Each root holds ``<seq>/HR`` + ``<seq>/LR`` frame folders and/or ``<seq>.h5`` files.
    ``value_range`` ([low, high], optional) fixes the intensity scaling instead of the dtype's
    range. Sampling options: see STFTrainingDataset.
    """
    option_keys = STFTrainingDataset.option_keys | {'dataroot', 'value_range'}

    def __init__(self, opt: dict):
        super().__init__(opt)
        roots = opt['dataroot'] if isinstance(opt['dataroot'], (list, tuple)) else [opt['dataroot']]
        self.sequences = [seq for root in roots for seq in open_xray_root(root, opt.get('value_range'))]
        self._index_sequences()
