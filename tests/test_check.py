"""xfusion check: held-out key frames score as evaluate scores those frames at twice the period."""
import csv
import json
import shutil

import imageio_ffmpeg
import numpy as np
import pytest
import torch
import yaml
from basicsr.utils.registry import ARCH_REGISTRY

from helpers import moving_scene, write_pair_sequence
from xfusion.baselines import BASELINES
from xfusion.commands import main
from xfusion.fusion.config import EvaluateConfig, RunOptions
from xfusion.fusion.evaluate import evaluate
from xfusion.fusion.sources import largest_rectangle
from xfusion.io.frames import write_frame

FRAMES, PERIOD = 13, 3  # key frames 0, 3, 6, 9, 12: frames 3, 6, 9 are held out
EDVR = dict(type='EDVRSTF', num_feat=8, deformable_groups=2, num_extract_block=1, num_reconstruct_block=1)
PROP = dict(type='PropSTF', num_feat=8, num_block=1, num_block_decode=1, flow_feat=8, flow_levels=1, num_feat_up=8)


def save_checkpoint(root, net_opt):
    (root / 'models').mkdir(parents=True)
    (root / 'opt.yml').write_text(yaml.safe_dump({'network_g': net_opt}))
    torch.manual_seed(0)
    net = ARCH_REGISTRY.get(net_opt['type'])(**{k: v for k, v in net_opt.items() if k != 'type'})
    torch.save({'params': net.state_dict()}, root / 'models' / 'net_g_latest.pth')
    return str(root / 'models' / 'net_g_latest.pth')


@pytest.fixture(scope='module')
def experiment(tmp_path_factory):
    """A virtual experiment (HR at every step), and the same data as a real one: LR frames + every 3rd HR frame."""
    root = tmp_path_factory.mktemp('check')
    scene = moving_scene(FRAMES, (64, 64), seed=4)
    write_pair_sequence(root / 'virtual' / 'seq' / 'HR', root / 'virtual' / 'seq' / 'LR', scene, np.uint16)
    # the same frames from step 3 on: at period 6 its key frames are the experiment's steps 3 and 9
    write_pair_sequence(root / 'shifted' / 'seq' / 'HR', root / 'shifted' / 'seq' / 'LR', scene[3:], np.uint16)
    (root / 'keys').mkdir()
    for t in range(0, FRAMES, PERIOD):
        shutil.copy(root / 'virtual' / 'seq' / 'HR' / f'{t:08d}.png', root / 'keys' / f'{t:08d}.png')
    return root


@pytest.fixture(scope='module')
def networks(tmp_path_factory):
    root = tmp_path_factory.mktemp('nets')
    nets = {'edvr': save_checkpoint(root / 'edvr', EDVR)}
    if 'PropSTF' in ARCH_REGISTRY:  # a segment network, where one is registered
        nets['prop'] = save_checkpoint(root / 'prop', PROP)
    return nets


def read_rows(path):
    with open(path) as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def test_holdout_equals_evaluate_at_twice_the_period(experiment, networks, tmp_path, capsys):
    out = tmp_path / 'check'
    models = [f'{name}={ckpt}' for name, ckpt in networks.items()]
    args = ['check', '--lr', str(experiment / 'virtual' / 'seq' / 'LR'), '--hr', str(experiment / 'keys'),
            '--period', str(PERIOD), '--out', str(out)] + [a for m in models for a in ('--model', m)]
    assert main(args) == 0
    assert 'pessimistic' in (out / 'summary.md').read_text() and (out / 'report.html').stat().st_size > 10_000
    columns, rows = read_rows(out / 'holdout.csv')
    assert columns[:5] == ['method', 'frame', 'psnr', 'ssim', 'aad']
    methods = list(BASELINES) + list(networks)
    assert {(r['method'], int(r['frame'])) for r in rows} == {(m, k) for m in methods for k in (3, 6, 9)}
    assert all(int(r['gap']) == 2 * PERIOD for r in rows)
    # evaluate at period 6 (float convention, as check uses for 16-bit data): steps 3 and 9 are the middles of
    # its gaps; step 6 is the middle of a gap of the sequence that starts at step 3
    truth = {}
    for name, start in (('virtual', 0), ('shifted', 3)):
        result = evaluate(EvaluateConfig(str(experiment / name), str(tmp_path / f'eval_{name}'), methods, [2 * PERIOD],
                                         [1], [None], networks=networks, convention='float',
                                         run=RunOptions(batch=4, progress=False), report=False))
        for r in result['rows']:
            if not r['is_key']:
                truth[(r['method'], r['frame'] + start)] = r
    for row in rows:
        expected = truth[(row['method'], int(row['frame']))]
        assert abs(float(row['psnr']) - expected['psnr']) < 0.05, (row, expected['psnr'])
        assert abs(float(row['ssim']) - expected['ssim']) < 1e-3 and abs(float(row['aad']) - expected['aad']) < 1e-3
        assert float(row['chi2']) > 0
    capsys.readouterr()


