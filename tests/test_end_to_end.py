"""train.py -> --auto_resume -> test.py on a REDS-layout folder made here (slow: subprocesses)."""
import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def write_options(path: Path, reds_root: Path) -> None:
    data = dict(dataroot_gt=str(reds_root / 'train_sharp_gray'),
                dataroot_lq=str(reds_root / 'train_sharp_bicubic_gray' / 'X4'),
                meta_info_file=str(reds_root / 'meta_info_REDS_GT.txt'))
    opt = {
        'name': 'e2e', 'model_type': 'STFModel', 'scale': 4, 'num_gpu': 'auto', 'manual_seed': 0,
        'datasets': {
            'train': dict(name='train', type='REDSSTFDataset', val_partition='REDS4', period_range=[2, 6],
                          lr_sep=[1, 2], gt_size=32, use_hflip=True, use_rot=True, use_shuffle=True,
                          num_worker_per_gpu=0, batch_size_per_gpu=2, dataset_enlarge_ratio=1, **data),
            'val': dict(name='val', type='STFSequenceTestDataset', clips=['000'], period=5, lr_sep=1, **data)},
        'network_g': dict(type='EDVRSTF', num_in_ch=1, num_out_ch=1, num_feat=8, num_frame=3, num_frame_hi=2,
                          deformable_groups=2, num_extract_block=1, num_reconstruct_block=1, hr_encoder='unshuffle',
                          base='key_blend'),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3}, 'total_iter': 4, 'warmup_iter': -1,
                  'scheduler': {'type': 'CosineAnnealingRestartLR', 'periods': [8], 'restart_weights': [1],
                                'eta_min': 1e-6}},
        'val': {'val_freq': 4, 'save_img': True, 'pbar': False,
                'metrics': {'psnr': {'type': 'calculate_psnr_stf'}, 'ssim': {'type': 'calculate_ssim_stf'},
                            'aad': {'type': 'calculate_aad', 'better': 'lower'}}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': 2, 'use_tb_logger': False},
    }
    path.write_text(yaml.safe_dump(opt))


def run(cwd: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_train_resume_and_test(reds_root, tmp_path):
    for script in ('train.py', 'test.py'):
        shutil.copy(ROOT / script, tmp_path / script)
    write_options(tmp_path / 'e2e.yml', reds_root)
    exp = tmp_path / 'experiments' / 'e2e'

    out = run(tmp_path, 'train.py', '-opt', 'e2e.yml')
    assert re.search(r'iter:\s+4,', out) and 'Validation val' in out
    assert {p.name for p in (exp / 'models').iterdir()} == {'net_g_2.pth', 'net_g_4.pth', 'net_g_latest.pth'}
    assert {p.name for p in (exp / 'training_states').iterdir()} == {'2.state', '4.state'}

    # continue the same schedule to 6 iterations from the newest state
    out = run(tmp_path, 'train.py', '-opt', 'e2e.yml', '--auto_resume', '--force_yml', 'train:total_iter=6')
    assert 'Resuming training from epoch' in out and 'iter: 4.' in out
    assert re.search(r'iter:\s+5,', out) and re.search(r'iter:\s+6,', out) and not re.search(r'iter:\s+1,', out)
    assert (exp / 'training_states' / '6.state').exists()

    out = run(tmp_path, 'test.py', '-opt', 'e2e.yml')
    assert 'Evaluating' in out and 'net_g_latest.pth' in out
    result = tmp_path / 'results' / 'e2e' / 'visualization' / 'val'
    with open(result / 'metrics.csv') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and set(rows[0]) == {'folder', 'frame', 'is_key', 'psnr', 'ssim', 'aad'}
    assert all(float(r['psnr']) > 10 for r in rows)
    assert len(list((result / '000').glob('*.png'))) == 12
