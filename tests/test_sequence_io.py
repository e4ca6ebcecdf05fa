import h5py
import numpy as np
import pytest
import tifffile

from helpers import moving_scene, write_pair_sequence
from xfusion.camera import area_average
from xfusion.errors import SequenceError
from xfusion.io.frames import list_frames, read_frame, write_frame
from xfusion.io.intensity import IntensityScale
from xfusion.io.sequence import Sequence, open_xray_root


def test_natural_sort(tmp_path):
    for name in ['f10.png', 'f2.png', 'f1.png', 'notes.txt']:
        (tmp_path / name).write_bytes(b'')
    assert [p.name for p in list_frames(tmp_path)] == ['f1.png', 'f2.png', 'f10.png']


@pytest.mark.parametrize('suffix', ['.png', '.tif'])
def test_16_bit_round_trip_is_bit_identical(tmp_path, suffix):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 65536, (24, 20), dtype=np.uint16)
    write_frame(tmp_path / f'a{suffix}', frame)
    back = read_frame(tmp_path / f'a{suffix}')
    assert back.dtype == np.uint16 and np.array_equal(back, frame)
    scale = IntensityScale.for_dtype(np.uint16)
    unit = scale.to_unit(back)
    assert unit.dtype == np.float32
    assert np.array_equal(scale.from_unit(unit), frame)  # never through 8 bits
    assert len(np.unique(unit)) > 256


def test_fixed_user_range_not_per_frame():
    scale = IntensityScale.for_dtype(np.uint16, (1000, 5000))
    dark = np.full((2, 2), 1000, np.uint16)
    assert scale.to_unit(dark).max() == 0.0  # a dark frame is not stretched
    assert scale.to_unit(np.full((2, 2), 3000, np.uint16))[0, 0] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        IntensityScale.for_dtype(np.uint16, (5, 5))


def make_xray_pair(root, name, frames=6, dtype=np.uint16):
    scene = moving_scene(frames, (32, 48))
    write_pair_sequence(root / name / 'HR', root / name / 'LR', scene, dtype)
    return scene


def test_folder_and_hdf5_give_identical_frames(tmp_path):
    make_xray_pair(tmp_path / 'folders', 'seq_a')
    folder = open_xray_root(tmp_path / 'folders')[0]
    with h5py.File(tmp_path / 'seq_a.h5', 'w') as f:
        f['lr'] = np.stack([read_frame(p) for p in folder.lr_files])
        f['hr'] = np.stack([read_frame(p) for p in folder.hr_files])
    h5 = Sequence.from_h5(tmp_path / 'seq_a.h5')
    assert (h5.num_frames, h5.lr_shape, h5.hr_shape) == (6, (8, 12), (32, 48))
    for t in range(6):
        assert np.array_equal(h5.read_lr(t), folder.read_lr(t))
        assert np.array_equal(h5.read_hr(t), folder.read_hr(t))
    assert folder.read_lr(0).dtype == np.float32


def test_hdf5_real_experiment_key_frames_only(tmp_path):
    with h5py.File(tmp_path / 'real.h5', 'w') as f:
        f['lr'] = np.zeros((10, 4, 4), np.uint16)
        f['hr'] = np.ones((2, 16, 16), np.uint16)
        f['hr_index'] = [0, 8]
    seq = Sequence.from_h5(tmp_path / 'real.h5')
    assert seq.hr_index == [0, 8] and seq.read_hr(8).shape == (16, 16)
    with pytest.raises(SequenceError, match='no HR frame at time step 3'):
        seq.read_hr(3)


