"""The ``xfusion`` command: data preparation, synthetic data, fusion of experiments, evaluation, benchmark."""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommands that live in their own module, each with add_arguments(parser) and run(args) -> exit code
MODULE_COMMANDS = {
    'fuse': ('xfusion.fuse', 'fuse a real two-camera experiment into an HR sequence at the LR frame rate'),
    'register': ('xfusion.register', 'estimate the HR-camera -> x4 LR grid similarity transform'),
    'evaluate': ('xfusion.evaluate', 'compare STF with the baselines across periods, LR separations and noise'),
    'bench': ('xfusion.bench', 'time inference and training, cached vs per-window, with peak memory'),
}


def _synth(args: argparse.Namespace) -> None:
    if args.kind == 'reds':
        from xfusion.synth.reds import synth_reds
        out = synth_reds(args.out, sequences=args.sequences, frames=args.frames, hr_size=tuple(args.hr_size),
                         seed=args.seed, first_clip=args.first_clip)
    else:
        from xfusion.synth.xray import synth_xray
        out = synth_xray(args.out, sequences=args.sequences, frames=args.frames, hr_size=tuple(args.hr_size),
                         b0=args.b0, seed=args.seed, bit_depth=args.bit_depth)
    print(f'wrote synthetic {args.kind} data to {out}')


def _reds_gray(args: argparse.Namespace) -> None:
    from xfusion.reds_gray import reds_gray
    out = reds_gray(args.src, workers=args.workers)
    print(f'wrote gray REDS copies and {out / "meta_info_REDS_GT.txt"}')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='xfusion', description='Spatiotemporal fusion of two-camera x-ray videos.')
    sub = parser.add_subparsers(dest='command', required=True)

    synth = sub.add_parser('synth', help='write synthetic sequences (REDS layout or x-ray layout)')
    synth.add_argument('kind', choices=['reds', 'xray'])
    synth.add_argument('--out', required=True, help='output root folder')
    synth.add_argument('--sequences', type=int, default=4, help='number of clips / sequences')
    synth.add_argument('--frames', type=int, default=30, help='frames per sequence')
    synth.add_argument('--hr-size', type=int, nargs=2, default=None, metavar=('H', 'W'),
                       help='HR frame size, multiples of 16 (default: 192 320 for reds, 128 128 for xray)')
    synth.add_argument('--seed', type=int, default=0)
    synth.add_argument('--first-clip', type=int, default=0, help='reds: number of the first clip (names are %%03d)')
    synth.add_argument('--b0', type=float, default=1e3, help='xray: photons per pixel of the flat field')
    synth.add_argument('--bit-depth', type=int, choices=[8, 16], default=16, help='xray: bits per pixel')
    synth.set_defaults(func=_synth)

    gray = sub.add_parser('reds-gray', help='write the 1-channel copy of REDS and its meta file')
    gray.add_argument('--src', required=True, help='REDS root with train_sharp/ and train_sharp_bicubic/X4/')
    gray.add_argument('--workers', type=int, default=None, help='threads (default: all cores)')
    gray.set_defaults(func=_reds_gray)

    for name, (module_name, help_text) in MODULE_COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command)
        command.set_defaults(func=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, 'hr_size', 0) is None:
        args.hr_size = (192, 320) if args.kind == 'reds' else (128, 128)
    try:
        code = args.func(args)
    except (ValueError, FileNotFoundError) as error:
        print(f'xfusion {args.command}: error: {error}', file=sys.stderr)
        return 2
    return code or 0


if __name__ == '__main__':
    sys.exit(main())
