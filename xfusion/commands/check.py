"""``xfusion check``: how good fusion is on your own data, from held-out key frames (``xfusion.fusion.check``).

Each interior key frame is held out in turn, fused from the key frames that remain by every network and
baseline, and scored against the HR frame the camera recorded: a pessimistic estimate of fusion at the
experiment's period (it equals ``evaluate`` at twice the period). Outputs: ``holdout.csv``, ``summary.md``,
``report.html``.
"""
from __future__ import annotations

import argparse

from xfusion.commands.arguments import (
    add_experiment_arguments,
    add_network_arguments,
    add_run_arguments,
    methods_of,
    named,
    run_options,
    source_options,
    with_default_network,
)
from xfusion.fusion.check import check
from xfusion.fusion.config import CheckConfig
from xfusion.metrics.stf_metrics import CONVENTIONS

HELP = 'score fusion on your own data: each interior key frame held out, fused from the others and compared'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_arguments(parser)
    parser.add_argument('--out', required=True, help='output folder for holdout.csv, summary.md, report.html')
    add_network_arguments(parser)
    add_run_arguments(parser)
    parser.add_argument('--convention', default=None, choices=list(CONVENTIONS),
                        help='metric convention (default: paper for 8-bit data, float otherwise)')
    parser.add_argument('--no-report', action='store_true', help='do not write report.html')
    parser.add_argument('--video', default=None, metavar='FILE.mp4', help="an .mp4 of the report's player")


def run(args: argparse.Namespace) -> int:
    networks = with_default_network(named(args.model, '--model'), args, 'check')
    config = CheckConfig(sources=source_options(args), out=args.out, networks=networks,
                         options=named(args.opt, '--opt'), methods=methods_of(args, networks),
                         run=run_options(args), convention=args.convention, report=not args.no_report,
                         video=args.video)
    result = check(config)
    text = (result['out'] / 'summary.md').read_text()
    print(text.split('## Mean over the held-out key frames')[1].split('##')[0].strip())
    print(f"results in {result['out']} (holdout.csv, summary.md{', report.html' if not args.no_report else ''}); "
          f"{result['seconds']:.0f} s")
    return 0
