"""``xfusion fuse``: the fused HR sequence of a real two-camera experiment (``xfusion.fusion.fuse``).

The LR camera gives every time step, the HR camera only key frames (at ``offset + n * period``, at the steps an
index file lists, or, when both sources carry frame times and neither is given, at the LR step nearest each HR
frame's time). Output: a folder of TIFFs or an HDF5 dataset in the input's bit depth and intensity scale, a JSON
sidecar, ``consistency.csv`` (each frame against the LR frame recorded at its time), and on request the
per-frame consistency maps, ``report.html`` and an .mp4.
"""
from __future__ import annotations

import argparse

from xfusion.commands.arguments import (
    add_experiment_arguments,
    add_run_arguments,
    packaged_default,
    run_options,
    source_options,
)
from xfusion.fusion.config import FuseConfig
from xfusion.fusion.fuse import fuse

HELP = 'fuse a real two-camera experiment into an HR sequence at the LR frame rate'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_arguments(parser)
    parser.add_argument('--model', default=None,
                        help='checkpoint (experiments/<name>/models/net_g_*.pth) or a packaged model (xfusion models); '
                             'default: the packaged recommended network')
    parser.add_argument('--opt', default=None, help='option file with network_g (default: the experiment\'s)')
    parser.add_argument('--out', required=True, help='output folder of TIFFs, or file.h5[:/dataset]')
    add_run_arguments(parser)
    parser.add_argument('--no-cache', action='store_true', help='per-window forward (no feature reuse)')
    parser.add_argument('--compile', action='store_true', help='torch.compile the network (long sequences)')
    parser.add_argument('--channels-last', action='store_true', help='channels-last memory format')
    parser.add_argument('--maps', default=None, metavar='DIR',
                        help='a new folder for per-frame LR-consistency maps (float TIFF at LR resolution: z = '
                             '(LR - camera model of the fused frame) / noise sd)')
    parser.add_argument('--project', action='store_true',
                        help='pull each fused frame back onto its LR frame within noise (LR residuals whose 3x3 '
                             'neighbourhood is beyond 2 noise sd are put back through the camera model)')
    parser.add_argument('--report', nargs='?', const=True, default=None, metavar='FILE.html',
                        help='write report.html (beside the sidecar, or FILE.html): the frames side by side, '
                             'the per-frame chi2, the camera model, the settings')
    parser.add_argument('--video', default=None, metavar='FILE.mp4', help='an .mp4 of the frames side by side')


def run(args: argparse.Namespace) -> int:
    model = args.model or packaged_default('fuse')
    config = FuseConfig(sources=source_options(args), model=model, out=args.out, opt=args.opt,
                        run=run_options(args, cached=not args.no_cache, compile=args.compile,
                                        channels_last=args.channels_last),
                        maps=args.maps, project=args.project, report=args.report, video=args.video)
    print(f'fused sequence written to {fuse(config)}')
    return 0
