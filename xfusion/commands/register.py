"""``xfusion register``: estimate the HR-camera -> x4 LR grid transform from simultaneous frames.

``--transform-model`` chooses a similarity, an affine map (a scale per axis, shear) or ``auto`` (the affine map
where it explains the frames better than its two extra parameters explain noise); a camera mirrored against the
other is found either way. When no model explains the frame pair (the residual far above the frames' noise, or
the field of view overlapping too little), it says so in one line and writes nothing, unless
``--keep-failed-fit``: then the transform is written marked failed, and ``fuse`` and ``check`` refuse it.
A periodic calibration target (a grid) fits as well one period off: frames that repeat are reported, and
``--near`` (the transform of sample frames of the same cameras) pins the search to the right period.

``--lr``/``--hr`` take frame files (PNG/TIFF), or frames of any camera source ``xfusion fuse`` takes,
written ``SOURCE:N`` (frame N, counted from 0) or ``SOURCE:A-B`` (frames A to B, averaged):
``run/HR.cih:0``, ``run/LR.cine:10-19``, ``scan.h5:/exchange/data:3``, ``frames/:0``. Camera frames
are scaled to [0, 1] as fuse scales them (the effective bit depth; DataExchange flat/dark corrected).
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from xfusion.errors import InputError
from xfusion.io.frames import read_frame, split_h5_spec
from xfusion.io.intensity import IntensityScale
from xfusion.io.stack import FrameStack
from xfusion.registration import TRANSFORM_MODELS, estimate_transform, load_transform, save_transform

HELP = 'estimate the HR-camera -> x4 LR grid transform (similarity or affine, mirrored or not)'
CAMERA_ONLY = ('.cih', '.cihx', '.mraw', '.cine', '.h5', '.hdf5')  # sources that hold many frames
_FRAMES = re.compile(r'(?P<source>.+):(?P<first>\d+)(?:-(?P<last>\d+))?')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--lr', required=True, nargs='+', metavar='FRAME',
                        help='LR-camera frame(s): PNG/TIFF files, or SOURCE:N / SOURCE:A-B of a camera source '
                             '(x.cih:0, x.cine:0-9, file.h5:/exchange/data:0); several are averaged')
    parser.add_argument('--hr', required=True, nargs='+', metavar='FRAME',
                        help='HR-camera frame(s) taken at the same times; several are averaged')
    parser.add_argument('--out', required=True, metavar='FILE.json', help='where to write the transform')
    parser.add_argument('--transform-model', default='auto', choices=TRANSFORM_MODELS,
                        help='similarity (one scale), affine (a scale per axis, shear) or auto (affine only where it '
                             'explains the frames better beyond noise: the Bayesian information criterion); '
                             'mirroring is found in each')
    parser.add_argument('--near', default=None, metavar='TRANSFORM.json',
                        help='start from this transform (found on sample frames of the same cameras) and search only '
                             'around it: pins a periodic calibration target (a grid) to the right period')
    parser.add_argument('--keep-failed-fit', action='store_true',
                        help='write the transform even when no model explains the frames (marked failed: fuse and '
                             'check refuse it), to look at it')
    parser.add_argument('--no-flat-correction', action='store_true', help='DataExchange sources: raw counts')


def camera_frames(name: str) -> tuple[str, list[int]] | None:
    """('SOURCE', [frames]) for 'SOURCE:N' / 'SOURCE:A-B'; None for a plain frame file."""
    match = _FRAMES.fullmatch(name)
    if match is None:
        return None
    path, _ = split_h5_spec(match['source'])
    if not path.exists():
        return None
    first = int(match['first'])
    last = int(match['last']) if match['last'] is not None else first
    if last < first:
        raise InputError(f'{name}: frames {first}-{last} run backwards; write SOURCE:FIRST-LAST')
    return match['source'], list(range(first, last + 1))


def read_frames(name: str, flat_correction: bool = True) -> list[np.ndarray]:
    """The frames one --lr/--hr argument names, scaled to [0, 1] by a fixed range."""
    spec = camera_frames(name)
    if spec is not None:
        stack = FrameStack(spec[0], flat_correction=flat_correction)
        bad = [i for i in spec[1] if i >= len(stack)]
        if bad:
            raise InputError(f'{name}: frame {bad[0]} is beyond the {len(stack)} frames of {spec[0]} (counted from 0)')
        return [stack.read_unit(i) for i in spec[1]]
    path = Path(split_h5_spec(name)[0])
    if not path.exists():
        raise InputError(f'{path}: no such file')
    if path.is_dir() or path.suffix.lower() in CAMERA_ONLY:
        raise InputError(f'{name}: a camera source; name its frame(s): {name}:0 or {name}:0-9')
    img = read_frame(path)
    return [IntensityScale.for_dtype(img.dtype).to_unit(img)]


def read_mean(paths: list[str], flat_correction: bool = True) -> np.ndarray:
    """Average of frames scaled to [0, 1] (by their dtype range, or a camera source's fixed range); one shape."""
    frames: list[np.ndarray] = []
    for name in paths:
        for img in read_frames(name, flat_correction):
            if frames and img.shape != frames[0].shape:
                raise InputError(f'{name}: frame is {img.shape[0]}x{img.shape[1]}, '
                                 f'{paths[0]} is {frames[0].shape[0]}x{frames[0].shape[1]}')
            frames.append(img)
    return np.mean(frames, axis=0)


def run(args: argparse.Namespace) -> int:
    """Estimate the transform and write it (nothing is written on bad input, or when the fit failed)."""
    flat = not getattr(args, 'no_flat_correction', False)
    near = load_transform(args.near) if args.near else None
    t = estimate_transform(read_mean(args.lr, flat), read_mean(args.hr, flat), args.transform_model, near)
    if t['fit'] != 'ok' and not args.keep_failed_fit:
        raise InputError(f'no transform explains these frames: {t["fit"].removeprefix("failed: ")}; are they of '
                         'the same instant and field of view? (--keep-failed-fit writes it anyway, marked failed)')
    save_transform(t, args.out)
    sx, sy = t['scale_xy']
    print(f'{t["model"]}{", mirrored" if t["mirrored"] else ""}: scale {sx:.5f} x {sy:.5f}, shear {t["shear"]:+.5f}, '
          f'rotation {t["rotation_deg"]:+.3f} deg, shift ({t["shift_xy"][0]:+.2f}, {t["shift_xy"][1]:+.2f}) px, '
          f'residual {t["residual"]:.4f} (noise {t["noise"]:.4f}) -> {args.out}')
    if t['fit'] != 'ok':
        print(f'warning: the fit {t["fit"]}; fuse and check will refuse this transform')
    if t['repeats_every_lr_px'] is not None and near is None:
        dx, dy = t['repeats_every_lr_px']
        print(f'warning: the LR frame repeats every ({dx:+.0f}, {dy:+.0f}) pixels (a grid?): a fit one period off '
              'explains it as well; register sample frames first and give that transform with --near')
    return 0
