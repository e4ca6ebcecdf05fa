"""Registration of the HR camera onto the x4 LR grid: known similarity transforms must be recovered."""
from __future__ import annotations

import json
import math
import sys

import cv2
import numpy as np
import pytest
from scipy import ndimage

from xfusion.commands import main
from xfusion.io.frames import write_frame
from xfusion.registration import (
    REQUIRED_KEYS,
    decompose,
    estimate_transform,
    load_transform,
    save_transform,
    warp_to_lr_grid,
)

GRID = 256  # x4 grid of a 64 x 64 LR frame
PAD = 96  # the world extends past the grid, so that a shifted / rotated HR camera sees real scene everywhere


def _world(seed: int) -> np.ndarray:
    """Textured scene on the x4 grid (plus margin): smoothed noise at two scales and a few shapes."""
    rng = np.random.default_rng(seed)
    size = GRID + 2 * PAD
    img = ndimage.gaussian_filter(rng.normal(size=(size, size)), 6)
    img = 0.5 + 0.3 * img / np.abs(img).max()
    img += 0.05 * ndimage.gaussian_filter(rng.normal(size=(size, size)), 2) / 0.14
    yy, xx = np.mgrid[:size, :size]
    for _ in range(6):
        cy, cx = rng.uniform(0, size, 2)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(6, 20) ** 2] += rng.uniform(-0.2, 0.2)
    img[PAD + 40:PAD + 70, PAD + 150:PAD + 210] += 0.15
    return np.clip(img, 0, 1).astype(np.float32)


def _matrix(scale: float, deg: float, shift: tuple[float, float]) -> np.ndarray:
    th = math.radians(deg)
    return np.array([[scale * math.cos(th), -scale * math.sin(th), shift[0]],
                     [scale * math.sin(th), scale * math.cos(th), shift[1]]])


def _centred_shift(scale: float, deg: float, offset: tuple[float, float], hr_shape: tuple[int, int]) -> tuple:
    """Shift that puts the HR frame's centre ``offset`` grid pixels from the grid centre (for large rotations)."""
    m = _matrix(scale, deg, (0.0, 0.0))
    centre_hr = np.array([(hr_shape[1] - 1) / 2, (hr_shape[0] - 1) / 2])
    t = np.array([(GRID - 1) / 2, (GRID - 1) / 2]) + np.array(offset) - m[:, :2] @ centre_hr
    return float(t[0]), float(t[1])


