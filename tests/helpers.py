"""Small data made inside the tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from xfusion.data.sequence_io import write_frame

DATA = Path(__file__).parent / 'data'


def area_average(img: np.ndarray, factor: int = 4) -> np.ndarray:
    h, w = img.shape[0] // factor, img.shape[1] // factor
    return img[:h * factor, :w * factor].reshape(h, factor, w, factor).mean(axis=(1, 3))


def write_pair_sequence(hr_dir: Path, lr_dir: Path, frames: np.ndarray, dtype=np.uint8) -> None:
    """Write (T, H, W) float frames in [0, 1] as HR and their exact 4x4 area average as LR."""
    peak = np.iinfo(dtype).max
    for t, img in enumerate(frames):
        write_frame(hr_dir / f'{t:08d}.png', np.rint(img * peak).astype(dtype))
        write_frame(lr_dir / f'{t:08d}.png', np.rint(area_average(img) * peak).astype(dtype))


def moving_scene(frames: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """(T, H, W) float frames: a smooth static texture with a bright square moving across it."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    base = 0.4 + 0.1 * np.sin(xx / 3.0 + rng.uniform(0, 6)) * np.cos(yy / 5.0 + rng.uniform(0, 6))
    out = np.repeat(base[None], frames, axis=0)
    for t in range(frames):
        y0, x0 = (2 * t) % (h - 8), (3 * t) % (w - 8)
        out[t, y0:y0 + 8, x0:x0 + 8] = 0.9
    return out



def reds_dataset_opt(root: Path, **extra) -> dict:
    opt = dict(name='reds', type='REDSSTFDataset', phase='train', dataroot_gt=str(root / 'train_sharp_gray'),
               dataroot_lq=str(root / 'train_sharp_bicubic_gray' / 'X4'),
               meta_info_file=str(root / 'meta_info_REDS_GT.txt'), val_partition='REDS4', num_frame=3,
               num_frame_hi=2, period_range=[2, 6], lr_sep=[1, 2], gt_size=32, use_hflip=True, use_rot=True)
    opt.update(extra)
    return opt
