"""The demo networks against the classical baselines on the demo's test sequences: the demo setting and the
period x noise grid of docs/results.md.

    make demo                              # trains the networks, writes results/demo_evaluation/checkpoints.json
    python benchmarks/demo_results.py      # about 3 minutes on 2 cores; writes docs/results/demo.json

Runs ``xfusion evaluate`` with every network of checkpoints.json (``stf`` is the recommended one) and every
classical baseline over periods 10/20/40 and LR noise none / b0 1000 / b0 100 (lr_sep 1), then keeps, per
setting and method, the mean PSNR / SSIM / AAD over the non-key frames (pooled over the sequences, as evaluate's
summary gives it) and the mean PSNR of each sequence, with the scene family of each (its meta.json). The time
``make demo`` took (results/demo_logs/timing.json) goes into the record when it is there.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import record

from xfusion.baselines import BASELINES
from xfusion.fusion.config import EvaluateConfig
from xfusion.fusion.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[1]
DESCRIBE = {  # what each method is, for the tables
    'bicubic': 'LR frame upsampled', 'key_copy': 'the nearer key frame', 'temporal': 'STARFM-like change transfer',
    'bayes': 'Bayesian fusion', 'stf': 'PropSTF, the recommended network',
    'edvrstf': 'EDVRSTF (the original XFusion network)', 'lr_only': 'PropVSR, PropSTF without key frames (LR-only)'}


def cells(rows: list[dict]) -> list[dict]:
    """Per (period, b0, method): the means over non-key frames, pooled and per sequence."""
    groups = defaultdict(list)
    for r in rows:
        if not r['is_key']:
            groups[(r['period'], r['b0'], r['method'])].append(r)
    out = []
    for (period, b0, method), sel in groups.items():
        per_sequence = defaultdict(list)
        for r in sel:
            per_sequence[r['sequence']].append(r['psnr'])
        out.append({'period': period, 'b0': b0, 'method': method, 'frames': len(sel),
                    **{k: float(np.mean([r[k] for r in sel])) for k in ('psnr', 'ssim', 'aad')},
                    'per_sequence': {s: float(np.mean(v)) for s, v in sorted(per_sequence.items())}})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--checkpoints', default='results/demo_evaluation/checkpoints.json')
    parser.add_argument('--data', default='datasets/demo/xray/test')
    parser.add_argument('--out', default='results/demo_grid', help="evaluate's own outputs (metrics.csv, ...)")
    parser.add_argument('--json', default='docs/results/demo.json')
    args = parser.parse_args(argv)
    checkpoints = json.loads((ROOT / args.checkpoints).read_text())
    networks = {name: str(ROOT / path) for name, path in checkpoints.items()}
    methods = list(BASELINES) + list(networks)
    periods, b0s = [10, 20, 40], [None, 1000.0, 100.0]
    result = evaluate(EvaluateConfig(data=str(ROOT / args.data), out=str(ROOT / args.out), methods=methods,
                                     periods=periods, lr_seps=[1], b0s=b0s, networks=networks))
    timing = ROOT / 'results' / 'demo_logs' / 'timing.json'
    sequences = sorted({r['sequence'] for r in result['rows']})
    metas = {seq: ROOT / args.data / seq / 'meta.json' for seq in sequences}  # written by xfusion synth xray
    families = {seq: json.loads(meta.read_text()).get('family', 'mixed') for seq, meta in metas.items()
                if meta.is_file()}
    record.write(ROOT / args.json, {
        **record.header(), 'data': args.data, 'checkpoints': checkpoints, 'lr_sep': 1, 'convention': 'paper',
        'headline': {'period': 20, 'b0': '1000'}, 'periods': periods, 'b0s': ['none', '1000', '100'],
        'methods': methods, 'describe': {m: DESCRIBE.get(m, '') for m in methods},
        'sequences': sequences, 'families': families,
        'make_demo': json.loads(timing.read_text()) if timing.is_file() else None,
        'cells': cells(result['rows'])})
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
