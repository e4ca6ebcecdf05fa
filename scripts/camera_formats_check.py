"""Do camera files fuse as the frame folders they hold? One sequence written as (a) 12-bit Photron MRAW,
(b) DataExchange raw counts with a non-uniform flat and a dark, (c) the original 16-bit PNG folders, for both
cameras; each fused at period 20 with one fixed small checkpoint; the mean PSNR of the non-key frames against
the HR ground truth must agree (the readers' scales, the flat/dark correction and the time matching).

    python scripts/camera_formats_check.py [--seq datasets/demo/xray/test/seq_000] [--out results/camera_formats]

Needs the camera readers' libraries (pip install '.[cameras]') and a sequence folder with HR/ and LR/ 16-bit frames.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pyMRAW
import tifffile
import torch
import yaml

from xfusion.archs.edvrstf_arch import EDVRSTF
from xfusion.commands import main
from xfusion.commands.fuse import fuse
from xfusion.data.sequence_io import list_frames, read_frame
from xfusion.metrics import calculate_psnr_stf

PERIOD = 20
NET = dict(type='EDVRSTF', num_in_ch=1, num_out_ch=1, num_feat=8, num_frame=3, num_frame_hi=2, deformable_groups=2,
           num_extract_block=1, num_reconstruct_block=1, hr_encoder='unshuffle', base='key_blend')


def checkpoint(root: Path) -> Path:
    (root / 'models').mkdir(parents=True, exist_ok=True)
    (root / 'train_opts.yml').write_text(yaml.safe_dump({'name': 'measure', 'network_g': NET}))
    torch.manual_seed(0)
    net = EDVRSTF(**{k: v for k, v in NET.items() if k != 'type'})
    torch.save({'params': net.state_dict()}, root / 'models' / 'net_g_latest.pth')
    return root / 'models' / 'net_g_latest.pth'


def to_12_bit(frames: np.ndarray) -> np.ndarray:
    """16-bit frames rescaled to 12 effective bits, kept in 16-bit words (as Photron cameras write them)."""
    return np.rint(frames.astype(np.float64) / 65535 * 4095).astype(np.uint16)


def flat_field(shape, seed):
    """A non-uniform flat (counts): a gradient and a bright blob, as a beam profile; and a dark with a pattern."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    rng = np.random.default_rng(seed)
    cy, cx = rng.uniform(0.3, 0.7, 2)
    flat = 2200 + 900 * xx + 400 * yy + 1200 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.08)
    dark = 95 + 10 * ((np.arange(w)[None, :] % 4) / 3) + 3 * yy
    return flat, dark


def write_dx(path: Path, unit: np.ndarray, seed: int):
    flat, dark = flat_field(unit.shape[1:], seed)
    counts = np.rint(dark + unit * (flat - dark)).astype(np.uint16)
    whites = np.stack([flat + d for d in (-3, -1, 1, 3)])  # frame-to-frame variation that averages out
    darks = np.stack([dark + d for d in (-0.5, 0.5)])
    with h5py.File(path, 'w') as f:
        f['/exchange/data'] = counts
        f['/exchange/data_white'] = np.rint(whites).astype(np.uint16)  # raw counts, as the camera gives them
        f['/exchange/data_dark'] = np.rint(darks).astype(np.uint16)
        f['/measurement/instrument/detector/bit_depth'] = 12
    return path


def mean_psnr(out: Path, gt: list[np.ndarray], to_unit, key_times) -> dict:
    psnr_float, psnr_paper = [], []
    for t, truth in enumerate(gt):
        if t in key_times:
            continue
        pred = np.clip(to_unit(tifffile.imread(out / f'{t:08d}.tif')), 0, 1)
        psnr_float.append(calculate_psnr_stf(pred, truth, convention='float'))
        psnr_paper.append(calculate_psnr_stf(pred, truth, convention='paper'))
    return {'psnr_float_db': float(np.mean(psnr_float)), 'psnr_paper_db': float(np.mean(psnr_paper)),
            'frames': len(psnr_float)}


