"""Fusion at facility scale: segments shared among torchrun's ranks (output identical to one process), many
experiments from a manifest, and a killed run finished by the same command."""
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
import yaml

from helpers import HANG_GUARD_S, free_port, moving_scene, write_pair_sequence
from xfusion.archs.edvrstf_arch import EDVRSTF
from xfusion.commands import main
from xfusion.fusion.ranks import share_segments
from xfusion.fusion.sinks import StackWriter
from xfusion.io.frames import read_frame

PERIOD = 4
WINDOW_NET = dict(type='EDVRSTF', num_feat=8, deformable_groups=2, num_extract_block=1, num_reconstruct_block=1)


def window_checkpoint(root):
    """A small window network (EDVRSTF) with random weights, as a training run leaves it."""
    (root / 'models').mkdir(parents=True)
    (root / 'models' / 'options.yml').write_text(yaml.safe_dump({'network_g': WINDOW_NET}))
    torch.manual_seed(0)
    net = EDVRSTF(**{k: v for k, v in WINDOW_NET.items() if k != 'type'})
    torch.save({'params': net.state_dict()}, root / 'models' / 'net_g_latest.pth')
    return root / 'models' / 'net_g_latest.pth'


def experiment(root, frames=26, seed=0):
    """LR frames and HR key frames (every PERIOD steps) of a small moving scene: 7 segments at 26 frames."""
    write_pair_sequence(root / 'HR', root / 'LR', moving_scene(frames, (32, 32), seed=seed), np.uint16)
    (root / 'keys').mkdir()
    for frame in sorted((root / 'HR').iterdir())[::PERIOD]:
        shutil.copy(frame, root / 'keys' / frame.name)
    return root / 'LR', root / 'keys'


def frames_of(out):
    if str(out).endswith('.h5'):
        with h5py.File(out) as f:
            return f['/exchange/data'][()]
    return np.stack([read_frame(p) for p in sorted(out.glob('*.tif'))])


def sidecar_of(out):
    path = out.with_name(out.name + '.json') if str(out).endswith('.h5') else out / 'xfusion.json'
    sidecar = json.loads(path.read_text())
    for key in ('created',):
        sidecar.pop(key)
    for key in ('seconds', 'processes'):
        sidecar['run'].pop(key)
    for key in ('maps', 'file'):  # the names of the maps folder and of consistency.csv
        sidecar['consistency'].pop(key)
    return sidecar


def beside(out, name):
    return out.with_name(f'{out.name}.{name}') if str(out).endswith('.h5') else out / name


def assert_same_fusion(a, b):
    assert np.array_equal(frames_of(a), frames_of(b))
    assert beside(a, 'consistency.csv').read_text() == beside(b, 'consistency.csv').read_text()
    assert sidecar_of(a) == sidecar_of(b)


def test_segments_are_shared_contiguously_by_frame_count():
    segments = [(0, 1), (1, 5), (5, 9), (9, 13), (13, 17), (17, 20)]
    shares = share_segments(segments, 2)
    assert shares == [[(0, 1), (1, 5), (5, 9)], [(9, 13), (13, 17), (17, 20)]]
    assert share_segments(segments, 1) == [segments]
    four = share_segments(segments[:2], 4)  # fewer segments than ranks: some ranks have none
    assert sum(four, []) == segments[:2] and len(four) == 4
    assert share_segments([], 3) == [[], [], []]


def fuse_args(lr, keys, out, *extra):
    return ['fuse', '--lr', str(lr), '--hr', str(keys), '--period', str(PERIOD), '--out', str(out), *extra]


