"""A fusion run that fails leaves nothing behind: bad input found before the run or in the middle of it ends in
one line naming the file, exit status 2, and no output (no folder, no .partial)."""
import numpy as np
import pytest
import torch
import yaml

from xfusion.archs.edvrstf_arch import EDVRSTF
from xfusion.camera import area_average
from xfusion.commands import main
from xfusion.fusion.sinks import StackWriter
from xfusion.io.frames import write_frame

NET = dict(type='EDVRSTF', num_feat=8, deformable_groups=2, num_extract_block=1, num_reconstruct_block=1)
FRAMES, PERIOD = 9, 4


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp('exp')
    (root / 'models').mkdir()
    (root / 'models' / 'options.yml').write_text(yaml.safe_dump({'network_g': NET}))
    torch.manual_seed(0)
    net = EDVRSTF(**{k: v for k, v in NET.items() if k != 'type'})
    torch.save({'params': net.state_dict()}, root / 'models' / 'net_g_latest.pth')
    return str(root / 'models' / 'net_g_latest.pth')


@pytest.fixture(scope='module')
def experiment(tmp_path_factory):
    """LR frames (16x16) whose frame 5 is 12x16, and key frames every 4 steps: the error is found mid-run."""
    root = tmp_path_factory.mktemp('bad')
    rng = np.random.default_rng(0)
    for t in range(FRAMES):
        hr = rng.uniform(0.2, 0.8, (64, 64))
        lr = area_average(hr)
        write_frame(root / 'lr' / f'{t:04d}.png', np.rint((lr[:12] if t == 5 else lr) * 65535).astype(np.uint16))
        if t % PERIOD == 0:
            write_frame(root / 'hr' / f'{t:04d}.png', np.rint(hr * 65535).astype(np.uint16))
    return root


def one_line(capsys) -> str:
    """The error line a run ends with (after the progress bar of the frames done before it), and no traceback."""
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith('xfusion ') and ': error: ' in err[-1], err
    assert not any('Traceback' in line for line in err), err
    return err[-1]


def test_fuse_stopped_mid_run_leaves_no_output(experiment, checkpoint, tmp_path, capsys):
    for attempt in range(5):  # the writer thread once wrote a frame after the output was removed: not by chance
        out = tmp_path / f'out{attempt}'
        args = ['fuse', '--lr', str(experiment / 'lr'), '--hr', str(experiment / 'hr'), '--period', str(PERIOD),
                '--model', checkpoint, '--out', str(out), '--maps', str(tmp_path / f'maps{attempt}'),
                '--report', '--video', str(tmp_path / f'v{attempt}.mp4')]
        assert main(args) == 2
        assert '0005.png' in one_line(capsys)
        assert sorted(p.name for p in tmp_path.iterdir()) == [], list(tmp_path.iterdir())


def test_check_stopped_mid_run_leaves_no_output_folder(experiment, checkpoint, tmp_path, capsys):
    out = tmp_path / 'made' / 'check'
    args = ['check', '--lr', str(experiment / 'lr'), '--hr', str(experiment / 'hr'), '--period', str(PERIOD),
            '--model', checkpoint, '--out', str(out), '--video', str(tmp_path / 'v.mp4')]
    assert main(args) == 2
    assert '0005.png' in one_line(capsys)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / 'mine').mkdir()  # a folder that was there before stays
    assert main(args[:-4] + ['--out', str(tmp_path / 'mine')]) == 2
    capsys.readouterr()
    assert [p.name for p in tmp_path.iterdir()] == ['mine'] and not list((tmp_path / 'mine').iterdir())


def test_a_checkpoint_of_random_bytes_is_one_line(experiment, tmp_path, capsys):
    bad = tmp_path / 'random.pth'
    bad.write_bytes(np.random.default_rng(0).bytes(3000))
    (tmp_path / 'opt.yml').write_text(yaml.safe_dump({'network_g': NET}))
    out = tmp_path / 'check'
    assert main(['check', '--lr', str(experiment / 'lr'), '--hr', str(experiment / 'hr'), '--period', str(PERIOD),
                 '--model', f'stf={bad}', '--out', str(out)]) == 2
    line = one_line(capsys)
    assert str(bad) in line and 'unreadable checkpoint' in line and 'http' not in line
    assert not out.exists()


def test_abort_waits_for_the_write_in_flight(tmp_path, monkeypatch):
    import threading
    import time

    import xfusion.fusion.sinks as sinks
    started = threading.Event()

    def slow_write(path, frame):
        started.set()
        time.sleep(0.3)
        path.parent.mkdir(parents=True, exist_ok=True)  # as write_frame does: a late write makes the folder again
        path.write_bytes(b'frame')
    monkeypatch.setattr(sinks, 'write_frame', slow_write)
    writer = StackWriter(str(tmp_path / 'out'))
    writer.prepare({'run': 'this one'})
    writer.start()
    writer.add(0, np.zeros((8, 8), np.uint16))
    started.wait()
    writer.abort()
    time.sleep(0.5)  # past the write: nothing may appear after abort returned
    assert list(tmp_path.iterdir()) == []
