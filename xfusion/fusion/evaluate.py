"""``xfusion evaluate``: every method against the ground truth of virtual experiments, across key-frame periods,
LR frame separations and LR noise.

For every combination of period, lr_sep and b0, Poisson noise at b0 (seeded per sequence, b0 and frame, so every
method and setting sees the same noisy frame) is applied to the LR frames of clean data; every method fuses every
time step of every sequence (``streams.method_frames``, as ``check`` fuses its held-out frames), and each output
frame is scored against the clean HR frame (``metrics.frame_scores``). Writes ``metrics.csv`` (one row per
method, setting and frame), ``summary.md`` (mean and spread over non-key frames, key frames apart), plots of
PSNR / SSIM / AAD against period, lr_sep and b0, a panel per sequence, and ``report.html``: per sequence a player
over every frame of the panel setting (LR upsampled | the shown network | nearest key frame | ground truth) with
the per-frame PSNR of every method, the tables, the plots and the settings; ``video`` an .mp4 of the players.
"""
from __future__ import annotations

import csv
import itertools
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from xfusion.camera import poisson_noise
from xfusion.errors import InputError
from xfusion.fusion.config import EvaluateConfig
from xfusion.fusion.sinks import OutputFolder, Viewer
from xfusion.fusion.streams import check_methods, load_networks, method_frames, shown_method
from xfusion.io.sequence import Sequence, open_xray_root
from xfusion.metrics.stf_metrics import FRAME_METRICS, calculate_psnr_stf, frame_scores, mean_and_spread
from xfusion.report import Player, Section, VideoWriter, check_video_path, display_window, upsampled, write_report
from xfusion.schedule import FrameSource, KeySchedule, check_period

CSV_COLUMNS = ['method', 'sequence', 'frame', 'is_key', 'period', 'lr_sep', 'b0', 'psnr', 'ssim', 'aad']


def noisy_lr(seq: Sequence, b0: float | None, seed: int, clean: np.ndarray | None = None) -> np.ndarray:
    """All LR frames of a sequence with Poisson noise at b0 photons per unit intensity (None: clean), seeded by
    (seed, b0, sequence name). ``clean``: the sequence's LR frames when they are read already."""
    frames = np.stack([seq.read_lr(t) for t in range(seq.num_frames)]) if clean is None else clean
    if b0 is None:
        return frames
    return poisson_noise(frames, b0, np.random.default_rng([seed, int(b0), sum(map(ord, seq.name))]))


def open_sequences(config: EvaluateConfig) -> list[Sequence]:
    """The virtual experiments under ``config.data``, checked against the settings."""
    for value in config.periods:
        check_period(value, '--period')
    for value in config.lr_seps:
        check_period(value, '--lr-sep')
    if any(b is not None and b <= 0 for b in config.b0s):
        raise InputError('b0 values must be positive (or none for clean LR frames)')
    sequences = open_xray_root(config.data)
    for seq in sequences:
        if seq.hr_index != list(range(seq.num_frames)):
            raise InputError(f'{seq.name}: evaluation needs an HR frame at every time step (a virtual experiment)')
        if max(config.lr_seps) >= seq.num_frames or max(config.periods) >= seq.num_frames:
            raise InputError(f'{seq.name}: {seq.num_frames} frames are too few for period {max(config.periods)} / '
                             f'lr_sep {max(config.lr_seps)}')
    return sequences


def evaluate(config: EvaluateConfig) -> dict:
    """Run the comparison; returns {'rows': [...], 'seconds': float, 'out': Path}."""
    methods = config.methods
    check_methods(methods, config.networks, config.options)  # everything is checked before anything is written
    sequences = open_sequences(config)
    video = check_video_path(config.video)
    nets = load_networks(methods, config.networks, config.options, config.run)
    folder = OutputFolder(config.out)
    settings = list(itertools.product(config.periods, config.lr_seps, config.b0s))
    panel_setting = _panel_setting(settings)
    shown = shown_method(methods, list(nets))
    movie = VideoWriter(video) if video is not None else None
    bar = tqdm(total=len(settings) * len(methods) * sum(s.num_frames for s in sequences), unit='frame',
               desc='evaluate', disable=not config.run.progress)
    started = time.time()
    rows, panels, players = [], {}, []
    try:
        for seq in sequences:
            seq_rows, player = evaluate_sequence(seq, config, nets, shown, panel_setting, movie, panels, bar)
            rows += seq_rows
            players.append(player)
        bar.close()
        seconds = time.time() - started
        write_outputs(folder.make(), config, rows, panels, players, list(nets), panel_setting, seconds)
        if movie is not None:
            movie.close()
    except BaseException:
        bar.close()
        if movie is not None:
            movie.abort()
        folder.abort()
        raise
    return {'rows': rows, 'seconds': seconds, 'out': folder.path}


