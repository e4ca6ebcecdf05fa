"""``xfusion evaluate``: STF against the baselines across key-frame periods, LR separations and noise.

For every combination of period, lr_sep and b0, Poisson noise at b0 (seeded per sequence,
b0 and frame, so every method and setting sees the same noisy frame) is applied to the LR
frames of clean data; every method fuses every time step of every sequence, and each
output frame is scored against the clean HR frame. Writes ``metrics.csv`` (one row per
method, setting and frame), ``summary.md`` (mean and spread over non-key frames, key frames
apart), plots of PSNR / SSIM / AAD against period, lr_sep and b0, a visual panel per
sequence, and ``report.html`` (``xfusion.report``): per sequence a player over every frame of the
panel setting (LR upsampled | the first network | nearest key frame | ground truth) with the
per-frame PSNR of every method, the tables, the plots and the settings; ``--video`` an .mp4 of it.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import re
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from xfusion.baselines import BASELINES
from xfusion.camera import poisson_noise
from xfusion.checkpoint import load_network
from xfusion.data.sequence_io import Sequence, open_xray_root
from xfusion.errors import InputError
from xfusion.inference import PRECISIONS, SequenceInference
from xfusion.metrics import calculate_aad, calculate_psnr_stf, calculate_ssim_stf
from xfusion.report import Player, Section, VideoWriter, check_video_path, display_window, upsampled, write_report
from xfusion.schedule import FrameSource, KeySchedule, check_period

HELP = 'compare the networks with the baselines across periods, LR separations and noise'
# method names of the older flags, kept as aliases of --model NAME=CKPT
NETWORK_ALIASES = {'lr_only_model': 'lr_only', 'swin_model': 'stf_swin'}
DEFAULT_NETWORK = 'stf'  # the method of a plain --model CKPT
CSV_COLUMNS = ['method', 'sequence', 'frame', 'is_key', 'period', 'lr_sep', 'b0', 'psnr', 'ssim', 'aad']
METRICS = {'psnr': calculate_psnr_stf, 'ssim': calculate_ssim_stf, 'aad': calculate_aad}
_NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_.-]*')


def named(values: list[str] | None, flag: str) -> dict[str, str]:
    """``[NAME=]VALUE`` arguments (repeatable) -> {NAME: VALUE}; a plain VALUE is the method 'stf'."""
    out = {}
    for value in values or []:
        name, sep, rest = value.partition('=')
        if not (sep and _NAME.fullmatch(name)):
            name, rest = DEFAULT_NETWORK, value
        if name in out:
            raise InputError(f'{flag}: the method {name!r} is given twice')
        if name in BASELINES:
            raise InputError(f'{flag} {value}: {name!r} is a baseline; give the network another name')
        out[name] = rest
    return out


def check_methods(methods: list[str], networks: dict[str, str], options: dict[str, str]) -> None:
    """Every method is a baseline or a network given with --model; every --opt names a given network."""
    for method in methods:
        if method not in BASELINES and method not in networks:
            raise InputError(f'method {method!r} is neither a baseline ({", ".join(BASELINES)}) nor a network '
                             f'given with --model {method}=CKPT (or leave it out of --methods)')
    unused = [name for name in options if name not in networks]
    if unused:
        raise InputError(f'--opt {unused[0]}=...: no network {unused[0]!r} is given with --model')


def noisy_lr(seq: Sequence, b0: float | None, seed: int) -> np.ndarray:
    """All LR frames of a sequence with Poisson noise at b0 photons per unit intensity (None: clean)."""
    frames = np.stack([seq.read_lr(t) for t in range(seq.num_frames)])
    if b0 is None:
        return frames
    return poisson_noise(frames, b0, np.random.default_rng([seed, int(b0), sum(map(ord, seq.name))]))


def run_baseline(method: str, source: FrameSource, lr, num_lr: int = 3, times: list[int] | None = None):
    """Yield (t, HR frame) of a classical baseline for every time step (or those of ``times``).

    ``lr``: the LR frames, indexable by a list of time steps ((T, h, w) array, or anything that stacks them)."""
    fn = BASELINES[method]
    for t in (range(source.num_frames) if times is None else times):
        window, (k0, k1), weights = source.window(t, num_lr)
        yield t, fn(lr[window], np.stack([source.read_key(k0), source.read_key(k1)]), lr[[k0, k1]],
                    np.asarray(weights, np.float32), num_lr // 2)


def parse_list(text: str, kind) -> list:
    try:
        return [kind(v) for v in text.split(',') if v.strip()]
    except ValueError as error:
        raise InputError(f'could not read the list {text!r}: {error}') from None


def parse_b0(text: str) -> list[float | None]:
    """'none,1e3,100' -> [None, 1000.0, 100.0] (none: clean LR frames)."""
    return [None if v.strip().lower() in ('none', 'clean', 'inf') else parse_list(v, float)[0]
            for v in text.split(',') if v.strip()]


def evaluate(data: str, out: str, methods: list[str], periods: list[int], lr_seps: list[int],
             b0s: list[float | None], networks: dict[str, str] | None = None, options: dict[str, str] | None = None,
             device: str = 'cpu', batch: int = 4, seed: int = 0, convention: str = 'paper', precision: str = 'fp32',
             progress: bool = True, report: bool = True, video: str | None = None) -> dict:
    """Run the comparison; returns {'rows': [...], 'seconds': float, 'out': Path}.

    ``networks``: {method name: checkpoint} of any registered network; ``options``: {method name:
    option file} where a checkpoint's own options should not be used. ``report``: write report.html;
    ``video``: an .mp4 of the report's players.
    """
    networks, options = networks or {}, options or {}
    check_methods(methods, networks, options)
    for value in periods:
        check_period(value, '--period')
    for value in lr_seps:
        check_period(value, '--lr-sep')
    if any(b is not None and b <= 0 for b in b0s):
        raise InputError('b0 values must be positive (or none for clean LR frames)')
    sequences = open_xray_root(data)
    for seq in sequences:
        if seq.hr_index != list(range(seq.num_frames)):
            raise InputError(f'{seq.name}: evaluation needs an HR frame at every time step (a virtual experiment)')
        if max(lr_seps) >= seq.num_frames or max(periods) >= seq.num_frames:
            raise InputError(f'{seq.name}: {seq.num_frames} frames are too few for period {max(periods)} / '
                             f'lr_sep {max(lr_seps)}')
    video_path = check_video_path(video)
    nets = {m: load_network(networks[m], options.get(m), device)[0] for m in methods if m in networks}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    settings = list(itertools.product(periods, lr_seps, b0s))
    panel_setting = _panel_setting(settings)
    shown = shown_method(methods, list(nets))
    players, movie = [], VideoWriter(video_path) if video_path is not None else None
    total = len(settings) * len(methods) * sum(s.num_frames for s in sequences)
    bar = tqdm(total=total, unit='frame', desc='evaluate', disable=not progress)
    started = time.time()
    rows, panels = [], {}
    for seq in sequences:
        gt = [seq.read_hr(t) for t in range(seq.num_frames)]
        panel_schedule = KeySchedule.every(panel_setting[0], seq.num_frames)
        player = Player(seq.name, ['LR (upsampled)', shown, 'nearest key frame', 'ground truth'],
                        display_window(gt[::max(1, seq.num_frames // 4)]), list(panel_schedule.key_times),
                        seq.num_frames, note=f'{panel_setting_text(panel_setting)}; PSNR of the non-key frames in the '
                                             f'{convention} convention')
        players.append(player)
        for b0 in b0s:
            lr = noisy_lr(seq, b0, seed)
            for period, lr_sep in itertools.product(periods, lr_seps):
                source = FrameSource(lr.__getitem__, gt.__getitem__, KeySchedule.every(period, seq.num_frames), lr_sep)
                panel_t = _panel_frame(seq.num_frames, period)
                for method in methods:
                    if method in nets:
                        stream = ((t, o[0].numpy()) for t, o in
                                  SequenceInference(nets[method], device, batch=batch, precision=precision).run(source))
                    else:
                        stream = run_baseline(method, source, lr)
                    for t, pred in stream:
                        pred = np.clip(pred, 0, 1)
                        row = {'method': method, 'sequence': seq.name, 'frame': t,
                               'is_key': source.schedule.is_key(t), 'period': period, 'lr_sep': lr_sep,
                               'b0': 'none' if b0 is None else f'{b0:g}'}
                        row.update({k: fn(pred, gt[t], convention=convention) for k, fn in METRICS.items()})
                        rows.append(row)
                        if t == panel_t and (period, lr_sep, b0) == panel_setting:
                            panels.setdefault(seq.name, {'gt': gt[t], 't': t})[method] = pred
                        if method == shown and (period, lr_sep, b0) == panel_setting and (
                                movie is not None or player.wants(t)):
                            k0, k1 = source.schedule.bracket(t)
                            frames = [upsampled(lr[t], gt[t].shape), pred,
                                      gt[k0 if t - k0 <= k1 - t else k1], gt[t]]
                            player.add(t, frames)
                            if movie is not None:
                                movie.add(frames, player.window, player.labels, f'{seq.name}  step {t}')
                        bar.update(1)
    bar.close()
    seconds = time.time() - started

    write_csv(out / 'metrics.csv', rows)
    (out / 'summary.md').write_text(summary_markdown(rows, methods, seconds, data, convention))
    plot_metrics(rows, methods, out)
    for name, images in panels.items():
        save_panel(out / 'panels' / f'{name}.png', images, methods, name, panel_setting, list(nets))
    if movie is not None:
        movie.close()
    if report:
        # non-key frames only: a key frame's near-exact copy would squash the timeline's scale (the tables have them)
        shown_rows = [r for r in rows if (r['period'], r['lr_sep'], r['b0']) == _setting_key(panel_setting)
                      and not r['is_key']]
        for player in players:
            player.series = {m: {r['frame']: r['psnr'] for r in shown_rows
                                 if r['method'] == m and r['sequence'] == player.name} for m in methods}
        run_settings = {'data': data, 'methods': methods, 'networks': networks, 'option files': options,
                        'periods': periods, 'lr_seps': lr_seps, 'b0': ['none' if b is None else b for b in b0s],
                        'player setting (period, lr_sep, b0)': list(panel_setting), 'convention': convention,
                        'seed': seed, 'device': device, 'precision': precision, 'seconds': round(seconds, 1)}
        write_report(out / 'report.html', 'XFusion evaluation', f'{data}: {len(sequences)} sequences, '
                     f'{len(methods)} methods', players, [
                         Section('Summary', 'markdown', summary_markdown(rows, methods, seconds, data, convention)
                                 .split('\n', 1)[1]),
                         Section('Metrics against period, LR separation and noise', 'images',
                                 [(f'{m}.png', out / f'{m}.png') for m in METRICS]),
                         Section(f'Panels (frame far from both key frames; {panel_setting_text(panel_setting)})',
                                 'images', [(name, out / 'panels' / f'{name}.png') for name in panels])],
                     run_settings)
    return {'rows': rows, 'seconds': seconds, 'out': out}


def shown_method(methods: list[str], networks: list[str]) -> str:
    """The method the report's players show: ``stf`` (the recommended network) when evaluated, else the first
    network, else the Bayesian baseline, else the last method."""
    if DEFAULT_NETWORK in methods and DEFAULT_NETWORK in networks:
        return DEFAULT_NETWORK
    return next((m for m in methods if m in networks), 'bayes' if 'bayes' in methods else methods[-1])


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
            for metric in METRICS:
                groups[tuple(row[k] for k in keys)][metric].append(row[metric])
    return groups


def _cell(values: list[float], digits: int) -> str:
    finite = [v for v in values if np.isfinite(v)]
    if not finite:
        return 'inf' if values else '-'
    return f'{np.mean(finite):.{digits}f} ± {np.std(finite):.{digits}f}'


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
                    method, _cell(g['psnr'], 2), _cell(g['ssim'], 4), _cell(g['aad'], 2), str(len(g['psnr']))]) + ' |')
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--data', required=True,
                        help='x-ray root of test sequences (<seq>/HR + <seq>/LR folders, <seq>/HR.<ext> + '
                             '<seq>/LR.<ext> camera files, or <seq>.h5)')
    parser.add_argument('--out', required=True, help='output folder for metrics.csv, summary.md, plots, panels')
    parser.add_argument('--model', action='append', metavar='[NAME=]CKPT',
                        help='a network checkpoint, as the method NAME (plain CKPT: the method stf); repeatable')
    parser.add_argument('--opt', action='append', metavar='[NAME=]FILE',
                        help="option file of the network NAME (default: its checkpoint's own options); repeatable")
    parser.add_argument('--lr-only-model', default=None, help='same as --model lr_only=CKPT')
    parser.add_argument('--swin-model', default=None, help='same as --model stf_swin=CKPT')
    parser.add_argument('--methods', default=None,
                        help='comma list (default: the baselines plus every network given)')
    parser.add_argument('--period', default='20', help='comma list of key-frame periods')
    parser.add_argument('--lr-sep', default='1', help='comma list of LR frame separations')
    parser.add_argument('--b0', default='none', help='comma list of LR photon levels; none = clean')
    parser.add_argument('--convention', default='paper', choices=['paper', 'float'])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--batch', type=int, default=4, help='time steps per network call')
    parser.add_argument('--seed', type=int, default=0, help='seed of the LR noise')
    parser.add_argument('--precision', default='fp32', choices=list(PRECISIONS), help='of the network methods')
    parser.add_argument('--no-report', action='store_true', help='do not write report.html')
    parser.add_argument('--video', default=None, metavar='FILE.mp4',
                        help="an .mp4 of the report's players, for slides")


def networks_of(args: argparse.Namespace) -> dict[str, str]:
    """{method: checkpoint} from --model and its aliases."""
    aliases = [f'{name}={getattr(args, flag)}' for flag, name in NETWORK_ALIASES.items() if getattr(args, flag)]
    return named((args.model or []) + aliases, '--model')


def run(args: argparse.Namespace) -> int:
    networks = networks_of(args)
    methods = parse_list(args.methods, str) if args.methods else list(BASELINES) + list(networks)
    result = evaluate(args.data, args.out, methods, parse_list(args.period, int), parse_list(args.lr_sep, int),
                      parse_b0(args.b0), networks=networks, options=named(args.opt, '--opt'), device=args.device,
                      batch=args.batch, seed=args.seed, convention=args.convention, precision=args.precision,
                      report=not args.no_report, video=args.video)
    print(summary_table(result['rows'], methods, ()))
    print(f"results in {result['out']} (metrics.csv, summary.md, report.html, psnr/ssim/aad.png, panels/); "
          f"{result['seconds']:.0f} s")
    return 0
