"""``xfusion register``: estimate the HR-camera -> x4 LR grid similarity transform from simultaneous frames."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from xfusion.data.sequence_io import IntensityScale, read_frame
from xfusion.errors import InputError
from xfusion.registration import estimate_transform, save_transform

HELP = 'estimate the HR-camera -> x4 LR grid similarity transform'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--lr', required=True, nargs='+', metavar='FRAME',
                        help='LR-camera frame(s) (PNG/TIFF); several are averaged')
    parser.add_argument('--hr', required=True, nargs='+', metavar='FRAME',
                        help='HR-camera frame(s) taken at the same times; several are averaged')
    parser.add_argument('--out', required=True, metavar='FILE.json', help='where to write the transform')


def read_mean(paths: list[str]) -> np.ndarray:
    """Average of frames scaled to [0, 1] by their dtype range; all must have one shape."""
    frames = []
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise InputError(f'{path}: no such file')
        img = read_frame(path)
        if frames and img.shape != frames[0].shape:
            raise InputError(f'{path}: frame is {img.shape[0]}x{img.shape[1]}, '
                             f'{paths[0]} is {frames[0].shape[0]}x{frames[0].shape[1]}')
        frames.append(IntensityScale.for_dtype(img.dtype).to_unit(img))
    return np.mean(frames, axis=0)


def run(args: argparse.Namespace) -> int:
    """Estimate the transform and write it (nothing is written on bad input)."""
    transform = estimate_transform(read_mean(args.lr), read_mean(args.hr))
    save_transform(transform, args.out)
    t = transform
    print(f'scale {t["scale"]:.5f}, rotation {t["rotation_deg"]:+.3f} deg, shift ({t["shift_xy"][0]:+.2f}, '
          f'{t["shift_xy"][1]:+.2f}) px, residual {t["residual"]:.4f} -> {args.out}')
    return 0
