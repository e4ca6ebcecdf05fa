"""docs/results.md (and the two small tables of README.md) from the measurement records in docs/results/*.json,
and the model cards of the packaged networks (xfusion/pretrained/<name>/card.md) from their card.json.

    python benchmarks/render_results.py           # rewrite docs/results.md, the README tables and the cards
    python benchmarks/render_results.py --check   # exit 1 if any differs from what the records give

Every figure on the page comes from a record that one command wrote (the record says which, on what machine,
and when); nothing is typed by hand. A record that is missing leaves its section saying how to make it.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from xfusion.commands.bench import table as bench_table
from xfusion.pretrained import packaged_models

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / 'docs' / 'results'
PAGE = ROOT / 'docs' / 'results.md'
README = ROOT / 'README.md'
CLASSICAL = ('bicubic', 'key_copy', 'temporal', 'bayes')
MAKE = {
    'demo': 'make demo && python benchmarks/demo_results.py',
    'trust': 'make demo && python benchmarks/trust_check.py',
    'bench': 'xfusion bench --quick --out docs/results/bench.json',
    'seeds': 'make demo && python benchmarks/seed_table.py',
    'models': 'python scripts/package_models.py',
    'fuse_scaling': 'python benchmarks/fuse_scaling.py',
    'rig': 'python benchmarks/rig_registration.py',
}


def load(name: str) -> dict | None:
    path = RECORDS / f'{name}.json'
    return json.loads(path.read_text()) if path.is_file() else None


def machine_line(record: dict) -> str:
    """The command, the date (when the record has one: a model card inside the package has none) and the machine."""
    m = record['machine']
    date = f", {record['date']}" if 'date' in record else ''
    return (f"`{record['command']}`{date}, on {m['cpu']} ({m['cpu_count']} cores, {m['threads']} "
            f"torch threads, torch {m['torch']}, {m.get('gpu') or 'no GPU'})")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return '\n'.join(lines)


def b0_text(b0: str) -> str:
    return 'clean' if b0 == 'none' else f'b0 {b0}'


# ---------------------------------------------------------------------------------------------- demo


def cell(record: dict, period: int, b0: str, method: str) -> dict | None:
    return next((c for c in record['cells'] if (c['period'], c['b0'], c['method']) == (period, b0, method)), None)


def demo_table(record: dict) -> str:
    """Each method at the demo's setting (period 20, b0 1000): mean over the non-key frames of the test data."""
    period, b0 = record['headline']['period'], record['headline']['b0']
    rows = []
    for method in record['methods']:
        c = cell(record, period, b0, method)
        name = f"**{method}**" if method == 'stf' else method
        rows.append([name, record['describe'].get(method, ''), f"{c['psnr']:.2f}", f"{c['ssim']:.4f}",
                     f"{c['aad']:.2f}"])
    return table(['method', 'what it is', 'PSNR (dB)', 'SSIM', 'AAD'], rows)


def grid_table(record: dict) -> str:
    methods = record['methods']
    rows = []
    for period in record['periods']:
        for b0 in record['b0s']:
            values = {m: cell(record, period, b0, m)['psnr'] for m in methods}
            best = max(values.values())
            rows.append([str(period), b0_text(b0)] + [f"**{v:.2f}**" if v == best else f'{v:.2f}'
                                                        for v in values.values()])
    return table(['period', 'LR noise'] + methods, rows)


def margin_table(record: dict) -> str:
    """The recommended network against the best classical baseline of each sequence and setting."""
    sequences = record['sequences']
    rows, below = [], 0
    for period in record['periods']:
        for b0 in record['b0s']:
            row = [str(period), b0_text(b0)]
            for seq in sequences:
                stf = cell(record, period, b0, 'stf')['per_sequence'][seq]
                best = max(CLASSICAL, key=lambda m: cell(record, period, b0, m)['per_sequence'][seq])
                margin = stf - cell(record, period, b0, best)['per_sequence'][seq]
                below += margin < 0
                row.append(f'{margin:+.2f} ({best})')
            rows.append(row)
    cells = len(rows) * len(sequences)
    families = record.get('families') or {}
    header = [f'{seq} ({families[seq]})' if seq in families else seq for seq in sequences]
    return (table(['period', 'LR noise'] + header, rows) +
            f'\n\n`stf` is above the best classical baseline in {cells - below} of {cells} cells.')


