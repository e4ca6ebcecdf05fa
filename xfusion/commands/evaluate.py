"""``xfusion evaluate``: the networks against the classical baselines on virtual experiments, across key-frame
periods, LR separations and LR noise (``xfusion.fusion.evaluate``).

Writes ``metrics.csv`` (one row per method, setting and frame), ``summary.md``, plots of PSNR / SSIM / AAD
against period, lr_sep and b0, a panel per sequence and ``report.html``.
"""
from __future__ import annotations

import argparse

from xfusion.commands.arguments import (
    add_network_arguments,
    add_run_arguments,
    methods_of,
    named,
    parse_b0,
    parse_list,
    run_options,
    with_default_network,
)
from xfusion.fusion.config import EvaluateConfig
from xfusion.fusion.evaluate import evaluate as run_evaluation
from xfusion.fusion.evaluate import summary_table

HELP = 'compare the networks with the baselines across periods, LR separations and noise'
# method names of the older flags, kept as aliases of --model NAME=CKPT
NETWORK_ALIASES = {'lr_only_model': 'lr_only', 'swin_model': 'stf_swin'}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--data', required=True,
                        help='x-ray root of test sequences (<seq>/HR + <seq>/LR folders, <seq>/HR.<ext> + '
                             '<seq>/LR.<ext> camera files, or <seq>.h5)')
    parser.add_argument('--out', required=True, help='output folder for metrics.csv, summary.md, plots, panels')
    add_network_arguments(parser)
    parser.add_argument('--lr-only-model', default=None, help='same as --model lr_only=CKPT')
    parser.add_argument('--swin-model', default=None, help='same as --model stf_swin=CKPT')
    parser.add_argument('--period', default='20', help='comma list of key-frame periods')
    parser.add_argument('--lr-sep', default='1', help='comma list of LR frame separations')
    parser.add_argument('--b0', default='none', help='comma list of LR photon levels; none = clean')
    parser.add_argument('--convention', default='paper', choices=['paper', 'float'])
    add_run_arguments(parser, batch=4, tiles=False)
    parser.add_argument('--seed', type=int, default=0, help='seed of the LR noise')
    parser.add_argument('--no-report', action='store_true', help='do not write report.html')
    parser.add_argument('--video', default=None, metavar='FILE.mp4',
                        help="an .mp4 of the report's players, for slides")


def networks_of(args: argparse.Namespace) -> dict[str, str]:
    """{method: checkpoint} from --model and its aliases."""
    aliases = [f'{name}={getattr(args, flag)}' for flag, name in NETWORK_ALIASES.items() if getattr(args, flag)]
    return named((args.model or []) + aliases, '--model')


def run(args: argparse.Namespace) -> int:
    networks = with_default_network(networks_of(args), args, 'evaluate')
    methods = methods_of(args, networks)
    config = EvaluateConfig(data=args.data, out=args.out, methods=methods, periods=parse_list(args.period, int),
                            lr_seps=parse_list(args.lr_sep, int), b0s=parse_b0(args.b0), networks=networks,
                            options=named(args.opt, '--opt'), run=run_options(args), seed=args.seed,
                            convention=args.convention, report=not args.no_report, video=args.video)
    result = run_evaluation(config)
    print(summary_table(result['rows'], methods, ()))
    print(f"results in {result['out']} (metrics.csv, summary.md, report.html, psnr/ssim/aad.png, panels/); "
          f"{result['seconds']:.0f} s")
    return 0