def evaluate_sequence(seq: Sequence, config: EvaluateConfig, nets: dict[str, torch.nn.Module], shown: str,
                      panel_setting: tuple, movie: VideoWriter | None, panels: dict,
                      bar: tqdm) -> tuple[list[dict], Player]:
    """The rows of one sequence (every method at every setting, every frame scored) and its player (the shown
    method's frames at the panel setting); the panel frame of the panel setting is kept in ``panels``."""
    gt = [seq.read_hr(t) for t in range(seq.num_frames)]
    clean = np.stack([seq.read_lr(t) for t in range(seq.num_frames)])  # read once, noisy once per b0
    keys = KeySchedule.every(panel_setting[0], seq.num_frames).key_times
    viewer = Viewer(Player(seq.name, ['LR (upsampled)', shown, 'nearest key frame', 'ground truth'],
                           display_window(gt[::max(1, seq.num_frames // 4)]), list(keys), seq.num_frames,
                           note=f'{panel_setting_text(panel_setting)}; PSNR of the non-key frames in the '
                                f'{config.convention} convention'), movie)
    rows = []
    for b0 in config.b0s:
        lr = noisy_lr(seq, b0, config.seed, clean)
        for period, lr_sep in itertools.product(config.periods, config.lr_seps):
            source = FrameSource(lr.__getitem__, gt.__getitem__, KeySchedule.every(period, seq.num_frames), lr_sep)
            panel_t = _panel_frame(seq.num_frames, period)
            on_panel = (period, lr_sep, b0) == panel_setting
            for method in config.methods:
                for t, pred in method_frames(method, nets, source, seq.lr_shape, config.run):
                    pred = np.clip(pred, 0, 1)
                    row = {'method': method, 'sequence': seq.name, 'frame': t, 'is_key': source.schedule.is_key(t),
                           'period': period, 'lr_sep': lr_sep, 'b0': 'none' if b0 is None else f'{b0:g}'}
                    row.update(frame_scores(pred, gt[t], config.convention))
                    rows.append(row)
                    if on_panel and t == panel_t:
                        panels.setdefault(seq.name, {'gt': gt[t], 't': t})[method] = pred
                    if on_panel and method == shown and viewer.wants(t):
                        k0, k1 = source.schedule.bracket(t)
                        viewer.add(t, [upsampled(lr[t], gt[t].shape), pred, gt[k0 if t - k0 <= k1 - t else k1], gt[t]],
                                   f'{seq.name}  step {t}')
                    bar.update(1)
    return rows, viewer.player


def write_outputs(out: Path, config: EvaluateConfig, rows: list[dict], panels: dict, players: list[Player],
                  networks: list[str], panel_setting: tuple, seconds: float) -> None:
    """metrics.csv, summary.md, the plots, the panels and report.html."""
    methods = config.methods
    write_csv(out / 'metrics.csv', rows)
    summary = summary_markdown(rows, methods, seconds, config.data, config.convention)
    (out / 'summary.md').write_text(summary)
    plot_metrics(rows, methods, out)
    for name, images in panels.items():
        save_panel(out / 'panels' / f'{name}.png', images, methods, name, panel_setting, networks)
    if not config.report:
        return
    # non-key frames only: a key frame's near-exact copy would squash the timeline's scale (the tables have them)
    shown_rows = [r for r in rows if (r['period'], r['lr_sep'], r['b0']) == _setting_key(panel_setting)
                  and not r['is_key']]
    for player in players:
        player.series = {m: {r['frame']: r['psnr'] for r in shown_rows
                             if r['method'] == m and r['sequence'] == player.name} for m in methods}
    run_settings = {'data': config.data, 'methods': methods, 'networks': config.networks,
                    'option files': config.options, 'periods': config.periods, 'lr_seps': config.lr_seps,
                    'b0': ['none' if b is None else b for b in config.b0s],
                    'player setting (period, lr_sep, b0)': list(panel_setting), 'convention': config.convention,
                    'seed': config.seed, 'device': config.run.device, 'precision': config.run.precision,
                    'seconds': round(seconds, 1)}
    sections = [Section('Summary', 'markdown', summary.split('\n', 1)[1]),
                Section('Metrics against period, LR separation and noise', 'images',
                        [(f'{m}.png', out / f'{m}.png') for m in FRAME_METRICS]),
                Section(f'Panels (frame far from both key frames; {panel_setting_text(panel_setting)})', 'images',
                        [(name, out / 'panels' / f'{name}.png') for name in panels])]
    write_report(out / 'report.html', 'XFusion evaluation', f'{config.data}: {len(players)} sequences, '
                 f'{len(methods)} methods', players, sections, run_settings)


def _setting_key(setting: tuple) -> tuple:
    """A setting as it is written in the rows (b0 as text)."""
    period, lr_sep, b0 = setting
    return period, lr_sep, 'none' if b0 is None else f'{b0:g}'


def panel_setting_text(setting: tuple) -> str:
    period, lr_sep, b0 = setting
    return f'period {period}, lr_sep {lr_sep}, b0 {"none" if b0 is None else f"{b0:g}"}'


def _panel_frame(num_frames: int, period: int) -> int:
    """A non-key frame as far as possible from both key frames: the hardest one to show."""
    return min(period // 2, num_frames - 1) if period > 1 else 0


def _panel_setting(settings: list[tuple]) -> tuple:
    """Panels show period 20 with lr_sep 1 and the cleanest LR when evaluated, else the first setting."""
    preferred = [s for s in settings if s[0] == 20 and s[1] == 1]
    return (preferred or settings)[0]


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def grouped(rows: list[dict], keys: tuple[str, ...], key_frames: bool) -> dict:
    groups = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row['is_key'] == key_frames:
            for metric in FRAME_METRICS:
                groups[tuple(row[k] for k in keys)][metric].append(row[metric])
    return groups


def summary_table(rows: list[dict], methods: list[str], keys: tuple[str, ...], key_frames: bool = False) -> str:
    """Markdown table: one line per setting and method, mean ± std of PSNR / SSIM / AAD."""
    groups = grouped(rows, keys + ('method',), key_frames)
    header = '| ' + ' | '.join(keys + ('method', 'PSNR (dB)', 'SSIM', 'AAD', 'frames')) + ' |'
    lines = [header, '|' + '---|' * (len(keys) + 5)]
    settings = sorted({k[:-1] for k in groups}, key=lambda s: tuple(str(v).zfill(8) for v in s))
    for setting in settings:
        for method in methods:
            g = groups.get(setting + (method,))
            if g:
                lines.append('| ' + ' | '.join([str(v) for v in setting] + [
                    method, mean_and_spread(g['psnr'], 2), mean_and_spread(g['ssim'], 4),
                    mean_and_spread(g['aad'], 2), str(len(g['psnr']))]) + ' |')
    return '\n'.join(lines)


def summary_markdown(rows: list[dict], methods: list[str], seconds: float, data: str, convention: str) -> str:
    parts = [
        '# XFusion evaluation', '',
        f'Data: `{data}`; metrics in the `{convention}` convention; mean ± standard deviation over frames. '
        f'Evaluation took {seconds:.0f} s.', '',
        '## All settings together, non-key frames (the headline)', '',
        summary_table(rows, methods, ()), '',
        '## Per setting, non-key frames', '',
        summary_table(rows, methods, ('period', 'lr_sep', 'b0')), '',
        '## Per setting, key frames (t = k0: the HR frame is known)', '',
        summary_table(rows, methods, ('period', 'lr_sep', 'b0'), key_frames=True), '',
    ]
    return '\n'.join(parts)


def plot_metrics(rows: list[dict], methods: list[str], out: Path) -> None:
    """psnr.png, ssim.png, aad.png: the metric against period, lr_sep and b0 (others averaged), per method."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    nonkey = [r for r in rows if not r['is_key']]
    axes_keys = ('period', 'lr_sep', 'b0')
    for metric, label in (('psnr', 'PSNR (dB)'), ('ssim', 'SSIM'), ('aad', 'AAD')):
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
        for ax, key in zip(axes, axes_keys):
            values = sorted({r[key] for r in nonkey}, key=lambda v: float('inf') if v == 'none' else float(v))
            for method in methods:
                means = []
                for v in values:
                    sel = [r[metric] for r in nonkey
                           if r['method'] == method and r[key] == v and np.isfinite(r[metric])]
                    means.append(np.mean(sel) if sel else np.nan)
                ax.plot(range(len(values)), means, marker='o', label=method)
            ax.set_xticks(range(len(values)), [str(v) for v in values])
            ax.set_xlabel(key if key != 'b0' else 'b0 (photons; none = clean)')
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle(f'{label} over non-key frames (other settings averaged)')
        fig.tight_layout()
        fig.savefig(out / f'{metric}.png', dpi=100)
        plt.close(fig)


def save_panel(path: Path, images: dict, methods: list[str], name: str, setting: tuple,
               networks: list[str]) -> None:
    """One row: each method's output, the ground truth, and |error| of the first network method."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    shown = [m for m in methods if m in images]
    err_method = next((m for m in networks if m in images), shown[-1])
    columns = shown + ['ground truth', f'|error| {err_method}']
    fig, axes = plt.subplots(1, len(columns), figsize=(2.6 * len(columns), 3.0))
    gt = images['gt']
    error = np.abs(images[err_method] - gt)
    for ax, column in zip(np.atleast_1d(axes), columns):
        if column == 'ground truth':
            ax.imshow(gt, cmap='gray', vmin=0, vmax=1)
        elif column.startswith('|error|'):
            ax.imshow(error, cmap='magma', vmin=0, vmax=max(float(error.max()), 1e-6))
        else:
            ax.imshow(images[column], cmap='gray', vmin=0, vmax=1)
            column = f'{column}\n{calculate_psnr_stf(images[column], gt):.2f} dB'
        ax.set_title(column, fontsize=9)
        ax.axis('off')
    period, lr_sep, b0 = setting
    fig.suptitle(f'{name}, frame {images["t"]} (period {period}, lr_sep {lr_sep}, b0 {b0 or "none"})', fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