def _pair(scale: float, deg: float, shift: tuple[float, float], hr_shape=(GRID, GRID), seed: int = 0,
          gain: float = 1.0, offset: float = 0.0, frames: int = 1, truth: np.ndarray | None = None) -> dict:
    """LR frame(s) (4x4 area average of the grid image) and HR-camera frame(s) with a known transform (a
    similarity, or any 2x3 ``truth``), noisy."""
    world = _world(seed)
    grid = world[PAD:PAD + GRID, PAD:PAD + GRID]
    truth = _matrix(scale, deg, shift) if truth is None else truth  # HR pixel -> grid pixel
    to_world = truth.copy()
    to_world[:, 2] += PAD
    # inverse map: HR pixel (x, y) shows the world at truth @ (x, y, 1)
    clean_hr = cv2.warpAffine(world, to_world, (hr_shape[1], hr_shape[0]), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
    clean_hr = np.clip(clean_hr * gain + offset, 0, 1)
    clean_lr = grid.reshape(GRID // 4, 4, GRID // 4, 4).mean(axis=(1, 3))
    rng = np.random.default_rng(seed + 100)
    photons = 1000.0
    lr = np.stack([clean_lr + rng.normal(0, 0.01, clean_lr.shape) for _ in range(frames)]).astype(np.float32)
    hr = np.stack([rng.poisson(clean_hr * photons) / photons for _ in range(frames)]).astype(np.float32)
    if frames == 1:
        lr, hr = lr[0], hr[0]
    return dict(lr=lr, hr=hr, clean_hr=clean_hr.astype(np.float32), grid=grid, truth=truth)


CASES = {
    'identity': (1.0, 0.0, (0.0, 0.0), (GRID, GRID), {}),
    'brief': (1.03, 2.5, (7.3, -4.1), (GRID, GRID), {}),
    'negative-rotation': (0.97, -1.8, (-5.2, 6.4), (GRID, GRID), {}),
    'other-size-and-gain': (0.95, -3.0, (12.0, 3.5), (240, 272), dict(gain=0.6, offset=0.2)),
    'large-rotation': (1.1, 30.0, _centred_shift(1.1, 30.0, (6.0, -3.0), (GRID, GRID)), (GRID, GRID), {}),
}


@pytest.fixture(scope='module')
def recovered() -> dict:
    """Each case's data and estimated transform, computed once for the module."""
    out = {}
    for i, (name, (scale, deg, shift, hr_shape, extra)) in enumerate(CASES.items()):
        data = _pair(scale, deg, shift, hr_shape, seed=i, **extra)
        out[name] = (data, estimate_transform(data['lr'], data['hr']))
    return out


@pytest.mark.parametrize('name', list(CASES))
def test_estimate_recovers_known_transform(recovered, name):
    scale, deg, shift, _, extra = CASES[name]
    data, t = recovered[name]
    assert t['scale'] == pytest.approx(scale, rel=0.005)
    assert abs((t['rotation_deg'] - deg + 180) % 360 - 180) < 0.2
    assert np.hypot(t['shift_xy'][0] - shift[0], t['shift_xy'][1] - shift[1]) < 2.0
    # in fact much better than the contract: a tenth of those tolerances
    assert abs(t['scale'] / scale - 1) < 0.0005 and abs(t['rotation_deg'] - deg) < 0.1
    assert np.abs(np.array(t['matrix']) - data['truth']).max() < 0.5
    assert t['output_shape'] == [GRID, GRID]
    # residual ~ the noise of the two frames (LR 0.01; HR Poisson averaged over 16 pixels), not the scene contrast
    assert t['residual'] < 0.02
    assert t['intensity_gain'] == pytest.approx(1 / extra.get('gain', 1.0), rel=0.05)
    json.dumps(t)  # JSON-ready: plain floats and lists only


@pytest.mark.parametrize('name', ['brief', 'other-size-and-gain', 'large-rotation'])
def test_warp_maps_hr_onto_grid(recovered, name):
    data, t = recovered[name]
    gain, offset = CASES[name][4].get('gain', 1.0), CASES[name][4].get('offset', 0.0)
    warped = warp_to_lr_grid(data['clean_hr'], t)
    assert warped.dtype == np.float32 and warped.shape == (GRID, GRID)
    # compare where the HR camera sees the grid, away from its edges (border replicate fills the rest)
    inside = cv2.warpAffine(np.ones(data['hr'].shape, np.float32), np.array(t['matrix']), (GRID, GRID)) > 0.999
    inside = ndimage.binary_erosion(inside, iterations=8)
    assert inside.mean() > 0.5
    expected = data['grid'] * gain + offset
    rms = np.sqrt(np.mean((warped - expected)[inside] ** 2))
    unregistered = cv2.resize(data['clean_hr'], (GRID, GRID), interpolation=cv2.INTER_AREA)
    rms_before = np.sqrt(np.mean((unregistered - expected)[inside] ** 2))
    assert rms < 0.01 < rms_before
    # the noisy frame lands at its noise level, and float input stays in its range
    noisy = warp_to_lr_grid(data['hr'], t)
    assert np.sqrt(np.mean((noisy - expected)[inside] ** 2)) < 0.03
    assert noisy.min() >= data['hr'].min() and noisy.max() <= data['hr'].max()


def test_stacks_are_averaged_and_warped_frame_by_frame():
    data = _pair(1.02, 1.0, (3.0, -2.0), seed=7, frames=3)
    assert data['lr'].shape == (3, 64, 64) and data['hr'].shape == (3, GRID, GRID)
    t = estimate_transform(data['lr'], data['hr'])
    assert t['scale'] == pytest.approx(1.02, rel=0.005)
    assert abs(t['rotation_deg'] - 1.0) < 0.2
    stack = warp_to_lr_grid(data['hr'], t)
    assert stack.shape == (3, GRID, GRID)
    np.testing.assert_allclose(stack[1], warp_to_lr_grid(data['hr'][1], t))


def test_identity_transform_warp_is_a_no_op():
    img = np.random.default_rng(0).random((32, 40)).astype(np.float32)
    t = dict(matrix=[[1, 0, 0], [0, 1, 0]], output_shape=[32, 40])
    np.testing.assert_allclose(warp_to_lr_grid(img, t), img, atol=1e-6)
    shifted = warp_to_lr_grid(img, dict(matrix=[[1, 0, 2], [0, 1, -1]]), output_shape=(32, 40))
    np.testing.assert_allclose(shifted[1:-1, 3:-1], img[2:, 1:-3], atol=1e-6)  # HR (x, y) lands at (x+2, y-1)
    with pytest.raises(ValueError, match='output_shape'):
        warp_to_lr_grid(img, dict(matrix=[[1, 0, 0], [0, 1, 0]]))


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match='hr'):
        estimate_transform(np.zeros((16, 16)), np.zeros((4, 4, 4, 4)))
    with pytest.raises(ValueError, match='NaN'):
        estimate_transform(np.full((16, 16), np.nan), np.zeros((64, 64)))


def _transform() -> dict:
    return dict(matrix=[[1.01, -0.02, 3.5], [0.02, 1.01, -1.25]], scale=1.0102, rotation_deg=1.13,
                shift_xy=[3.5, -1.25], residual=0.012, output_shape=[256, 256], intensity_gain=1.0)


def test_json_round_trip(tmp_path):
    path = tmp_path / 'sub' / 'transform.json'
    save_transform(_transform(), path)
    assert load_transform(path) == _transform()


@pytest.mark.parametrize('key', REQUIRED_KEYS)
def test_missing_key_names_file_and_key(tmp_path, key):
    bad = _transform()
    del bad[key]
    path = tmp_path / 'bad.json'
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=f'bad.json.*{key}'):
        load_transform(path)
    with pytest.raises(ValueError, match=key):
        save_transform(bad, tmp_path / 'never.json')
    assert not (tmp_path / 'never.json').exists()


