"""``xfusion check``: how good fusion is on the user's own data, from held-out key frames.

A real experiment has no HR frame between its key frames, so nothing there can be scored. The key frames
themselves can: each interior key frame k is held out in turn (``KeySchedule.without(k)``), the time step k
is fused from the key frames that remain, and the result is scored against the HR frame the camera
recorded at k (PSNR, SSIM, AAD in the conventions of ``evaluate``: paper for 8-bit data, float otherwise).
With key frames every D steps, the held-out frame sits D steps from both of its remaining neighbours, in the
middle of a gap of 2D: the hardest frame of a schedule twice as sparse. The scores are a pessimistic estimate
of fusion at period D, and for a virtual experiment they equal what ``evaluate`` gives for those frames at
period 2D. Every registered network (window or segment kind, through ``SequenceInference``, tiled as ``fuse``
tiles) and every classical baseline can be checked. Where ``--transform`` maps the HR camera onto the LR grid,
only pixels both cameras saw are scored (the largest rectangle inside the HR field of view).

Each held-out frame also gets its LR consistency (chi2, as ``fuse`` writes it in consistency.csv), so that the
two can be compared on the user's own data. Outputs: ``holdout.csv``, ``summary.md``, ``report.html``
(``--video``: an .mp4 of its player).
"""
from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from xfusion.baselines import BASELINES
from xfusion.camera import SCALE
from xfusion.checkpoint import load_network
from xfusion.commands.evaluate import METRICS, _cell, check_methods, named, parse_list, run_baseline, shown_method
from xfusion.commands.fuse import (
    FrameCache,
    add_consistency_arguments,
    add_schedule_arguments,
    check_b0,
    fit_camera,
    grid_warp,
    key_frame_schedule,
    open_cameras,
    pad_to_multiple,
    quantum_of,
    tiled_fusion,
)
from xfusion.errors import InputError
from xfusion.inference import PRECISIONS
from xfusion.metrics.stf_metrics import CONVENTIONS
from xfusion.options_check import check_writable
from xfusion.report import Player, Section, VideoWriter, check_video_path, display_window, upsampled, write_report
from xfusion.schedule import FrameSource, check_lr_sep
from xfusion.version import __version__

HELP = 'score fusion on your own data: each interior key frame held out, fused from the others and compared'
CSV_COLUMNS = ['method', 'frame', 'psnr', 'ssim', 'aad', 'chi2', 'gap', 'k0', 'k1']


class StackedFrames:
    """LR frames read on demand and stacked by a list of time steps (what ``run_baseline`` indexes)."""

    def __init__(self, read: Callable[[int], np.ndarray]):
        self.read = read

    def __getitem__(self, times) -> np.ndarray:
        return np.stack([self.read(int(t)) for t in np.atleast_1d(times)])


