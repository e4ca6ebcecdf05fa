"""Fusion over several processes: the wall time of ``xfusion fuse`` with 2 processes of 1 thread (torchrun) against
1 process of 1 thread, on one recording and on a manifest of 3 experiments.

    python benchmarks/fuse_scaling.py      # about 5 minutes on 2 cores; writes docs/results/fuse_scaling.json

The recording is synthetic (``xfusion synth xray``, a wing, HR 256x256, 241 frames, key frames every 20: 13
segments), fused by the packaged recommended network; each configuration runs ``--repeats`` times and keeps its
fastest run, and the outputs of one and two processes are compared frame by frame. Besides the whole command, the
fusion stage alone (the sidecar's seconds: without the start-up every process makes, imports, network, camera fit).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import record

from xfusion.io.frames import read_frame

ROOT = Path(__file__).resolve().parents[1]
PERIOD = 20


def make_recording(root: Path, frames: int, seed: int) -> tuple[Path, Path]:
    """A synthetic experiment as the cameras give it: every LR frame, HR key frames every PERIOD steps."""
    subprocess.run([sys.executable, '-m', 'xfusion', 'synth', 'xray', '--out', str(root), '--sequences', '1',
                    '--frames', str(frames), '--hr-size', '256', '256', '--families', 'wing', '--seed', str(seed)],
                   check=True, capture_output=True)
    keys = root / 'keys'
    keys.mkdir()
    for frame in sorted((root / 'seq_000' / 'HR').iterdir())[::PERIOD]:
        shutil.copy(frame, keys / frame.name)
    return root / 'seq_000' / 'LR', keys


def timed(args: list[str], processes: int, cwd: Path) -> float:
    """Seconds of one ``xfusion`` command on ``processes`` processes of one thread each."""
    launcher = [sys.executable, '-m', 'xfusion'] if processes == 1 else [
        sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={processes}', '--master_port=29631',
        '-m', 'xfusion']
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    started = time.perf_counter()
    subprocess.run(launcher + args, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def best_of(repeats: int, make_args, processes: int, work: Path, name: str) -> tuple[float, Path]:
    """The fastest of ``repeats`` runs (each into a new output), and the output of the last."""
    times = []
    for i in range(repeats):
        out = work / f'{name}_{processes}_{i}'
        times.append(timed(make_args(out), processes, work))
        if i < repeats - 1:
            shutil.rmtree(out, ignore_errors=True)
    return min(times), out


def fusion_seconds(out: Path) -> float:
    """The seconds of the fusion itself (after the start-up: imports, network, camera fit), from the sidecar."""
    return json.loads((out / 'xfusion.json').read_text())['run']['seconds']


def frames(out: Path) -> np.ndarray:
    return np.stack([read_frame(p) for p in sorted(out.glob('*.tif'))])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=241)
    parser.add_argument('--repeats', type=int, default=2)
    parser.add_argument('--json', default='docs/results/fuse_scaling.json')
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        lr, keys = make_recording(work / 'recording', args.frames, seed=7)
        segments = len(range(0, args.frames, PERIOD)) + (1 if (args.frames - 1) % PERIOD else 0)

        def fuse_args(out: Path) -> list[str]:
            return ['fuse', '--lr', str(lr), '--hr', str(keys), '--period', str(PERIOD), '--out', str(out)]
        one, out_one = best_of(args.repeats, fuse_args, 1, work, 'fused')
        two, out_two = best_of(args.repeats, fuse_args, 2, work, 'fused')
        identical = bool(np.array_equal(frames(out_one), frames(out_two)))
        stage_one, stage_two = fusion_seconds(out_one), fusion_seconds(out_two)
        print(f'one recording ({args.frames} frames, {segments} segments): 1 process {one:.1f} s, 2 processes '
              f'{two:.1f} s, ratio {two / one:.2f} (the fusion stage alone: {stage_one:.1f} and {stage_two:.1f} s, '
              f'{stage_two / stage_one:.2f}); outputs identical: {identical}')
        experiments = [make_recording(work / f'e{i}', 61, seed=10 + i) for i in range(3)]

        def manifest_args(out: Path) -> list[str]:
            out.mkdir()
            rows = ['lr,hr,out'] + [f'{lr},{keys},{out / f"e{i}"}' for i, (lr, keys) in enumerate(experiments)]
            (out / 'manifest.csv').write_text('\n'.join(rows) + '\n')
            return ['fuse', '--manifest', str(out / 'manifest.csv'), '--period', str(PERIOD)]
        m_one, _ = best_of(args.repeats, manifest_args, 1, work, 'manifest')
        m_two, _ = best_of(args.repeats, manifest_args, 2, work, 'manifest')
        print(f'manifest of 3 experiments (61 frames each): 1 process {m_one:.1f} s, 2 processes {m_two:.1f} s, '
              f'ratio {m_two / m_one:.2f}')
    record.write(ROOT / args.json, {
        **record.header(), 'model': 'propstf (packaged)', 'threads_per_process': 1, 'repeats': args.repeats,
        'recording': {'frames': args.frames, 'hr_size': [256, 256], 'period': PERIOD, 'segments': segments,
                      'one_process_s': one, 'two_processes_s': two, 'ratio': two / one, 'identical': identical,
                      'fusion_stage_s': [stage_one, stage_two]},
        'manifest': {'experiments': 3, 'frames_each': 61, 'one_process_s': m_one, 'two_processes_s': m_two,
                     'ratio': m_two / m_one}})
    return 0


if __name__ == '__main__':
    sys.exit(main())
