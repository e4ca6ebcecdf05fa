"""Training killed with SIGKILL at random moments (often while it saves) resumes with --auto_resume.

Each repeat: a tiny STF training run saving a checkpoint every iteration is killed with SIGKILL at a random moment
while it trains: once a randomly drawn state k (early in the run) is on disk, after a random part of one
iteration's time, so often in the middle of writing state k + 1. The kill moment is defined by the run's own
progress, not by a clock, so it lands while training runs on a fast machine as on a slow one. A repeat whose
process had already exited, or had written its last state, before the signal landed is drawn again, never
counted. ``train.py --auto_resume`` must then start from the newest complete state on disk (every state file
there must load), continue the iteration count from it and finish.
"""
from __future__ import annotations

import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from helpers import HANG_GUARD_S, ROOT


def make_workspace(folder: Path, total_iter: int = 40) -> Path:
    """Data (3 synthetic REDS-layout clips of 64x64), train.py and a tiny option file in folder."""
    from xfusion.data.reds_gray import reds_gray
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
        'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3}, 'total_iter': total_iter, 'warmup_iter': -1,
                  'scheduler': {'type': 'CosineAnnealingRestartLR', 'periods': [total_iter], 'restart_weights': [1],
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


def states_on_disk(exp: Path) -> list[int]:
    return sorted(int(p.stem) for p in (exp / 'training_states').glob('*.state') if p.stem.isdigit())


def kill_while_training(folder: Path, rng: random.Random, total_iter: int) -> tuple[str, str]:
    """Start a run and SIGKILL it while it trains; ('killed' | 'redraw' | 'failed', what happened).

    The kill waits for state k (k drawn from the first three quarters of the run), then for a
    random part of the time the last iteration took, so it falls between states k and k + 2.
    """
    exp = folder / 'experiments' / 'killed'
    shutil.rmtree(folder / 'experiments', ignore_errors=True)
    target = rng.randint(1, max(1, total_iter * 3 // 4))
    proc = subprocess.Popen([sys.executable, 'train.py', '-opt', 'killed.yml'], cwd=folder,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict[int, float] = {}  # state -> when it was first seen
    while target not in seen:
        if proc.poll() is not None:
            proc.wait()
            return 'failed', f'training exited (status {proc.returncode}) before its state {target}'
        now = time.monotonic()
        for it in states_on_disk(exp):
            seen.setdefault(it, now)
        time.sleep(0.01)
    stamps = sorted(seen.values())
    iteration = (stamps[-1] - stamps[-2]) if len(stamps) > 1 else 0.1
    time.sleep(rng.uniform(0.0, iteration))
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if not alive or proc.returncode != -signal.SIGKILL:
        return 'redraw', f'the run had exited (status {proc.returncode}) before the signal'
    if total_iter in states_on_disk(exp):
        return 'redraw', 'the run had written its last state before the signal'
    return 'killed', f'killed after state {target}'


def one_repeat(folder: Path, rng: random.Random, total_iter: int, max_draws: int = 5) -> tuple[bool, str]:
    exp = folder / 'experiments' / 'killed'
    for _ in range(max_draws):
        outcome, message = kill_while_training(folder, rng, total_iter)
        if outcome == 'failed':
            return False, message
        if outcome == 'killed':
            break
        print(f'   drawn again: {message}', flush=True)
    else:
        return False, f'no kill landed while training in {max_draws} draws'
    expected = newest_complete_state(exp)
    leftovers = [p.name for p in exp.rglob('*.tmp*')]
    out = subprocess.run([sys.executable, 'train.py', '-opt', 'killed.yml', '--auto_resume'], cwd=folder,
                         capture_output=True, text=True, timeout=HANG_GUARD_S)
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
    if not (exp / 'training_states' / f'{total_iter}.state').exists() or 'End of training' not in log:
        return False, 'resumed run did not finish'
    note = f' (temporary files left by the kill, ignored: {leftovers})' if leftovers else ''
    return True, f'{message}, newest complete state {expected}, resumed at iteration {expected + 1}, finished{note}'


@pytest.mark.slow
@pytest.mark.parametrize('iterations', [40, 4])
def test_killed_while_saving_then_auto_resume(tmp_path, iterations):
    # 4 iterations end within a second or two, as 40 do on a fast machine: the kill must still land
    # while training runs (a kill after the last state would leave nothing to resume)
    rng = random.Random(0)
    make_workspace(tmp_path, iterations)
    for _ in range(2):
        ok, message = one_repeat(tmp_path, rng, iterations)
        assert ok, message
