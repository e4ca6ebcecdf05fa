"""The training recipes over several training seeds: mean and spread per scene family, period and LR noise.

    make demo                              # the demo's data sets (datasets/demo)
    python benchmarks/seed_table.py        # about an hour and a half on 2 cores; writes docs/results/seeds.json

Each recipe of ``RECIPES`` is trained once per seed (``--seeds``, 10 11 12 by default) as
``experiments/seeds_<recipe>_s<seed>`` (a recipe of two option files, pretraining then fine-tuning, chains its
own pretrained weights), ``--jobs`` trainings at a time on one thread each; a training that ran to its end
already is kept. Then every trained network and every classical baseline is evaluated (``xfusion evaluate``)
on the validation sequences, where choices are made, and on the test sequences, used for nothing else, over
periods 10/20/40 and LR noise none / b0 1000 / b0 100. The record keeps, per data set, scene family (the
sequences' meta.json), period, noise and method, the mean PSNR over the non-key frames; for a network, per seed.
``--add`` adds the recipes to the record already at ``--json`` and keeps those it holds, whose networks need not
be on this machine; the classical baselines must measure the same, or the data sets are not the record's and
nothing is written.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import record

from xfusion.baselines import BASELINES
from xfusion.fusion.config import EvaluateConfig
from xfusion.fusion.evaluate import evaluate
from xfusion.options import load_option_file

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {  # method name -> its option files in training order
    'stf': ['options/demo/finetune_xray_prop_demo.yml'],
    'stf_cpu_hour': ['options/cpu_hour/finetune_xray_prop_cpu_hour.yml'],
    'edvrstf': ['options/demo/pretrain_reds_demo.yml', 'options/demo/finetune_xray_demo.yml'],
    'lr_only': ['options/demo/pretrain_reds_prop_lronly_demo.yml', 'options/demo/finetune_xray_prop_lronly_demo.yml'],
}
DESCRIBE = {'stf': 'PropSTF, the demo recipe', 'stf_cpu_hour': 'PropSTF, the CPU-hour recipe',
            'edvrstf': 'EDVRSTF, the demo recipe (the original XFusion network)',
            'lr_only': 'PropVSR, the LR-only demo recipe (pretrained on the REDS-layout clips; self-ensemble at '
                       'inference)'}
PERIODS, B0S = [10, 20, 40], [None, 1000.0, 100.0]


def checkpoint(name: str) -> Path:
    return ROOT / 'experiments' / name / 'models' / 'net_g_latest.pth'


def finished(name: str, option_file: str) -> bool:
    """Whether the training ``name`` of an option file ran to its end (BasicSR writes net_g_latest.pth at every
    save, so only the checkpoint of the last iteration says so)."""
    total = int(float(load_option_file(ROOT / option_file)['train']['total_iter']))
    return (checkpoint(name).parent / f'net_g_{total}.pth').is_file()


def train_seed(recipe: str, seed: int, log_dir: Path) -> dict:
    """Train one seed of a recipe (each of its option files in turn); returns {'network', 'minutes'}."""
    import time
    started = time.time()
    previous = None
    for step, option_file in enumerate(RECIPES[recipe]):
        last = step == len(RECIPES[recipe]) - 1
        name = f'seeds_{recipe}_s{seed}' if last else f'seeds_{recipe}_s{seed}_step{step}'
        if not finished(name, option_file):
            overrides = [f'manual_seed={seed}', f'name={name}']
            if previous is not None:  # the step before's weights, as the option file's own chain would give them
                overrides.append(f'path:pretrain_network_g={checkpoint(previous).relative_to(ROOT)}')
            env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
            with open(log_dir / f'{name}.log', 'w') as log:
                code = subprocess.call([sys.executable, 'train.py', '-opt', option_file, '--force_yml', *overrides],
                                       cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
            if code:
                raise SystemExit(f'training {name} failed (exit {code}); its log: {log_dir / (name + ".log")}')
            print(f'trained {name}', flush=True)
        previous = name
    return {'network': str(checkpoint(previous).relative_to(ROOT)), 'minutes': round((time.time() - started) / 60, 1)}


def family_means(rows: list[dict], families: dict[str, str]) -> list[dict]:
    """Per (family, period, b0, method): the mean PSNR over the non-key frames of the family's sequences."""
    groups = defaultdict(list)
    for r in rows:
        if not r['is_key'] and np.isfinite(r['psnr']):
            groups[(families[r['sequence']], r['period'], r['b0'], r['method'])].append(r['psnr'])
    return [{'family': f, 'period': p, 'b0': b, 'method': m, 'psnr': float(np.mean(v)), 'frames': len(v)}
            for (f, p, b, m), v in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0])))]


