"""LR consistency: the camera model fitted at the key times, chi2 of fused frames, the maps, --project."""
import csv
import json

import cv2
import numpy as np
import pytest
from test_fuse import NET, save_experiment

from helpers import moving_scene
from xfusion.camera import CameraModel, fit_lr_camera, hr_field_of_view, lr_camera, poisson_noise
from xfusion.commands import main
from xfusion.fusion.config import FuseConfig, RunOptions, SourceOptions
from xfusion.fusion.fuse import fuse
from xfusion.io.frames import read_frame, write_frame


def scene(frames=9, size=(128, 128), seed=1):
    """Textured frames with a moving square, lightly blurred as an HR camera would record them."""
    hr = moving_scene(frames, size, seed=seed).astype(np.float32)
    return np.stack([cv2.GaussianBlur(f, (0, 0), 0.7) for f in hr])


def psnr(a, b):
    return 10 * np.log10(1 / np.mean((a.astype(np.float64) - b) ** 2))


@pytest.mark.parametrize('sigma', [0.0, 0.8, 1.5, 2.5])
def test_fit_recovers_blur_gain_and_offset(sigma):
    hr = scene()
    lr = np.stack([0.8 * lr_camera(f, sigma) + 0.05 for f in hr])
    model = fit_lr_camera(lr[[0, 4, 8]], hr[[0, 4, 8]])
    assert abs(model.blur_sigma - sigma) < 0.02
    assert abs(model.gain - 0.8) < 1e-3 and abs(model.offset - 0.05) < 1e-3
    assert model.residual < 1e-5


@pytest.mark.parametrize('b0', [1000.0, None])
def test_chi2_is_about_one_for_true_frames_and_grows_with_a_planted_error(b0):
    hr = scene()
    clean = np.stack([lr_camera(f, 1.5) for f in hr])
    lr = poisson_noise(clean, 1000.0, np.random.default_rng(0))
    model = fit_lr_camera(lr[[0, 4, 8]], hr[[0, 4, 8]], b0=b0, quantum=1 / 65535)
    assert abs(model.blur_sigma - 1.5) < 0.15
    chi2 = np.array([model.chi2(hr[t], lr[t]) for t in range(len(hr))])
    assert 0.85 < chi2.mean() < 1.15 and chi2.max() < 1.35, chi2  # consistent frames: about 1
    previous = chi2[3]
    for amplitude in (0.05, 0.1, 0.2):  # a planted error: content the LR camera did not see
        bad = hr[3].copy()
        bad[40:56, 60:76] += amplitude
        # what the planted error adds: its LR footprint squared over the noise variance
        expected = np.mean((model.predict(bad) - model.predict(hr[3])) ** 2 / model.variance(model.predict(bad)))
        grown = model.chi2(bad, lr[3])
        assert grown > previous
        assert abs(grown - (chi2[3] + expected)) < 0.2 * expected + 0.15
        previous = grown
    assert previous > chi2[3] + 0.7  # a 16 x 16 HR-pixel error in a 128 x 128 frame


def test_projection_pulls_a_wrong_frame_back_within_noise():
    hr = scene()
    lr = poisson_noise(np.stack([lr_camera(f, 1.5) for f in hr]), 1000.0, np.random.default_rng(0))
    model = fit_lr_camera(lr[[0, 4, 8]], hr[[0, 4, 8]], b0=1000.0)
    bad = hr[3].copy()
    bad[40:56, 60:76] += 0.2
    projected = model.project(bad, lr[3])
    assert model.chi2(projected, lr[3]) < 1.2 < 1.6 < model.chi2(bad, lr[3])
    assert psnr(projected, hr[3]) > psnr(bad, hr[3]) + 4
    assert projected.shape == bad.shape and projected.min() >= 0 and projected.max() <= 1
    # a frame that agrees with its LR frame within noise is left as it is
    assert np.array_equal(model.project(hr[3], lr[3]), hr[3])
    assert np.array_equal(model.project(hr[3], model.predict(hr[3])), hr[3])


def test_variance_is_poisson_at_b0_and_the_map_is_the_normalised_residual():
    model = CameraModel(1.0, 1.0, 0.0, 1 / 500, 1e-8)
    assert np.allclose(model.variance(np.array([0.2, 0.5])), [0.2 / 500 + 1e-8, 0.5 / 500 + 1e-8])
    hr = scene(1)[0]
    lr = model.predict(hr) + 0.01
    z = model.residual_map(hr, lr)
    assert z.shape == (32, 32)
    assert np.allclose(z, 0.01 / np.sqrt(model.variance(model.predict(hr))), rtol=1e-4)
    assert model.chi2(hr, lr) == pytest.approx(float(np.mean(z ** 2)), rel=1e-5)


def test_field_of_view_of_a_shifted_hr_camera():
    transform = {'matrix': [[1, 0, 8], [0, 1, 8]], 'output_shape': [64, 64]}
    seen = hr_field_of_view(transform, (48, 48), (16, 16))
    rows, cols = np.nonzero(seen)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (2, 13, 2, 13) and seen.sum() == 144


