"""``make demo``: the whole XFusion pipeline on built-in synthetic data, on a CPU, in about 15 minutes.

1. synthetic data: REDS-layout clips (pretraining) and x-ray sequences with disjoint seeds for
   train / val / test (``datasets/demo/``);
2. pretraining of a small STF network on the REDS-layout clips, then transfer learning on the
   synthetic x-ray training sequences (``experiments/demo_*``); the same for the LR-only
   baseline network;
3. ``test.py`` on the fine-tuned experiment (validation sequences; ``results/demo_finetune_xray``);
4. ``xfusion evaluate`` on the test sequences (seeds never used in training): every method at
   period 20, lr_sep 1, with LR photon noise b0 = 1000 (``results/demo_evaluation``).
"""
from __future__ import annotations

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


def step(title: str, command: list[str], log_name: str) -> None:
    """Run one step, showing its progress lines (the full output goes to results/demo_logs/)."""
    print(f'\n[{time.time() - started:6.0f} s] {title}', flush=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    log_path = LOGS / f'{log_name}.log'
    last_shown = [time.time()]

    def heartbeat() -> None:  # a line at least every 20 s, also while a step prints only progress bars
        while proc.poll() is None:
            time.sleep(2)
            if time.time() - last_shown[0] > 20:
                print(f'   ... still working ({time.time() - started:.0f} s)', flush=True)
                last_shown[0] = time.time()

    with open(log_path, 'w') as log:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                bufsize=1)
        threading.Thread(target=heartbeat, daemon=True).start()
        for line in proc.stdout:
            log.write(line)
            if any(key in line for key in SHOWN) or line.startswith('|'):
                print('   ' + line.rstrip()[:160], flush=True)
                last_shown[0] = time.time()
        code = proc.wait()
    if code != 0:
        print(f'\nstep failed (exit {code}); its log: {log_path}', file=sys.stderr)
        print(log_path.read_text()[-3000:], file=sys.stderr)
        sys.exit(code)


def synth(kind: str, out: Path, *args: str) -> None:
    if (out / ('meta_info_REDS_GT.txt' if kind == 'reds' else 'seq_000')).exists():
        print(f'   {out.relative_to(ROOT)} exists, kept')
        return
    step(f'synthetic {kind} data -> {out.relative_to(ROOT)}', XFUSION + ['synth', kind, '--out', str(out), *args],
         f'synth_{kind}_{out.name}')


def main() -> None:
    print('XFusion demo: synthetic data -> pretraining -> transfer learning -> test -> evaluation')
    synth('reds', DATA / 'reds', '--sequences', '6', '--frames', '30', '--hr-size', '128', '192', '--seed', '0')
    if not (DATA / 'reds' / 'train_sharp_gray').exists():
        step('gray copy of the REDS-layout clips', XFUSION + ['reds-gray', '--src', str(DATA / 'reds')], 'reds_gray')
    # x-ray: noisy cameras for training (as in an experiment), clean test data (noise is added on the fly)
    synth('xray', DATA / 'xray' / 'train', '--sequences', '8', '--frames', '60', '--seed', '1', '--b0', '1000')
    synth('xray', DATA / 'xray' / 'val', '--sequences', '2', '--frames', '41', '--seed', '2', '--b0', '1000')
    synth('xray', DATA / 'xray' / 'test', '--sequences', '3', '--frames', '61', '--seed', '3', '--b0', '0')

    train = [sys.executable, 'train.py', '-opt']
    step('pretraining the STF network on the REDS-layout clips', train + ['options/demo/pretrain_reds_demo.yml'],
         'pretrain_reds')
    step('transfer learning on the synthetic x-ray sequences', train + ['options/demo/finetune_xray_demo.yml'],
         'finetune_xray')
    step('pretraining the LR-only baseline network', train + ['options/demo/pretrain_reds_lronly_demo.yml'],
         'pretrain_reds_lronly')
    step('transfer learning of the LR-only baseline', train + ['options/demo/finetune_xray_lronly_demo.yml'],
         'finetune_xray_lronly')
    step('test.py on the validation sequences', [sys.executable, 'test.py', '-opt',
                                                 'options/demo/finetune_xray_demo.yml'], 'test')
    step('evaluation on the test sequences (seeds never used in training)', XFUSION + [
        'evaluate', '--data', str(DATA / 'xray' / 'test'), '--out', str(EVALUATION),
        '--model', 'experiments/demo_finetune_xray/models/net_g_latest.pth',
        '--lr-only-model', 'experiments/demo_finetune_xray_lronly/models/net_g_latest.pth',
        '--methods', 'bicubic,key_copy,temporal,bayes,lr_only,stf', '--period', '20', '--lr-sep', '1',
        '--b0', '1000'], 'evaluate')

    summary = (EVALUATION / 'summary.md').read_text()
    print('\nNon-key frames of the test sequences (period 20, lr_sep 1, LR noise b0 = 1000):')
    print(summary.split('## All settings together, non-key frames (the headline)')[1].split('##')[0].strip())
    print('\nKey frames (the HR camera recorded them):')
    print(summary.split('## Per setting, key frames')[1].split('\n\n', 1)[1].strip())
    print(f'\nDone in {(time.time() - started) / 60:.1f} min. Outputs:')
    print(f'  panels (bicubic | key frame | ... | STF | ground truth | |error|): {EVALUATION / "panels"}')
    print(f'  per-frame metrics, summary, plots: {EVALUATION}/metrics.csv, summary.md, psnr.png, ssim.png, aad.png')
    print(f'  fused validation frames and their metrics: {ROOT / "results" / "demo_finetune_xray"}')
    print(f'  checkpoints: {ROOT / "experiments"}/demo_*; logs of every step: {LOGS}')


if __name__ == '__main__':
    main()
