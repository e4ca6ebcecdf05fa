"""``xfusion check``: how good fusion is on the user's own data, from held-out key frames.

A real experiment has no HR frame between its key frames, so nothing there can be scored. The key frames
themselves can: each interior key frame k is held out in turn (``KeySchedule.without(k)``), the time step k is
fused from the key frames that remain by every method, and the result is scored against the HR frame the camera
recorded at k (the metrics of ``evaluate``: paper convention for 8-bit data, float otherwise). With key frames
every D steps the held-out frame sits in the middle of a gap of 2D: the hardest frame of a schedule twice as
sparse, so the scores are a pessimistic estimate of fusion at period D, and for a virtual experiment they equal
what ``evaluate`` gives for those frames at period 2D. Where ``--transform`` maps the HR camera onto the LR grid,
only pixels both cameras saw are scored. Each held-out frame also gets its LR consistency (chi2, as in
``fuse``'s consistency.csv). Outputs: ``holdout.csv``, ``summary.md``, ``report.html`` and the optional video.
"""
from __future__ import annotations

import csv
import time

import numpy as np
import torch
from tqdm import tqdm

from xfusion.baselines import BASELINES
from xfusion.camera import SCALE, CameraModel
from xfusion.errors import InputError
from xfusion.fusion.config import CheckConfig
from xfusion.fusion.consistency import fit_camera
from xfusion.fusion.sinks import OutputFolder, Viewer
from xfusion.fusion.sources import Experiment
from xfusion.fusion.streams import FrameCache, check_methods, load_networks, method_frames, shown_method
from xfusion.metrics.stf_metrics import CONVENTIONS, frame_scores, mean_and_spread
from xfusion.report import Player, Section, check_video_path, display_window, upsampled, write_report
from xfusion.schedule import FrameSource
from xfusion.version import __version__

CSV_COLUMNS = ['method', 'frame', 'psnr', 'ssim', 'aad', 'chi2', 'gap', 'k0', 'k1']


def check(config: CheckConfig) -> dict:
    """Hold out every interior key frame in turn, fuse it with every method and score it; returns
    {'rows': [...], 'out': Path, 'region': (y0, y1, x0, x1), 'convention': str, 'seconds': float, 'camera'}."""
    methods = list(config.methods) if config.methods else list(BASELINES) + list(config.networks)
    check_methods(methods, config.networks, config.options)  # everything is checked before anything is written
    if config.convention is not None and config.convention not in CONVENTIONS:
        raise InputError(f'--convention must be one of {", ".join(CONVENTIONS)}, got {config.convention!r}')
    exp = Experiment(config.sources)
    if len(exp.schedule.key_times) < 3:
        raise InputError(f'{len(exp.schedule.key_times)} key frames: check holds out interior key frames (each '
                         'fused from the key frames before and after it), so it needs at least 3')
    region = exp.scored_region
    if min(region[1] - region[0], region[3] - region[2]) < 7:  # SSIM's window
        raise InputError(f'{config.sources.transform}: the HR field of view covers too little of the LR frame to '
                         'score (less than 7x7 HR pixels seen by both cameras)')
    convention = config.convention or ('paper' if exp.hr.dtype == np.uint8 else 'float')
    nets = load_networks(methods, config.networks, config.options, config.run)
    video = check_video_path(config.video)
    folder = OutputFolder(config.out)

    read_key = FrameCache(exp.key_on_grid, capacity=8)
    read_lr = FrameCache(exp.lr.read_unit, capacity=4 * exp.lr_sep + 8)
    camera = fit_camera(read_lr, read_key, exp.schedule.key_times, exp.lr_shape, exp.seen, exp.b0, exp.quantum())
    shown = shown_method(methods, list(nets))
    held_out = list(exp.schedule.key_times[1:-1])
    player = Player('held-out key frames', ['LR (upsampled)', shown, 'nearest remaining key frame',
                                            'recorded HR frame (held out)'],
                    display_window([read_key(exp.schedule.key_times[0])]), list(exp.schedule.key_times),
                    exp.num_frames, times=held_out, note=f'each frame fused without its own key frame; PSNR in the '
                                                         f'{convention} convention on the pixels both cameras saw')
    viewer = Viewer(player, video)
    started = time.time()
    try:
        rows = holdout_rows(exp, nets, methods, FrameSource(read_lr, read_key, exp.schedule, exp.lr_sep), camera,
                            convention, config, viewer, shown)
        settings = run_settings(config, exp, methods, convention, camera, time.time() - started)
        write_results(folder.make(), rows, methods, settings, viewer, config.report)
    except BaseException:
        viewer.abort()
        folder.abort()
        raise
    return {'rows': rows, 'out': folder.path, 'region': region, 'convention': convention,
            'seconds': settings['seconds'], 'camera': camera}