@pytest.mark.parametrize('key, value', [('matrix', [[1, 0], [0, 1]]), ('matrix', [[0, 0, 1], [0, 0, 2]]),
                                        ('scale', -1.0), ('scale', 'big'), ('shift_xy', [1.0]),
                                        ('output_shape', [256.5, 256]), ('residual', None)])
def test_bad_value_names_key(tmp_path, key, value):
    path = tmp_path / 't.json'
    path.write_text(json.dumps({**_transform(), key: value}))
    with pytest.raises(ValueError, match=f't.json.*{key}'):
        load_transform(path)


def test_unreadable_json(tmp_path):
    (tmp_path / 'x.json').write_text('{"matrix": ')
    with pytest.raises(ValueError, match='x.json.*JSON'):
        load_transform(tmp_path / 'x.json')
    with pytest.raises(ValueError, match='not found'):
        load_transform(tmp_path / 'missing.json')


def test_cli_writes_transform(tmp_path, capsys):
    data = _pair(1.03, 2.5, (7.3, -4.1), seed=1, frames=2)
    lr_files, hr_files = [], []
    for k in range(2):  # 16-bit frames: read_frame + the dtype range bring them back to [0, 1]
        lr_files.append(tmp_path / f'lr{k}.tif')
        hr_files.append(tmp_path / f'hr{k}.png')
        write_frame(lr_files[-1], np.rint(np.clip(data['lr'][k], 0, 1) * 65535).astype(np.uint16))
        write_frame(hr_files[-1], np.rint(np.clip(data['hr'][k], 0, 1) * 65535).astype(np.uint16))
    out = tmp_path / 'reg' / 'transform.json'
    assert main(['register', '--lr', *map(str, lr_files), '--hr', *map(str, hr_files), '--out', str(out)]) == 0
    printed = capsys.readouterr().out.strip()
    assert len(printed.splitlines()) == 1 and 'scale 1.03' in printed and 'residual' in printed
    t = json.loads(out.read_text())
    assert set(REQUIRED_KEYS) <= set(t)
    assert t['scale'] == pytest.approx(1.03, rel=0.005)
    assert abs(t['rotation_deg'] - 2.5) < 0.2
    assert np.hypot(t['shift_xy'][0] - 7.3, t['shift_xy'][1] + 4.1) < 2.0
    assert load_transform(out)['output_shape'] == [GRID, GRID]


