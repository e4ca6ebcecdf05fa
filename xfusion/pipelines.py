"""What train.py and test.py run: BasicSR's pipelines, with the command line and the options checked first.

``train``: BasicSR's train pipeline, whose option parsing is ours (``parse_checked_options``): the
command line and the option file are checked, BasicSR parses them, and the parsed options are
checked (``xfusion.options.check_options``), all before anything is written. ``test``: BasicSR's
test pipeline made to evaluate training experiments: given a training option file it skips the
training set and evaluates the newest checkpoint of that experiment
(``experiments/<name>/models``) on the validation/test sets; given a test option file it uses
``path.pretrain_network_g``. Results go to ``results/<name>/``. Bad input ends either with one
line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import glob
import logging
import os
import sys
from os import path as osp

import torch
from basicsr import train as basicsr_train
from basicsr.data import build_dataloader, build_dataset
from basicsr.models import build_model
from basicsr.utils import get_env_info, get_root_logger, get_time_str, make_exp_dirs
from basicsr.utils.options import dict2str
from basicsr.utils.options import parse_options as basicsr_parse_options

from xfusion.checkpoint import network_options
from xfusion.errors import InputError
from xfusion.options import load_option_file
from xfusion.options_check import check_options
from xfusion.pretrained import packaged_models


def check_command_line(argv: list[str]) -> None:
    """What BasicSR's parse_options would fail on with a traceback: a missing or broken -opt file and
    --force_yml entries that are not ``section:key=value`` with existing sections."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('-opt')
    parser.add_argument('--force_yml', nargs='+', default=[])
    known, _ = parser.parse_known_args(argv)
    if known.opt is None:
        return  # BasicSR's own parser says that -opt is required
    opt = load_option_file(known.opt)
    for entry in known.force_yml:
        keys, sep, value = entry.partition('=')
        if not sep or '=' in value or not keys.strip():
            raise InputError(f"--force_yml {entry}: expected section:key=value, e.g. train:total_iter=1000")
        section, path = opt, keys.strip().split(':')
        for depth, key in enumerate(path[:-1]):
            if not isinstance(section, dict) or key not in section:
                where = ':'.join(path[:depth + 1])
                raise InputError(f'--force_yml {entry}: {known.opt} has no option {where}')
            section = section[key]
        if not isinstance(section, dict):
            raise InputError(f"--force_yml {entry}: {':'.join(path[:-1])} is not a section of options")
        if value.strip().startswith('['):
            try:
                ast.literal_eval(value.strip())
            except (ValueError, SyntaxError):
                raise InputError(f'--force_yml {entry}: {value.strip()} is not a list of values') from None


@contextlib.contextmanager
def argparse_errors_as_input_errors():
    """argparse prints usage and an error and exits; make its error one InputError line instead."""
    def error(self, message: str):
        raise InputError(message)
    original = argparse.ArgumentParser.error
    argparse.ArgumentParser.error = error
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original


def parse_checked_options(root_path: str, is_train: bool = True) -> tuple[dict, argparse.Namespace]:
    """BasicSR's parse_options, with the command line checked before and the options after."""
    check_command_line(sys.argv[1:])
    with argparse_errors_as_input_errors():
        opt, args = basicsr_parse_options(root_path, is_train)
    opt['root_path'] = root_path
    start_from_packaged_model(opt)
    if not is_train:
        prepare_test_options(opt, root_path)
    check_options(opt)
    return opt, args


def start_from_packaged_model(opt: dict) -> None:
    """``path.pretrain_network_g: propstf`` (a packaged model's name, not a file): fine-tune from its weights, with
    its ``network_g`` when the option file gives none."""
    name = (opt.get('path') or {}).get('pretrain_network_g')
    if not isinstance(name, str) or osp.exists(name) or name not in packaged_models():
        return
    model = packaged_models()[name]
    opt['path']['pretrain_network_g'] = str(model.checkpoint)
    opt['path'].setdefault('param_key_g', 'params')
    if not opt.get('network_g'):
        opt['network_g'] = network_options(model.option_file)


def newest_checkpoint(models_dir: str) -> str | None:
    """The most recently written net_g_*.pth of an experiment (net_g_latest.pth once training ended)."""
    files = glob.glob(osp.join(models_dir, 'net_g_*.pth'))
    return max(files, key=os.path.getmtime) if files else None


def prepare_test_options(opt: dict, root_path: str) -> None:
    """Drop training sets and point path.pretrain_network_g at the checkpoint to evaluate."""
    opt['datasets'] = {k: v for k, v in opt['datasets'].items() if v['phase'] != 'train'}
    if not opt['datasets']:
        raise InputError('the option file has no val/test datasets to evaluate')
    if 'train' in opt:  # a training option file: its experiment's newest checkpoint
        checkpoint = newest_checkpoint(osp.join(root_path, 'experiments', opt['name'], 'models'))
        if checkpoint is not None:
            opt['path']['pretrain_network_g'] = checkpoint
            opt['path']['strict_load_g'] = True
            opt['path']['param_key_g'] = 'params_ema' if opt['train'].get('ema_decay', 0) > 0 else 'params'
            return
    if not opt['path'].get('pretrain_network_g'):
        raise InputError(f"no checkpoint to evaluate: experiments/{opt['name']}/models has none and "
                         'path.pretrain_network_g is not set')


def test_pipeline(root_path: str) -> None:
    opt, _ = parse_checked_options(root_path, is_train=False)
    torch.backends.cudnn.benchmark = True
    make_exp_dirs(opt)
    log_file = osp.join(opt['path']['log'], f"test_{opt['name']}_{get_time_str()}.log")
    logger = get_root_logger(logger_name='basicsr', log_level=logging.INFO, log_file=log_file)
    logger.info(get_env_info())
    logger.info(dict2str(opt))
    logger.info(f"Evaluating {opt['path']['pretrain_network_g']}")

    loaders = []
    for _, dataset_opt in sorted(opt['datasets'].items()):
        dataset = build_dataset(dataset_opt)
        loaders.append(build_dataloader(dataset, dataset_opt, num_gpu=opt['num_gpu'], dist=opt['dist'],
                                        sampler=None, seed=opt['manual_seed']))
        logger.info(f"Number of test frames in {dataset_opt['name']}: {len(dataset)}")
    model = build_model(opt)
    for loader in loaders:
        logger.info(f"Testing {loader.dataset.opt['name']}...")
        model.validation(loader, current_iter=opt['name'], tb_logger=None, save_img=opt['val'].get('save_img', False))
    logger.info(f"Results in {opt['path']['results_root']}")


def _exit_on_input_error(pipeline, root_path: str, program: str) -> int:
    try:
        pipeline(root_path)
    except InputError as error:
        print(f'{program}: error: {error}', file=sys.stderr)
        return 2
    return 0


def train(root_path: str) -> int:
    """python train.py -opt X.yml [--auto_resume] [--launcher pytorch|slurm] [--force_yml ...]"""
    # BasicSR's train_pipeline calls the parse_options of its module: ours checks before anything is written
    basicsr_train.parse_options = parse_checked_options
    return _exit_on_input_error(basicsr_train.train_pipeline, root_path, 'train.py')


def test(root_path: str) -> int:
    """python test.py -opt X.yml [--force_yml ...]"""
    return _exit_on_input_error(test_pipeline, root_path, 'test.py')
