"""The real two-camera rig as a virtual experiment: registration error of the similarity and of the affine model,
and fused PSNR with the fitted transforms against the true one.

    python benchmarks/rig_registration.py      # about 18 minutes on 2 cores; writes docs/results/rig.json

``xfusion synth xray --rig hpvx2-tmx7510`` (the HPV-X2 / TMX7510 pair: pixel ratio 2.92, HR mirrored, its pixels
1 % taller than wide, turned 0.5 degree; at the cameras' own sizes, or shrunk by ``--rig-scale``) writes 57 LR
frames (4 of the HR camera); ``xfusion register`` fits it from the first simultaneous frame pair with each model;
the error is the distance, in x4-grid pixels, between where the fitted and the true map put the HR pixels that
land in the LR field. Then ``xfusion fuse`` (the packaged network, key frames placed by the cameras' clocks)
with each transform, scored against the ground truth on the non-key frames, over the LR pixels the HR camera
saw (8-bit PSNR).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import record

from xfusion.fusion.sources import hr_field_of_view
from xfusion.io.frames import list_frames, read_frame

ROOT = Path(__file__).resolve().parents[1]
XFUSION = [sys.executable, '-m', 'xfusion']


def field_error(matrix, truth: dict, hr_size) -> tuple[float, float]:
    """(max, median) distance in x4-grid pixels between two maps, over the HR pixels that land in the LR field."""
    h, w = hr_size
    xs, ys = np.meshgrid(np.linspace(0, w - 1, 64), np.linspace(0, h - 1, 64))
    points = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
    true = np.array(truth['matrix']) @ points
    gh, gw = truth['output_shape']
    inside = (true[0] >= 0) & (true[0] <= gw - 1) & (true[1] >= 0) & (true[1] <= gh - 1)
    distance = np.hypot(*((np.array(matrix) - np.array(truth['matrix'])) @ points))[inside]
    return float(distance.max()), float(np.median(distance))


def fused_psnr(fused: Path, truth: Path, key_times: list[int], seen: np.ndarray, high: float) -> float:
    """Mean 8-bit PSNR of the non-key frames over the grid pixels the HR camera saw; ``high``: the fused frames'
    full scale (the HR camera's: 12-bit), the truth's is 16-bit."""
    values = []
    for t, (a, b) in enumerate(zip(list_frames(fused), list_frames(truth))):
        if t in key_times:
            continue
        x = np.rint(read_frame(a).astype(np.float64) / high * 255)  # 8-bit, as the paper convention
        y = np.rint(read_frame(b).astype(np.float64) / 65535 * 255)
        values.append(10 * np.log10(255.0 ** 2 / max(np.mean((x - y)[seen] ** 2), 1e-12)))
    return float(np.mean(values))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rig-scale', type=float, default=1.0)
    parser.add_argument('--frames', type=int, default=57)
    parser.add_argument('--json', default='docs/results/rig.json')
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run(XFUSION + ['synth', 'xray', '--rig', 'hpvx2-tmx7510', '--rig-scale', str(args.rig_scale),
                                  '--frames', str(args.frames), '--out', str(work / 'rig')], check=True,
                       capture_output=True)
        rig = json.loads((work / 'rig' / 'rig.json').read_text())
        truth = json.loads((work / 'rig' / 'truth' / 'transform.json').read_text())
        experiment = work / 'rig' / 'experiment'
        transforms = {'true': work / 'rig' / 'truth' / 'transform.json'}
        registration = {}
        for model in ('similarity', 'affine', 'auto'):
            out = work / f'{model}.json'
            subprocess.run(XFUSION + ['register', '--lr', f'{experiment}/LR.tif:0', '--hr', f'{experiment}/HR.tif:0',
                                      '--transform-model', model, '--out', str(out)], check=True, capture_output=True)
            fitted = json.loads(out.read_text())
            worst, median = field_error(fitted['matrix'], truth, rig['hr_size'])
            registration[model] = {'model': fitted['model'], 'mirrored': fitted['mirrored'],
                                   'scale_xy': fitted['scale_xy'], 'rotation_deg': fitted['rotation_deg'],
                                   'residual': fitted['residual'], 'max_error_px': worst, 'median_error_px': median}
            transforms[model] = out
        fused = {}
        for name, transform in transforms.items():
            out = work / f'fused_{name}'
            subprocess.run(XFUSION + ['fuse', '--lr', f'{experiment}/LR.tif', '--hr', f'{experiment}/HR.tif',
                                      '--transform', str(transform), '--out', str(out)], check=True,
                           capture_output=True)
            sidecar = json.loads((out / 'xfusion.json').read_text())
            fused[name] = out, sidecar['schedule']['key_times'], sidecar['inputs']['intensity_range'][1]
        seen_lr = hr_field_of_view(truth, tuple(rig['hr_size']), tuple(rig['lr_size']))
        seen = np.kron(seen_lr, np.ones((4, 4), bool))
        psnr = {name: fused_psnr(out, work / 'rig' / 'truth' / 'grid', keys, seen, high)
                for name, (out, keys, high) in fused.items()}
    for name, value in psnr.items():
        print(f'fused with the {name} transform: {value:.2f} dB')
    for model, r in registration.items():
        print(f'{model}: {r["model"]}, mirrored {r["mirrored"]}, error max {r["max_error_px"]:.2f} px, median '
              f'{r["median_error_px"]:.2f} px')
    record.write(ROOT / args.json, {**record.header(), 'rig': rig, 'registration': registration, 'fused_psnr': psnr,
                                    'true_transform': {k: truth[k] for k in ('scale_xy', 'rotation_deg', 'mirrored')}})
    return 0


if __name__ == '__main__':
    sys.exit(main())
