"""How far `xfusion check` and the LR consistency of `xfusion fuse` can be trusted, on the demo's test sequences.

    make demo
    python benchmarks/trust_check.py      # about a minute on 2 cores; writes docs/results/trust.json

Each test sequence (clean, 16-bit) is made a real experiment: LR frames with Poisson noise (evaluate's own noise,
seed 0, stored as 16-bit PNG) and only every D-th HR frame.

- Held-out key frames: `check` at D = 10 (held out: steps 10 to 50) against `evaluate` at period 20 on the same
  LR frames (steps 10, 30, 50 from the sequence, 20 and 40 from the sequence that starts at step 10), and against
  `evaluate` at period 10 (the true quality at the experiment's own period).
- LR consistency: `fuse` at D = 20; the Spearman rank correlation between each per-frame score of consistency.csv
  (chi2, key_change, bayes_rms, risk) and the true per-frame error (MSE against the ground truth) over the non-key
  frames, per sequence and pooled, with the noise given (`--b0`) and estimated from the key frames, for noisy and for
  clean LR frames.
- `fuse --project` against plain `fuse`: the mean PSNR over the non-key frames.
PSNR in the float convention throughout.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import record
from scipy.stats import spearmanr

from xfusion.baselines import BASELINES
from xfusion.fusion.check import check
from xfusion.fusion.config import CheckConfig, EvaluateConfig, FuseConfig, RunOptions, SourceOptions
from xfusion.fusion.evaluate import evaluate, noisy_lr
from xfusion.fusion.fuse import fuse
from xfusion.io.frames import read_frame, write_frame
from xfusion.io.sequence import open_xray_root
from xfusion.metrics import calculate_psnr_stf

ROOT = Path(__file__).resolve().parents[1]
QUIET = RunOptions(progress=False)
B0 = 1000.0
HOLDOUT_PERIOD, FUSE_PERIOD = 10, 20
SCORES = ('chi2', 'key_change', 'bayes_rms', 'risk')  # the per-frame scores of consistency.csv


def make_experiments(data: Path, out: Path, b0: float | None) -> dict:
    """<out>/<tag>/virtual/<seq>/{HR,LR} (every HR frame; LR noisy) and <out>/<tag>/shifted/<seq> (from step 10)."""
    sequences = open_xray_root(data)
    base = out / ('clean' if b0 is None else f'b0_{b0:g}')
    shutil.rmtree(base, ignore_errors=True)
    for seq in sequences:
        lr = noisy_lr(seq, b0, seed=0)
        for t in range(seq.num_frames):
            lr16 = np.rint(np.clip(lr[t], 0, 1) * 65535).astype(np.uint16)
            hr16 = np.rint(seq.read_hr(t) * 65535).astype(np.uint16)
            for kind, start in (('virtual', 0), ('shifted', HOLDOUT_PERIOD)):
                if t >= start:
                    write_frame(base / kind / seq.name / 'LR' / f'{t - start:08d}.png', lr16)
                    write_frame(base / kind / seq.name / 'HR' / f'{t - start:08d}.png', hr16)
    return {'base': base, 'names': [s.name for s in sequences], 'frames': sequences[0].num_frames}


def keys_folder(base: Path, name: str, period: int, frames: int) -> Path:
    """Every period-th HR frame of a sequence: the key frames of a real experiment."""
    folder = base / f'keys_{period}' / name
    if not folder.exists():
        folder.mkdir(parents=True)
        for t in range(0, frames, period):
            shutil.copy(base / 'virtual' / name / 'HR' / f'{t:08d}.png', folder / f'{t:08d}.png')
    return folder


def holdout(exp: dict, model: str, out: Path) -> dict:
    """check at D against evaluate at 2D on the same frames, and evaluate at D."""
    base, methods, d = exp['base'], list(BASELINES) + ['stf'], HOLDOUT_PERIOD
    networks = {'stf': model}
    rows = []
    for name in exp['names']:
        sources = SourceOptions(str(base / 'virtual' / name / 'LR'), str(keys_folder(base, name, d, exp['frames'])),
                                period=d)
        result = check(CheckConfig(sources, str(out / 'check' / name), networks=networks, methods=methods,
                                   run=QUIET, report=False))
        rows += [dict(r, sequence=name) for r in result['rows']]
    truth = {}
    for kind, start in (('virtual', 0), ('shifted', d)):
        result = evaluate(EvaluateConfig(str(base / kind), str(out / f'eval{2 * d}_{kind}'), methods, [2 * d], [1],
                                         [None], networks=networks, convention='float', run=QUIET, report=False))
        truth.update({(r['method'], r['sequence'], r['frame'] + start): r['psnr'] for r in result['rows']
                      if not r['is_key']})
    at_d = evaluate(EvaluateConfig(str(base / 'virtual'), str(out / f'eval{d}'), methods, [d], [1], [None],
                                   networks=networks, convention='float', run=QUIET, report=False))['rows']
    table = {}
    for m in methods:
        mine = [r for r in rows if r['method'] == m]
        est = np.array([r['psnr'] for r in mine])
        ref = np.array([truth[(m, r['sequence'], r['frame'])] for r in mine])
        true_d = [r['psnr'] for r in at_d if r['method'] == m and not r['is_key'] and np.isfinite(r['psnr'])]
        table[m] = {'check_holdout': float(est.mean()), 'evaluate_2D_same_frames': float(ref.mean()),
                    'max_abs_diff': float(np.abs(est - ref).max()), 'evaluate_D_all_nonkey': float(np.mean(true_d)),
                    'frames': len(mine)}
    stf = [r for r in rows if r['method'] == 'stf']
    rho = spearmanr([r['chi2'] for r in stf], [-r['psnr'] for r in stf])[0]
    return {'period': d, 'b0': B0, 'methods': table, 'shown': 'stf', 'spearman_chi2_vs_error': float(rho)}


def fused_psnr(folder: Path, truth: Path, frames: int, keys: set) -> dict[int, float]:
    """PSNR of each non-key fused frame against its HR ground truth (both 16-bit)."""
    return {t: calculate_psnr_stf(read_frame(folder / f'{t:08d}.tif').astype(np.float64) / 65535,
                                  read_frame(truth / f'{t:08d}.png').astype(np.float64) / 65535, convention='float')
            for t in range(frames) if t not in keys}


def consistency(exp: dict, model: str, out: Path, b0: float | None) -> dict:
    """fuse and fuse --project at D on every sequence: each per-frame score against the true error, and PSNR."""
    base, d = exp['base'], FUSE_PERIOD
    keys = set(range(0, exp['frames'], d))
    out.mkdir(parents=True)
    per_sequence, pooled = {}, {score: [] for score in (*SCORES, 'mse')}
    for name in exp['names']:
        sources = SourceOptions(str(base / 'virtual' / name / 'LR'), str(keys_folder(base, name, d, exp['frames'])),
                                period=d, b0=b0)
        plain = fuse(FuseConfig(sources, model, str(out / f'fused_{name}'), run=QUIET))
        projected = fuse(FuseConfig(sources, model, str(out / f'projected_{name}'), run=QUIET, project=True))
        with open(plain / 'consistency.csv') as f:
            rows = {int(r['frame']): r for r in csv.DictReader(f)}
        truth = base / 'virtual' / name / 'HR'
        p_plain = fused_psnr(plain, truth, exp['frames'], keys)
        p_proj = fused_psnr(projected, truth, exp['frames'], keys)
        ts = sorted(p_plain)
        err = [10 ** (-p_plain[t] / 10) for t in ts]  # MSE
        scores = {score: [float(rows[t][score]) for t in ts] for score in SCORES}
        for score, values in scores.items():
            pooled[score] += values
        pooled['mse'] += err
        per_sequence[name] = {
            **{f'spearman_{score}_vs_mse': float(spearmanr(values, err)[0]) for score, values in scores.items()},
            'psnr_fuse': float(np.mean([p_plain[t] for t in ts])),
            'psnr_fuse_project': float(np.mean([p_proj[t] for t in ts])),
            'mean_chi2_nonkey': float(np.mean(scores['chi2'])),
            'mean_chi2_key': float(np.mean([float(rows[t]['chi2']) for t in keys])),
            'camera': json.loads((plain / 'xfusion.json').read_text())['camera_model']}
    return {'per_sequence': per_sequence,
            **{f'spearman_{score}_pooled': float(spearmanr(pooled[score], pooled['mse'])[0]) for score in SCORES}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', default=None, help="default: stf of make demo's checkpoints.json")
    parser.add_argument('--data', default='datasets/demo/xray/test')
    parser.add_argument('--out', default='results/trust_check', help='the experiments and the runs on them')
    parser.add_argument('--json', default='docs/results/trust.json')
    args = parser.parse_args(argv)
    model = args.model or json.loads((ROOT / 'results/demo_evaluation/checkpoints.json').read_text())['stf']
    out = ROOT / args.out
    shutil.rmtree(out, ignore_errors=True)
    noisy = make_experiments(ROOT / args.data, out / 'data', B0)
    clean = make_experiments(ROOT / args.data, out / 'data', None)
    checkpoint = str(ROOT / model)
    runs = {f'b0 {B0:g}, noise given (--b0)': consistency(noisy, checkpoint, out / 'fuse_b0_given', B0),
            f'b0 {B0:g}, noise estimated': consistency(noisy, checkpoint, out / 'fuse_b0_estimated', None),
            'clean, noise estimated': consistency(clean, checkpoint, out / 'fuse_clean', None)}
    record.write(ROOT / args.json, {
        **record.header(), 'model': model, 'data': args.data,
        'holdout': holdout(noisy, checkpoint, out / 'holdout'),
        'consistency': {'period': FUSE_PERIOD, 'runs': runs}})
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