def test_an_interrupted_fusion_is_finished_by_the_same_command(tmp_path, monkeypatch, capsys):
    lr, keys = experiment(tmp_path)
    model = ['--model', 'propstf']
    assert main(fuse_args(lr, keys, tmp_path / 'whole', *model, '--maps', str(tmp_path / 'whole_maps'))) == 0
    recorded = []
    record = StackWriter.record

    def stop_after_two(self, *args):  # a kill after the second segment is on disk
        record(self, *args)
        recorded.append(args[0])
        if len(recorded) == 2:
            raise KeyboardInterrupt
    monkeypatch.setattr(StackWriter, 'record', stop_after_two)
    out, maps = tmp_path / 'out', tmp_path / 'maps'
    with pytest.raises(KeyboardInterrupt):
        main(fuse_args(lr, keys, out, *model, '--maps', str(maps)))
    monkeypatch.setattr(StackWriter, 'record', record)
    assert 'run the same command again' in capsys.readouterr().out
    partial = tmp_path / 'out.partial'
    assert not out.exists() and len(list((partial / '.progress').glob('*-*.json'))) == 2
    assert len(list(partial.glob('*.tif'))) == 8  # the segments [0, 4) and [4, 8)
    # a frame of a recorded segment that was changed afterwards (a half-written copy) is not taken as done
    damaged = partial / f'{recorded[1][0]:08d}.tif'
    damaged.write_bytes(damaged.read_bytes()[:100])
    assert main(fuse_args(lr, keys, out, *model, '--maps', str(maps))) == 0
    said = capsys.readouterr().out
    assert 'resuming' in said and '1 of 7 segments already written' in said
    assert_same_fusion(out, tmp_path / 'whole')
    whole_maps = sorted((tmp_path / 'whole_maps').iterdir())
    assert [p.name for p in sorted(maps.iterdir())] == [p.name for p in whole_maps] and len(whole_maps) == 26
    assert all(np.array_equal(read_frame(p), read_frame(maps / p.name)) for p in whole_maps)
    assert not partial.exists() and not (tmp_path / 'maps.partial').exists()


def test_a_partial_output_of_another_fusion_is_not_resumed(tmp_path, capsys):
    lr, keys = experiment(tmp_path)
    (tmp_path / 'out.partial' / '.progress').mkdir(parents=True)
    (tmp_path / 'out.partial' / '.progress' / 'run.json').write_text('{"model": "another"}')
    (tmp_path / 'out.partial' / '00000000.tif').write_bytes(b'old')
    assert main(fuse_args(lr, keys, tmp_path / 'out', '--model', 'propstf')) == 0
    assert 'resuming' not in capsys.readouterr().out
    assert read_frame(tmp_path / 'out' / '00000000.tif').shape == (32, 32)


def test_a_manifest_fuses_every_experiment_skips_finished_ones_and_reports_failures(tmp_path, capsys):
    rows = ['lr,hr,out,period']
    for i in range(3):
        lr, keys = experiment(tmp_path / f'e{i}', frames=9, seed=i)
        rows.append(f'{lr},{keys},{tmp_path / f"out{i}.h5" if i == 2 else tmp_path / f"out{i}"},'
                    f'{PERIOD if i == 1 else ""}')
    rows.append(f'{tmp_path / "missing"},{keys},{tmp_path / "out3"},')
    (tmp_path / 'm.csv').write_text('\n'.join(rows) + '\n')
    args = ['fuse', '--manifest', str(tmp_path / 'm.csv'), '--period', str(PERIOD), '--model', 'propstf']
    assert main(args) == 1  # one experiment failed, the others were fused
    said = capsys.readouterr().out
    assert '[1/4]' in said and '[4/4]' in said and 'failed' in said and '| output | frames |' in said
    for i, out in enumerate([tmp_path / 'out0', tmp_path / 'out1', tmp_path / 'out2.h5']):
        assert frames_of(out).shape == (9, 32, 32)
        alone = tmp_path / f'alone{i}' if i < 2 else tmp_path / 'alone2.h5'
        assert main(fuse_args(tmp_path / f'e{i}' / 'LR', tmp_path / f'e{i}' / 'keys', alone, '--model', 'propstf')) == 0
        assert_same_fusion(out, alone)  # each as a run of its own writes it
    assert not (tmp_path / 'out3').exists()
    capsys.readouterr()
    assert main(args) == 1
    assert said.count('done before') == 0 and capsys.readouterr().out.count('done before, skipped') == 3