def test_a_transform_scores_only_pixels_both_cameras_saw(experiment, tmp_path):
    """An HR camera that sees the scene from HR pixel (8, 8) on, 48 x 48: 12 x 12 LR pixels are seen by both."""
    (tmp_path / 'keys').mkdir()
    scene = moving_scene(FRAMES, (64, 64), seed=4)
    for t in range(0, FRAMES, PERIOD):
        write_frame(tmp_path / 'keys' / f'{t:05d}.png', np.rint(scene[t, 8:56, 8:56] * 65535).astype(np.uint16))
    transform = {'matrix': [[1, 0, 8], [0, 1, 8]], 'scale': 1.0, 'rotation_deg': 0.0, 'shift_xy': [8, 8],
                 'residual': 0.0, 'output_shape': [64, 64]}
    (tmp_path / 't.json').write_text(json.dumps(transform))
    out = tmp_path / 'out'
    assert main(['check', '--lr', str(experiment / 'virtual' / 'seq' / 'LR'), '--hr', str(tmp_path / 'keys'),
                 '--period', str(PERIOD), '--transform', str(tmp_path / 't.json'), '--methods', 'key_copy',
                 '--out', str(out), '--no-report', '--video', str(tmp_path / 'check.mp4')]) == 0
    _, rows = read_rows(out / 'holdout.csv')
    hr = np.rint(scene * 65535) / 65535
    for row in rows:
        k = int(row['frame'])
        nearest = k - PERIOD  # key_copy: the nearer remaining key frame, k0 on a tie
        expected = 10 * np.log10(1 / np.mean((hr[nearest, 8:56, 8:56] - hr[k, 8:56, 8:56]) ** 2))
        assert abs(float(row['psnr']) - expected) < 0.01
    assert 'rows 8..55, columns 8..55 of the 64 x 64 grid' in (out / 'summary.md').read_text()
    assert not (out / 'report.html').exists()
    assert imageio_ffmpeg.count_frames_and_secs(str(tmp_path / 'check.mp4'))[0] == 3  # a frame per held-out frame


def test_largest_rectangle_is_the_largest():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = rng.random((7, 9)) > 0.25
        y0, y1, x0, x1 = largest_rectangle(mask)
        assert mask[y0:y1, x0:x1].all()
        best = max((b - a) * (d - c) for a in range(7) for b in range(a + 1, 8) for c in range(9)
                   for d in range(c + 1, 10) if mask[a:b, c:d].all())
        assert (y1 - y0) * (x1 - x0) == best
    assert largest_rectangle(np.ones((4, 5), bool)) == (0, 4, 0, 5)


def test_bad_inputs_give_one_line_and_write_nothing(experiment, networks, tmp_path, capsys):
    out = tmp_path / 'out'
    lr, keys = str(experiment / 'virtual' / 'seq' / 'LR'), str(experiment / 'keys')
    base = ['check', '--lr', lr, '--out', str(out)]
    cases = [
        (['--hr', keys, '--period', '3', '--offset', '0', '--hr-index', str(tmp_path / 'none.txt')], 'not found'),
        (['--hr', keys], 'give --period'),
        (['--hr', str(experiment / 'virtual' / 'seq' / 'HR'), '--period', '20'], 'beyond the LR sequence'),
        (['--hr', keys, '--period', '3', '--methods', 'bicubic,magic'], "'magic'"),
        (['--hr', keys, '--period', '3', '--model', str(tmp_path / 'missing.pth')], 'missing.pth'),
        (['--hr', lr, '--period', '1'], '4x the LR frames'),
        (['--hr', keys, '--period', '3', '--video', str(tmp_path / 'v.gif')], '.mp4'),
        (['--hr', keys, '--period', '3', '--b0', '0'], '--b0'),
        (['--hr', keys, '--period', '3', '--tile', '6', '--model', networks['edvr']], '--tile'),
        (['--hr', keys, '--period', '3', '--lr-sep', '13'], '--lr-sep'),
    ]
    (tmp_path / 'two').mkdir()
    for t in (0, 6):
        shutil.copy(experiment / 'keys' / f'{t:08d}.png', tmp_path / 'two' / f'{t:08d}.png')
    cases.append((['--hr', str(tmp_path / 'two'), '--period', '6'], 'at least 3'))
    for extra, message in cases:
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (extra, err)
        assert not out.exists() and not list(tmp_path.glob('*.mp4'))