def test_errors_name_the_file(tmp_path):
    # LR not exactly 4x smaller
    write_frame(tmp_path / 'a' / 'HR' / '0.png', np.zeros((32, 32), np.uint8))
    write_frame(tmp_path / 'a' / 'LR' / '0.png', np.zeros((9, 8), np.uint8))
    with pytest.raises(SequenceError, match=r'HR must be exactly 4x LR') as err:
        Sequence.from_folders(tmp_path / 'a' / 'HR', tmp_path / 'a' / 'LR')
    assert 'HR/0.png' in str(err.value)
    # counts differ
    write_frame(tmp_path / 'b' / 'HR' / '0.png', np.zeros((32, 32), np.uint8))
    write_frame(tmp_path / 'b' / 'HR' / '1.png', np.zeros((32, 32), np.uint8))
    write_frame(tmp_path / 'b' / 'LR' / '0.png', np.zeros((8, 8), np.uint8))
    with pytest.raises(SequenceError, match='2 frames but .* has 1'):
        Sequence.from_folders(tmp_path / 'b' / 'HR', tmp_path / 'b' / 'LR')
    # empty folder
    (tmp_path / 'c' / 'HR').mkdir(parents=True)
    (tmp_path / 'c' / 'LR').mkdir(parents=True)
    with pytest.raises(SequenceError, match='c/HR: no frames'):
        Sequence.from_folders(tmp_path / 'c' / 'HR', tmp_path / 'c' / 'LR')
    # unreadable frame
    (tmp_path / 'bad.png').write_bytes(b'not a png')
    with pytest.raises(SequenceError, match='bad.png: unreadable'):
        read_frame(tmp_path / 'bad.png')
    (tmp_path / 'bad.tif').write_bytes(b'II*\x00garbage')
    with pytest.raises(SequenceError, match='bad.tif: unreadable'):
        read_frame(tmp_path / 'bad.tif')
    # a frame of another bit depth in the middle of a sequence
    make_xray_pair(tmp_path / 'mixed', 's', frames=3)
    write_frame(tmp_path / 'mixed' / 's' / 'LR' / '00000002.png', np.zeros((8, 12), np.uint8))
    seq = open_xray_root(tmp_path / 'mixed')[0]
    with pytest.raises(SequenceError, match='00000002.png: frame is uint8.*mixed bit depths'):
        seq.read_lr(2)
    # hdf5 without hr
    with h5py.File(tmp_path / 'nohr.h5', 'w') as f:
        f['lr'] = np.zeros((3, 4, 4), np.uint8)
    with pytest.raises(SequenceError, match="nohr.h5: no dataset 'hr'"):
        Sequence.from_h5(tmp_path / 'nohr.h5')
    with pytest.raises(SequenceError, match='no sequences'):
        open_xray_root(tmp_path / 'c')


def test_colour_frames_become_gray_luma(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 2] = 200  # red in cv2's BGR order
    write_frame(tmp_path / 'c.png', rgb)
    gray = read_frame(tmp_path / 'c.png')
    assert gray.shape == (4, 4) and gray[0, 0] == round(0.299 * 200)
    tifffile.imwrite(tmp_path / 'c.tif', rgb[..., ::-1].copy())  # RGB order in TIFF
    assert read_frame(tmp_path / 'c.tif')[0, 0] == gray[0, 0]


def test_area_average_helper_matches_lr():
    img = np.arange(64, dtype=float).reshape(8, 8)
    assert area_average(img)[0, 0] == img[:4, :4].mean()


def test_frame_stack_keeps_its_interface_for_plain_sources(tmp_path):
    from xfusion.io.stack import FrameStack
    frames = np.random.default_rng(1).integers(0, 65536, (4, 8, 12), dtype=np.uint16)
    for t, frame in enumerate(frames):
        write_frame(tmp_path / 'folder' / f'{t}.png', frame)
    tifffile.imwrite(tmp_path / 'stack.tif', frames, photometric='minisblack')  # pages, not RGB
    with h5py.File(tmp_path / 'f.h5', 'w') as f:
        f['/raw/frames'] = frames
    for spec, kind in ((tmp_path / 'folder', 'folder'), (tmp_path / 'stack.tif', 'tiff'),
                       (f'{tmp_path}/f.h5:/raw/frames', 'h5')):
        stack = FrameStack(spec)
        assert (len(stack), stack.shape, stack.dtype, stack.kind) == (4, (8, 12), np.uint16, kind)
        assert (stack.scale.low, stack.scale.high, stack.bit_depth) == (0.0, 65535.0, 16)
        assert np.array_equal(stack.read(2), frames[2])
        assert np.array_equal(stack.read_unit(1), IntensityScale.for_dtype(np.uint16).to_unit(frames[1]))
        assert stack.times is None and stack.frame_rate is None and stack.flat_field is None
        assert stack.describe()['frames'] == 4 and stack.describe()['intensity_range'] == [0.0, 65535.0]
    with pytest.raises(IndexError):
        FrameStack(tmp_path / 'stack.tif').read(4)


