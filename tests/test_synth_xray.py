"""Synthetic x-ray sequences: layout, bit depth, determinism, noise statistics, motion, metadata, CLI."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from xfusion.camera import area_average
from xfusion.commands import main
from xfusion.errors import InputError
from xfusion.io.sequence import Sequence, open_xray_root
from xfusion.synth.xray import FAMILIES, FLAT_UNIT, ROLES, families_of, synth_xray, true_sample_motion

SIZE, FRAMES, SEED, B0 = (64, 64), 6, 2, 1000.0  # seed 2: one sequence with global motion, two without


def _frames(root: Path, seq: str, camera: str) -> np.ndarray:
    files = sorted((root / seq / camera).glob('*.png'))
    return np.stack([cv2.imread(str(f), cv2.IMREAD_UNCHANGED) for f in files])


def _unit(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float64) / np.iinfo(frames.dtype).max


def _meta(root: Path, seq: str) -> dict:
    return json.loads((root / seq / 'meta.json').read_text())


@pytest.fixture(scope='module')
def noisy_root(tmp_path_factory) -> Path:
    return synth_xray(tmp_path_factory.mktemp('xray_noisy'), sequences=3, frames=FRAMES, hr_size=SIZE, b0=B0,
                      seed=SEED)


@pytest.fixture(scope='module')
def clean_root(tmp_path_factory) -> Path:
    return synth_xray(tmp_path_factory.mktemp('xray_clean'), sequences=3, frames=FRAMES, hr_size=SIZE, b0=0,
                      seed=SEED)


def test_layout_counts_and_16_bit(noisy_root, clean_root):
    assert sorted(p.name for p in noisy_root.iterdir()) == ['seq_000', 'seq_001', 'seq_002']
    for seq in ('seq_000', 'seq_001', 'seq_002'):
        for camera in ('HR', 'LR'):
            names = sorted(p.name for p in (noisy_root / seq / camera).iterdir())
            assert names == [f'{t:08d}.png' for t in range(FRAMES)]
        assert (noisy_root / seq / 'meta.json').is_file()
        hr, lr = _frames(noisy_root, seq, 'HR'), _frames(noisy_root, seq, 'LR')
        assert hr.dtype == np.uint16 and lr.dtype == np.uint16
        assert hr.shape == (FRAMES, *SIZE) and lr.shape == (FRAMES, SIZE[0] // 4, SIZE[1] // 4)
        assert 0.05 < _unit(hr).mean() < FLAT_UNIT * 1.2
        # really 16-bit, not 8 bits shifted (noise-free: photon counts at b0 = 1000 are themselves quantized)
        assert len(np.unique(_frames(clean_root, seq, 'HR'))) > 256
        assert len(np.unique(_frames(clean_root, seq, 'LR'))) > 256


def test_8_bit_output(tmp_path):
    synth_xray(tmp_path, sequences=1, frames=2, hr_size=(32, 48), seed=1, bit_depth=8)
    hr, lr = _frames(tmp_path, 'seq_000', 'HR'), _frames(tmp_path, 'seq_000', 'LR')
    assert hr.dtype == np.uint8 and lr.dtype == np.uint8
    assert hr.shape == (2, 32, 48) and lr.shape == (2, 8, 12)
    assert _meta(tmp_path, 'seq_000')['bit_depth'] == 8


def test_deterministic_per_seed_and_sequence(noisy_root, clean_root, tmp_path):
    # the same (seed, sequence index) gives byte-identical files, however many sequences are written
    synth_xray(tmp_path / 'same', sequences=1, frames=FRAMES, hr_size=SIZE, b0=B0, seed=SEED)
    synth_xray(tmp_path / 'clean', sequences=1, frames=FRAMES, hr_size=SIZE, b0=0, seed=SEED)
    synth_xray(tmp_path / 'other', sequences=1, frames=FRAMES, hr_size=SIZE, b0=B0, seed=SEED + 1)
    for camera in ('HR', 'LR'):
        for t in (0, FRAMES - 1):
            name = f'seq_000/{camera}/{t:08d}.png'
            assert (tmp_path / 'same' / name).read_bytes() == (noisy_root / name).read_bytes()
            assert (tmp_path / 'clean' / name).read_bytes() == (clean_root / name).read_bytes()
            assert (tmp_path / 'other' / name).read_bytes() != (noisy_root / name).read_bytes()
    meta = 'seq_000/meta.json'
    assert (tmp_path / 'same' / meta).read_text() == (noisy_root / meta).read_text()
    # different seeds give different content, not only different noise
    a, b = _unit(_frames(clean_root, 'seq_000', 'HR')), _unit(_frames(noisy_root, 'seq_000', 'HR'))
    c = _unit(_frames(tmp_path / 'other', 'seq_000', 'HR'))
    assert np.abs(a - c).mean() > 3 * np.abs(a - b).mean()


def test_poisson_noise_statistics(noisy_root, clean_root):
    for camera in ('HR', 'LR'):
        clean = np.concatenate([_unit(_frames(clean_root, s, camera)) for s in ('seq_000', 'seq_001', 'seq_002')])
        noisy = np.concatenate([_unit(_frames(noisy_root, s, camera)) for s in ('seq_000', 'seq_001', 'seq_002')])
        keep = (clean < 0.95) & (noisy < 0.999)  # away from clipping at the top of the range
        diff, expected = (noisy - clean)[keep], FLAT_UNIT * clean[keep] / B0  # var(I) = I / b0 in intensity units
        assert abs(diff.mean()) < 0.1 * np.sqrt(expected.mean())  # unbiased
        # variance proportional to the intensity: check dark and bright pixels separately
        median = np.median(clean[keep])
        for part in (clean[keep] < median, clean[keep] >= median):
            ratio = np.mean(diff[part] ** 2) / np.mean(expected[part])
            assert 0.9 < ratio < 1.1, (camera, ratio)
    # the two cameras' noise is independent
    hr_noise = _unit(_frames(noisy_root, 'seq_001', 'HR')) - _unit(_frames(clean_root, 'seq_001', 'HR'))
    lr_noise = _unit(_frames(noisy_root, 'seq_001', 'LR')) - _unit(_frames(clean_root, 'seq_001', 'LR'))
    hr_binned = np.stack([area_average(f) for f in hr_noise])
    assert abs(np.corrcoef(hr_binned.ravel(), lr_noise.ravel())[0, 1]) < 0.1


def test_lr_is_a_blurred_reduction_of_hr(clean_root):
    # one scene seen by both cameras: LR ~ 4x4 average of HR after the extra blur of the LR camera's wider PSF
    for seq in ('seq_000', 'seq_001', 'seq_002'):
        optics = _meta(clean_root, seq)['optics']
        extra = np.sqrt(optics['psf_sigma_lr_camera_in_hr_px'] ** 2 - optics['psf_sigma_hr_px'] ** 2)
        hr, lr = _unit(_frames(clean_root, seq, 'HR')), _unit(_frames(clean_root, seq, 'LR'))
        reduced = np.stack([area_average(f) for f in hr])
        blurred = np.stack([area_average(cv2.GaussianBlur(f, (0, 0), extra)) for f in hr])
        assert np.abs(blurred - lr).mean() < 0.6 * np.abs(reduced - lr).mean() < 0.05
        # the HR camera sees detail finer than an LR pixel
        up = np.stack([cv2.resize(f, SIZE[::-1], interpolation=cv2.INTER_CUBIC) for f in lr])
        assert np.abs(hr - up).mean() > 0.003


def test_motion_is_fast_and_local(clean_root):
    static_medians, global_medians = [], []
    for seq in ('seq_000', 'seq_001', 'seq_002'):
        hr = _unit(_frames(clean_root, seq, 'HR'))
        change = np.abs(np.diff(hr, axis=0))
        if _meta(clean_root, seq)['global_motion']:
            global_medians.append(np.median(change))
            continue
        static_medians.append(np.median(change))
        # most of the view barely changes between frames; the event region changes a lot
        assert (change > 0.02).mean() < 0.3, seq
        assert np.quantile(change, 0.995) > max(0.05, 30 * np.median(change)), seq
    assert static_medians and global_medians, 'this seed should give sequences with and without global motion'
    assert min(global_medians) > 3 * max(static_medians)


def test_meta_is_complete_and_consistent(noisy_root):
    for i, seq in enumerate(('seq_000', 'seq_001', 'seq_002')):
        meta = _meta(noisy_root, seq)
        assert meta['sequence'] == seq and meta['index'] == i and meta['seed'] == SEED and meta['b0'] == B0
        assert meta['bit_depth'] == 16 and meta['frames'] == FRAMES and meta['scale'] == 4
        assert meta['hr_size'] == list(SIZE) and meta['lr_size'] == [SIZE[0] // 4, SIZE[1] // 4]
        assert meta['noise'] == 'poisson'
        assert meta['intensity_scale']['flat_field_unit'] == FLAT_UNIT
        assert meta['intensity_scale']['dtype_max'] == 65535
        assert 0 <= meta['intensity_scale']['clipped_fraction'] < 0.05
        assert isinstance(meta['global_motion'], bool)
        kinds = [m['kind'] for m in meta['motions']]
        assert kinds == meta['motion_kinds'] and len(kinds) >= 2
        assert set(kinds) <= {'crack', 'keyhole', 'jet', 'rotor', 'flap', 'ballistic_particles', 'spatter'}
        assert meta['background']['kind'] in ('powder_bed', 'porous', 'composite')
        if 'keyhole' in kinds:
            assert meta['background']['kind'] == 'powder_bed'
        motion = meta['sample_motion']
        assert motion['kind'] in ('translating', 'oscillating', 'drift')
        assert (motion['kind'] != 'drift') == meta['global_motion']
        if meta['global_motion']:
            assert 1.5 <= motion['peak_speed_px_per_frame'] <= 4.0


def test_open_xray_root_reads_the_output(noisy_root):
    sequences = open_xray_root(noisy_root)
    assert [s.name for s in sequences] == ['seq_000', 'seq_001', 'seq_002']
    for seq in sequences:
        assert isinstance(seq, Sequence) and seq.layout == 'folders'
        assert seq.num_frames == FRAMES and seq.hr_shape == SIZE and seq.lr_shape == (16, 16)
        assert seq.scale.dtype == np.uint16
        hr, lr = seq.read_hr(FRAMES - 1), seq.read_lr(0)
        assert hr.dtype == np.float32 and hr.shape == SIZE and lr.shape == (16, 16)
        assert 0 <= hr.min() and hr.max() <= 1


def test_cli_and_rerun_with_fewer_frames(tmp_path):
    args = ['synth', 'xray', '--out', str(tmp_path), '--sequences', '1', '--hr-size', '32', '32', '--b0', '0',
            '--seed', '4', '--bit-depth', '8']
    assert main(args + ['--frames', '4']) == 0
    assert main(args + ['--frames', '2']) == 0  # stale frames of the longer run are gone
    assert sorted(p.name for p in (tmp_path / 'seq_000' / 'HR').iterdir()) == ['00000000.png', '00000001.png']
    assert len(list((tmp_path / 'seq_000' / 'LR').iterdir())) == 2
    assert _meta(tmp_path, 'seq_000')['noise'] == 'none'


@pytest.mark.parametrize('kwargs', [dict(hr_size=(60, 64)), dict(hr_size=(64, 40)), dict(hr_size=(0, 64)),
                                    dict(frames=1), dict(bit_depth=12), dict(sequences=0)])
def test_bad_arguments_raise(tmp_path, kwargs):
    with pytest.raises(ValueError):
        synth_xray(tmp_path, **{'frames': 2, 'hr_size': (32, 32), **kwargs})
    assert not any(tmp_path.iterdir())


def test_cli_reports_bad_sizes(tmp_path, capsys):
    assert main(['synth', 'xray', '--out', str(tmp_path), '--hr-size', '64', '72']) == 2
    assert 'multiples of 16' in capsys.readouterr().err


def test_the_true_sample_motion_is_remade_from_the_meta_and_matches_the_frames(clean_root):
    import torch

    import xfusion  # noqa: F401  (the BasicSR adjustments, before the network modules import BasicSR)
    from xfusion.archs.global_motion import global_shift
    for seq in ('seq_000', 'seq_001', 'seq_002'):
        meta = _meta(clean_root, seq)
        offsets = true_sample_motion(meta)  # (dy, dx) HR pixels
        assert offsets.shape == (FRAMES, 2)
        moved = (offsets[1:] - offsets[0])[:, ::-1]  # (x, y) since frame 0
        if not meta['global_motion']:
            assert np.abs(moved).max() < 0.1  # a slow drift at most
            continue
        hr = torch.from_numpy(_unit(_frames(clean_root, seq, 'HR')).astype(np.float32))[:, None]
        measured = global_shift(hr[1:], hr[:1].expand(FRAMES - 1, -1, -1, -1)).numpy()  # (x, y): key warped onto t
        assert np.abs(moved).max() > 2
        # (of a motion-blurred frame, the mean over its exposure; the lab-fixed flat field pulls the estimate a little)
        error = np.linalg.norm(measured - moved, axis=1)
        assert error.max() < 0.6 and error.mean() < 0.3
    meta = _meta(clean_root, 'seq_000')
    meta['sample_motion'] = {**meta['sample_motion'], 'kind': 'elsewhere'}
    with pytest.raises(InputError, match='another sample motion'):
        true_sample_motion(meta)
    with pytest.raises(InputError, match='not a sequence of xfusion synth xray'):
        true_sample_motion({'frames': 3})


EVENTS = {'drifting_sample': 'ballistic_particles', 'crack': 'crack', 'jet': 'jet', 'rotor': 'rotor',
          'keyhole': 'keyhole', 'debris': 'ballistic_particles', 'wing': 'wing', 'bubbles': 'bubbles'}


@pytest.fixture(scope='module')
def family_root(tmp_path_factory):
    """Two clean sequences of every family, taken in turn."""
    return synth_xray(tmp_path_factory.mktemp('families'), sequences=2 * len(FAMILIES), frames=11, hr_size=SIZE,
                      b0=0, seed=5, families=list(FAMILIES))


def test_every_family_has_its_own_events_and_says_so(family_root):
    assert set(EVENTS) == set(FAMILIES)
    for i, family in enumerate(2 * list(FAMILIES)):
        meta = _meta(family_root, f'seq_{i:03d}')
        assert meta['family'] == family and EVENTS[family] in meta['motion_kinds'], (family, meta['motion_kinds'])
        moves = meta['sample_motion']['kind'] in ('translating', 'oscillating')
        assert moves == (family == 'drifting_sample')  # only that family moves the whole sample


def test_content_changes_far_between_two_key_frames_in_every_family(family_root):
    # what fusion must get right: ten steps apart, a good part of the view is no longer what the key frame shows
    for seq in open_xray_root(family_root):
        changed = float((np.abs(seq.read_hr(10) - seq.read_hr(0)) > 0.05).mean())
        assert changed > 0.01, (seq.name, _meta(family_root, seq.name)['family'], changed)


def test_the_roles_are_disjoint_families_and_name_every_family():
    named = [family for role in ('train', 'val', 'test') for family in ROLES[role]]
    assert sorted(named) == sorted(FAMILIES) and len(set(named)) == len(named)
    assert families_of('test') == list(ROLES['test']) and families_of('wing,mixed') == ['wing', None]
    assert families_of(None) == [None]
    with pytest.raises(InputError, match="unknown family 'wings'"):
        families_of('wings')


def test_families_from_the_command_line_and_their_truth(tmp_path, capsys):
    assert main(['synth', 'xray', '--out', str(tmp_path / 'a'), '--sequences', '3', '--frames', '4', '--hr-size',
                 '32', '32', '--families', 'val,drifting_sample', '--seed', '1']) == 0
    assert [_meta(tmp_path / 'a', f'seq_{i:03d}')['family'] for i in range(3)] == [*ROLES['val'], 'drifting_sample']
    meta = _meta(tmp_path / 'a', 'seq_002')
    assert true_sample_motion(meta).shape == (4, 2) and np.abs(true_sample_motion(meta)).max() > 1  # it moves
    assert main(['synth', 'xray', '--out', str(tmp_path / 'b'), '--families', 'nothing']) == 2
    assert "unknown family 'nothing'" in capsys.readouterr().err