def test_bad_manifests_are_one_line_errors(tmp_path, capsys):
    cases = {'lr,hr\na,b\n': "no column 'out'", 'lr,hr,out,speed\na,b,c,1\n': "unknown column 'speed'",
             'lr,hr,out\na,b,c\nd,e,c\n': 'given twice', 'lr,hr,out,period\na,b,c,x\n': 'whole number',
             'lr,hr,out\n': 'no experiments', 'lr,hr,out\na,,c\n': 'line 2: no hr'}
    for text, message in cases.items():
        (tmp_path / 'm.csv').write_text(text)
        assert main(['fuse', '--manifest', str(tmp_path / 'm.csv')]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (text, err)
    assert main(['fuse', '--manifest', str(tmp_path / 'm.csv'), '--lr', 'x']) == 2
    assert 'leave --lr' in capsys.readouterr().err


def torchrun(cwd, *args):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    command = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={free_port()}',
               '-m', 'xfusion', *args]
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=HANG_GUARD_S, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_two_processes_write_what_one_process_writes(tmp_path):
    lr, keys = experiment(tmp_path)
    window = window_checkpoint(tmp_path / 'window')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    for name, model, out in (('segment', 'propstf', 'seg'), ('window', str(window), 'win.h5')):
        single, double = tmp_path / f'one_{out}', tmp_path / f'two_{out}'
        subprocess.run([sys.executable, '-m', 'xfusion', *fuse_args(lr, keys, single, '--model', model, '--report')],
                       check=True, env=env, capture_output=True, timeout=HANG_GUARD_S)
        said = torchrun(tmp_path, *fuse_args(lr, keys, double, '--model', model, '--report'))
        assert said.count('fused sequence written to') == 1, name  # rank 0 speaks
        assert_same_fusion(single, double)
        assert json.loads((double.with_name(double.name + '.json') if out.endswith('.h5') else
                           double / 'xfusion.json').read_text())['run']['processes'] == 2
        assert beside(double, 'report.html').stat().st_size > 10_000
    rows = ['lr,hr,out'] + [f'{lr},{keys},{tmp_path / f"m{i}"}' for i in range(2)]
    (tmp_path / 'm.csv').write_text('\n'.join(rows) + '\n')
    said = torchrun(tmp_path, 'fuse', '--manifest', str(tmp_path / 'm.csv'), '--period', str(PERIOD), '--model',
                    'propstf')
    assert said.count('| output | frames |') == 1
    for i in range(2):
        assert_same_fusion(tmp_path / f'm{i}', tmp_path / 'one_seg')


KILLER = '''
import os, signal, sys
from xfusion.fusion import sinks
record = sinks.StackWriter.record
def record_then_die(self, *args):  # a kill, not an exception: nothing of Python's clean-up runs
    record(self, *args)
    if int(os.environ.get('RANK', '0')) == int(os.environ['DIE_ON_RANK']):
        os.kill(os.getpid(), signal.SIGKILL)
sinks.StackWriter.record = record_then_die
from xfusion.commands import main
sys.exit(main(sys.argv[1:]))
'''


@pytest.mark.slow
def test_a_killed_rank_and_a_restart_give_the_output_of_an_undisturbed_run(tmp_path):
    lr, keys = experiment(tmp_path)
    (tmp_path / 'killer.py').write_text(KILLER)
    args = fuse_args(lr, keys, tmp_path / 'out', '--model', 'propstf')
    env = dict(os.environ, OMP_NUM_THREADS='1', DIE_ON_RANK='1')  # one thread per process, as torchrun() runs
    subprocess.run([sys.executable, '-m', 'xfusion', *fuse_args(lr, keys, tmp_path / 'whole', '--model', 'propstf')],
                   check=True, env=env, capture_output=True, timeout=HANG_GUARD_S)
    killed = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
                             f'--master_port={free_port()}', str(tmp_path / 'killer.py'), *args], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert killed.returncode != 0 and not (tmp_path / 'out').exists()
    records = list((tmp_path / 'out.partial' / '.progress').glob('*-*.json'))
    assert 1 <= len(records) < 7  # rank 1 died after its first segment; rank 0 was stopped by torchrun
    said = torchrun(tmp_path, *args)
    assert f'{len(records)} of 7 segments already written' in said
    assert_same_fusion(tmp_path / 'out', tmp_path / 'whole')