def demo_section(record: dict | None) -> str:
    if record is None:
        return f"Not measured yet: `{MAKE['demo']}` writes `docs/results/demo.json`."
    period, b0 = record['headline']['period'], record['headline']['b0']
    timing = record.get('make_demo')
    took = (f" `make demo` took {timing['minutes']:.1f} minutes from an empty `datasets/demo` (data "
            f"{timing['steps'].get('data', 0):.1f}, training and `test.py` {timing['steps'].get('training', 0):.1f}, "
            f"choice and evaluation {timing['steps'].get('evaluation', 0):.1f} minutes).") if timing else ''
    return '\n'.join([
        f"Made by {machine_line(record)}.{took}",
        '',
        f"The networks `make demo` trains, on its test sequences (`{record['data']}`: scene families and seeds "
        f"never used for training or for a choice), against the classical baselines. Mean over the non-key frames of "
        f"all sequences, paper convention (8-bit PSNR, SSIM, AAD), lr_sep {record['lr_sep']}.",
        '',
        f'### The demo setting: period {period}, LR noise {b0_text(b0)}',
        '', demo_table(record), '',
        '### Period x LR noise: PSNR (dB), mean over the test sequences',
        '', grid_table(record), '',
        '### `stf` minus the best classical baseline, per test sequence (dB)',
        '', margin_table(record),
    ])


# ---------------------------------------------------------------------------------------------- trust


def holdout_table(part: dict) -> str:
    rows = [[m, f"{v['check_holdout']:.2f}", f"{v['evaluate_2D_same_frames']:.2f}", f"{v['max_abs_diff']:.2f}",
             f"{v['evaluate_D_all_nonkey']:.2f}"] for m, v in part['methods'].items()]
    d = part['period']
    return table(['method', f'`check`, held out (D = {d})', f'`evaluate` at period {2 * d}, same frames',
                  'largest difference', f'`evaluate` at period {d}, all non-key frames'], rows)


def consistency_table(part: dict) -> str:
    rows = []
    for label, runs in part['runs'].items():
        seqs = runs['per_sequence']
        scores = [k[len('spearman_'):-len('_pooled')] for k in runs if k.startswith('spearman_') and
                  k.endswith('_pooled')]
        for score in scores:
            rows.append([label, score, ', '.join(f"{v[f'spearman_{score}_vs_mse']:.2f}" for v in seqs.values()),
                         f"{runs[f'spearman_{score}_pooled']:.2f}"])
        rows.append([label, 'mean chi2, key frames; non-key frames',
                     ', '.join(f"{v['mean_chi2_key']:.2f}" for v in seqs.values()) + '; '
                     + ', '.join(f"{v['mean_chi2_nonkey']:.2f}" for v in seqs.values()), ''])
    return table(['LR frames, noise model', 'score', 'Spearman vs error, per sequence', 'pooled'], rows)


def project_table(part: dict) -> str:
    rows = []
    for label, runs in part['runs'].items():
        seqs = runs['per_sequence']
        rows.append([label, ', '.join(f"{v['psnr_fuse']:.2f}" for v in seqs.values()),
                     ', '.join(f"{v['psnr_fuse_project']:.2f}" for v in seqs.values())])
    return table(['LR frames, noise model', '`fuse`, per sequence (dB)', '`fuse --project` (dB)'], rows)