def largest_rectangle(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the largest axis-aligned rectangle of True pixels (histogram method, one pass)."""
    h, w = mask.shape
    heights = np.zeros(w, int)
    best, box = 0, (0, 0, 0, 0)
    for y in range(h):
        heights = np.where(mask[y], heights + 1, 0)
        stack: list[int] = []
        for x in range(w + 1):
            current = heights[x] if x < w else 0
            while stack and heights[stack[-1]] >= current:
                top = stack.pop()
                left = stack[-1] + 1 if stack else 0
                area = heights[top] * (x - left)
                if area > best:
                    best, box = area, (int(y - heights[top] + 1), y + 1, left, x)
            stack.append(x)
    return box


def check(lr: str, hr: str, out: str, period: int | None = None, offset: int = 0, hr_index: str | None = None,
          time_offset: float = 0.0, lr_sep: int = 1, transform: str | None = None,
          networks: dict[str, str] | None = None, options: dict[str, str] | None = None,
          methods: list[str] | None = None, tile: int = 0, overlap: int = 8, device: str = 'cpu', batch: int = 1,
          precision: str = 'fp32', convention: str | None = None, value_range: tuple[float, float] | None = None,
          flat_correction: bool = True, b0: float | None = None, report: bool = True, video: str | None = None,
          progress: bool = True) -> dict:
    """Hold out every interior key frame in turn, fuse it with every method and score it; returns
    {'rows': [...], 'out': Path, 'region': (y0, y1, x0, x1), 'convention': str, 'seconds': float}."""
    # --- check everything before writing anything
    networks, options = networks or {}, options or {}
    methods = list(methods) if methods else list(BASELINES) + list(networks)
    check_methods(methods, networks, options)
    if convention is not None and convention not in CONVENTIONS:
        raise InputError(f'--convention must be one of {", ".join(CONVENTIONS)}, got {convention!r}')
    lr_stack, hr_stack = open_cameras(lr, hr, value_range, flat_correction)
    num_frames, (h, w) = len(lr_stack), lr_stack.shape
    schedule, hr_frames, time_match = key_frame_schedule(lr_stack, hr_stack, period, offset, hr_index, time_offset)
    held_out = list(schedule.key_times[1:-1])
    if not held_out:
        raise InputError(f'{len(schedule.key_times)} key frames: check holds out interior key frames (each fused '
                         'from the key frames before and after it), so it needs at least 3')
    lr_sep = check_lr_sep(lr_sep, num_frames)
    b0 = check_b0(b0)
    grid = (h * SCALE, w * SCALE)
    warp, seen = grid_warp(transform, hr_stack, (h, w))
    y0, y1, x0, x1 = (0, h, 0, w) if seen is None else largest_rectangle(seen)
    region = (y0 * SCALE, y1 * SCALE, x0 * SCALE, x1 * SCALE)  # scored HR pixels: both cameras saw them
    if min(y1 - y0, x1 - x0) * SCALE < 7:  # SSIM's window
        raise InputError(f'{transform}: the HR field of view covers too little of the LR frame to score '
                         '(less than 7x7 HR pixels seen by both cameras)')
    convention = convention or ('paper' if hr_stack.dtype == np.uint8 else 'float')
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise InputError('--device cuda: no CUDA device here; use --device cpu')
    nets = {m: load_network(networks[m], options.get(m), device) for m in methods if m in networks}
    for name, (net, _) in nets.items():
        if tile and (tile % net.lr_multiple or tile <= 2 * overlap):
            raise InputError(f'--tile must be a multiple of {net.lr_multiple} (network {name}) larger than twice '
                             f'--overlap, got {tile} / {overlap}')
    video_path = check_video_path(video)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f'--out {out}: exists and is not a folder')
    existing = next(p for p in (out, *out.parents) if p.exists())
    check_writable(str(existing))  # an existing folder: nothing is made before the run starts

    position = dict(zip(schedule.key_times, hr_frames))

    def key_on_grid(k: int) -> np.ndarray:
        img = hr_stack.read_unit(position[k])
        return warp[0](img, warp[1], output_shape=grid) if warp is not None else img

    read_key = FrameCache(key_on_grid, capacity=8)
    read_lr = FrameCache(lr_stack.read_unit, capacity=4 * lr_sep + 8)
    camera = fit_camera(read_lr, read_key, schedule.key_times, (h, w), seen, b0, quantum_of(lr_stack))
    out.mkdir(parents=True, exist_ok=True)

    # --- every method on every held-out key frame
    shown = shown_method(methods, list(nets))
    player = Player('held-out key frames', ['LR (upsampled)', shown, 'nearest remaining key frame',
                                            'recorded HR frame (held out)'],
                    display_window([read_key(schedule.key_times[0])]), list(schedule.key_times), num_frames,
                    times=held_out, note=f'each frame fused without its own key frame; PSNR in the {convention} '
                                         'convention on the pixels both cameras saw')
    movie = VideoWriter(video_path) if video_path is not None else None
    padded_readers: dict[int, tuple[FrameCache, FrameCache]] = {}
    rows, started = [], time.time()
    bar = tqdm(total=len(methods) * len(held_out), unit='frame', desc='check', disable=not progress)
    try:
        for method in methods:
            for k in held_out:
                without = schedule.without(k)
                k0, k1 = without.bracket(k)
                if method in nets:
                    net = nets[method][0]
                    multiple = net.lr_multiple
                    if multiple not in padded_readers:  # frames padded to the network's multiple, read once
                        padded_readers[multiple] = (
                            FrameCache(lambda t, m=multiple: pad_to_multiple(read_lr(t), m), capacity=4 * lr_sep + 8),
                            FrameCache(lambda t, m=multiple: pad_to_multiple(read_key(t), m * SCALE), capacity=4))
                    lr_pad, key_pad = padded_readers[multiple]
                    ph, pw = h + (-h) % multiple, w + (-w) % multiple
                    ((_, frame),) = tiled_fusion(net, lr_pad, key_pad, without, lr_sep, (ph, pw), tile, overlap,
                                                 times=[k], device=device, batch=batch, precision=precision)
                    pred = frame[:grid[0], :grid[1]].numpy()
                else:
                    source = FrameSource(read_lr, read_key, without, lr_sep)
                    ((_, pred),) = run_baseline(method, source, StackedFrames(read_lr), times=[k])
                pred = np.clip(pred, 0, 1).astype(np.float32)
                truth = read_key(k)
                scored = np.s_[region[0]:region[1], region[2]:region[3]]
                row = {'method': method, 'frame': k, 'gap': k1 - k0, 'k0': k0, 'k1': k1,
                       'chi2': camera.chi2(pred, read_lr(k), seen)}
                row.update({name: fn(pred[scored], truth[scored], convention=convention)
                            for name, fn in METRICS.items()})
                rows.append(row)
                if method == shown:
                    nearest = k0 if k - k0 <= k1 - k else k1
                    panels = [upsampled(read_lr(k), grid), pred, read_key(nearest), truth]
                    player.add(k, panels)
                    if movie is not None:
                        movie.add(panels, player.window, player.labels,
                                  f'held out step {k}  {method} {row["psnr"]:.2f} dB')
                bar.update(1)
    except BaseException:
        if movie is not None:
            movie.abort()
        raise
    finally:
        bar.close()
    seconds = time.time() - started

    with open(out / 'holdout.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    settings = {'software': f'xfusion {__version__}', 'created': time.strftime('%Y-%m-%d %H:%M:%S'),
                'lr': lr, 'hr': hr, 'frames': num_frames, 'lr_shape': [h, w], 'dtype': str(hr_stack.dtype),
                'key_times': list(schedule.key_times), 'held_out': held_out, 'period': period, 'offset': offset,
                'hr_index': hr_index, 'time_matching': time_match is not None, 'lr_sep': lr_sep,
                'transform': transform, 'scored_region_hr_px (y0, y1, x0, x1)': list(region),
                'methods': methods, 'networks': networks, 'option files': options, 'convention': convention,
                'camera_model': camera.summary(), 'tile': tile, 'overlap': overlap, 'device': device,
                'precision': precision, 'seconds': round(seconds, 1)}
    text = summary_markdown(rows, methods, settings)
    (out / 'summary.md').write_text(text)
    if movie is not None:
        movie.close()
    if report:
        player.series = {m: {r['frame']: r['psnr'] for r in rows if r['method'] == m} for m in methods}
        write_report(out / 'report.html', 'XFusion check: held-out key frames', f'{lr} + {hr}', [player],
                     [Section('Summary', 'markdown', text.split('\n', 1)[1])], settings)
    return {'rows': rows, 'out': out, 'region': region, 'convention': convention, 'seconds': seconds,
            'camera': camera}


def _spread(values: list[float]) -> str:
    return f'{np.mean(values):.3g} ± {np.std(values):.2g}' if values else '-'


def summary_markdown(rows: list[dict], methods: list[str], settings: dict) -> str:
    keys, held = settings['key_times'], settings['held_out']
    y0, y1, x0, x1 = settings['scored_region_hr_px (y0, y1, x0, x1)']
    gaps = sorted({r['gap'] for r in rows})
    gap_text = f'{gaps[0]}' if len(gaps) == 1 else f'{gaps[0]} to {gaps[-1]}'
    period = settings['period'] or (f'about {np.median(np.diff(keys)):g}' if len(keys) > 1 else '-')
    lines = [
        '# XFusion check: held-out key frames', '',
        f'LR `{settings["lr"]}`, HR `{settings["hr"]}`: {settings["frames"]} time steps, {len(keys)} key frames '
        f'(period {period}); the {len(held)} interior ones held out in turn.', '',
        'What the numbers mean: each held-out key frame is fused from the key frames that remain, so it sits in '
        f'the middle of a gap of {gap_text} steps (twice the period), as far as possible from both key frames. '
        'No frame of the real schedule is that far from a key frame, so these scores are a **pessimistic '
        'estimate** of fusion at the experiment\'s own period: they are what `xfusion evaluate` would give for '
        'the hardest frame at twice the period. They are measured against the HR frame the camera recorded, '
        f'in the `{settings["convention"]}` convention, on the HR pixels that both cameras saw (rows {y0}..{y1 - 1}, '
        f'columns {x0}..{x1 - 1} of the {SCALE * settings["lr_shape"][0]} x {SCALE * settings["lr_shape"][1]} '
        'grid). chi2 is the '
        'LR consistency of the fused frame (as in `fuse`\'s consistency.csv: about 1 where it is as consistent '
        'with the LR camera as the key frames are).', '',
        '## Mean over the held-out key frames', '',
        '| method | PSNR (dB) | SSIM | AAD | chi2 | frames |', '|---|---|---|---|---|---|',
    ]
    for method in methods:
        sel = [r for r in rows if r['method'] == method]
        lines.append(f'| {method} | {_cell([r["psnr"] for r in sel], 2)} | {_cell([r["ssim"] for r in sel], 4)} | '
                     f'{_cell([r["aad"] for r in sel], 4)} | {_spread([r["chi2"] for r in sel])} | {len(sel)} |')
    lines += ['', '## Per held-out key frame: PSNR (dB)', '',
              '| frame | gap | ' + ' | '.join(methods) + ' |', '|---|---|' + '---|' * len(methods)]
    for k in held:
        by = {r['method']: r for r in rows if r['frame'] == k}
        gap = next(iter(by.values()))['gap']
        lines.append(f'| {k} | {gap} | ' + ' | '.join(f'{by[m]["psnr"]:.2f}' for m in methods) + ' |')
    model = settings['camera_model']
    lines += ['', '## The LR camera model fitted at the key frames', '',
              f'Extra LR blur {model["blur_sigma_hr_px"]:.3f} HR pixels, gain {model["gain"]:.4f}, offset '
              f'{model["offset"]:.5f}; noise {model["noise_source"]} (variance {model["noise_slope"]:.3g} x '
              f'intensity + {model["noise_floor"]:.3g}); fit residual {model["fit_residual_rms"]:.4g} RMS over '
              f'{model["key_pairs"]} key frames.', '']
    return '\n'.join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--lr', required=True, help='LR frames (any source fuse reads)')
    parser.add_argument('--hr', required=True, help='HR key frames only (any source fuse reads)')
    parser.add_argument('--out', required=True, help='output folder for holdout.csv, summary.md, report.html')
    add_schedule_arguments(parser)
    parser.add_argument('--transform', default=None, help='JSON from xfusion register (HR camera -> x4 LR grid)')
    parser.add_argument('--model', action='append', metavar='[NAME=]CKPT',
                        help='a network checkpoint, as the method NAME (plain CKPT: the method stf); repeatable')
    parser.add_argument('--opt', action='append', metavar='[NAME=]FILE',
                        help="option file of the network NAME (default: its checkpoint's own options); repeatable")
    parser.add_argument('--methods', default=None,
                        help='comma list (default: the baselines plus every network given)')
    parser.add_argument('--lr-sep', type=int, default=1, help='LR frame separation r (frames t-r, t, t+r)')
    parser.add_argument('--tile', type=int, default=0, help='tile size in LR pixels (0: whole frames)')
    parser.add_argument('--overlap', type=int, default=8, help='tile overlap in LR pixels')
    parser.add_argument('--convention', default=None, choices=list(CONVENTIONS),
                        help='metric convention (default: paper for 8-bit data, float otherwise)')
    parser.add_argument('--device', default='cpu', help='cpu or cuda[:N]')
    parser.add_argument('--batch', type=int, default=1, help='time steps fused together')
    parser.add_argument('--precision', default='fp32', choices=list(PRECISIONS))
    parser.add_argument('--range', type=float, nargs=2, default=None, metavar=('LOW', 'HIGH'),
                        help='fixed intensity range of both cameras (as fuse)')
    add_consistency_arguments(parser)
    parser.add_argument('--no-report', action='store_true', help='do not write report.html')
    parser.add_argument('--video', default=None, metavar='FILE.mp4', help="an .mp4 of the report's player")


def run(args: argparse.Namespace) -> int:
    networks = named(args.model, '--model')
    result = check(args.lr, args.hr, args.out, period=args.period, offset=args.offset, hr_index=args.hr_index,
                   time_offset=args.time_offset, lr_sep=args.lr_sep, transform=args.transform, networks=networks,
                   options=named(args.opt, '--opt'), methods=parse_list(args.methods, str) if args.methods else None,
                   tile=args.tile, overlap=args.overlap, device=args.device, batch=args.batch,
                   precision=args.precision, convention=args.convention, value_range=args.range,
                   flat_correction=not args.no_flat_correction, b0=args.b0, report=not args.no_report,
                   video=args.video)
    text = (result['out'] / 'summary.md').read_text()
    print(text.split('## Mean over the held-out key frames')[1].split('##')[0].strip())
    print(f"results in {result['out']} (holdout.csv, summary.md{', report.html' if not args.no_report else ''}); "
          f"{result['seconds']:.0f} s")
    return 0
