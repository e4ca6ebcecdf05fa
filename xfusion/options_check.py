"""Check options before training or testing starts, so that mistakes cost seconds, not a job.

Unknown or misspelt keys and registered names (with the closest valid one suggested), missing
data roots, patch sizes not divisible by the scale, impossible schedules, unwritable output
folders and checkpoints of another network layout are reported as one InputError naming the
option and the fix, before anything is written. Data sets are opened too, so that bad frames
(size or count mismatches, mixed bit depths, unreadable files) are found before the experiment
folder exists.
"""
from __future__ import annotations

import copy
import difflib
import inspect
import os
import tempfile
from os import path as osp

from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY

from xfusion.archs.legacy import check_retired_options
from xfusion.checkpoint import check_layout, state_dict_of
from xfusion.errors import InputError
from xfusion.schedule import check_period

# keys BasicSR itself reads or sets, per section
TOP_LEVEL = {'name', 'model_type', 'scale', 'num_gpu', 'manual_seed', 'datasets', 'network_g', 'path', 'train', 'val',
             'logger', 'dist_params', 'find_unused_parameters', 'is_train', 'dist', 'rank', 'world_size',
             'auto_resume', 'root_path'}
SECTIONS = {
    'path': {'pretrain_network_g', 'strict_load_g', 'param_key_g', 'resume_state', 'ignore_resume_networks',
             'experiments_root', 'models', 'training_states', 'log', 'visualization', 'results_root'},
    'train': {'ema_decay', 'optim_g', 'scheduler', 'total_iter', 'warmup_iter', 'pixel_opt', 'perceptual_opt',
              'tsa_iter', 'dcn_lr_mul', 'flow_lr_mul', 'lr_mul', 'warp_opt', 'flow_opt'},
    'val': {'val_freq', 'save_img', 'metrics', 'suffix', 'pbar', 'cached', 'batch', 'precision'},
    'logger': {'print_freq', 'save_checkpoint_freq', 'use_tb_logger', 'wandb'},
    'dist_params': {'backend', 'port'},
}
DATASET_COMMON = {'name', 'type', 'phase', 'scale', 'io_backend', 'num_worker_per_gpu', 'batch_size_per_gpu',
                  'dataset_enlarge_ratio', 'prefetch_mode', 'pin_memory', 'persistent_workers', 'use_shuffle',
                  'num_prefetch_queue'}
SCHEDULERS = {'MultiStepLR', 'MultiStepRestartLR', 'CosineAnnealingRestartLR'}
OPTIMIZERS = {'Adam'}  # what BasicSR 1.4.2's BaseModel.get_optimizer builds
METRIC_KEYS = {'type', 'better', 'crop_border', 'convention', 'test_y_channel'}


def _closest(word: str, choices) -> str:
    match = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ''


def check_keys(section: dict, allowed: set, where: str) -> None:
    for key in section:
        if key not in allowed:
            raise InputError(f"{where}: unknown option '{key}'{_closest(key, allowed)}")


def check_name(name, registry, where: str) -> None:
    if name not in registry:
        raise InputError(f"{where}: '{name}' is not a registered name{_closest(name, [k for k, _ in registry])}")


def _exists(value, where: str) -> None:
    for item in value if isinstance(value, (list, tuple)) else [value]:
        if item is not None and not osp.exists(item):
            raise InputError(f'{where}: {item} does not exist (download or make the data, or fix the path)')


def check_dataset(phase: str, ds: dict, opt: dict) -> None:
    where = f'datasets:{phase}'
    if 'type' not in ds:
        raise InputError(f'{where}: no type given')
    check_name(ds['type'], DATASET_REGISTRY, f'{where}:type')
    keys = getattr(DATASET_REGISTRY.get(ds['type']), 'option_keys', None)  # the options our datasets read
    if keys is not None:
        check_keys(ds, DATASET_COMMON | keys, where)
    for key in ('dataroot', 'dataroot_gt', 'dataroot_lq', 'meta_info_file'):
        if ds.get(key) is not None:
            _exists(ds[key], f'{where}:{key}')
    scale = opt.get('scale', 4)
    if ds.get('gt_size') is not None and ds['gt_size'] % scale:
        raise InputError(f"{where}:gt_size: {ds['gt_size']} is not divisible by the scale {scale}; "
                         f"use a multiple of {scale}")
    for key in ('period', 'lr_sep', 'period_range'):
        values = ds.get(key, 1) if isinstance(ds.get(key, 1), (list, tuple)) else [ds.get(key, 1)]
        if not values:
            raise InputError(f'{where}:{key}: give at least one value')
        for value in values:
            check_period(value, f'{where}:{key}')


def check_network(opt: dict) -> None:
    net_opt = opt.get('network_g')
    if not isinstance(net_opt, dict) or 'type' not in net_opt:
        raise InputError('network_g: give at least its type (e.g. EDVRSTF)')
    check_name(net_opt['type'], ARCH_REGISTRY, 'network_g:type')
    network = ARCH_REGISTRY.get(net_opt['type'])
    params = inspect.signature(network).parameters
    named = {name for name, p in params.items() if p.kind != p.VAR_KEYWORD}
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):  # options of earlier versions (archs.legacy)
        try:
            check_retired_options(net_opt['type'], {k: v for k, v in net_opt.items() if k not in named | {'type'}})
        except (TypeError, ValueError) as error:
            raise InputError(f'network_g: {error}') from None
    else:
        check_keys(net_opt, named | {'type'}, 'network_g')
    model_of_kind = {'window': 'STFModel', 'segment': 'SegmentSTFModel'}
    wanted = model_of_kind[getattr(network, 'kind', 'window')]
    if opt.get('model_type') in model_of_kind.values() and opt['model_type'] != wanted:
        raise InputError(f"model_type: {net_opt['type']} is a {network.kind} network; train it with "
                         f"model_type: {wanted}")