def evaluate_on(data: str, out: Path, networks: dict[str, str], options: dict[str, str] | None = None) -> dict:
    """``options``: {method: option file} whose network_g builds the network (default: its training run's)."""
    result = evaluate(EvaluateConfig(data=str(ROOT / data), out=str(out), methods=list(BASELINES) + list(networks),
                                     periods=PERIODS, lr_seps=[1], b0s=B0S, networks=networks,
                                     options={m: str(ROOT / f) for m, f in (options or {}).items()}))
    sequences = sorted({r['sequence'] for r in result['rows']})
    families = {seq: json.loads((ROOT / data / seq / 'meta.json').read_text()).get('family', 'mixed')
                for seq in sequences}
    return {'data': data, 'families': families, 'cells': family_means(result['rows'], families)}


def added_to(kept: dict, measured: dict) -> dict:
    """``kept``, the record on file, with the recipes of ``measured`` added (or measured again); its own command,
    date and machine stay, and ``additions`` says which command added which recipes, when and where."""
    if kept['seeds'] != measured['seeds']:
        raise SystemExit(f"--add: the record has seeds {kept['seeds']}, this run {measured['seeds']}")
    merged = {**kept, 'recipes': {**kept['recipes'], **measured['recipes']}, 'describe': measured['describe'],
              'training_minutes': {**kept['training_minutes'], **measured['training_minutes']}, 'sets': {}}
    new_methods = {f'{r}_s{s}' for r in measured['recipes'] for s in measured['seeds']}
    for name, part in measured['sets'].items():
        old = kept['sets'][name]
        classical = {(c['family'], c['period'], c['b0'], c['method']): c['psnr'] for c in old['cells']
                     if c['method'] in BASELINES}
        for c in part['cells']:
            key = (c['family'], c['period'], c['b0'], c['method'])
            if key in classical and abs(classical[key] - c['psnr']) > 1e-6:
                raise SystemExit(f'--add: {name} {key}: {c["psnr"]:.4f} dB here, {classical[key]:.4f} in the record; '
                                 'the data sets are not the ones it was measured on')
        merged['sets'][name] = {**old, 'cells': [c for c in old['cells'] if c['method'] not in new_methods]
                                + [c for c in part['cells'] if c['method'] in new_methods]}
    # an earlier addition no longer speaks for the recipes measured again
    earlier = [{**a, 'recipes': [r for r in a['recipes'] if r not in measured['recipes']]}
               for a in kept.get('additions', [])]
    merged['additions'] = [a for a in earlier if a['recipes']] + [
        {k: measured[k] for k in ('command', 'date', 'machine')} | {'recipes': list(measured['recipes']),
                                                                   'replaced': [r for r in measured['recipes']
                                                                                if r in kept['recipes']]}]
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--recipes', default=','.join(RECIPES), help='comma list of ' + ', '.join(RECIPES))
    parser.add_argument('--seeds', type=int, nargs='+', default=[10, 11, 12])
    parser.add_argument('--jobs', type=int, default=2, help='trainings at a time, one thread each')
    parser.add_argument('--out', default='results/seed_table', help="training logs and evaluate's own outputs")
    parser.add_argument('--json', default='docs/results/seeds.json')
    parser.add_argument('--add', action='store_true',
                        help="add these recipes to the record at --json, keeping the recipes it already holds")
    args = parser.parse_args(argv)
    recipes = args.recipes.split(',')
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        parser.error(f'unknown recipe {unknown[0]!r}; choose among {", ".join(RECIPES)}')
    out = ROOT / args.out
    (out / 'logs').mkdir(parents=True, exist_ok=True)
    jobs = [(recipe, seed) for seed in args.seeds for recipe in recipes]
    with ThreadPoolExecutor(args.jobs) as pool:
        trained = dict(zip(jobs, pool.map(lambda job: train_seed(*job, out / 'logs'), jobs)))
    networks = {f'{recipe}_s{seed}': str(ROOT / t['network']) for (recipe, seed), t in trained.items()}
    # each network as its recipe builds it today (network_g of its last option file): an inference setting such as
    # PropVSR's self_ensemble changes no weight, so a network trained before it is measured with it too
    options = {f'{recipe}_s{seed}': RECIPES[recipe][-1] for recipe, seed in trained}
    measured = {**record.header(), 'recipes': {r: RECIPES[r] for r in recipes}, 'describe': DESCRIBE,
                'seeds': args.seeds, 'training_minutes': {f'{r}_s{s}': t['minutes'] for (r, s), t in trained.items()},
                'periods': PERIODS, 'b0s': ['none', '1000', '100'], 'convention': 'paper', 'lr_sep': 1,
                'sets': {name: evaluate_on(f'datasets/demo/xray/{name}', out / name, networks, options)
                         for name in ('val', 'test')}}
    if args.add and (ROOT / args.json).is_file():
        measured = added_to(json.loads((ROOT / args.json).read_text()), measured)
    record.write(ROOT / args.json, measured)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
