import cv2
import numpy as np
import pytest

from xfusion.commands import main
from xfusion.io.frames import read_frame
from xfusion.io.sequence import read_reds_meta


@pytest.fixture(scope='module')
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('synth_reds')
    assert main(['synth', 'reds', '--out', str(root), '--sequences', '2', '--frames', '5', '--hr-size', '64', '96',
                 '--seed', '3']) == 0
    return root


def test_synth_reds_writes_the_reds_layout(synth_root):
    assert read_reds_meta(synth_root / 'meta_info_REDS_GT.txt') == {'000': 5, '001': 5}
    hr = cv2.imread(str(synth_root / 'train_sharp' / '001' / '00000004.png'), cv2.IMREAD_UNCHANGED)
    lr = cv2.imread(str(synth_root / 'train_sharp_bicubic' / 'X4' / '001' / '00000004.png'), cv2.IMREAD_UNCHANGED)
    assert hr.shape == (64, 96, 3) and lr.shape == (16, 24, 3) and hr.dtype == np.uint8
    # motion between frames
    first = cv2.imread(str(synth_root / 'train_sharp' / '001' / '00000000.png'))
    assert np.abs(first.astype(int) - hr).mean() > 1
    # the LR frame is the x4 reduction of the HR frame
    down = cv2.resize(hr, (24, 16), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(down - lr).mean() < 6


def test_synth_reds_is_deterministic(synth_root, tmp_path):
    main(['synth', 'reds', '--out', str(tmp_path), '--sequences', '1', '--frames', '5', '--hr-size', '64', '96',
          '--seed', '3'])
    a = (synth_root / 'train_sharp' / '000' / '00000002.png').read_bytes()
    assert (tmp_path / 'train_sharp' / '000' / '00000002.png').read_bytes() == a


def test_reds_gray_writes_one_channel_copies_and_meta(synth_root):
    assert main(['reds-gray', '--src', str(synth_root)]) == 0
    gray = cv2.imread(str(synth_root / 'train_sharp_gray' / '000' / '00000001.png'), cv2.IMREAD_UNCHANGED)
    rgb = cv2.imread(str(synth_root / 'train_sharp' / '000' / '00000001.png'))
    assert gray.ndim == 2 and np.array_equal(gray, cv2.cvtColor(rgb, cv2.COLOR_BGR2GRAY))
    lr = read_frame(synth_root / 'train_sharp_bicubic_gray' / 'X4' / '001' / '00000003.png')
    assert lr.shape == (16, 24)
    lines = (synth_root / 'meta_info_REDS_GT.txt').read_text().splitlines()
    assert lines == ['000 5 (64,96,1)', '001 5 (64,96,1)']


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(['reds-gray', '--src', str(tmp_path / 'missing')]) == 2
    assert main(['synth', 'reds', '--out', str(tmp_path), '--hr-size', '60', '96']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith('xfusion') for line in err)


def test_every_texture_ships_with_scikit_image():
    from xfusion.synth.reds import SKIMAGE_IMAGES, load_texture
    for name in SKIMAGE_IMAGES:
        img = load_texture(name)
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8 and min(img.shape[:2]) >= 128, name
