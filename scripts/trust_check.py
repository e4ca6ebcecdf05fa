"""Measure `xfusion check`, the LR-consistency chi2 and `fuse --project` on the demo's test sequences.

    python scripts/trust_check.py --model experiments/demo_finetune_xray_prop/models/net_g_latest.pth

Each test sequence (datasets/demo/xray/test, clean 16-bit) is made a "real experiment": LR frames with Poisson
noise at b0 = 1000 (evaluate's own noise, seed 0, stored as 16-bit PNG) and only every D-th HR frame.
A. check at D = 10 (held out: 10, 20, 30, 40, 50) against evaluate at period 20 on the same LR files (frames 10,
   30, 50 from the sequence, 20 and 40 from the sequence that starts at step 10), and against evaluate at
   period 10 (the true quality at the experiment's own period).
B. fuse at D = 20: Spearman rank correlation between per-frame chi2 (consistency.csv) and the true per-frame
   error (MSE against the HR ground truth) over non-key frames, per sequence and pooled.
C. fuse --project vs plain fuse at D = 20: mean PSNR (float convention) over non-key frames, noisy and clean LR.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from xfusion.baselines import BASELINES
from xfusion.commands.check import check
from xfusion.commands.evaluate import evaluate, noisy_lr
from xfusion.commands.fuse import fuse
from xfusion.data.sequence_io import open_xray_root, read_frame, write_frame
from xfusion.metrics import calculate_psnr_stf


def make_experiments(data: Path, out: Path, b0: float | None) -> dict:
    """<out>/virtual/<seq>/{HR,LR} (all HR frames; LR noisy), <out>/shifted/<seq> (from step 10 on), <out>/lr/<seq>."""
    sequences = open_xray_root(data)
    tag = 'clean' if b0 is None else f'b0_{b0:g}'
    base = out / tag
    if base.exists():
        shutil.rmtree(base)
    for seq in sequences:
        lr = noisy_lr(seq, b0, seed=0)
        for t in range(seq.num_frames):
            lr16 = np.rint(np.clip(lr[t], 0, 1) * 65535).astype(np.uint16)
            hr16 = np.rint(seq.read_hr(t) * 65535).astype(np.uint16)
            for kind, start in (('virtual', 0), ('shifted', 10)):
                if t >= start:
                    write_frame(base / kind / seq.name / 'LR' / f'{t - start:08d}.png', lr16)
                    write_frame(base / kind / seq.name / 'HR' / f'{t - start:08d}.png', hr16)
    return {'base': base, 'names': [s.name for s in sequences], 'frames': sequences[0].num_frames}


def keys_folder(base: Path, name: str, period: int, frames: int) -> Path:
    folder = base / f'keys_{period}' / name
    if not folder.exists():
        folder.mkdir(parents=True)
        for t in range(0, frames, period):
            shutil.copy(base / 'virtual' / name / 'HR' / f'{t:08d}.png', folder / f'{t:08d}.png')
    return folder


def part_a(exp: dict, model: str, out: Path) -> dict:
    base, methods, d = exp['base'], list(BASELINES) + ['stf'], 10
    networks = {'stf': model}
    holdout = []
    for name in exp['names']:
        res = check(str(base / 'virtual' / name / 'LR'), str(keys_folder(base, name, d, exp['frames'])),
                    str(out / 'check' / name), period=d, networks=networks, methods=methods, progress=False)
        holdout += [dict(r, sequence=name) for r in res['rows']]
    truth = {}
    for kind, start in (('virtual', 0), ('shifted', 10)):
        res = evaluate(str(base / kind), str(out / f'eval20_{kind}'), methods, [2 * d], [1], [None],
                       networks=networks, convention='float', progress=False, report=False)
        for r in res['rows']:
            if not r['is_key']:
                truth[(r['method'], r['sequence'], r['frame'] + start)] = r['psnr']
    at_d = evaluate(str(base / 'virtual'), str(out / 'eval10'), methods, [d], [1], [None], networks=networks,
                    convention='float', progress=False, report=False)['rows']
    table = {}
    for m in methods:
        rows = [r for r in holdout if r['method'] == m]
        est = np.array([r['psnr'] for r in rows])
        ref = np.array([truth[(m, r['sequence'], r['frame'])] for r in rows])
        true_d = [r['psnr'] for r in at_d if r['method'] == m and not r['is_key'] and np.isfinite(r['psnr'])]
        table[m] = {'check_holdout': est.mean(), 'evaluate_2D_same_frames': ref.mean(),
                    'max_abs_diff': float(np.abs(est - ref).max()), 'evaluate_D_all_nonkey': float(np.mean(true_d)),
                    'frames': len(rows)}
    stf = [r for r in holdout if r['method'] == 'stf']
    rho = spearmanr([r['chi2'] for r in stf], [-r['psnr'] for r in stf])[0]
    return {'table': table, 'holdout_rank_chi2_vs_error_stf': float(rho)}


def fused_psnr(folder: Path, gt_root: Path, name: str, frames: int, keys: set) -> dict[int, float]:
    out = {}
    for t in range(frames):
        if t in keys:
            continue
        pred = read_frame(folder / f'{t:08d}.tif').astype(np.float64) / 65535
        gt = read_frame(gt_root / name / 'HR' / f'{t:08d}.png').astype(np.float64) / 65535
        out[t] = calculate_psnr_stf(pred, gt, convention='float')
    return out


def part_bc(exp: dict, model: str, out: Path, b0_given: float | None) -> dict:
    base, d = exp['base'], 20
    out.mkdir(parents=True, exist_ok=True)
    keys = set(range(0, exp['frames'], d))
    result = {'per_sequence': {}}
    pooled_chi2, pooled_err = [], []
    for name in exp['names']:
        lr, hr = str(base / 'virtual' / name / 'LR'), str(keys_folder(base, name, d, exp['frames']))
        plain = fuse(lr, hr, model, str(out / f'fused_{name}'), period=d, b0=b0_given, progress=False,
                     report=name == exp['names'][0])
        projected = fuse(lr, hr, model, str(out / f'projected_{name}'), period=d, b0=b0_given, project=True,
                         progress=False)
        with open(plain / 'consistency.csv') as f:
            chi2 = {int(r['frame']): float(r['chi2']) for r in csv.DictReader(f)}
        p_plain = fused_psnr(plain, base / 'virtual', name, exp['frames'], keys)
        p_proj = fused_psnr(projected, base / 'virtual', name, exp['frames'], keys)
        ts = sorted(p_plain)
        err = [10 ** (-p_plain[t] / 10) for t in ts]  # MSE
        rho = spearmanr([chi2[t] for t in ts], err)[0]
        pooled_chi2 += [chi2[t] for t in ts]
        pooled_err += err
        camera = json.loads((plain / 'xfusion.json').read_text())['camera_model']
        result['per_sequence'][name] = {
            'spearman_chi2_vs_mse': float(rho), 'psnr_fuse': float(np.mean([p_plain[t] for t in ts])),
            'psnr_fuse_project': float(np.mean([p_proj[t] for t in ts])),
            'mean_chi2_nonkey': float(np.mean([chi2[t] for t in ts])),
            'mean_chi2_key': float(np.mean([chi2[t] for t in keys])), 'camera': camera}
    result['spearman_pooled'] = float(spearmanr(pooled_chi2, pooled_err)[0])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', required=True)
    parser.add_argument('--data', default='datasets/demo/xray/test')
    parser.add_argument('--out', default='results/trust_check')
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started, results = time.time(), {}
    for b0 in (1000.0, None):
        exp = make_experiments(Path(args.data), out, b0)
        tag = exp['base'].name
        work = out / f'runs_{tag}'
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        results[tag] = {}
        if b0 is not None:
            results[tag]['A'] = part_a(exp, args.model, work)
            results[tag]['BC_given_b0'] = part_bc(exp, args.model, work / 'given', b0)
        results[tag]['BC_estimated_noise'] = part_bc(exp, args.model, work / 'estimated', None)
        print(tag, f'{time.time() - started:.0f} s', flush=True)
    (out / 'results.json').write_text(json.dumps(results, indent=1, default=float))
    print(json.dumps(results, indent=1, default=float))


if __name__ == '__main__':
    main()
