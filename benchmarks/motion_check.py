"""How far a PropSTF network's whole-frame motion is from the truth, and what the truth would give it.

    python benchmarks/motion_check.py --model experiments/demo_finetune_xray_prop/models/net_g_latest.pth \
        --data datasets/demo/xray/val --period 20 [--b0 1000] [--out results/motion_check]

Sequences written by ``xfusion synth xray`` know their truth: the seed and index in meta.json remake the
sample's displacement at every frame (``xfusion.synth.xray.true_sample_motion``). For each sequence, over the
segments of the key-frame schedule that have a key frame at both ends:

- the error of the whole-frame shifts the network starts its flows from (``PropSTF.global_steps``: each frame
  against the key frame before it and the one after it), in LR pixels, over the frames between key frames;
- the network's mean PSNR over those frames (float convention) with its own shifts, and with the true ones
  in their place: the difference is what exact whole-frame motion would give this network as it is trained.

LR noise (``--b0``) is evaluate's own (the same seed). Writes ``<out>/motion.md``, ``<out>/motion.json`` (with
every frame's measured and true shifts, per segment) and ``<out>/motion.png``: per sequence, the measured
shifts against the first key frame of each segment beside the true ones, x and y, so that one sees where an
estimate leaves the truth (stuck at no motion, or jumped to another match).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from xfusion.archs.propstf_arch import PropSTF
from xfusion.checkpoint import load_network
from xfusion.errors import InputError
from xfusion.fusion.evaluate import noisy_lr
from xfusion.io.sequence import open_xray_root
from xfusion.metrics import calculate_psnr_stf
from xfusion.schedule import KeySchedule, check_period
from xfusion.synth.xray import true_sample_motion


def shifts_from_steps(forward_steps: torch.Tensor, backward_steps: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """global_steps' (N-1, 2) steps of one segment -> (N, 2) shifts against its first and against its last
    position (flow_warp(key, shift) ~ frame, LR pixels)."""
    zero = forward_steps.new_zeros(1, 2)
    forward = torch.cat([zero, forward_steps.cumsum(0)])
    backward = torch.cat([backward_steps.flip(0).cumsum(0).flip(0), zero])  # step i: position i against i + 1
    return forward.numpy(), backward.numpy()


def exact_steps(forward: np.ndarray, backward: np.ndarray) -> tuple[torch.Tensor, ...]:
    """What ``PropSTF.global_steps`` returns for the true shifts (N, 2) of one segment."""
    f, b = (torch.from_numpy(x.astype(np.float32)) for x in (forward, backward))
    moved = torch.minimum(f.norm(dim=1), b.norm(dim=1))[None]
    return f[1:] - f[:-1], b[:-1] - b[1:], moved


def check_sequence(net, seq, meta: dict, period: int, b0: float | None) -> dict:
    scale = net.scale
    offsets = true_sample_motion(meta)[:, ::-1] / scale  # (T, 2): (x, y) in LR pixels
    lr = noisy_lr(seq, b0, seed=0)
    schedule = KeySchedule.every(period, seq.num_frames)
    errors, own, true, segments = [], [], [], []
    for start, stop in schedule.segments():
        if not {start, stop} <= set(schedule.key_times):  # a sequence's ends: one key frame only
            continue
        span = range(start, stop + 1)
        lq = torch.from_numpy(np.ascontiguousarray(lr[start:stop + 1]))[None, :, None].float()
        hq = torch.from_numpy(np.stack([seq.read_hr(start), seq.read_hr(stop)]))[None, :, None].float()
        key_pos = torch.tensor([[0, stop - start]])
        between = torch.tensor([[t - start for t in span if t not in (start, stop)]])
        with torch.no_grad():
            own_steps = net.global_steps(lq, hq, key_pos)
        forward, backward = shifts_from_steps(*own_steps[:2])
        true_forward, true_backward = offsets[span] - offsets[start], offsets[span] - offsets[stop]
        inner = between[0].numpy()
        errors += list(np.linalg.norm(forward - true_forward, axis=1)[inner])
        errors += list(np.linalg.norm(backward - true_backward, axis=1)[inner])
        segments.append({'start': start, 'stop': stop, **{name: np.round(value, 3).tolist() for name, value in (
            ('forward', forward), ('backward', backward), ('true_forward', true_forward),
            ('true_backward', true_backward))}})

        gt = [seq.read_hr(t) for t in span if t not in (start, stop)]
        for results, steps in ((own, own_steps), (true, exact_steps(true_forward, true_backward))):
            with torch.no_grad():  # the motion measured once above, or the true one, given to the network
                out = net(lq, hq, key_pos, between, motion=steps)[0, :, 0].clamp(0, 1).numpy()
            results += [calculate_psnr_stf(o, g, convention='float') for o, g in zip(out, gt)]
    if not errors:
        raise InputError(f'{seq.name}: no segment with a key frame at both ends at period {period}')
    return {'sequence': seq.name, 'sample_motion': meta['sample_motion']['kind'],
            'shift_error_mean': float(np.mean(errors)), 'shift_error_p90': float(np.percentile(errors, 90)),
            'psnr_own_motion': float(np.mean(own)), 'psnr_true_motion': float(np.mean(true)), 'segments': segments}


def table(rows: list[dict]) -> str:
    lines = ['| sequence | sample motion | shift error, mean / 90th pct. (LR px) | PSNR, own motion | '
             'PSNR, true motion | gain |', '|---|---|---|---|---|---|']
    for r in rows + [{'sequence': 'mean', 'sample_motion': '', **{k: float(np.mean([r[k] for r in rows])) for k in (
            'shift_error_mean', 'shift_error_p90', 'psnr_own_motion', 'psnr_true_motion')}}]:
        lines.append(f"| {r['sequence']} | {r['sample_motion']} | {r['shift_error_mean']:.2f} / "
                     f"{r['shift_error_p90']:.2f} | {r['psnr_own_motion']:.2f} | {r['psnr_true_motion']:.2f} | "
                     f"{r['psnr_true_motion'] - r['psnr_own_motion']:+.2f} |")
    return '\n'.join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """motion.png: a row per sequence, x and y: each segment's measured shifts against its first key frame
    (dots) over the true ones (line), in LR pixels."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(rows), 2, figsize=(9, 2.2 * len(rows)), squeeze=False, sharex=True)
    for (ax_x, ax_y), row in zip(axes, rows):
        for seg in row['segments']:
            times = np.arange(seg['start'], seg['stop'] + 1)
            measured, true = np.asarray(seg['forward']), np.asarray(seg['true_forward'])
            for axis, ax in enumerate((ax_x, ax_y)):
                ax.plot(times, true[:, axis], color='0.3', lw=1.5)
                ax.plot(times, measured[:, axis], '.', color='tab:red', ms=4)
                ax.axvline(seg['start'], color='0.85', lw=0.8)
        ax_x.set_ylabel(f"{row['sequence']}\n{row['sample_motion']}", fontsize=8)
    axes[0, 0].set_title('x (LR px)', fontsize=9)
    axes[0, 1].set_title('y (LR px)', fontsize=9)
    axes[-1, 0].set_xlabel('frame')
    axes[-1, 1].set_xlabel('frame')
    fig.suptitle('whole-frame shift against the segment\'s first key frame: measured (dots), true (line)', fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', required=True, help='a PropSTF checkpoint')
    parser.add_argument('--data', default='datasets/demo/xray/val', help='sequences of xfusion synth xray')
    parser.add_argument('--period', type=int, default=20)
    parser.add_argument('--b0', type=float, default=None, help='LR photon noise (default: the clean frames)')
    parser.add_argument('--out', default='results/motion_check')
    args = parser.parse_args(argv)
    try:
        check_period(args.period, '--period')
        net, _ = load_network(args.model)
        if not isinstance(net, PropSTF):
            raise InputError(f'{args.model}: not a key-frame network that measures whole-frame motion '
                             f'(a PropSTF), but {type(net).__name__}')
        rows = []
        for seq in open_xray_root(args.data):
            meta_path = Path(args.data) / seq.name / 'meta.json'
            if not meta_path.is_file():
                raise InputError(f'{meta_path}: not found (only sequences of xfusion synth xray know their motion)')
            rows.append(check_sequence(net, seq, json.loads(meta_path.read_text()), args.period, args.b0))
            print(f"{seq.name}: shift error {rows[-1]['shift_error_mean']:.2f} LR px, PSNR "
                  f"{rows[-1]['psnr_own_motion']:.2f} -> {rows[-1]['psnr_true_motion']:.2f} dB with the true motion",
                  flush=True)
    except InputError as error:
        print(f'motion_check.py: error: {error}', file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {'model': args.model, 'data': args.data, 'period': args.period, 'b0': args.b0}
    (out / 'motion.json').write_text(json.dumps({**settings, 'sequences': rows}, indent=1) + '\n')
    plot(rows, out / 'motion.png')
    text = table(rows)
    (out / 'motion.md').write_text(f'# Whole-frame motion against the truth\n\n{settings}\n\n{text}\n')
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