def trust_section(record: dict | None) -> str:
    if record is None:
        return f"Not measured yet: `{MAKE['trust']}` writes `docs/results/trust.json`."
    holdout, consistency = record['holdout'], record['consistency']
    return '\n'.join([
        f"Made by {machine_line(record)}, with the network `{record['model']}`.",
        '',
        f"Each test sequence made a real experiment: LR frames with Poisson noise at b0 = {holdout['b0']:g} "
        "(stored as 16-bit PNG) and only every D-th HR frame. PSNR in the float convention.",
        '',
        '### Held-out key frames (`xfusion check`)',
        '',
        f"Every interior key frame held out at D = {holdout['period']}, against `evaluate` on the same LR frames. "
        'The held-out score is what `evaluate` gives for that frame at twice the period: a pessimistic estimate '
        'of the experiment\'s own period.',
        '', holdout_table(holdout), '',
        f"Spearman rank correlation of the held-out frames' chi2 with their error ({holdout['shown']}): "
        f"{holdout['spearman_chi2_vs_error']:.2f}.",
        '',
        f"### LR consistency (`xfusion fuse`, D = {consistency['period']})",
        '',
        'Spearman rank correlation between each per-frame score of `consistency.csv` (chi2; key_change, the share '
        'of the frame that neither key frame explains; bayes_rms, the RMS difference from classical Bayesian '
        'fusion; risk, key_change x bayes_rms^2) and the true per-frame error (MSE against the ground truth) '
        'over the non-key frames, per sequence in the order ' + ', '.join(next(iter(consistency['runs'].values()))
                                                                    ['per_sequence']) + '; the mean chi2 (about 1: '
        'as consistent with the LR camera as the key frames are). nan: a score that is the same for every frame.',
        '', consistency_table(consistency), '',
        'The pooled figure ranks frames of different sequences against each other, where chi2 also measures how '
        'much each sequence\'s LR camera resolves; the per-sequence figures say whether chi2 ranks the frames of '
        'one experiment.',
        '',
        '### `fuse --project`: mean PSNR over the non-key frames',
        '', project_table(consistency),
    ])


# ---------------------------------------------------------------------------------------------- bench


def bench_rows(record: dict) -> list[list[str]]:
    rows = []
    for r in record['results']:
        if r.get('error'):
            continue
        what = f"{r['network']}" + (f" ({r['encoder']})" if r.get('encoder') else '')
        if r['mode'] == 'train':
            case, value = f"training, patch {r['patch']}, batch {r['batch']}, DCN {r['dcn']}", r['seconds_per_iter']
            unit = 's/iteration'
        else:
            extras = ''.join(f', {k}' for k in ('compile', 'channels_last') if r.get(k))
            case = f"{r['mode']}, LR {r['lr_size'][0]}x{r['lr_size'][1]}, {r['precision']}{extras}"
            if r.get('batch'):
                case += f", batch {r['batch']}"
            value, unit = r['seconds_per_frame'], 's/frame'
        rows.append([what, case, f'{value:#.3g} {unit}', f"{r['peak_mem_mb']:.0f}"])
    return rows


def bench_section(record: dict | None) -> str:
    if record is None:
        return f"Not measured yet: `{MAKE['bench']}`."
    return '\n'.join([
        f"Made by {machine_line(record)}.",
        '',
        'Inference is timed over one key-frame period (20 time steps: every LR frame and one key frame per period '
        'encoded, as in a long sequence), per output frame; per-window is the plain forward on every window, cached '
        'encodes each frame once, segment is the propagation network. Peak memory is the process\'s max RSS.',
        '', table(['network', 'case', 'time', 'peak MB'], bench_rows(record)),
        '', 'The same cases compared (as `xfusion bench` prints them):', '',
        *[f'- {line}' for line in bench_table(record['results']).split('\n\n', 1)[-1].splitlines() if line],
    ])


# ---------------------------------------------------------------------------------------------- seeds


def seed_stats(cells: list[dict], recipe: str, seeds: list[int], key: tuple) -> tuple[float, float] | None:
    """(mean, spread = max - min) over the seeds of a recipe's PSNR in one (family, period, b0) cell."""
    values = [c['psnr'] for s in seeds for c in cells
              if (c['family'], c['period'], c['b0'], c['method']) == (*key, f'{recipe}_s{s}')]
    return (sum(values) / len(values), max(values) - min(values)) if len(values) == len(seeds) else None