def run(seq: Path, out: Path) -> dict:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    hr16 = np.stack([read_frame(p) for p in list_frames(seq / 'HR')])
    lr16 = np.stack([read_frame(p) for p in list_frames(seq / 'LR')])
    assert hr16.dtype == np.uint16 and lr16.dtype == np.uint16
    n = len(lr16)
    keys = list(range(0, n, PERIOD))
    gt = [f.astype(np.float32) / 65535 for f in hr16]
    ckpt = checkpoint(out / 'experiment')

    # (a) 12-bit MRAW, both cameras (pyMRAW writes MRAW + .cih; 12 effective bits in 16-bit words)
    (out / 'mraw').mkdir()
    info = {'Record Rate(fps)': 1000000, 'EffectiveBit Depth': 12}
    pyMRAW.save_mraw(to_12_bit(lr16), str(out / 'mraw' / 'LR.cih'), bit_depth=16, info_dict=info)
    pyMRAW.save_mraw(to_12_bit(hr16[keys]), str(out / 'mraw' / 'HR.cih'), bit_depth=16,
                     info_dict=dict(info, **{'Record Rate(fps)': 50000}))
    # (b) DataExchange raw counts with a non-uniform flat and a dark, both cameras
    (out / 'dx').mkdir()
    write_dx(out / 'dx' / 'LR.h5', lr16 / 65535, seed=1)
    write_dx(out / 'dx' / 'HR.h5', hr16[keys] / 65535, seed=2)
    # (c) the original folders (HR: the key frames only, as a real experiment has them)
    (out / 'folders' / 'HR').mkdir(parents=True)
    for k in keys:
        shutil.copy(list_frames(seq / 'HR')[k], out / 'folders' / 'HR')

    variants = {
        'a_mraw_12bit': (out / 'mraw' / 'LR.cih', out / 'mraw' / 'HR.cih', lambda a: a.astype(np.float32) / 4095),
        'b_dataexchange': (out / 'dx' / 'LR.h5', out / 'dx' / 'HR.h5', lambda a: a.astype(np.float32)),
        'c_folders': (seq / 'LR', out / 'folders' / 'HR', lambda a: a.astype(np.float32) / 65535),
    }
    results = {}
    for name, (lr, hr, to_unit) in variants.items():
        main(['info', str(lr), str(hr), '--period', str(PERIOD)])
        fused = fuse(str(lr), str(hr), str(ckpt), str(out / f'fused_{name}'), period=PERIOD, progress=False)
        results[name] = summarise(fused, gt, to_unit, keys)
    # (a) again without --period: the schedule from the cameras' clocks (HR 50 kfps, LR 1 Mfps)
    main(['info', str(out / 'mraw' / 'LR.cih'), str(out / 'mraw' / 'HR.cih')])
    fused = fuse(str(out / 'mraw' / 'LR.cih'), str(out / 'mraw' / 'HR.cih'), str(ckpt),
                 str(out / 'fused_a_mraw_12bit_time_matched'), progress=False)
    results['a_mraw_12bit_time_matched'] = summarise(fused, gt, variants['a_mraw_12bit'][2], keys)
    values = [r['psnr_float_db'] for name, r in results.items() if name != 'a_mraw_12bit_time_matched']
    results['spread_db'] = float(max(values) - min(values))
    return results


def summarise(fused: Path, gt, to_unit, keys) -> dict:
    """PSNR of a fused folder, what it was written as and what fuse recorded of its inputs."""
    sidecar = json.loads((fused / 'xfusion.json').read_text())
    sample = tifffile.imread(fused / '00000010.tif')
    return dict(mean_psnr(fused, gt, to_unit, keys), out_dtype=str(sample.dtype),
                out_max=float(sample.max()), intensity_range=sidecar['inputs']['intensity_range'],
                lr_format=sidecar['inputs']['lr_format'], hr_format=sidecar['inputs']['hr_format'],
                key_times=sidecar['schedule']['key_times'], time_matching=sidecar['time_matching'])


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seq', default='datasets/demo/xray/test/seq_000')
    parser.add_argument('--out', default='results/camera_formats')
    args = parser.parse_args()
    result = run(Path(args.seq), Path(args.out))
    print(json.dumps(result, indent=2))
    (Path(args.out) / 'result.json').write_text(json.dumps(result, indent=2))