def holdout_rows(exp: Experiment, nets: dict[str, torch.nn.Module], methods: list[str], frames: FrameSource,
                 camera: CameraModel, convention: str, config: CheckConfig, viewer: Viewer, shown: str) -> list[dict]:
    """A row of holdout.csv per method and held-out key frame; the shown method's frames go to the viewer."""
    held_out = list(exp.schedule.key_times[1:-1])
    y0, y1, x0, x1 = exp.scored_region
    rows = []
    bar = tqdm(total=len(methods) * len(held_out), unit='frame', desc='check', disable=not config.run.progress)
    try:
        for method in methods:
            for k in held_out:
                without = exp.schedule.without(k)
                k0, k1 = without.bracket(k)
                source = FrameSource(frames.read_lr, frames.read_key, without, frames.lr_sep)
                ((_, pred),) = method_frames(method, nets, source, exp.lr_shape, config.run, times=[k])
                pred = np.clip(pred, 0, 1).astype(np.float32)
                truth = frames.read_key(k)
                row = {'method': method, 'frame': k, 'gap': k1 - k0, 'k0': k0, 'k1': k1,
                       'chi2': camera.chi2(pred, frames.read_lr(k), exp.seen)}
                row.update(frame_scores(pred[y0:y1, x0:x1], truth[y0:y1, x0:x1], convention))
                rows.append(row)
                if method == shown:
                    nearest = k0 if k - k0 <= k1 - k else k1
                    panels = [upsampled(frames.read_lr(k), exp.grid), pred, frames.read_key(nearest), truth]
                    viewer.add(k, panels, f'held out step {k}  {method} {row["psnr"]:.2f} dB')
                bar.update(1)
    finally:
        bar.close()
    return rows


def run_settings(config: CheckConfig, exp: Experiment, methods: list[str], convention: str, camera: CameraModel,
                 seconds: float) -> dict:
    """The run's settings, for summary.md and the report."""
    o, run = config.sources, config.run
    return {'software': f'xfusion {__version__}', 'created': time.strftime('%Y-%m-%d %H:%M:%S'),
            'lr': o.lr, 'hr': o.hr, 'frames': exp.num_frames, 'lr_shape': list(exp.lr_shape),
            'dtype': str(exp.hr.dtype), 'key_times': list(exp.schedule.key_times),
            'held_out': list(exp.schedule.key_times[1:-1]), 'period': o.period, 'offset': o.offset,
            'hr_index': o.hr_index, 'time_matching': exp.time_match is not None, 'lr_sep': exp.lr_sep,
            'transform': o.transform, 'scored_region_hr_px (y0, y1, x0, x1)': list(exp.scored_region),
            'methods': methods, 'networks': config.networks, 'option files': config.options,
            'convention': convention, 'camera_model': camera.summary(), 'tile': run.tile, 'overlap': run.overlap,
            'device': run.device, 'precision': run.precision, 'seconds': round(seconds, 1)}


def write_results(out, rows: list[dict], methods: list[str], settings: dict, viewer: Viewer, report: bool) -> None:
    """holdout.csv, summary.md, the video and report.html."""
    with open(out / 'holdout.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    text = summary_markdown(rows, methods, settings)
    (out / 'summary.md').write_text(text)
    viewer.close()
    if report:
        viewer.player.series = {m: {r['frame']: r['psnr'] for r in rows if r['method'] == m} for m in methods}
        write_report(out / 'report.html', 'XFusion check: held-out key frames', f'{settings["lr"]} + {settings["hr"]}',
                     [viewer.player], [Section('Summary', 'markdown', text.split('\n', 1)[1])], settings)


def _spread(values: list[float]) -> str:
    return f'{np.mean(values):.3g} ± {np.std(values):.2g}' if values else '-'


def summary_markdown(rows: list[dict], methods: list[str], settings: dict) -> str:
    """What the numbers mean, the mean per method, the PSNR per held-out frame and the camera model."""
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
        lines.append(f'| {method} | {mean_and_spread([r["psnr"] for r in sel], 2)} | '
                     f'{mean_and_spread([r["ssim"] for r in sel], 4)} | {mean_and_spread([r["aad"] for r in sel], 4)} '
                     f'| {_spread([r["chi2"] for r in sel])} | {len(sel)} |')
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