def seeds_table(part: dict, recipes: list[str], seeds: list[int]) -> str:
    """One row per family x period x noise: every classical baseline, and each recipe's mean ± spread over seeds;
    bold: the best classical baseline; a recipe below it is marked."""
    cells = part['cells']
    keys = sorted({(c['family'], c['period'], c['b0']) for c in cells},
                  key=lambda k: (k[0], k[1], ['none', '1000', '100'].index(str(k[2]))))
    rows = []
    for key in keys:
        classical = {m: next(c['psnr'] for c in cells if (c['family'], c['period'], c['b0'], c['method']) == (*key, m))
                     for m in CLASSICAL}
        best = max(classical.values())
        row = [key[0], str(key[1]), b0_text(str(key[2]))]
        row += [f'**{v:.2f}**' if v == best else f'{v:.2f}' for v in classical.values()]
        for recipe in recipes:
            stats = seed_stats(cells, recipe, seeds, key)
            mark = ' (below)' if stats is not None and stats[0] < best else ''
            row.append('-' if stats is None else f'{stats[0]:.2f} ± {stats[1] / 2:.2f}{mark}')
        rows.append(row)
    return table(['family', 'period', 'LR noise', *CLASSICAL, *recipes], rows)


def seeds_summary(part: dict, recipes: list[str], seeds: list[int]) -> str:
    """Per recipe: the mean over every cell and seed, the spread of the seeds' means, and the cells below the best
    classical baseline (of any seed)."""
    cells = part['cells']
    keys = sorted({(c['family'], c['period'], c['b0']) for c in cells}, key=str)
    rows = []
    for recipe in recipes:
        per_seed = []
        below = 0
        for s in seeds:
            mine = {(c['family'], c['period'], c['b0']): c['psnr'] for c in cells if c['method'] == f'{recipe}_s{s}'}
            if len(mine) != len(keys):
                break
            per_seed.append(sum(mine.values()) / len(mine))
            below += sum(mine[k] < max(c['psnr'] for c in cells if (c['family'], c['period'], c['b0']) == k
                                       and c['method'] in CLASSICAL) for k in keys)
        else:
            rows.append([recipe, f'{sum(per_seed) / len(per_seed):.2f}', f'{max(per_seed) - min(per_seed):.2f}',
                         f'{below} of {len(keys) * len(seeds)}'])
    return table(['recipe', 'mean PSNR (dB)', 'spread of the seeds (dB)', 'cells below the best classical'], rows)


def seeds_section(record: dict | None) -> str:
    if record is None:
        return f"Not measured yet: `{MAKE['seeds']}` writes `docs/results/seeds.json`."
    recipes, seeds = list(record['recipes']), record['seeds']
    parts = [f'{machine_line(record)}. Training seeds {", ".join(map(str, seeds))} of each recipe; mean PSNR '
             '(dB) over the non-key frames of each scene family, period and LR noise, in the paper convention. '
             'A recipe\'s cell is the mean over its seeds ± half their spread; the best classical baseline is in '
             'bold, and a recipe below it is marked. Recipes:', '',
             *[f"- `{r}`: {record['describe'].get(r, '')} ({', '.join(f'`{f}`' for f in record['recipes'][r])})"
               for r in recipes]]
    for added in record.get('additions', []):
        again = added['replaced']  # recipes the record held, measured again (their cells replaced)
        parts += ['', ', '.join(f'`{r}`' + (' measured again' if r in again else ' added') for r in added['recipes'])
                  + f" by {machine_line(added)}, on the same data sets (its classical baselines measured the same)."]
    for name, title in (('test', 'Test families (never used for training or a choice)'),
                        ('val', 'Validation families (where the choices were made)')):
        part = record['sets'][name]
        families = sorted(set(part['families'].values()))
        parts += ['', f'### {title}: {", ".join(families)}', '', seeds_summary(part, recipes, seeds), '',
                  seeds_table(part, recipes, seeds)]
    return '\n'.join(parts)


# ---------------------------------------------------------------------------------------------- packaged models


