"""Small data made inside the tests."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from xfusion.camera import area_average
from xfusion.io.frames import write_frame

DATA = Path(__file__).parent / 'data'
ROOT = Path(__file__).resolve().parents[1]
# Subprocesses get this long before a test calls them hung: a guard against hangs, far above what
# any run here takes on a slow machine, so that no test fails because the machine was slow.
HANG_GUARD_S = 3600


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


def free_port() -> int:
    """A TCP port nobody listens on now (for torchrun's rendezvous), instead of a fixed one that may be taken."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def reds_dataset_opt(root: Path, **extra) -> dict:
    opt = dict(name='reds', type='REDSSTFDataset', phase='train', dataroot_gt=str(root / 'train_sharp_gray'),
               dataroot_lq=str(root / 'train_sharp_bicubic_gray' / 'X4'),
               meta_info_file=str(root / 'meta_info_REDS_GT.txt'), val_partition='REDS4', num_frame=3,
               num_frame_hi=2, period_range=[2, 6], lr_sep=[1, 2], gt_size=32, use_hflip=True, use_rot=True)
    opt.update(extra)
    return opt


def training_options(reds_root: Path, **overrides) -> dict:
    """Option dict of a tiny STF training run on the reds_root fixture (a few seconds per run)."""
    data = dict(dataroot_gt=str(reds_root / 'train_sharp_gray'),
                dataroot_lq=str(reds_root / 'train_sharp_bicubic_gray' / 'X4'),
                meta_info_file=str(reds_root / 'meta_info_REDS_GT.txt'))
    opt = {
        'name': 'e2e', 'model_type': 'STFModel', 'scale': 4, 'num_gpu': 'auto', 'manual_seed': 0,
        'datasets': {
            'train': dict(name='train', type='REDSSTFDataset', val_partition='REDS4', period_range=[2, 6],
                          lr_sep=[1, 2], gt_size=32, use_hflip=True, use_rot=True, use_shuffle=True,
                          num_worker_per_gpu=0, batch_size_per_gpu=2, dataset_enlarge_ratio=1, **data),
            'val': dict(name='val', type='STFSequenceTestDataset', clips=['000'], period=5, lr_sep=1, **data)},
        'network_g': dict(type='EDVRSTF', num_in_ch=1, num_out_ch=1, num_feat=8, num_frame=3, num_frame_hi=2,
                          deformable_groups=2, num_extract_block=1, num_reconstruct_block=1, hr_encoder='unshuffle',
                          base='key_blend'),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3}, 'total_iter': 4, 'warmup_iter': -1,
                  'scheduler': {'type': 'CosineAnnealingRestartLR', 'periods': [8], 'restart_weights': [1],
                                'eta_min': 1e-6}},
        'val': {'val_freq': 4, 'save_img': True, 'pbar': False,
                'metrics': {'psnr': {'type': 'calculate_psnr_stf'}, 'ssim': {'type': 'calculate_ssim_stf'},
                            'aad': {'type': 'calculate_aad', 'better': 'lower'}}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': 2, 'use_tb_logger': False},
    }
    for key, value in overrides.items():  # 'train:total_iter' style keys
        section = opt
        *parents, last = key.split(':')
        for parent in parents:
            section = section[parent]
        section[last] = value
    return opt


def workspace(folder: Path, opt: dict, name: str = 'e2e.yml') -> Path:
    """A folder with train.py, test.py and an option file, so that runs write their outputs there."""
    for script in ('train.py', 'test.py'):
        shutil.copy(ROOT / script, folder / script)
    (folder / name).write_text(yaml.safe_dump(opt))
    return folder / name


def run_script(cwd: Path, *args: str, expect: int = 0, launcher: list[str] | None = None) -> str:
    """Run a Python script (or `launcher` + args) in cwd; assert its exit status; return its output."""
    command = (launcher or [sys.executable]) + list(args)
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert proc.returncode == expect, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr
