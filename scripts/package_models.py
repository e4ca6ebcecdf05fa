"""Retrain the networks that ship inside xfusion (``xfusion/pretrained/``) and write them with their model cards.

    python scripts/package_models.py               # about 20 minutes on 2 CPU cores
    python scripts/package_models.py --use-demo    # package what a finished make demo trained (3 minutes)

1. ``make demo``'s steps (``scripts/demo.py``): the synthetic data, the training of every demo network and the
   choice of the recommended key-frame network on the validation families;
2. ``benchmarks/demo_results.py``: every demo network and classical baseline on the test families, over periods
   10 / 20 / 40 and LR noise none / b0 1000 / b0 100 (``docs/results/demo.json``);
3. the recommended network and the LR-only variant into ``xfusion/pretrained/<name>/``: the weights alone
   (``net_g.pth``), the options of their training run (``options.yml``) and the card's record (``card.json``:
   the training data, the recipe, the choice, the test-family table), with ``index.json``; and
   ``tests/data/pretrained/<name>.npz``: a small crop of a test sequence with the network's output on it, which
   ``tests/test_pretrained.py`` reproduces;
4. ``benchmarks/render_results.py``: the cards (``card.md``) and ``docs/results.md``.

Trained with the recipes' own seeds on one thread each, as ``make demo`` does, so that a rerun on the same
machine and software gives the same weights.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'benchmarks'))

import demo  # noqa: E402  (scripts/demo.py: the demo's networks, data and choice)
import demo_results  # noqa: E402
import record  # noqa: E402
import render_results  # noqa: E402

from xfusion.baselines import BASELINES  # noqa: E402
from xfusion.checkpoint import load_network, state_dict_of  # noqa: E402
from xfusion.inference import SequenceInference  # noqa: E402
from xfusion.io.sequence import open_xray_root  # noqa: E402
from xfusion.options import load_option_file  # noqa: E402
from xfusion.pretrained import CARD, FOLDER, INDEX, OPTIONS, WEIGHTS  # noqa: E402
from xfusion.schedule import FrameSource, KeySchedule  # noqa: E402
from xfusion.synth.xray import ROLES  # noqa: E402

REFERENCES = ROOT / 'tests' / 'data' / 'pretrained'
# the packaged roles: the demo's method name -> what the network is for, the baseline it is measured against,
# and where it stops
ROLE = {
    'stf': ('the recommended key-frame network: fuses the LR stream with the HR key frames', 'best classical'),
    'lr_only': ('the LR-only variant: super-resolves the LR stream alone, without key frames', 'bicubic'),
}


def limits(name: str) -> list[str]:
    return [
        'Trained on synthetic x-ray sequences only (the scene families under Training): real beamline data differ '
        'in contrast, noise, blur and motion. Fine-tune on your own sequences for the best result '
        f'(`path.pretrain_network_g: {name}` in a training option file), and score fusion on your data with '
        '`xfusion check` before trusting it.',
        'Grayscale, x4 between the two cameras, registered frames (`xfusion register` for real cameras).',
        'Trained at the key-frame periods and LR noise given under Training; beyond them it extrapolates.',
    ]
RUN_FOLDERS = ('experiments_root', 'models', 'training_states', 'log', 'visualization', 'results_root')
REFERENCE_CROP = dict(sequence='seq_000', frames=13, period=6, lr_box=(4, 20, 4, 20))  # 16x16 LR, 64x64 HR


def synth_command(root: str | Path) -> tuple[list[str], dict[str, str]]:
    """The ``xfusion synth`` command that made a data set (its synth.json), and that command's flags."""
    command = json.loads((ROOT / root / 'synth.json').read_text())
    return command, dict(zip(command[2::2], command[3::2]))  # ['synth', 'xray', '--out', X, '--seed', S, ...]


def trained_on(options: dict) -> dict:
    """The training data of a run, from its options and the synth.json of each data root."""
    train = options['datasets']['train']
    roots = train['dataroot'] if isinstance(train['dataroot'], list) else [train['dataroot']]
    sets = []
    for root in roots:
        command, flags = synth_command(root)
        families = ROLES.get(flags.get('--families'), [flags.get('--families', 'mixed')])
        sets.append({'root': root, 'families': list(families), 'sequences': int(flags['--sequences']),
                     'frames': int(flags['--frames']), 'seed': int(flags['--seed']),
                     'b0': None if float(flags.get('--b0', 0)) == 0 else float(flags['--b0']),
                     'command': 'xfusion ' + ' '.join(command)})
    return {'sets': sets, 'periods': train.get('period_range'), 'extra_b0_log10': train.get('b0_log10_range'),
            'noise_prob': train.get('noise_prob'), 'crop_hr': train.get('gt_size')}


def pretrained_by(option_files: list[str]) -> list[dict]:
    """The steps of a recipe before its last (pretraining): option file, iterations and the clips trained on."""
    steps = []
    for option_file in option_files:
        options = load_option_file(ROOT / option_file)
        train = options['datasets']['train']
        root = Path(train.get('dataroot_gt') or train['dataroot']).parent  # the data set's folder (synth.json)
        command, flags = synth_command(root)
        steps.append({'recipe': option_file, 'total_iter': int(float(options['train']['total_iter'])),
                      'root': str(root), 'clips': int(flags['--sequences']), 'frames': int(flags['--frames']),
                      'command': 'xfusion ' + ' '.join(command)})
    return steps


def test_table(results: dict, method: str) -> list[dict]:
    """Per family, period and LR noise: the mean PSNR of the network and of every classical baseline."""
    families = results['families']
    rows = []
    for family in sorted(set(families.values())):
        sequences = [s for s, f in families.items() if f == family]
        for period in results['periods']:
            for b0 in results['b0s']:
                psnr = {}
                for m in [*BASELINES, method]:
                    cell = next(c for c in results['cells']
                                if c['period'] == period and str(c['b0']) == b0 and c['method'] == m)
                    psnr[m] = float(np.mean([cell['per_sequence'][s] for s in sequences]))
                rows.append({'family': family, 'period': period, 'b0': b0, 'psnr': psnr})
    return rows


def headline(results: dict, method: str, versus: str) -> dict:
    """The demo setting (period 20, b0 1000), pooled over the test sequences, against the named baseline."""
    setting = results['headline']
    pooled = {c['method']: c['psnr'] for c in results['cells']
              if c['period'] == setting['period'] and str(c['b0']) == setting['b0']}
    baseline = max(BASELINES, key=pooled.get) if versus == 'best classical' else versus
    return {**setting, 'psnr': pooled[method], 'baseline': baseline, 'baseline_psnr': pooled[baseline]}


def write_reference(name: str, model_dir: Path) -> Path:
    """A small crop of a test sequence and the packaged network's output on it (what the test reproduces)."""
    net, _ = load_network(model_dir / WEIGHTS)  # strictly, from the packaged folder
    crop = REFERENCE_CROP
    (sequence,) = open_xray_root(demo.DATA / 'xray' / 'test', names=[crop['sequence']])
    y0, y1, x0, x1 = crop['lr_box']
    lr = np.stack([sequence.read_lr(t)[y0:y1, x0:x1] for t in range(crop['frames'])]).astype(np.float32)
    schedule = KeySchedule.every(crop['period'], crop['frames'])
    keys = np.stack([sequence.read_hr(k)[4 * y0:4 * y1, 4 * x0:4 * x1] for k in schedule.key_times])
    key_of = dict(zip(schedule.key_times, keys.astype(np.float32)))
    source = FrameSource(lambda t: lr[t], lambda k: key_of[k], schedule, 1)
    out = np.stack([frame[0].numpy() for _, frame in SequenceInference(net).run(source)])
    REFERENCES.mkdir(parents=True, exist_ok=True)
    path = REFERENCES / f'{name}.npz'
    np.savez_compressed(path, lr=lr, keys=keys.astype(np.float32), key_times=np.array(schedule.key_times),
                        output=out.astype(np.float16), made_by=np.array('python scripts/package_models.py'))
    return path