def static_experiment(root, frames=9, period=4, planted=5, b0=2000.0):
    """A static scene seen by both cameras (LR: Poisson noise at b0), with a bright blob planted in one LR frame
    only: the fused frame there cannot explain it."""
    rng = np.random.default_rng(3)
    texture = cv2.GaussianBlur(rng.normal(0, 1, (64, 64)).astype(np.float32), (0, 0), 1.5)
    hr = np.clip(0.5 + 0.12 * texture / texture.std(), 0.05, 0.95).astype(np.float32)
    for t in range(frames):
        lr = poisson_noise(lr_camera(hr, 1.0), b0, rng)
        if t == planted:
            lr[6:10, 6:10] += 0.15
        write_frame(root / 'lr' / f'{t:05d}.tif', np.rint(np.clip(lr, 0, 1) * 65535).astype(np.uint16))
        if t % period == 0:
            write_frame(root / 'hr' / f'{t:05d}.tif', np.rint(hr * 65535).astype(np.uint16))
    return root / 'lr', root / 'hr'


@pytest.fixture(scope='module')
def identity_checkpoint(tmp_path_factory):
    """A network whose output is the temporal blend of its key frames."""
    return save_experiment(tmp_path_factory.mktemp('identity'), dict(NET, base='key_blend', hr_encoder='unshuffle'),
                           identity=True)


def read_consistency(path):
    with open(path) as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def test_fuse_writes_consistency_maps_and_flags_the_planted_frame(tmp_path, identity_checkpoint):
    lr_dir, hr_dir = static_experiment(tmp_path)
    out = fuse(FuseConfig(SourceOptions(str(lr_dir), str(hr_dir), period=4), str(identity_checkpoint),
                          str(tmp_path / 'out'), run=RunOptions(progress=False), maps=str(tmp_path / 'maps')))
    columns, rows = read_consistency(out / 'consistency.csv')
    assert columns[:3] == ['frame', 'is_key', 'chi2'] and [int(r['frame']) for r in rows] == list(range(9))
    chi2 = np.array([float(r['chi2']) for r in rows])
    others = np.delete(chi2, 5)
    assert 0.6 < others.mean() < 1.5 and others.max() < 2.0, chi2  # the noise was estimated from the key frames
    assert chi2[5] > 3 * others.max()
    z = read_frame(tmp_path / 'maps' / '00000005.tif')
    assert z.dtype == np.float32 and z.shape == (16, 16)
    away = np.ones(z.shape, bool)
    away[5:11, 5:11] = False  # the planted block and a pixel around it
    assert np.abs(z[6:10, 6:10]).min() > 3 and np.abs(z[away]).mean() < 1.2  # the map shows where
    # key_change: the planted block is in neither key frame; elsewhere the key frames explain the LR frames
    change = np.array([float(r['key_change']) for r in rows])
    # the 4x4 block, widened by the 3x3 local mean to at most 6x6 LR pixels of 16x16
    assert np.delete(change, 5).max() < 0.02 and 16 / 256 <= change[5] <= 36 / 256, change
    # bayes_rms: classical fusion puts the planted block back, the key-frame blend does not; risk ranks it first
    gap, risk = (np.array([float(r[c]) for r in rows]) for c in ('bayes_rms', 'risk'))
    assert gap[5] > 3 * np.delete(gap, 5).max(), gap
    assert np.allclose(risk, change * gap ** 2, rtol=1e-4, atol=1e-12) and risk.argmax() == 5, risk
    sidecar = json.loads((out / 'xfusion.json').read_text())
    model = sidecar['camera_model']
    assert abs(model['blur_sigma_hr_px'] - 1.0) < 0.25 and abs(model['gain'] - 1) < 0.05 and model['key_pairs'] == 3
    assert sidecar['consistency']['file'] == 'consistency.csv' and not sidecar['consistency']['project']


def test_fuse_project_and_given_b0(tmp_path, identity_checkpoint):
    lr_dir, hr_dir = static_experiment(tmp_path)
    out = fuse(FuseConfig(SourceOptions(str(lr_dir), str(hr_dir), period=4, b0=2000.0), str(identity_checkpoint),
                          str(tmp_path / 'out.h5'), run=RunOptions(progress=False), project=True))
    columns, rows = read_consistency(tmp_path / 'out.h5.consistency.csv')
    assert 'chi2_unprojected' in columns and out.name == 'out.h5'
    before, after = float(rows[5]['chi2_unprojected']), float(rows[5]['chi2'])
    assert after < 0.2 * before and after < 2
    sidecar = json.loads((tmp_path / 'out.h5.json').read_text())
    assert sidecar['camera_model']['noise_source'] == 'given: b0 = 2000' and sidecar['consistency']['project']


def test_bad_consistency_options_give_one_line_and_write_nothing(tmp_path, identity_checkpoint, capsys):
    lr_dir, hr_dir = static_experiment(tmp_path)
    (tmp_path / 'taken').mkdir()
    base = ['fuse', '--lr', str(lr_dir), '--hr', str(hr_dir), '--period', '4', '--model', str(identity_checkpoint),
            '--out', str(tmp_path / 'out')]
    cases = [(['--b0', '-3'], '--b0 must be a positive'),
             (['--maps', str(tmp_path / 'taken')], 'already exists'),
             (['--maps', str(tmp_path / 'no' / 'maps')], 'does not exist'),
             (['--video', str(tmp_path / 'movie.avi')], '.mp4'),
             (['--report', str(tmp_path / 'no' / 'r.html')], 'does not exist')]
    for extra, message in cases:
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (extra, err)
        assert not (tmp_path / 'out').exists() and not (tmp_path / 'out.partial').exists()
        assert not (tmp_path / 'no').exists() and not list(tmp_path.glob('*.mp4'))