def trained_on_text(trained: dict) -> list[str]:
    lines = [f"- `{s['root']}`: {s['sequences']} sequences of {s['frames']} frames, families "
             f"{', '.join(s['families'])}, seed {s['seed']}, "
             f"{'cameras noisy at b0 ' + format(s['b0'], 'g') if s['b0'] else 'clean cameras'} (`{s['command']}`)"
             for s in trained['sets']]
    low, high = trained['extra_b0_log10']
    lines.append(f"- key-frame periods {trained['periods'][0]} to {trained['periods'][1]}; LR photon noise added to "
                 f"{trained['noise_prob']:.0%} of the training crops at b0 {10 ** low:.0f} to {10 ** high:.0f}; "
                 f"HR crops of {trained['crop_hr']} pixels")
    return lines


def card_table(card: dict) -> str:
    method = card['method']
    rows = []
    for row in card['test']['rows']:
        psnr = row['psnr']
        best = max(CLASSICAL, key=psnr.get)
        versus = best if card['versus'] == 'best classical' else card['versus']
        rows.append([row['family'], str(row['period']), b0_text(row['b0'])]
                    + [f'**{psnr[m]:.2f}**' if m == best else f'{psnr[m]:.2f}' for m in CLASSICAL]
                    + [f'{psnr[method]:.2f}', f'{psnr[method] - psnr[versus]:+.2f} ({versus})'])
    return table(['family', 'period', 'LR noise', *CLASSICAL, card['name'], 'margin'], rows)


def card_page(card: dict) -> str:
    h = card['headline']
    trained = card['trained_on']
    parts = [
        f"# {card['name']}: {card['network']}", '',
        f"{card['role'][0].upper()}{card['role'][1:]}. {card['parameters'] / 1e6:.2f} M parameters, "
        f"{card['bytes'] / 1e6:.2f} MB. Packaged by {machine_line(card)}.", '',
        '## Use', '',
        f"- `xfusion fuse --lr ... --hr ... --period P --out ... --model {card['name']}`"
        + (' (the default without `--model`)' if card['method'] == 'stf' else ''),
        f"- fine-tune on your own sequences: `path.pretrain_network_g: {card['name']}` in a training option file "
        '(its `network_g` is taken from the packaged model when the file gives none)', '',
        '## Training', '',
        f"Recipe `{card['recipe']}`, {card['total_iter']} iterations, training seed {card['manual_seed']}; "
        f"the options of the run are `options.yml` beside the weights. Retrain with `{card['retrain']}`.", '',
        *[line for step in card['pretrained_by'] for line in (
            f"Pretrained first by `{step['recipe']}`, {step['total_iter']} iterations from random weights, on "
            f"`{step['root']}`: {step['clips']} REDS-layout clips of {step['frames']} frames (`{step['command']}`).",
            '')],
        'Training data (scene families never used for validation or test):', '', *trained_on_text(trained)]
    if card['validation']:
        v = card['validation']
        scores = ', '.join(f'{m} {p:.2f} dB' for m, p in v['psnr'].items())
        parts += ['', f"Chosen over the other key-frame networks on the validation families "
                  f"({', '.join(v['families'])}; period {v['setting']['period']}, LR noise b0 {v['setting']['b0']}, "
                  f"mean PSNR over non-key frames): {scores}."]
    parts += ['', '## Test families', '',
              f"Scene families {', '.join(card['test']['families'])} (`{card['test']['data']}`), never used for "
              f"training or for a choice; mean PSNR (dB) over the non-key frames, {card['test']['convention']} "
              f"convention, lr_sep {card['test']['lr_sep']}; the best classical baseline in bold. In the demo "
              f"setting (period {h['period']}, LR noise b0 {h['b0']}, all test sequences): {h['psnr']:.2f} dB "
              f"against {h['baseline']} {h['baseline_psnr']:.2f} dB.", '', card_table(card), '',
              '## Limits', '', *[f'- {limit}' for limit in card['limits']]]
    return '\n'.join(parts) + '\n'


