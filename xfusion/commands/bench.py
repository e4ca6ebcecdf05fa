"""``xfusion bench``: inference and training speed and peak memory, all cases in one run on one machine.

The networks come from option files (their ``network_g``): ``--opt FILE`` (repeatable), or by
default the paper-size and demo option files that ship with xfusion, so the bench runs from an
installed package as from a checkout.

Each case runs in its own subprocess, so that its peak memory (max RSS on CPU, the CUDA
allocator's peak on a GPU) is its own. Times are medians of repeats after a warm-up.

Inference cases time one key-frame period (D = 20 time steps, so every LR frame and one key
frame per period are encoded: the steady state of a long sequence) and report seconds per
output frame, per-window (the plain forward on every window) against cached (each frame
encoded once). Training cases time optimizer steps of STFModel on random patches.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from xfusion.errors import InputError
from xfusion.options import load_option_file, packaged_option_file

HELP = 'time inference and training, cached vs per-window, with peak memory'
DEFAULT_NETWORKS = {  # label -> option file that ships with xfusion (see packaged_option_file)
    'edvr-paper': 'pretrain_reds.yml',
    'edvr-demo': 'demo/finetune_xray_demo.yml',
    'swin-paper': 'pretrain_reds_swin.yml',
    'swin-demo': 'demo/finetune_xray_swin_demo.yml',
    'prop-paper': 'pretrain_reds_prop.yml',
    'prop-demo': 'demo/finetune_xray_prop_demo.yml',
}
PERIOD = 20
# the optimizer of an option file without a train section (a network_g alone): what the recipes use
DEFAULT_TRAIN = {'optim_g': {'type': 'Adam', 'lr': 1e-4}, 'scheduler': {'type': 'MultiStepLR', 'milestones': [10 ** 9]}}
FAST_PATHS = ('channels_last', 'compile')  # optional SequenceInference switches, timed against plain cached


def options_for(case: dict) -> dict:
    return load_option_file(case['opt'])


def network_options(case: dict) -> dict:
    """network_g of the case's option file, with the case's encoder and deformable convolution."""
    net_opt = dict(options_for(case)['network_g'])
    if case.get('encoder'):
        net_opt['hr_encoder'] = case['encoder']
    if 'fast_deform_conv' in inspect.signature(network_class(net_opt)).parameters:
        net_opt['fast_deform_conv'] = case.get('dcn', 'grid_sample') == 'grid_sample'
    return net_opt


def network_class(net_opt: dict) -> type:
    from basicsr.utils.registry import ARCH_REGISTRY

    import xfusion  # noqa: F401  (registers the networks)
    return ARCH_REGISTRY.get(net_opt['type'])


def network_for(case: dict) -> torch.nn.Module:
    from basicsr.archs import build_network
    torch.manual_seed(0)
    return build_network(network_options(case))


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_inference(case: dict) -> dict:
    from xfusion.inference import SequenceInference
    from xfusion.schedule import FrameSource, KeySchedule
    device = torch.device(case['device'])
    net = network_for(case).to(device).eval()
    h, w = case['lr_size']
    frames = PERIOD + 1
    gen = torch.Generator().manual_seed(0)
    lr = torch.rand(frames, h, w, generator=gen).to(device)
    hr = torch.rand(2, net.scale * h, net.scale * w, generator=gen).to(device)
    source = FrameSource(lr.__getitem__, lambda k: hr[k // PERIOD], KeySchedule.every(PERIOD, frames), 1)
    inference = SequenceInference(net, device, cached=case['mode'] == 'cached', batch=case.get('batch', 1),
                                  precision=case['precision'], compile=case.get('compile', False),
                                  channels_last=case.get('channels_last', False))
    # cached and segment: one key-frame period (every LR frame and one key frame per period encoded: the
    # steady state of a long sequence), amortised per output frame; per-window: one window
    times = [PERIOD // 2] if case['mode'] == 'per_window' else list(range(PERIOD))
    for _ in inference.run(source, times[:2]):  # warm-up
        pass
    seconds = []
    for _ in range(case['repeats']):
        inference.reset()  # each repeat starts with an empty cache
        sync(device)
        start = time.perf_counter()
        for _ in inference.run(source, times):
            pass
        sync(device)
        seconds.append((time.perf_counter() - start) / len(times))
    return {'seconds_per_frame': statistics.median(seconds), 'frames_timed': len(times)}


def time_training(case: dict) -> dict:
    from basicsr.models import build_model
    opt = options_for(case)
    device = torch.device(case['device'])
    net_opt = network_options(case)
    train = dict(opt.get('train') or DEFAULT_TRAIN)
    train.pop('tsa_iter', None)  # time the full network, as after the TSA-only warm start
    segment = network_class(net_opt).kind == 'segment'
    model_opt = dict(name='bench', model_type='SegmentSTFModel' if segment else 'STFModel',
                     num_gpu=1 if device.type == 'cuda' else 0, dist=False, rank=0, world_size=1, is_train=True,
                     network_g=net_opt, path={}, train=train, val={})
    model = build_model(model_opt)
    patch = case['patch']
    b = case['batch']
    gen = torch.Generator().manual_seed(0)
    num_hi = model.get_bare_model(model.net_g).num_frame_hi
    if segment:  # a segment of one period, as the training datasets give it
        n = PERIOD + 1
        data = {'lq': torch.rand(b, n, 1, patch // 4, patch // 4, generator=gen),
                'hq': torch.rand(b, num_hi, 1, patch, patch, generator=gen),
                'gt': torch.rand(b, n, 1, patch, patch, generator=gen),
                'key_pos': torch.tensor([[0, n - 1][:num_hi]] * b),
                'out_pos': torch.randint(0, n, (b, 4), generator=gen)}
    else:
        num_lr = net_opt.get('num_frame', 3)
        data = {'lq': torch.rand(b, num_lr, 1, patch // 4, patch // 4, generator=gen),
                'hq': torch.rand(b, num_hi, 1, patch, patch, generator=gen),
                'gt': torch.rand(b, 1, patch, patch, generator=gen),
                'key_weights': torch.full((b, num_hi), 1 / max(num_hi, 1))}
    seconds = []
    for it in range(1 + case['repeats']):  # the first is the warm-up
        sync(device)
        start = time.perf_counter()
        model.feed_data(data)
        model.optimize_parameters(it + 1)
        sync(device)
        seconds.append(time.perf_counter() - start)
    return {'seconds_per_iter': statistics.median(seconds[1:])}


def run_case(case: dict) -> dict:
    """Run one case in this process (called in a fresh subprocess) and add its peak memory."""
    import xfusion  # noqa: F401  (registers the networks and the model)
    torch.set_num_threads(case['threads'])
    result = time_training(case) if case['mode'] == 'train' else time_inference(case)
    if case['device'].startswith('cuda'):
        result['peak_mem_mb'] = torch.cuda.max_memory_allocated() / 2**20
    else:
        result['peak_mem_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {**case, **result}


def cases_for(device: str, quick: bool, threads: int, option_files: list[str] | None = None) -> list[dict]:
    """The cases to time: the default set, or inference and training of the networks of ``option_files``."""
    cuda = device.startswith('cuda')
    repeats = 1 if quick else 2
    sizes = [[100, 256]] if quick else [[100, 256], [256, 256]]
    cases = default_cases(cuda, quick, sizes) if not option_files else [
        dict(network=Path(f).stem, opt=str(f), lr_size=size, mode=mode, precision='fp32')
        for f in option_files for size in sizes for mode in inference_modes(load_option_file(f))] + [
        dict(network=Path(f).stem, opt=str(f), mode='train', patch=64, batch=8, precision='fp32')
        for f in option_files]
    unique = []
    for case in cases:
        if 'opt' not in case:
            case['opt'] = str(packaged_option_file(DEFAULT_NETWORKS[case['network']]))
        case.setdefault('encoder', None)
        case.setdefault('dcn', 'torchvision' if cuda else 'grid_sample')
        case['family'] = options_for(case)['network_g']['type']
        case.update(device=device, repeats=repeats, threads=threads)
        if case not in unique:
            unique.append(case)
    return unique


def inference_modes(opt: dict) -> tuple[str, ...]:
    """Window networks: per-window and cached inference; segment networks: segment inference."""
    return ('segment',) if network_class(opt['network_g']).kind == 'segment' else ('per_window', 'cached')


def default_cases(cuda: bool, quick: bool, sizes: list[list[int]]) -> list[dict]:
    """Both modes and encoders of the paper network, the demo networks, training, the DCNs, SwinSTF, PropSTF."""
    cases = []
    for network in ('prop-paper', 'prop-demo'):  # the segment family beside the paper network, at its first size
        cases.append(dict(network=network, lr_size=sizes[0], mode='segment', precision='fp32'))
        if cuda or cpu_has_bf16():
            cases.append(dict(network=network, lr_size=sizes[0], mode='segment', precision='bf16'))
    for size in sizes:
        for encoder in ('pool', 'unshuffle'):
            for mode in ('per_window', 'cached'):
                cases.append(dict(network='edvr-paper', encoder=encoder, lr_size=size, mode=mode, precision='fp32'))
    if cuda or cpu_has_bf16():  # lower precision: the cached pool network at the first size
        cases.append(dict(network='edvr-paper', encoder='pool', lr_size=sizes[0], mode='cached', precision='bf16'))
    if cuda:
        cases.append(dict(network='edvr-paper', encoder='pool', lr_size=sizes[0], mode='cached', precision='bf16',
                          batch=8))
    if not quick:  # the optional fast paths, each against the plain cached case
        for option in FAST_PATHS:
            cases.append(dict(network='edvr-paper', encoder='pool', lr_size=sizes[0], mode='cached', precision='fp32',
                              **{option: True}))
    for network in ('edvr-demo', 'swin-demo'):
        for mode in ('per_window', 'cached'):
            cases.append(dict(network=network, lr_size=[64, 64], mode=mode, precision='fp32'))
    dcns = ['torchvision'] if cuda else ['grid_sample', 'torchvision']
    for dcn in dcns:  # the deformable convolution's share of training and inference
        cases.append(dict(network='edvr-demo', mode='train', patch=64, batch=8, dcn=dcn, precision='fp32'))
        if not quick:
            cases.append(dict(network='edvr-paper', encoder='pool', mode='train', patch=256, batch=1, dcn=dcn,
                              precision='fp32'))
            cases.append(dict(network='edvr-paper', encoder='pool', lr_size=sizes[0], mode='per_window', dcn=dcn,
                              precision='fp32'))
    cases.append(dict(network='swin-demo', mode='train', patch=64, batch=8, precision='fp32'))
    cases.append(dict(network='prop-demo', mode='train', patch=64, batch=4, precision='fp32'))
    if not quick:
        cases.append(dict(network='swin-paper', encoder='pool', lr_size=sizes[0], mode='per_window',
                          precision='fp32'))
    return cases


def cpu_has_bf16() -> bool:
    try:
        return 'avx512_bf16' in Path('/proc/cpuinfo').read_text() or 'amx_bf16' in Path('/proc/cpuinfo').read_text()
    except OSError:
        return False


def machine_info(device: str, threads: int) -> dict:
    info = {'platform': platform.platform(), 'python': platform.python_version(), 'torch': torch.__version__,
            'threads': threads, 'cpu_count': os.cpu_count(), 'device': device}
    try:
        model = [line.split(':', 1)[1].strip() for line in Path('/proc/cpuinfo').read_text().splitlines()
                 if line.startswith('model name')]
        info['cpu'] = model[0] if model else platform.processor()
    except OSError:
        info['cpu'] = platform.processor()
    if device.startswith('cuda'):
        info['gpu'] = torch.cuda.get_device_name(torch.device(device))
    return info


def describe(r: dict) -> str:
    what = f"{r['network']}/{r.get('encoder') or '-'}"
    if r['mode'] == 'train':
        return f"{what:16s} train patch {r['patch']} batch {r['batch']} dcn {r['dcn']}"
    extras = ''.join(f' {name}' for name in FAST_PATHS if r.get(name))
    extras += f" batch {r['batch']}" if r.get('batch') else ''
    return (f"{what:16s} {r['mode']:10s} LR {r['lr_size'][0]}x{r['lr_size'][1]} {r['precision']} dcn {r['dcn']}"
            f"{extras}")


IDENTITY = ('network', 'encoder', 'lr_size', 'mode', 'precision', 'dcn', 'batch', 'patch') + FAST_PATHS


def case_key(r: dict, **changes) -> tuple:
    """What identifies a case, with some fields replaced (to find the case to compare with)."""
    values = {k: r.get(k) for k in IDENTITY}
    values.update(changes)
    return tuple(tuple(v) if isinstance(v, list) else v for v in values.values())


def table(results: list[dict]) -> str:
    lines = [f"{'case':75s} {'s/frame or s/iter':>18s} {'peak MB':>9s}"]
    for r in results:
        if r.get('error'):
            lines.append(f"{describe(r):75s} failed: {r['error']}")
            continue
        value = r.get('seconds_per_frame', r.get('seconds_per_iter'))
        lines.append(f'{describe(r):75s} {value:18.3f} {r["peak_mem_mb"]:9.0f}')
    index = {case_key(r): r for r in results}
    ratios = []
    for r in results:
        what = f"{r['network']}/{r.get('encoder') or '-'}"
        if r.get('error'):
            continue
        if r['mode'] == 'cached':
            size = 'LR {}x{}'.format(*r['lr_size'])
            ref = index.get(case_key(r, mode='per_window', precision='fp32', batch=None))
            if ref and not any(r.get(name) for name in FAST_PATHS):  # those are compared with plain cached
                ratios.append(f"{what} {size} {r['precision']}: cached / per-window fp32 = "
                              f"{r['seconds_per_frame'] / ref['seconds_per_frame']:.2f}")
            for option in FAST_PATHS:
                plain = index.get(case_key(r, **{option: None})) if r.get(option) else None
                if plain and not plain.get('error'):
                    ratios.append(f"{what} {size} cached: {option} / plain = "
                                  f"{r['seconds_per_frame'] / plain['seconds_per_frame']:.2f}")
            pool = index.get(case_key(r, encoder='pool')) if r.get('encoder') == 'unshuffle' else None
            if pool:
                ratios.append(f"{r['network']} {size} cached: unshuffle / pool = "
                              f"{r['seconds_per_frame'] / pool['seconds_per_frame']:.2f}")
        if r['mode'] == 'segment':  # the segment family against the paper window network, cached, same size
            ref = index.get(case_key(r, network='edvr-paper', encoder='pool', mode='cached'))
            if ref and not ref.get('error'):
                ratios.append(f"{what} LR {r['lr_size'][0]}x{r['lr_size'][1]} {r['precision']}: segment / "
                              f"edvr-paper/pool cached = {r['seconds_per_frame'] / ref['seconds_per_frame']:.2f}")
        if r['dcn'] == 'grid_sample':
            tv = index.get(case_key(r, dcn='torchvision'))
            if tv and not tv.get('error'):
                key = 'seconds_per_iter' if r['mode'] == 'train' else 'seconds_per_frame'
                ratios.append(f"{what} {r['mode']}: the grid_sample DCN is {tv[key] / r[key]:.2f}x faster "
                              "than torchvision's")
    return '\n'.join(lines + [''] + ratios)


def bench(device: str = 'cpu', quick: bool = False, out: str | None = None, threads: int | None = None,
          option_files: list[str] | None = None, list_only: bool = False, command: str = 'xfusion bench') -> dict:
    """Time every case, each in its own process; the report says the command, the date and the machine."""
    threads = threads or torch.get_num_threads()
    cases = cases_for(device, quick, threads, option_files)
    if list_only:
        for i, case in enumerate(cases, 1):
            print(f'[{i}/{len(cases)}] {describe(case)}  ({case["opt"]})')
        return {'cases': cases, 'results': []}
    results = []
    for i, case in enumerate(cases, 1):
        print(f'[{i}/{len(cases)}] {describe(case)}', flush=True)
        proc = subprocess.run([sys.executable, '-m', 'xfusion.commands.bench', '--case', json.dumps(case)],
                              capture_output=True, text=True)
        if proc.returncode != 0:  # report it and go on: one unsupported path should not cost the other cases
            last = (proc.stderr.strip().splitlines() or ['no output'])[-1]
            print(f'  failed: {last}', flush=True)
            results.append({**case, 'error': last})
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    report = {'command': command, 'date': time.strftime('%Y-%m-%d'), 'machine': machine_info(device, threads),
              'quick': quick, 'period': PERIOD, 'results': results}
    print(table(results))
    if out:
        Path(out).write_text(json.dumps(report, indent=2))
        print(f'wrote {out}')
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--opt', action='append', metavar='FILE',
                        help="time the network_g of this option file (repeatable; default: xfusion's own set)")
    parser.add_argument('--out', default=None, help='write the results as JSON here')
    parser.add_argument('--device', default='cpu', help='cpu or cuda[:N]')
    parser.add_argument('--quick', action='store_true',
                        help='fewer repeats and sizes (still both modes and encoders of the paper network at 100x256)')
    parser.add_argument('--threads', type=int, default=None, help='torch threads (default: torch\'s)')
    parser.add_argument('--list', action='store_true', help='print the cases and their option files, run nothing')


def run(args: argparse.Namespace) -> int:
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise InputError('--device cuda but no CUDA device here')
    report = bench(args.device, args.quick, args.out, args.threads, args.opt, args.list,
                   command='xfusion ' + ' '.join(sys.argv[1:]))
    return 1 if any(r.get('error') for r in report['results']) else 0  # the table says which failed


if __name__ == '__main__':  # one case, in its own process: python -m xfusion.commands.bench --case JSON
    parser = argparse.ArgumentParser()
    parser.add_argument('--case', required=True)
    print(json.dumps(run_case(json.loads(parser.parse_args().case))))
