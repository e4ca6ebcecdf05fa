import json

import h5py
import numpy as np
import pytest
import tifffile
import torch
import yaml

from xfusion.archs.edvrstf_arch import EDVRSTF
from xfusion.camera import area_average
from xfusion.commands import main
from xfusion.fusion.config import FuseConfig, RunOptions, SourceOptions
from xfusion.fusion.fuse import fuse
from xfusion.fusion.streams import blend_weight, tile_boxes
from xfusion.io.frames import read_frame, write_frame

QUIET = RunOptions(progress=False)
NET = dict(type='EDVRSTF', num_feat=8, deformable_groups=2, num_extract_block=1, num_reconstruct_block=1)


def save_experiment(root, net_opt, state=None, identity=False):
    """experiments/<name>/ with its option file and models/net_g_latest.pth, as BasicSR writes them."""
    (root / 'models').mkdir(parents=True)
    (root / 'train_opts.yml').write_text(yaml.safe_dump({'name': 'x', 'network_g': net_opt}))
    torch.manual_seed(0)
    net = EDVRSTF(**{k: v for k, v in net_opt.items() if k != 'type'})
    if identity:  # no residual, base = the key frames weighted by temporal closeness alone
        with torch.no_grad():
            net.conv_last.weight.zero_()
            net.conv_last.bias.zero_()
            net.blend.logits.weight.zero_()
            net.blend.logits.bias.copy_(torch.tensor([0.0, 0.0, 60.0]))
    torch.save({'params': state or net.state_dict()}, root / 'models' / 'net_g_latest.pth')
    return root / 'models' / 'net_g_latest.pth'


def scene(frames, h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:4 * h, :4 * w]
    base = 0.5 + 0.2 * np.sin(xx / 7.0) * np.cos(yy / 11.0)
    out = []
    for t in range(frames):
        img = base.copy()
        y, x = 8 + 3 * t, 10 + 5 * t
        img[y:y + 12, x:x + 12] = 0.9
        out.append(np.clip(img + rng.normal(0, 0.01, img.shape), 0, 1))
    return np.stack(out)


def write_folders(root, hr_frames, period, dtype=np.uint16):
    peak = np.iinfo(dtype).max
    for t, img in enumerate(hr_frames):
        write_frame(root / 'lr' / f'{t:05d}.tif', np.rint(area_average(img) * peak).astype(dtype))
        if t % period == 0:
            write_frame(root / 'hr' / f'{t:05d}.tif', np.rint(img * peak).astype(dtype))
    return root / 'lr', root / 'hr'


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    return save_experiment(tmp_path_factory.mktemp('exp'), dict(NET))


def test_tiled_and_untiled_outputs_agree(tmp_path, checkpoint):
    lr_dir, hr_dir = write_folders(tmp_path, scene(3, 256, 256), period=2, dtype=np.uint16)
    sources = SourceOptions(str(lr_dir), str(hr_dir), period=2)
    whole = fuse(FuseConfig(sources, str(checkpoint), str(tmp_path / 'whole'), run=QUIET))
    tiled = fuse(FuseConfig(sources, str(checkpoint), str(tmp_path / 'tiled'),
                            run=RunOptions(tile=64, overlap=8, progress=False)))
    for t in range(3):
        a = read_frame(whole / f'{t:08d}.tif').astype(float) / 65535
        b = read_frame(tiled / f'{t:08d}.tif').astype(float) / 65535
        assert a.shape == (1024, 1024)
        assert np.abs(a - b).mean() < 1e-3
    sidecar = json.loads((tiled / 'xfusion.json').read_text())
    assert sidecar['run']['tiles'] == 25 and sidecar['schedule']['key_times'] == [0, 2]


def test_16_bit_identity_network_reproduces_key_frames(tmp_path):
    ckpt = save_experiment(tmp_path / 'exp', dict(NET, base='key_blend', hr_encoder='unshuffle'), identity=True)
    frames = scene(7, 16, 20)
    lr_dir, hr_dir = write_folders(tmp_path, frames, period=3)
    out = fuse(FuseConfig(SourceOptions(str(lr_dir), str(hr_dir), period=3), str(ckpt), str(tmp_path / 'out'),
                          run=QUIET))
    fused = [read_frame(out / f'{t:08d}.tif') for t in range(7)]
    assert all(f.dtype == np.uint16 and f.shape == (64, 80) for f in fused)
    for t in (0, 3, 6):
        assert np.array_equal(fused[t], read_frame(hr_dir / f'{t:05d}.tif'))