def models_section() -> str:
    models = packaged_models()
    if not models:
        return f"None packaged yet: `{MAKE['models']}` writes them."
    rows = []
    for name, model in models.items():
        card, h = model.card, model.card['headline']
        rows.append([f"[{name}](../xfusion/pretrained/{name}/card.md)", card['network'], card['role'],
                     f"{card['bytes'] / 1e6:.2f}", f"{h['psnr']:.2f}", f"{h['baseline']} {h['baseline_psnr']:.2f}"])
    first = next(iter(models.values())).card
    return (f"{machine_line(first)}. The networks inside the package (`xfusion models`), on the test families in "
            f"the demo setting (period {first['headline']['period']}, LR noise b0 {first['headline']['b0']}); "
            "each card holds the whole period x noise table.\n\n"
            + table(['model', 'network', 'what it is', 'MB', 'PSNR (dB)', 'against'], rows))


# ---------------------------------------------------------------------------------------------- fuse over ranks


def fuse_scaling_section(record: dict | None) -> str:
    if record is None:
        return f"Not measured yet: `{MAKE['fuse_scaling']}` writes `docs/results/fuse_scaling.json`."
    r, m = record['recording'], record['manifest']
    rows = [[f"one recording: {r['frames']} frames, HR {r['hr_size'][0]}x{r['hr_size'][1]}, key frames every "
             f"{r['period']} ({r['segments']} segments)", f"{r['one_process_s']:.1f}", f"{r['two_processes_s']:.1f}",
             f"{r['ratio']:.2f}"],
            [f"a manifest of {m['experiments']} experiments of {m['frames_each']} frames", f"{m['one_process_s']:.1f}",
             f"{m['two_processes_s']:.1f}", f"{m['ratio']:.2f}"]]
    same = 'identical' if r['identical'] else '**not identical**'
    stage = r['fusion_stage_s']
    rows.insert(1, ['the fusion stage of that recording alone (without each process\'s start-up)', f'{stage[0]:.1f}',
                    f'{stage[1]:.1f}', f'{stage[1] / stage[0]:.2f}'])
    return (f"{machine_line(record)}. `xfusion fuse` with the {record['model']} network: wall time of the whole "
            f"command, {record['threads_per_process']} torch thread per process, the fastest of {record['repeats']} "
            f"runs; two processes by `torchrun --nproc_per_node=2 -m xfusion fuse`. The frames two processes wrote "
            f"are {same} to those of one. The start-up every process makes (imports, the network, the camera fit) and "
            f"torchrun's own keep the whole command above half; a manifest's experiments go whole to one rank each, "
            f"so {m['experiments']} experiments on 2 ranks take at best two thirds of the time.\n\n"
            + table(['what', '1 process (s)', '2 processes (s)', 'ratio'], rows))


# ---------------------------------------------------------------------------------------------- the rig


def rig_section(record: dict | None) -> str:
    if record is None:
        return f"Not measured yet: `{MAKE['rig']}` writes `docs/results/rig.json`."
    rig, true = record['rig'], record['true_transform']
    rows = [[model, r['model'] + (', mirrored' if r['mirrored'] else ''),
             f"{r['scale_xy'][0]:.4f} x {r['scale_xy'][1]:.4f}", f"{r['rotation_deg']:+.3f}",
             f"{r['max_error_px']:.2f}", f"{r['median_error_px']:.2f}", f"{record['fused_psnr'][model]:.2f}"]
            for model, r in record['registration'].items()]
    rows.append(['the true transform', 'affine' + (', mirrored' if true['mirrored'] else ''),
                 f"{true['scale_xy'][0]:.4f} x {true['scale_xy'][1]:.4f}", f"{true['rotation_deg']:+.3f}", '0', '0',
                 f"{record['fused_psnr']['true']:.2f}"])
    lr, hr = rig['lr'], rig['hr']
    return (f"{machine_line(record)}. `xfusion synth xray --rig {rig['rig']} --rig-scale {rig['scale']}`: "
            f"{lr['name']} (LR, {rig['lr_size'][1]}x{rig['lr_size'][0]} pixels of {lr['pixel_um']} um at "
            f"{lr['fps']:,.0f} fps) and {hr['name']} (HR, {rig['hr_size'][1]}x{rig['hr_size'][0]} pixels of "
            f"{hr['pixel_um']} um at {hr['fps']:,.1f} fps: every {rig['hr_times'][1]}th LR step), the HR camera "
            f"mirrored, its pixels {rig['aspect']:.2f} times taller than wide, turned {rig['rotation_deg']} degree; "
            f"{rig['frames']} LR frames of a {rig['family']}. Registered from the first frame pair by each "
            "`--transform-model`; the error is where the fitted map puts the HR pixels that land in the LR field, "
            "against the true map (x4-grid pixels). Fused by the packaged network with each transform, key frames "
            "placed by the cameras' clocks; PSNR (8-bit) of the non-key frames against the ground truth, over the "
            "pixels both cameras saw.\n\n"
            + table(['--transform-model', 'fitted', 'scale x / y', 'rotation (deg)', 'max error (px)',
                     'median error (px)', 'fused PSNR (dB)'], rows))


