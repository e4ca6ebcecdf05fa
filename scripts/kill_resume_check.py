"""Kill training with SIGKILL at random moments (often while it saves) and check that --auto_resume recovers.

    python scripts/kill_resume_check.py --repeats 20

Each repeat: a tiny STF training run saving a checkpoint every iteration is killed at a random
moment after its first saved state; ``train.py --auto_resume`` must then start from the newest
complete state on disk (every state file there must load), continue the iteration count from
it and finish. Prints how many repeats resumed correctly; exit status 1 if any did not.
"""
from __future__ import annotations

import argparse
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
TOTAL_ITER = 40


def make_workspace(folder: Path) -> Path:
    """Data (3 synthetic REDS-layout clips of 64x64), train.py and a tiny option file in folder."""
    from xfusion.reds_gray import reds_gray
    from xfusion.synth.reds import synth_reds
    synth_reds(folder / 'reds', sequences=3, frames=8, hr_size=(64, 64), seed=0)
    reds_gray(folder / 'reds', workers=1)
    data = dict(dataroot_gt=str(folder / 'reds' / 'train_sharp_gray'),
                dataroot_lq=str(folder / 'reds' / 'train_sharp_bicubic_gray' / 'X4'),
                meta_info_file=str(folder / 'reds' / 'meta_info_REDS_GT.txt'))
    opt = {
        'name': 'killed', 'model_type': 'STFModel', 'scale': 4, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {'train': dict(name='train', type='REDSSTFDataset', val_partition='REDS4', period_range=[2, 6],
                                   lr_sep=[1], gt_size=32, num_worker_per_gpu=0, batch_size_per_gpu=2,
                                   dataset_enlarge_ratio=1, **data)},
        'network_g': dict(type='EDVRSTF', num_feat=8, deformable_groups=2, num_extract_block=1,
                          num_reconstruct_block=1, hr_encoder='unshuffle', base='key_blend'),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3}, 'total_iter': TOTAL_ITER, 'warmup_iter': -1,
                  'scheduler': {'type': 'CosineAnnealingRestartLR', 'periods': [TOTAL_ITER], 'restart_weights': [1],
                                'eta_min': 1e-6}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': 1, 'use_tb_logger': False},
    }
    shutil.copy(ROOT / 'train.py', folder / 'train.py')
    (folder / 'killed.yml').write_text(yaml.safe_dump(opt))
    return folder / 'killed.yml'


def newest_complete_state(exp: Path) -> int | None:
    """The newest iteration whose state and network files both load (what --auto_resume should take)."""
    iters = sorted((int(p.stem) for p in (exp / 'training_states').glob('*.state') if p.stem.isdigit()), reverse=True)
    for it in iters:
        try:
            torch.load(exp / 'training_states' / f'{it}.state', weights_only=False)
            torch.load(exp / 'models' / f'net_g_{it}.pth', weights_only=True)
            return it
        except Exception:
            continue
    return None


def one_repeat(folder: Path, rng: random.Random) -> tuple[bool, str]:
    exp = folder / 'experiments' / 'killed'
    shutil.rmtree(folder / 'experiments', ignore_errors=True)
    proc = subprocess.Popen([sys.executable, 'train.py', '-opt', 'killed.yml'], cwd=folder,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not any((exp / 'training_states').glob('*.state')):
        if proc.poll() is not None:
            return False, 'training ended before its first checkpoint'
        time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 2.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    expected = newest_complete_state(exp)
    leftovers = [p.name for p in exp.rglob('*.tmp*')]
    out = subprocess.run([sys.executable, 'train.py', '-opt', 'killed.yml', '--auto_resume'], cwd=folder,
                         capture_output=True, text=True)
    log = out.stdout + out.stderr
    resumed = re.search(r'Resuming training from epoch: \d+, iter: (\d+)\.', log)
    first_iter = re.search(r'iter:\s+(\d+),', log)
    if out.returncode != 0:
        return False, f'resume failed: {log[-500:]}'
    if expected is None:
        return False, 'no complete state after the kill'
    if not resumed or int(resumed.group(1)) != expected:
        return False, f'resumed from {resumed and resumed.group(1)}, newest complete state is {expected}'
    if not first_iter or int(first_iter.group(1)) != expected + 1:
        return False, f'first iteration after resume is {first_iter and first_iter.group(1)}, not {expected + 1}'
    if not (exp / 'training_states' / f'{TOTAL_ITER}.state').exists() or 'End of training' not in log:
        return False, 'resumed run did not finish'
    note = f' (temporary files left by the kill, ignored: {leftovers})' if leftovers else ''
    return True, f'killed after state {expected}, resumed at iteration {expected + 1}, finished{note}'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_workspace(folder)
        good = 0
        for i in range(args.repeats):
            ok, message = one_repeat(folder, rng)
            good += ok
            print(f'[{i + 1}/{args.repeats}] {"ok" if ok else "FAILED"}: {message}', flush=True)
    print(f'{good}/{args.repeats} resumed correctly')
    return 0 if good == args.repeats else 1


if __name__ == '__main__':
    sys.exit(main())