def test_hdf5_tiff_stack_and_folder_sources_give_identical_outputs(tmp_path, checkpoint):
    frames = scene(5, 16, 16)
    lr_dir, hr_dir = write_folders(tmp_path, frames, period=2)
    lr = np.stack([read_frame(p) for p in sorted(lr_dir.iterdir())])
    hr = np.stack([read_frame(p) for p in sorted(hr_dir.iterdir())])
    with h5py.File(tmp_path / 'exp.h5', 'w') as f:
        f['/exchange/lr'] = lr
        f['/exchange/hr'] = hr
    tifffile.imwrite(tmp_path / 'lr_stack.tif', lr)
    def run(lr, hr, out):
        return fuse(FuseConfig(SourceOptions(lr, hr, period=2), str(checkpoint), str(tmp_path / out), run=QUIET))
    a = run(str(lr_dir), str(hr_dir), 'a')
    b = run(f'{tmp_path}/exp.h5:/exchange/lr', f'{tmp_path}/exp.h5:/exchange/hr', 'b.h5')
    c = run(str(tmp_path / 'lr_stack.tif'), str(hr_dir), 'c')
    with h5py.File(b, 'r') as f:
        fused_h5 = f['/exchange/data'][()]
    assert fused_h5.shape == (5, 64, 64) and fused_h5.dtype == np.uint16
    for t in range(5):
        assert np.array_equal(read_frame(a / f'{t:08d}.tif'), fused_h5[t])
        assert np.array_equal(read_frame(a / f'{t:08d}.tif'), read_frame(c / f'{t:08d}.tif'))
    assert json.loads((tmp_path / 'b.h5.json').read_text())['inputs']['dtype'] == 'uint16'


def test_explicit_key_index_and_odd_sizes(tmp_path, checkpoint):
    frames = scene(6, 10, 14)  # LR 10x14: padded to multiples of 4 inside, cropped back
    lr_dir, _ = write_folders(tmp_path, frames, period=100)
    for t in (1, 4):
        write_frame(tmp_path / 'keys' / f'{t}.tif', np.rint(frames[t] * 65535).astype(np.uint16))
    (tmp_path / 'index.txt').write_text('1 4\n')
    sources = SourceOptions(str(lr_dir), str(tmp_path / 'keys'), hr_index=str(tmp_path / 'index.txt'))
    out = fuse(FuseConfig(sources, str(checkpoint), str(tmp_path / 'out'), run=QUIET))
    assert read_frame(out / '00000005.tif').shape == (40, 56)
    assert json.loads((out / 'xfusion.json').read_text())['schedule']['key_times'] == [1, 4]


def run_cli(args, capsys):
    code = main(['fuse', *args])
    return code, capsys.readouterr().err.strip().splitlines()


def test_bad_inputs_give_one_line_and_write_nothing(tmp_path, checkpoint, capsys):
    frames = scene(4, 8, 8)
    lr_dir, hr_dir = write_folders(tmp_path, frames, period=2)
    with h5py.File(tmp_path / 'd.h5', 'w') as f:
        f['lr'] = np.zeros((4, 8, 8), np.uint16)
    out = tmp_path / 'out'
    base = ['--model', str(checkpoint), '--out', str(out)]
    cases = [
        (['--lr', f'{tmp_path}/d.h5:/missing', '--hr', str(hr_dir), '--period', '2'], 'no dataset /missing'),
        (['--lr', f'{tmp_path}/d.h5', '--hr', str(hr_dir), '--period', '2'], 'give the dataset path'),
        (['--lr', str(lr_dir), '--hr', str(hr_dir), '--period', '5'], 'beyond the LR sequence'),
        (['--lr', str(lr_dir), '--hr', str(lr_dir), '--period', '1'], '4x the LR frames'),
    ]
    # a transform onto a grid of another size
    (tmp_path / 't.json').write_text(json.dumps({'matrix': [[1, 0, 0], [0, 1, 0]], 'scale': 1.0, 'rotation_deg': 0.0,
                                                 'shift_xy': [0, 0], 'residual': 0.0, 'output_shape': [40, 40]}))
    cases.append((['--lr', str(lr_dir), '--hr', str(hr_dir), '--period', '2', '--transform', str(tmp_path / 't.json')],
                  'onto a 40x40 grid'))
    # a checkpoint of another layout
    other = save_experiment(tmp_path / 'other', dict(NET, num_feat=12))
    (tmp_path / 'other' / 'train_opts.yml').write_text(yaml.safe_dump({'network_g': dict(NET)}))
    cases.append((['--lr', str(lr_dir), '--hr', str(hr_dir), '--period', '2', '--model', str(other)],
                  'parameter conv_first.weight has shape (12, 1, 3, 3)'))
    for args, message in cases:
        code, err = run_cli(args + base if '--model' not in args else args + ['--out', str(out)], capsys)
        assert code == 2 and len(err) == 1 and message in err[0], (args, err)
        assert not out.exists() and not (tmp_path / 'out.partial').exists()


def test_tiles_cover_the_frame_and_blend_weights_are_positive():
    boxes = tile_boxes(100, 70, 32, 8)
    covered = np.zeros((100, 70), int)
    total = np.zeros((400, 280))
    for box in boxes:
        y0, y1, x0, x1 = box
        assert (y1 - y0, x1 - x0) == (32, 32)
        covered[y0:y1, x0:x1] += 1
        total[y0 * 4:y1 * 4, x0 * 4:x1 * 4] += blend_weight(box, 100, 70, 8)
    assert covered.min() >= 1 and total.min() > 0
    assert tile_boxes(20, 20, 0, 8) == [(0, 20, 0, 20)] == tile_boxes(20, 20, 64, 8)