def check_training(opt: dict) -> None:
    train = opt['train']
    check_keys(train, SECTIONS['train'], 'train')
    optim = train.get('optim_g') or {}
    if optim.get('type') not in OPTIMIZERS:
        raise InputError(f"train:optim_g:type: '{optim.get('type')}' is not supported by BasicSR 1.4.2"
                         f"{_closest(optim.get('type'), OPTIMIZERS)}")
    scheduler = train.get('scheduler') or {}
    if scheduler.get('type') not in SCHEDULERS:
        raise InputError(f"train:scheduler:type: '{scheduler.get('type')}' is not a BasicSR scheduler"
                         f"{_closest(scheduler.get('type'), SCHEDULERS)}")
    for key in ('pixel_opt', 'perceptual_opt', 'warp_opt', 'flow_opt'):
        if train.get(key):
            check_name(train[key].get('type'), LOSS_REGISTRY, f'train:{key}:type')
    _check_positive(train, 'total_iter', 'train')
    _check_positive(opt.get('logger') or {}, 'print_freq', 'logger')
    _check_positive(opt.get('logger') or {}, 'save_checkpoint_freq', 'logger')
    if opt.get('val') is not None:
        _check_positive(opt['val'], 'val_freq', 'val')


def _check_positive(section: dict, key: str, where: str) -> None:
    # YAML and --force_yml read 1e9 as a string: BasicSR would fail on it mid-run with a TypeError
    value = section.get(key)
    if key not in section and key != 'total_iter':
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1:
        hint = " (write !!float 1e9, or 1000000000)" if isinstance(value, str) else ''
        raise InputError(f"{where}:{key}: must be a positive number, got {value!r}{hint}")


def check_checkpoint(opt: dict) -> None:
    ckpt = (opt.get('path') or {}).get('pretrain_network_g')
    if not ckpt or opt.get('auto_resume') or (opt.get('path') or {}).get('resume_state'):
        return
    _exists(ckpt, 'path:pretrain_network_g')
    state, _ = state_dict_of(ckpt)
    if opt['path'].get('strict_load_g', True):
        net_opt = dict(opt['network_g'])
        check_layout(ARCH_REGISTRY.get(net_opt.pop('type'))(**net_opt), state, ckpt)


def check_writable(folder: str) -> None:
    """Raise InputError unless files can be created in ``folder`` (made if missing)."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise InputError(f'{folder}: cannot write the output here ({error.strerror})') from None


def check_options(opt: dict, open_data: bool = True) -> None:
    """Raise InputError for the first problem found in a parsed option dict."""
    check_keys(opt, TOP_LEVEL, 'options')
    for section, allowed in SECTIONS.items():
        if isinstance(opt.get(section), dict):
            check_keys(opt[section], allowed, section)
    check_name(opt.get('model_type'), MODEL_REGISTRY, 'model_type')
    check_network(opt)
    if opt.get('scale', 4) != 4:
        raise InputError(f"scale: the STF networks are x4, got {opt['scale']}")
    datasets = opt.get('datasets') or {}
    if not datasets:
        raise InputError('datasets: no data sets given')
    for phase, ds in datasets.items():
        if phase.split('_')[0] not in ('train', 'val', 'test'):
            raise InputError(f"datasets:{phase}: phase must be train, val or test{_closest(phase, ['train', 'val'])}")
        check_dataset(phase, ds, opt)
        if opt.get('model_type') in ('STFModel', 'SegmentSTFModel') and phase.split('_')[0] != 'train' \
                and ds['type'] != 'STFSequenceTestDataset':
            raise InputError(f"datasets:{phase}:type: {opt['model_type']} validates on whole sequences; use "
                             f"STFSequenceTestDataset, not {ds['type']}")
    for name, metric in ((opt.get('val') or {}).get('metrics') or {}).items():
        check_keys(metric, METRIC_KEYS, f'val:metrics:{name}')
        check_name(metric.get('type'), METRIC_REGISTRY, f'val:metrics:{name}:type')
    if opt.get('is_train'):
        check_training(opt)
    check_checkpoint(opt)
    check_writable(osp.join(opt.get('root_path') or os.getcwd(), 'experiments' if opt.get('is_train') else 'results'))
    if open_data:  # frames and sequences are checked as the datasets open them
        for ds in datasets.values():
            ours = getattr(DATASET_REGISTRY.get(ds['type']), 'option_keys', None) is not None
            if ours and (opt.get('is_train') or ds.get('phase') != 'train'):
                # not basicsr.data.build_dataset: it logs, and BasicSR's root logger must first be
                # set up by the pipeline (with its log file)
                DATASET_REGISTRY.get(ds['type'])(copy.deepcopy(ds))
