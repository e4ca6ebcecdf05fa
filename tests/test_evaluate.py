import csv

import numpy as np
import pytest
import torch
import yaml

from helpers import moving_scene, write_pair_sequence
from xfusion.archs.edvrstf_arch import EDVRSTF
from xfusion.baselines import BASELINES
from xfusion.commands import main
from xfusion.fusion.config import EvaluateConfig, RunOptions
from xfusion.fusion.evaluate import CSV_COLUMNS, evaluate, noisy_lr
from xfusion.io.sequence import open_xray_root

NET = dict(type='EDVRSTF', num_feat=8, deformable_groups=2, num_extract_block=1, num_reconstruct_block=1)


@pytest.fixture(scope='module')
def xray_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('xray')
    for i in range(2):
        write_pair_sequence(root / f'seq_{i}' / 'HR', root / f'seq_{i}' / 'LR', moving_scene(9, (32, 32), seed=i),
                            np.uint16)
    return root


def checkpoint(root, **net):
    (root / 'models').mkdir(parents=True)
    (root / 'opt.yml').write_text(yaml.safe_dump({'network_g': dict(NET, **net)}))
    torch.manual_seed(0)
    torch.save({'params': EDVRSTF(**{k: v for k, v in dict(NET, **net).items() if k != 'type'}).state_dict()},
               root / 'models' / 'net_g_latest.pth')
    return str(root / 'models' / 'net_g_latest.pth')


def test_evaluate_writes_csv_summary_plots_and_panels(xray_root, tmp_path):
    stf = checkpoint(tmp_path / 'stf')
    lr_only = checkpoint(tmp_path / 'lr_only', num_frame_hi=0)
    out = tmp_path / 'eval'
    methods = ['bicubic', 'key_copy', 'temporal', 'bayes', 'lr_only', 'stf']
    result = evaluate(EvaluateConfig(str(xray_root), str(out), methods, [2, 4], [1, 2], [None, 1e3],
                                     networks={'stf': stf, 'lr_only': lr_only},
                                     run=RunOptions(batch=4, progress=False)))
    with open(out / 'metrics.csv') as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames[:len(CSV_COLUMNS)] == CSV_COLUMNS
    assert len(rows) == 2 * 2 * 2 * 6 * 2 * 9  # periods x lr_seps x b0s x methods x sequences x frames
    assert {r['method'] for r in rows} == set(methods) and {r['b0'] for r in rows} == {'none', '1000'}
    key_rows = [r for r in rows if r['is_key'] == 'True' and r['method'] == 'key_copy']
    assert key_rows and all(r['psnr'] == 'inf' for r in key_rows)  # a key frame is its own copy
    summary = (out / 'summary.md').read_text()
    assert '## Per setting, key frames' in summary and '| stf |' in summary
    for name in ('psnr.png', 'ssim.png', 'aad.png', 'panels/seq_0.png', 'panels/seq_1.png'):
        assert (out / name).stat().st_size > 1000
    assert result['seconds'] > 0


def test_noise_is_seeded_and_shared_by_methods(xray_root):
    seq = open_xray_root(xray_root)[0]
    a, b = noisy_lr(seq, 100.0, seed=0), noisy_lr(seq, 100.0, seed=0)
    assert np.array_equal(a, b) and not np.array_equal(a, noisy_lr(seq, 100.0, seed=1))
    clean = noisy_lr(seq, None, seed=0)
    assert np.array_equal(clean[3], seq.read_lr(3))
    assert abs((a - clean).var() - clean.mean() / 100) < 0.3 * clean.mean() / 100


def test_every_baseline_gives_the_hr_shape_and_dtype(xray_root):
    seq = open_xray_root(xray_root)[0]
    lq = np.stack([seq.read_lr(t) for t in (2, 3, 4)])
    hq = np.stack([seq.read_hr(0), seq.read_hr(4)])
    for name, fn in BASELINES.items():
        out = fn(lq, hq, np.stack([seq.read_lr(0), seq.read_lr(4)]), np.array([0.25, 0.75], np.float32), 1)
        assert out.shape == (32, 32) and out.dtype == np.float32, name


def test_missing_checkpoint_and_bad_options_are_one_line_errors(xray_root, tmp_path, capsys):
    out = tmp_path / 'e'
    assert main(['evaluate', '--data', str(xray_root), '--out', str(out), '--methods', 'bicubic,lr_only']) == 2
    assert main(['evaluate', '--data', str(xray_root), '--out', str(out), '--methods', 'bicubic,magic']) == 2
    assert main(['evaluate', '--data', str(xray_root), '--out', str(out), '--period', '40']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and '--model' in err[0] and 'magic' in err[1] and 'too few' in err[2]
    assert not out.exists()
