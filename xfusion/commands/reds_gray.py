"""``xfusion reds-gray``: the 1-channel copy of REDS used for pretraining, and its meta file."""
from __future__ import annotations

import argparse

HELP = 'write the 1-channel copy of REDS and its meta file'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--src', required=True, help='REDS root with train_sharp/ and train_sharp_bicubic/X4/')
    parser.add_argument('--workers', type=int, default=None, help='threads (default: all cores)')


def run(args: argparse.Namespace) -> int:
    from xfusion.data.reds_gray import reds_gray
    out = reds_gray(args.src, workers=args.workers)
    print(f'wrote gray REDS copies and {out / "meta_info_REDS_GT.txt"}')
    return 0