# ---------------------------------------------------------------------------------------------- the pages


def results_page() -> str:
    demo, trust, bench, seeds = load('demo'), load('trust'), load('bench'), load('seeds')
    scaling, rig = load('fuse_scaling'), load('rig')
    return '\n'.join([
        '# Results', '',
        'Every table on this page is rendered by `python benchmarks/render_results.py` from a record in '
        '`docs/results/` that one command wrote; each section names that command, the machine and the date. '
        'Rerun the command and the renderer to update a section. What was tried and not taken is in '
        '[experiments.md](experiments.md).', '',
        '## The demo networks against the classical baselines', '', demo_section(demo), '',
        '## The recipes over three training seeds', '', seeds_section(seeds), '',
        '## The packaged models', '', models_section(), '',
        '## Checking a fusion without ground truth', '', trust_section(trust), '',
        '## Speed and memory (`xfusion bench`)', '', bench_section(bench), '',
        '## Fusion over several processes', '', fuse_scaling_section(scaling), '',
        '## The two-camera rig as a virtual experiment', '', rig_section(rig), '',
    ])


def readme_blocks() -> dict[str, str]:
    """The README's two small tables: the demo setting and the quick bench."""
    demo, bench = load('demo'), load('bench')
    blocks = {}
    if demo is not None:
        m = demo['machine']
        blocks['demo'] = (demo_table(demo) + f"\n\nTest sequences of `make demo`, period {demo['headline']['period']}, "
                          f"LR noise {b0_text(demo['headline']['b0'])}, mean over non-key frames, networks trained on "
                          f"{m['cpu_count']} CPU cores ({m['cpu']}). All settings, and when and how they were "
                          "measured: [docs/results.md](docs/results.md).")
    if bench is not None:  # the paper-scale networks at the README's size; the rest is on the results page
        keep = [r for r in bench_rows(bench) if 'LR 100x256, fp32' in r[1]]
        m = bench['machine']
        blocks['bench'] = (table(['network', 'case', 'time', 'peak MB'], keep) +
                           f"\n\n{m['cpu']}, {m['cpu_count']} cores, {m['threads']} torch threads, "
                           f"{m.get('gpu') or 'no GPU'}. The demo networks, training steps, bf16 and the date: "
                           '[docs/results.md](docs/results.md#speed-and-memory-xfusion-bench).')
    return blocks


def with_blocks(text: str, blocks: dict[str, str]) -> str:
    """Replace what stands between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->``."""
    for name, body in blocks.items():
        text = re.sub(rf'(<!-- results:{name} -->\n).*?(\n<!-- /results:{name} -->)',
                      lambda match, body=body: match.group(1) + body + match.group(2), text, flags=re.S)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true', help='only compare; exit 1 when a page is out of date')
    args = parser.parse_args(argv)
    pages = {PAGE: results_page(), README: with_blocks(README.read_text(), readme_blocks()),
             **{model.card_page: card_page(model.card) for model in packaged_models().values()}}
    stale = [path for path, text in pages.items() if not path.is_file() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f'{path} is out of date: run python benchmarks/render_results.py', file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(pages[path])
        print(f'wrote {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
