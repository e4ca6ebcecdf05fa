"""``make demo``: the whole XFusion pipeline on built-in synthetic data, on a CPU: about 15 minutes on 2
cores, more on a slower machine.

1. synthetic data (``datasets/demo/``): REDS-layout clips (pretraining) and x-ray sequences of disjoint
   scene families and seeds (``xfusion synth xray --families``, the roles of ``xfusion.synth.xray.ROLES``):
   train (seed 1 with noisy cameras at b0 = 1000, seed 4 clean), val (seed 2) and test (seed 3), val and test
   clean (noise is added when they are evaluated);
2. training (``experiments/demo_*``): the EDVR-based window network (pretrained on the REDS-layout
   clips, then transfer-learned on the x-ray sequences), the key-frame propagation network
   (PropSTF, a segment network, on the x-ray sequences) and its LR-only variant (PropVSR, pretrained on the
   REDS-layout clips, then trained on the x-ray sequences), the last two side by side with the cores shared
   out (``test.py`` follows the shorter one);
3. ``test.py`` on the fine-tuned EDVR experiment (validation sequences; ``results/demo_finetune_xray``);
4. the choice of the recommended network: both key-frame networks on the *validation* sequences
   (period 20, LR noise b0 = 1000); the better one becomes the method ``stf``, written to
   ``results/demo_evaluation/checkpoints.json`` with every other trained network;
5. ``xfusion evaluate`` on the test sequences (families and seeds never used in training or validation): every
   method at period 20, lr_sep 1, LR noise b0 = 1000 (``results/demo_evaluation``).
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / 'datasets' / 'demo'
LOGS = ROOT / 'results' / 'demo_logs'
EVALUATION = ROOT / 'results' / 'demo_evaluation'
XFUSION = [sys.executable, '-m', 'xfusion']
SHOWN = ('iter:', 'Validation', '\t #', 'Error', 'error', 'Traceback', 'Evaluating', 'Results in')
started = time.time()


def step(title: str, command: list[str], log_name: str, threads: int | None = None, tag: str = '') -> int:
    """Run one step, showing its progress lines (the full output goes to results/demo_logs/); its exit code.

    ``threads``: the CPU threads it may use (all of them when None); ``tag`` prefixes its lines when steps run
    side by side."""
    print(f'\n[{time.time() - started:6.0f} s] {tag}{title}', flush=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    log_path = LOGS / f'{log_name}.log'
    last_shown = [time.time()]
    env = dict(os.environ, **({'OMP_NUM_THREADS': str(threads), 'MKL_NUM_THREADS': str(threads)} if threads else {}))

    def heartbeat() -> None:  # a line at least every 20 s, also while a step prints only progress bars
        while proc.poll() is None:
            time.sleep(2)
            if time.time() - last_shown[0] > 20:
                print(f'   {tag}... still working ({time.time() - started:.0f} s)', flush=True)
                last_shown[0] = time.time()

    with open(log_path, 'w') as log:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                bufsize=1, env=env)
        threading.Thread(target=heartbeat, daemon=True).start()
        for line in proc.stdout:
            log.write(line)
            if any(key in line for key in SHOWN) or line.startswith('|'):
                print(f'   {tag}' + line.rstrip()[:160], flush=True)
                last_shown[0] = time.time()
        code = proc.wait()
    if code != 0:
        print(f'\n{tag}step failed (exit {code}); its log: {log_path}', file=sys.stderr)
        print(log_path.read_text()[-3000:], file=sys.stderr)
    return code


def run(title: str, command: list[str], log_name: str) -> None:
    """One step on every core; the demo stops if it fails."""
    if step(title, command, log_name):
        sys.exit(1)


def side_by_side(*lanes: list[tuple[str, list[str], str]]) -> None:
    """Lanes of steps at the same time, the cores shared out among them (each lane's steps in order).

    On two cores the PropSTF and its LR-only variant trained side by side on one thread each take about a
    fifth less time than one after the other on both (docs/experiments.md): their many small operations keep a
    second thread busy only part of the time. EDVRSTF keeps both busy, and trains alone. One thread instead of
    two changes the last bits of the sums, so the trained weights differ as between two seeds. The demo stops
    once every lane has ended if a step failed."""
    lanes = tuple(lane for lane in lanes if lane)  # a lane whose data are there already takes no cores
    threads = max(1, (os.cpu_count() or 1) // max(len(lanes), 1))
    failed = []

    def run_lane(index: int, lane: list[tuple[str, list[str], str]]) -> None:
        for title, command, log_name in lane:
            if step(title, command, log_name, threads, tag=f'({chr(ord("a") + index)}) '):
                failed.append(log_name)
                return

    workers = [threading.Thread(target=run_lane, args=(i, lane)) for i, lane in enumerate(lanes)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failed:
        sys.exit(1)


MADE: list[tuple[Path, list[str]]] = []  # the data sets this run makes, recorded once they are all there


def synth(kind: str, out: Path, *args: str) -> list[tuple[str, list[str], str]]:
    """The step that makes one synthetic data set; none when the same command made it already (its synth.json).
    What an older command left there (other families, seeds or sizes) is removed first."""
    command = ['synth', kind, '--out', str(out.relative_to(ROOT)), *args]
    record = out / 'synth.json'
    if record.is_file() and json.loads(record.read_text()) == command:
        print(f'   {out.relative_to(ROOT)} exists, kept')
        return []
    shutil.rmtree(out, ignore_errors=True)
    MADE.append((out, command))
    return [(f'synthetic {kind} data -> {out.relative_to(ROOT)}', XFUSION + command, f'synth_{kind}_{out.name}')]


# the networks the demo trains: method name -> (experiment, option files in training order)
NETWORKS = {
    'edvrstf': ('demo_finetune_xray', ['options/demo/pretrain_reds_demo.yml', 'options/demo/finetune_xray_demo.yml']),
    'propstf': ('demo_finetune_xray_prop', ['options/demo/finetune_xray_prop_demo.yml']),
    'lr_only': ('demo_finetune_xray_prop_lronly', ['options/demo/pretrain_reds_prop_lronly_demo.yml',
                                                   'options/demo/finetune_xray_prop_lronly_demo.yml']),
}
KEY_FRAME_NETWORKS = ('edvrstf', 'propstf')  # the candidates for the recommended network


def checkpoint(method: str) -> str:
    return f'experiments/{NETWORKS[method][0]}/models/net_g_latest.pth'


def mean_psnr(metrics_csv: Path) -> dict[str, float]:
    """Mean PSNR over the non-key frames of each method in an evaluate metrics.csv."""
    values: dict[str, list[float]] = {}
    with open(metrics_csv) as f:
        for row in csv.DictReader(f):
            if row['is_key'] == 'False':
                values.setdefault(row['method'], []).append(float(row['psnr']))
    return {method: sum(v) / len(v) for method, v in values.items()}


def write_timing(marks: dict[str, float]) -> None:
    """results/demo_logs/timing.json: the minutes of the whole demo and of its steps (benchmarks/demo_results.py
    puts them into docs/results.md)."""
    steps, previous = {}, started
    for name in ('data', 'training', 'evaluation'):
        steps[name] = round((marks[name] - previous) / 60, 2)
        previous = marks[name]
    (LOGS / 'timing.json').write_text(json.dumps({'minutes': round((marks['evaluation'] - started) / 60, 2),
                                                  'steps': steps}, indent=1) + '\n')


def main() -> None:
    print('XFusion demo: synthetic data -> training -> choice on validation -> evaluation on test')
    reds = synth('reds', DATA / 'reds', '--sequences', '6', '--frames', '30', '--hr-size', '128', '192', '--seed', '0')
    if not (DATA / 'reds' / 'train_sharp_gray').exists():
        reds.append(('gray copy of the REDS-layout clips', XFUSION + ['reds-gray', '--src', str(DATA / 'reds')],
                     'reds_gray'))
    # x-ray: training sequences from noisy cameras (as in an experiment) and clean ones; clean val and
    # test sequences (their LR noise is added when they are evaluated)
    xray = DATA / 'xray'
    marks: dict[str, float] = {}
    side_by_side(
        reds + synth('xray', xray / 'val', '--sequences', '4', '--frames', '41', '--seed', '2', '--b0', '0',
                     '--families', 'val')
        + synth('xray', xray / 'test', '--sequences', '4', '--frames', '61', '--seed', '3', '--b0', '0',
                '--families', 'test'),
        synth('xray', xray / 'train_noisy', '--sequences', '8', '--frames', '60', '--seed', '1', '--b0', '1000',
              '--families', 'train')
        + synth('xray', xray / 'train_clean', '--sequences', '8', '--frames', '60', '--seed', '4', '--b0', '0',
                '--families', 'train'))
    for out, command in MADE:
        (out / 'synth.json').write_text(json.dumps(command) + '\n')
    marks['data'] = time.time()
    training = {method: [(f'training {method}: {option_file}', [sys.executable, 'train.py', '-opt', option_file],
                          Path(option_file).stem) for option_file in option_files]
                for method, (_, option_files) in NETWORKS.items()}
    for title, command, log_name in training['edvrstf']:  # keeps every core busy on its own
        run(title, command, log_name)
    test_py = ('test.py on the validation sequences',
               [sys.executable, 'test.py', '-opt', 'options/demo/finetune_xray_demo.yml'], 'test')
    side_by_side(training['propstf'] + [test_py], training['lr_only'])
    marks['training'] = time.time()

    # the recommended network: the better key-frame network on the validation sequences
    choice = EVALUATION.parent / 'demo_choice'
    run('choosing the recommended network on the validation sequences', XFUSION + [
        'evaluate', '--data', str(DATA / 'xray' / 'val'), '--out', str(choice), '--period', '20', '--b0', '1000',
        '--methods', ','.join(KEY_FRAME_NETWORKS)] + [f'--model={m}={checkpoint(m)}' for m in KEY_FRAME_NETWORKS],
        'choice')
    val_psnr = mean_psnr(choice / 'metrics.csv')
    recommended = max(KEY_FRAME_NETWORKS, key=val_psnr.get)
    print('   validation PSNR (non-key frames): ' + ', '.join(f'{m} {v:.2f} dB' for m, v in val_psnr.items())
          + f'; recommended: {recommended}')
    names = {m: ('stf' if m == recommended else m) for m in NETWORKS}
    EVALUATION.mkdir(parents=True, exist_ok=True)
    checkpoints = {names[m]: checkpoint(m) for m in NETWORKS}
    (EVALUATION / 'checkpoints.json').write_text(json.dumps(
        dict(sorted(checkpoints.items(), key=lambda kv: kv[0] != 'stf')), indent=2) + '\n')

    methods = ['bicubic', 'key_copy', 'temporal', 'bayes', 'stf'] + \
        [names[m] for m in KEY_FRAME_NETWORKS if m != recommended] + ['lr_only']
    run('evaluation on the test sequences (seeds never used in training or validation)', XFUSION + [
        'evaluate', '--data', str(DATA / 'xray' / 'test'), '--out', str(EVALUATION), '--methods', ','.join(methods),
        '--period', '20', '--lr-sep', '1', '--b0', '1000'] + [f'--model={n}={c}' for n, c in checkpoints.items()],
        'evaluate')

    marks['evaluation'] = time.time()
    write_timing(marks)
    summary = (EVALUATION / 'summary.md').read_text()
    print(f'\nRecommended network (stf): {recommended}, chosen on the validation sequences')
    print('\nNon-key frames of the test sequences (period 20, lr_sep 1, LR noise b0 = 1000):')
    print(summary.split('## All settings together, non-key frames (the headline)')[1].split('##')[0].strip())
    print('\nKey frames (the HR camera recorded them):')
    print(summary.split('## Per setting, key frames')[1].split('\n\n', 1)[1].strip())
    print(f'\nDone in {(time.time() - started) / 60:.1f} min. Outputs:')
    print(f'  panels (every method | ground truth | |error|): {EVALUATION / "panels"}')
    print(f'  per-frame metrics, summary, plots: {EVALUATION}/metrics.csv, summary.md, psnr.png, ssim.png, aad.png')
    print(f'  the networks and the recommended one: {EVALUATION / "checkpoints.json"}')
    print(f'  fused validation frames and their metrics: {ROOT / "results" / "demo_finetune_xray"}')
    print(f'  checkpoints: {ROOT / "experiments"}/demo_*; logs of every step: {LOGS}')


if __name__ == '__main__':
    main()
