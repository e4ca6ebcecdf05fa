"""train.py -> --auto_resume -> test.py on a REDS-layout folder made here (slow: subprocesses)."""
import csv
import re

import pytest

from helpers import run_script, training_options, workspace

pytestmark = pytest.mark.slow


def test_train_resume_and_test(reds_root, tmp_path):
    workspace(tmp_path, training_options(reds_root))
    exp = tmp_path / 'experiments' / 'e2e'

    out = run_script(tmp_path, 'train.py', '-opt', 'e2e.yml')
    assert re.search(r'iter:\s+4,', out) and 'Validation val' in out
    assert {p.name for p in (exp / 'models').iterdir()} == {'net_g_2.pth', 'net_g_4.pth', 'net_g_latest.pth',
                                                         'options.yml'}
    assert {p.name for p in (exp / 'training_states').iterdir()} == {'2.state', '4.state'}

    # continue the same schedule to 6 iterations from the newest state
    out = run_script(tmp_path, 'train.py', '-opt', 'e2e.yml', '--auto_resume', '--force_yml', 'train:total_iter=6')
    assert 'Resuming training from epoch' in out and 'iter: 4.' in out
    assert re.search(r'iter:\s+5,', out) and re.search(r'iter:\s+6,', out) and not re.search(r'iter:\s+1,', out)
    assert (exp / 'training_states' / '6.state').exists()

    out = run_script(tmp_path, 'test.py', '-opt', 'e2e.yml')
    assert 'Evaluating' in out and 'net_g_latest.pth' in out
    result = tmp_path / 'results' / 'e2e' / 'visualization' / 'val'
    with open(result / 'metrics.csv') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and set(rows[0]) == {'folder', 'frame', 'is_key', 'psnr', 'ssim', 'aad'}
    assert all(float(r['psnr']) > 10 for r in rows)
    assert len(list((result / '000').glob('*.png'))) == 12