def portable_options(options: dict) -> str:
    """The options of the training run, without the folders BasicSR set on the machine that ran it."""
    options = json.loads(json.dumps(options))  # plain dicts and lists
    options['path'] = {k: v for k, v in options['path'].items() if k not in RUN_FOLDERS}
    return ('# The options of the training run that made these weights (scripts/package_models.py); network_g\n'
            '# rebuilds the network, the rest says how it was trained.\n' + yaml.safe_dump(options, sort_keys=False))


def package(method: str, network_key: str, checkpoint: str, results: dict, choice: dict) -> str:
    """The demo's network ``network_key`` (evaluated as ``method``) into xfusion/pretrained/<name>/; its name."""
    models_dir = (ROOT / checkpoint).parent
    options = load_option_file(models_dir / OPTIONS)
    network = options['network_g']['type']
    name = network.lower()
    folder = FOLDER / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    state, _ = state_dict_of(ROOT / checkpoint)
    torch.save({'params': state}, folder / WEIGHTS)
    (folder / OPTIONS).write_text(portable_options(options))
    role, versus = ROLE[method]
    *pretraining, recipe = demo.NETWORKS[network_key][1]
    header = {k: v for k, v in record.header().items() if k != 'date'}  # the package stays timeless
    card = {
        **header, 'name': name, 'network': network, 'role': role, 'method': method,
        'parameters': int(sum(v.numel() for v in state.values())), 'bytes': (folder / WEIGHTS).stat().st_size,
        'recipe': recipe, 'manual_seed': options.get('manual_seed'), 'total_iter': options['train']['total_iter'],
        'retrain': 'python scripts/package_models.py', 'pretrained_by': pretrained_by(pretraining),
        'trained_on': trained_on(options),
        'validation': {'families': list(ROLES['val']), **choice} if method == 'stf' else None,
        'test': {'data': results['data'], 'families': list(ROLES['test']), 'convention': results['convention'],
                 'lr_sep': results['lr_sep'], 'rows': test_table(results, method)},
        'versus': versus, 'headline': headline(results, method, versus), 'limits': limits(name),
    }
    (folder / CARD).write_text(json.dumps(card, indent=1) + '\n')
    print(f'packaged {method} as {name}: {folder} ({card["bytes"] / 1e6:.2f} MB); '
          f'reference output {write_reference(name, folder).relative_to(ROOT)}')
    return name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--use-demo', action='store_true',
                        help='package the networks of a finished make demo instead of running it again')
    args = parser.parse_args(argv)
    if not args.use_demo and subprocess.run([sys.executable, str(ROOT / 'scripts' / 'demo.py')], cwd=ROOT).returncode:
        return 1
    checkpoints = json.loads((demo.EVALUATION / 'checkpoints.json').read_text())
    demo_results.main([])
    results = json.loads((ROOT / 'docs' / 'results' / 'demo.json').read_text())
    val_psnr = demo.mean_psnr(demo.EVALUATION.parent / 'demo_choice' / 'metrics.csv')
    recommended = max(demo.KEY_FRAME_NETWORKS, key=val_psnr.get)
    choice = {'setting': {'period': 20, 'b0': '1000'}, 'psnr': val_psnr, 'chosen': recommended}
    names = [package(method, key, checkpoints[method], results, choice)
             for method, key in (('stf', recommended), ('lr_only', 'lr_only'))]
    INDEX.write_text(json.dumps({'recommended': names[0], 'models': names}, indent=1) + '\n')
    return render_results.main([])


if __name__ == '__main__':
    sys.exit(main())
