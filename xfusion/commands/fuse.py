"""``xfusion fuse``: the fused HR sequence of a real two-camera experiment (``xfusion.fusion.fuse``).

The LR camera gives every time step, the HR camera only key frames (at ``offset + n * period``, at the steps an
index file lists, or, when both sources carry frame times and neither is given, at the LR step nearest each HR
frame's time). Output: a folder of TIFFs or an HDF5 dataset in the input's bit depth and intensity scale, a JSON
sidecar, ``consistency.csv`` (each frame against the LR frame recorded at its time), and on request the
per-frame consistency maps, ``report.html`` and an .mp4.

``torchrun --nproc_per_node=N -m xfusion fuse ...`` shares the key-frame segments among N processes (gloo on CPUs,
NCCL on GPUs) and writes what one process would; ``--manifest FILE`` fuses many experiments in one run
(``xfusion.fusion.manifest``). A run that was killed is finished by the same command.
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
from xfusion.errors import InputError
from xfusion.fusion.config import FuseConfig
from xfusion.fusion.fuse import fuse
from xfusion.fusion.manifest import fuse_manifest, read_manifest, summary_table
from xfusion.fusion.ranks import Ranks

HELP = 'fuse a real two-camera experiment into an HR sequence at the LR frame rate'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_arguments(parser, required=False)  # a manifest gives them per experiment
    parser.add_argument('--model', default=None,
                        help='checkpoint (experiments/<name>/models/net_g_*.pth) or a packaged model (xfusion models); '
                             'default: the packaged recommended network')
    parser.add_argument('--opt', default=None, help='option file with network_g (default: the experiment\'s)')
    parser.add_argument('--out', default=None, help='output folder of TIFFs, or file.h5[:/dataset]')
    parser.add_argument('--manifest', default=None, metavar='FILE.csv',
                        help='many experiments: a CSV with a header row, columns lr,hr,out and optionally period,'
                             'offset,hr_index,transform,model; the other options apply to every row')
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
    given = [flag for flag in ('lr', 'hr', 'out') if getattr(args, flag)]
    if args.manifest and given:
        raise InputError(f'--{given[0]}: the manifest gives each experiment its own; leave --lr, --hr and --out out')
    one_file = [flag for flag in ('maps', 'video') if getattr(args, flag)] + \
        (['report FILE.html'] if isinstance(args.report, str) else [])
    if args.manifest and one_file:
        raise InputError(f'--{one_file[0]}: names one file for many experiments; with --manifest, --report writes '
                         'a report beside each output')
    if not args.manifest and len(given) < 3:
        missing = next(flag for flag in ('lr', 'hr', 'out') if not getattr(args, flag))
        raise InputError(f'the following arguments are required: --{missing} (or --manifest FILE.csv)')
    rows = read_manifest(args.manifest) if args.manifest else None
    ranks = Ranks.from_env(args.device)
    try:
        model = args.model or packaged_default('fuse', quiet=not ranks.is_main)
        config = FuseConfig(sources=source_options(args), model=model, out=args.out, opt=args.opt,
                            run=run_options(args, cached=not args.no_cache, compile=args.compile,
                                            channels_last=args.channels_last),
                            maps=args.maps, project=args.project, report=args.report, video=args.video)
        if rows is None:
            path = fuse(config, ranks)
            if ranks.is_main:
                print(f'fused sequence written to {path}')
            return 0
        summary = fuse_manifest(config, rows, ranks)
        if ranks.is_main:
            print(summary_table(summary))
        return 1 if any(s['status'].startswith('failed') for s in summary) else 0
    finally:
        ranks.close()
