"""The HPV-X2 / TMX7510 rig as a virtual experiment (``xfusion synth xray --rig``), through info, register, fuse
and check, on small fields of view."""
import csv
import json

import numpy as np
import pytest

from xfusion.commands import main
from xfusion.io.frames import list_frames, read_frame
from xfusion.io.stack import FrameStack
from xfusion.synth.rig import RIGS


@pytest.fixture(scope='module')
def rig(tmp_path_factory):
    out = tmp_path_factory.mktemp('rig')
    assert main(['synth', 'xray', '--rig', 'hpvx2-tmx7510', '--rig-scale', '0.16', '--frames', '29', '--out',
                 str(out)]) == 0
    return out


def field_error(matrix, truth):
    """Largest distance (x4-grid pixels) between two maps over the HR pixels that land in the LR field."""
    h, w = json.loads((truth.parents[1] / 'rig.json').read_text())['hr_size']
    xs, ys = np.meshgrid(np.linspace(0, w - 1, 40), np.linspace(0, h - 1, 40))
    points = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
    true = json.loads(truth.read_text())
    on_grid = np.array(true['matrix']) @ points
    inside = (on_grid >= 0).all(axis=0) & (on_grid[0] <= true['output_shape'][1] - 1) & \
        (on_grid[1] <= true['output_shape'][0] - 1)
    return float(np.hypot(*((np.array(matrix) - np.array(true['matrix'])) @ points))[inside].max())


def test_the_rig_writes_camera_files_as_the_cameras_would(rig, capsys):
    record = json.loads((rig / 'rig.json').read_text())
    spec = RIGS['hpvx2-tmx7510']
    assert record['hr_times'] == [0, 14, 28] and record['lr']['pixel_um'] / record['hr']['pixel_um'] == \
        pytest.approx(2.92, abs=0.01)
    lr, hr = FrameStack(rig / 'experiment' / 'LR.tif'), FrameStack(rig / 'experiment' / 'HR.tif')
    assert len(lr) == 29 and len(hr) == 3 and lr.frame_rate == pytest.approx(spec.lr.fps)
    assert hr.bit_depth == 12 and hr.frame_rate == pytest.approx(spec.hr.fps)
    np.testing.assert_allclose(hr.times, [0, 14e-6, 28e-6], atol=1e-9)
    # the HR field of view holds the LR one, and the ground truth is on the LR camera's x4 grid
    assert hr.shape[0] * spec.hr.pixel_um > lr.shape[0] * spec.lr.pixel_um
    assert read_frame(list_frames(rig / 'truth' / 'grid')[0]).shape == (4 * lr.shape[0], 4 * lr.shape[1])
    assert main(['info', str(rig / 'experiment' / 'LR.tif'), str(rig / 'experiment' / 'HR.tif')]) == 0
    assert 'key frames at LR steps 0, 14, 28' in capsys.readouterr().out


def test_register_fuse_and_check_the_rig(rig, tmp_path, capsys):
    experiment, truth = rig / 'experiment', rig / 'truth' / 'transform.json'
    fitted = {}
    for model in ('similarity', 'auto'):
        out = tmp_path / f'{model}.json'
        assert main(['register', '--lr', f'{experiment}/LR.tif:0', '--hr', f'{experiment}/HR.tif:0',
                     '--transform-model', model, '--out', str(out)]) == 0
        fitted[model] = json.loads(out.read_text())
    auto = fitted['auto']
    assert auto['model'] == 'affine' and auto['mirrored'] and auto['fit'] == 'ok'
    assert field_error(auto['matrix'], truth) < 0.6 < field_error(fitted['similarity']['matrix'], truth)
    capsys.readouterr()
    psnr = {}
    for name, transform in (('fitted', tmp_path / 'auto.json'), ('true', truth)):
        out = tmp_path / f'fused_{name}'
        assert main(['fuse', '--lr', str(experiment / 'LR.tif'), '--hr', str(experiment / 'HR.tif'), '--transform',
                     str(transform), '--out', str(out)]) == 0  # key frames placed by the cameras' clocks
        sidecar = json.loads((out / 'xfusion.json').read_text())
        assert sidecar['schedule']['key_times'] == [0, 14, 28] and len(list_frames(out)) == 29
        high = sidecar['inputs']['intensity_range'][1]
        errors = [np.mean((read_frame(a) / high - read_frame(b) / 65535.0)[8:-8, 8:-8] ** 2)
                  for t, (a, b) in enumerate(zip(list_frames(out), list_frames(rig / 'truth' / 'grid')))
                  if t not in (0, 14, 28)]
        psnr[name] = float(10 * np.log10(1 / np.mean(errors)))
    assert psnr['fitted'] > psnr['true'] - 0.3 and psnr['true'] > 20
    assert main(['check', '--lr', str(experiment / 'LR.tif'), '--hr', str(experiment / 'HR.tif'), '--transform',
                 str(tmp_path / 'auto.json'), '--out', str(tmp_path / 'check'), '--no-report']) == 0
    with open(tmp_path / 'check' / 'holdout.csv') as f:
        rows = list(csv.DictReader(f))
    assert {r['frame'] for r in rows} == {'14'} and {'stf', 'bayes'} <= {r['method'] for r in rows}
