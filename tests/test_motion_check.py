"""benchmarks/motion_check.py: a PropSTF network's whole-frame shifts against the truth of synthetic sequences."""
import importlib.util
import json

import numpy as np
import pytest
import torch
import yaml
from basicsr.utils.registry import ARCH_REGISTRY

from helpers import ROOT
from xfusion.synth.xray import synth_xray

spec = importlib.util.spec_from_file_location('motion_check', ROOT / 'benchmarks' / 'motion_check.py')
motion_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(motion_check)

NETWORK = dict(type='PropSTF', num_feat=8, flow_feat=8, num_feat_up=8)


def checkpoint(folder, **changes) -> str:
    """An untrained PropSTF saved as an experiment: models/net_g_latest.pth beside models/options.yml."""
    options = {**NETWORK, **changes}
    torch.manual_seed(0)
    net = ARCH_REGISTRY.get(options['type'])(**{k: v for k, v in options.items() if k != 'type'})
    models = folder / 'models'
    models.mkdir(parents=True)
    torch.save({'params': net.state_dict()}, models / 'net_g_latest.pth')
    (models / 'options.yml').write_text(yaml.safe_dump({'network_g': options}))
    return str(models / 'net_g_latest.pth')


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return synth_xray(tmp_path_factory.mktemp('xray'), sequences=2, frames=11, hr_size=(64, 64), b0=0, seed=2)


def test_steps_back_to_shifts():
    # global_steps' convention: forward steps f[i+1] - f[i] against the first key frame, backward steps
    # b[i] - b[i+1] against the last
    rng = np.random.default_rng(0)
    forward, backward = rng.normal(size=(7, 2)), rng.normal(size=(7, 2))
    forward[0], backward[-1] = 0, 0
    f, b = (torch.from_numpy(x) for x in (forward, backward))
    got_forward, got_backward = motion_check.shifts_from_steps(f[1:] - f[:-1], b[:-1] - b[1:])
    assert np.allclose(got_forward, forward) and np.allclose(got_backward, backward)


def test_a_row_per_sequence_clean_and_noisy(data, tmp_path):
    model = checkpoint(tmp_path / 'exp')
    out = tmp_path / 'out'
    assert motion_check.main(['--model', model, '--data', str(data), '--period', '5', '--out', str(out)]) == 0
    result = json.loads((out / 'motion.json').read_text())
    rows = result['sequences']
    assert [r['sequence'] for r in rows] == ['seq_000', 'seq_001'] and result['period'] == 5
    for r in rows:
        assert 0 <= r['shift_error_mean'] <= r['shift_error_p90'] + 1e-9
        assert all(np.isfinite(r[k]) for k in ('psnr_own_motion', 'psnr_true_motion'))
    # seed 2: seq_000 moves as a whole (the true shifts give the network other inputs), seq_001 only drifts
    assert [r['sample_motion'] for r in rows] == ['translating', 'drift']
    assert rows[0]['psnr_true_motion'] != rows[0]['psnr_own_motion']
    # every frame's shifts, per segment with key frames at both ends (period 5 in 11 frames: two)
    for r in rows:
        assert [(s['start'], s['stop']) for s in r['segments']] == [(0, 5), (5, 10)]
        for seg in r['segments']:
            shifts = {k: np.asarray(seg[k]) for k in ('forward', 'backward', 'true_forward', 'true_backward')}
            assert all(v.shape == (6, 2) for v in shifts.values())
            # against the first key frame the first position has not moved, against the last the last
            assert np.allclose(shifts['forward'][0], 0) and np.allclose(shifts['backward'][-1], 0)
            assert np.allclose(shifts['true_forward'][0], 0) and np.allclose(shifts['true_backward'][-1], 0)
    still = np.asarray(rows[1]['segments'][0]['true_forward'])  # seq_001 only drifts: the truth hardly moves
    moving = np.asarray(rows[0]['segments'][0]['true_forward'])
    assert np.abs(still).max() < 0.1 < np.abs(moving).max()
    assert (out / 'motion.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    table = (out / 'motion.md').read_text()
    assert '| seq_000 | translating |' in table and '| mean |' in table
    # evaluate's LR noise: other shifts and scores
    noisy = tmp_path / 'noisy'
    assert motion_check.main(['--model', model, '--data', str(data), '--period', '5', '--b0', '1000',
                              '--out', str(noisy)]) == 0
    noisy_rows = json.loads((noisy / 'motion.json').read_text())['sequences']
    assert noisy_rows[0]['psnr_own_motion'] != rows[0]['psnr_own_motion']


def test_bad_input_ends_in_one_line(data, tmp_path, capsys):
    lr_only = checkpoint(tmp_path / 'lr_only', type='PropVSR')
    assert motion_check.main(['--model', lr_only, '--data', str(data), '--out', str(tmp_path / 'o')]) == 2
    assert 'a PropSTF), but PropVSR' in capsys.readouterr().err
    copy = tmp_path / 'no_meta'
    for seq in ('seq_000',):
        for camera in ('HR', 'LR'):
            (copy / seq / camera).mkdir(parents=True)
            for frame in (data / seq / camera).iterdir():
                (copy / seq / camera / frame.name).write_bytes(frame.read_bytes())
    model = checkpoint(tmp_path / 'exp')
    assert motion_check.main(['--model', model, '--data', str(copy), '--period', '5',
                              '--out', str(tmp_path / 'o')]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'meta.json: not found' in err[0]