@pytest.mark.parametrize('problem', ['missing', 'garbage', 'size-mismatch'])
def test_cli_bad_input_returns_2_and_writes_nothing(tmp_path, capsys, problem):
    good = tmp_path / 'good.png'
    write_frame(good, np.full((64, 64), 100, np.uint8))
    write_frame(tmp_path / 'hr.png', np.full((256, 256), 100, np.uint8))
    if problem == 'missing':
        lr = [str(tmp_path / 'nope.png')]
    elif problem == 'garbage':
        (tmp_path / 'bad.png').write_bytes(b'not a png at all')
        lr = [str(tmp_path / 'bad.png')]
    else:
        write_frame(tmp_path / 'small.png', np.full((32, 32), 100, np.uint8))
        lr = [str(good), str(tmp_path / 'small.png')]
    out = tmp_path / 'out' / 't.json'
    assert main(['register', '--lr', *lr, '--hr', str(tmp_path / 'hr.png'), '--out', str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith('xfusion register: error:')
    assert ('nope.png' in err) if problem == 'missing' else ('png' in err)
    assert not out.exists() and not out.parent.exists()


def _camera_matrix(sx: float, sy: float, deg: float, mirrored: bool, shear: float = 0.0,
                   hr_shape=(GRID, GRID), offset=(3.0, -2.0)) -> np.ndarray:
    """HR pixel -> grid map of a camera with a scale per axis, shear, a rotation and a left-right mirror, its
    centre ``offset`` grid pixels from the grid's."""
    th = math.radians(deg)
    a = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]]) @ np.array([[sx, shear * sy],
                                                                                             [0.0, sy]])
    if mirrored:
        a = a @ np.diag([-1.0, 1.0])
    centre = np.array([(hr_shape[1] - 1) / 2, (hr_shape[0] - 1) / 2])
    t = np.array([(GRID - 1) / 2, (GRID - 1) / 2]) + np.array(offset) - a @ centre
    return np.hstack([a, t[:, None]])


def _field_error(matrix, truth, hr_shape=(GRID, GRID)) -> float:
    """The largest distance, in x4-grid pixels, between where two maps put HR pixels, over the HR frame."""
    h, w = hr_shape
    points = np.array([[x, y, 1.0] for x in np.linspace(0, w - 1, 9) for y in np.linspace(0, h - 1, 9)]).T
    return float(np.hypot(*((np.asarray(matrix) - truth) @ points)).max())


CAMERAS = {  # (sx, sy, rotation, mirrored, shear), the model auto must choose
    'mirrored': ((1.0, 1.0, 0.5, True, 0.0), 'similarity'),
    'anisotropic': ((1.02, 1.0, -1.0, False, 0.0), 'affine'),
    'anisotropic-mirrored-sheared': ((1.01, 0.99, 0.5, True, 0.004), 'affine'),
}


@pytest.mark.parametrize('name', list(CAMERAS))
def test_mirrored_and_anisotropic_cameras_are_recovered_and_auto_chooses_the_model(name):
    (sx, sy, deg, mirrored, shear), model = CAMERAS[name]
    truth = _camera_matrix(sx, sy, deg, mirrored, shear)
    data = _pair(1, 0, (0, 0), seed=3, truth=truth)
    t = estimate_transform(data['lr'], data['hr'])
    assert t['model'] == model and t['mirrored'] is mirrored and t['fit'] == 'ok'
    assert _field_error(t['matrix'], truth) < 0.2  # x4-grid pixels, anywhere in the field
    assert t['scale_xy'] == pytest.approx([sx, sy], abs=0.001) and abs(t['rotation_deg'] - deg) < 0.05
    assert abs(t['shear'] - shear) < 0.001 and t['residual'] < 1.5 * t['noise']
    assert np.allclose(decompose(t['matrix'])['scale_xy'], t['scale_xy'])
    if model == 'affine':  # one scale cannot put the field's corners in place
        similarity = estimate_transform(data['lr'], data['hr'], 'similarity')
        assert similarity['model'] == 'similarity' and _field_error(similarity['matrix'], truth) > 1.0
        assert t['residual_affine'] < t['residual_similarity']


def test_auto_keeps_the_similarity_of_a_similar_camera(recovered):
    for name in ('identity', 'brief', 'large-rotation'):
        data, t = recovered[name]
        assert t['model'] == 'similarity' and not t['mirrored'] and t['fit'] == 'ok', name
        assert t['scale_xy'][0] == pytest.approx(t['scale_xy'][1]) and abs(t['shear']) < 1e-12


def test_decompose_reads_back_what_a_matrix_was_made_of():
    truth = _camera_matrix(1.03, 0.97, 12.0, True, 0.01)
    d = decompose(truth)
    assert d['mirrored'] and d['scale_xy'] == pytest.approx([1.03, 0.97]) and d['shear'] == pytest.approx(0.01)
    assert d['rotation_deg'] == pytest.approx(12.0) and d['scale'] == pytest.approx(math.sqrt(1.03 * 0.97))