def test_a_sequence_reads_each_frame_once(tmp_path, monkeypatch):
    import xfusion.io.formats.folder as folder
    make_xray_pair(tmp_path, 'seq', frames=3)
    reads = []
    real = folder.read_frame
    monkeypatch.setattr(folder, 'read_frame', lambda path: reads.append(path.name) or real(path))
    seq = open_xray_root(tmp_path)[0]
    assert sorted(reads) == ['00000000.png', '00000000.png']  # frame 0 of each camera, read once to open and check
    reads.clear()
    seq.read_lr(2), seq.read_hr(1)
    assert reads == ['00000002.png', '00000001.png']
    assert seq.lr_path(2) == str(seq.lr_files[2]) and seq.lr_files[2].parent.name == 'LR'


def test_hdf5_sequence_is_two_frame_stacks_of_one_file(tmp_path):
    with h5py.File(tmp_path / 'k.h5', 'w') as f:
        f['lr'] = np.zeros((5, 4, 4), np.uint16)
        f['hr'] = np.ones((2, 16, 16), np.uint16)
        f['hr_index'] = [1, 4]
    seq = Sequence.from_h5(tmp_path / 'k.h5')
    assert (seq.lr.spec, seq.hr.spec, seq.layout) == (f'{tmp_path}/k.h5:lr', f'{tmp_path}/k.h5:hr', 'h5')
    assert seq.lr_path(3) == f'{tmp_path}/k.h5:lr[3]' and seq.read_hr(4).max() == pytest.approx(1 / 65535)
    with h5py.File(tmp_path / 'bad_index.h5', 'w') as f:
        f['lr'], f['hr'], f['hr_index'] = np.zeros((5, 4, 4), np.uint8), np.zeros((2, 16, 16), np.uint8), [1, 5]
    with pytest.raises(SequenceError, match=r'bad_index.h5: hr_index must give one LR time step in 0..4'):
        Sequence.from_h5(tmp_path / 'bad_index.h5')
    with h5py.File(tmp_path / 'depths.h5', 'w') as f:
        f['lr'], f['hr'] = np.zeros((2, 4, 4), np.uint8), np.zeros((2, 16, 16), np.uint16)
    with pytest.raises(SequenceError, match=r'depths.h5:lr\[0\] is uint8 but .*both cameras must have the same bit'):
        Sequence.from_h5(tmp_path / 'depths.h5')


def test_the_registry_says_which_reader_opens_a_source(tmp_path):
    from xfusion.io.formats import CAMERA_SUFFIXES, READERS, open_source
    assert set(CAMERA_SUFFIXES) == {'.cih', '.cihx', '.cine', '.h5', '.hdf5', '.tif', '.tiff'}
    frames = np.zeros((2, 4, 4), np.uint16)
    write_frame(tmp_path / 'folder' / '0.png', frames[0])
    tifffile.imwrite(tmp_path / 'stack.tif', frames, photometric='minisblack')
    with h5py.File(tmp_path / 'f.h5', 'w') as f:
        f['/exchange/data'] = frames
        f['/raw'] = frames
    kinds = {spec: open_source(tmp_path / spec).kind for spec in ('folder', 'stack.tif', 'f.h5', 'f.h5:/raw')}
    assert kinds == {'folder': 'folder', 'stack.tif': 'tiff', 'f.h5': 'dxchange', 'f.h5:/raw': 'h5'}
    assert [reader.kind for reader in READERS] == ['folder', 'dxchange', 'h5', 'tiff', 'mraw', 'cine']
    with pytest.raises(SequenceError, match='x.cine: not found'):
        open_source(tmp_path / 'x.cine')
    (tmp_path / 'notes.txt').write_text('')
    with pytest.raises(SequenceError, match='notes.txt: expected a frame folder'):
        open_source(tmp_path / 'notes.txt')