def test_frames_no_model_explains_are_refused_unless_kept_and_then_fuse_refuses_them(tmp_path, capsys):
    one, other = _pair(1, 0, (0, 0), seed=3), _pair(1, 0, (0, 0), seed=5)  # two unrelated scenes
    t = estimate_transform(one['lr'], other['hr'])
    assert t['fit'].startswith('failed: residual') and t['residual'] > 2 * t['noise']
    write_frame(tmp_path / 'lr.tif', np.rint(np.clip(one['lr'], 0, 1) * 65535).astype(np.uint16))
    write_frame(tmp_path / 'hr.tif', np.rint(np.clip(other['hr'], 0, 1) * 65535).astype(np.uint16))
    args = ['register', '--lr', str(tmp_path / 'lr.tif'), '--hr', str(tmp_path / 'hr.tif'), '--out',
            str(tmp_path / 't.json')]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'no transform explains these frames' in err[0] and not (tmp_path / 't.json').exists()
    assert main(args + ['--keep-failed-fit']) == 0
    assert 'fuse and check will refuse' in capsys.readouterr().out
    assert load_transform(tmp_path / 't.json')['fit'].startswith('failed')
    (tmp_path / 'lr').mkdir()
    (tmp_path / 'hr').mkdir()
    for k in range(3):
        write_frame(tmp_path / 'lr' / f'{k:08d}.tif', np.rint(np.clip(one['lr'], 0, 1) * 65535).astype(np.uint16))
        write_frame(tmp_path / 'hr' / f'{k:08d}.tif', np.rint(np.clip(other['hr'], 0, 1) * 65535).astype(np.uint16))
    assert main(['fuse', '--lr', str(tmp_path / 'lr'), '--hr', str(tmp_path / 'hr'), '--period', '1', '--transform',
                 str(tmp_path / 't.json'), '--out', str(tmp_path / 'fused')]) == 2
    assert 'its registration failed' in capsys.readouterr().err and not (tmp_path / 'fused').exists()


def _grid_target(pitch: int = 24, bar: int = 5) -> np.ndarray:
    """A copper-grid calibration target on the world of ``_pair`` (bars every ``pitch`` grid pixels)."""
    size = GRID + 2 * PAD
    yy, xx = np.mgrid[:size, :size]
    bars = ((yy % pitch) < bar) | ((xx % pitch) < bar)
    return np.where(bars, 0.25, 0.8).astype(np.float32)


def test_a_grid_target_is_pinned_to_its_period_by_the_sample_frames(tmp_path, capsys, monkeypatch):
    truth = _camera_matrix(1.01, 0.99, 0.5, True, 0.0)
    sample = _pair(1, 0, (0, 0), seed=4, truth=truth)
    monkeypatch.setattr(sys.modules[__name__], '_world', lambda seed: _grid_target())
    grid = _pair(1, 0, (0, 0), seed=4, truth=truth)
    assert estimate_transform(sample['lr'], sample['hr'])['repeats_every_lr_px'] is None
    near = estimate_transform(sample['lr'], sample['hr'])
    assert _field_error(near['matrix'], truth) < 0.2
    for shift in (0.0, 5.0):  # the sample's transform, and one 5 grid pixels off (a fifth of the pitch)
        start = dict(near, matrix=(np.array(near['matrix']) + [[0, 0, shift], [0, 0, -shift]]).tolist())
        t = estimate_transform(grid['lr'], grid['hr'], near=start)
        assert t['started_near'] and t['mirrored'] and t['model'] == 'affine' and t['fit'] == 'ok'
        assert _field_error(t['matrix'], truth) < 0.2, shift
        assert t['repeats_every_lr_px'] is not None and np.hypot(*t['repeats_every_lr_px']) == pytest.approx(6, abs=0.5)
    for name, frame in (('lr', grid['lr']), ('hr', grid['hr']), ('slr', sample['lr']), ('shr', sample['hr'])):
        write_frame(tmp_path / f'{name}.tif', np.rint(np.clip(frame, 0, 1) * 65535).astype(np.uint16))
    assert main(['register', '--lr', str(tmp_path / 'slr.tif'), '--hr', str(tmp_path / 'shr.tif'), '--out',
                 str(tmp_path / 'sample.json')]) == 0
    assert main(['register', '--lr', str(tmp_path / 'lr.tif'), '--hr', str(tmp_path / 'hr.tif'), '--out',
                 str(tmp_path / 'alone.json')]) == 0
    assert 'repeats every' in capsys.readouterr().out  # without the sample's transform: a warning
    assert main(['register', '--lr', str(tmp_path / 'lr.tif'), '--hr', str(tmp_path / 'hr.tif'), '--near',
                 str(tmp_path / 'sample.json'), '--out', str(tmp_path / 'grid.json')]) == 0
    assert 'repeats every' not in capsys.readouterr().out
    assert _field_error(load_transform(tmp_path / 'grid.json')['matrix'], truth) < 0.2
