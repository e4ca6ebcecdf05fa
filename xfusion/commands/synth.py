"""``xfusion synth reds|xray``: synthetic sequences, the data the project works on without downloads; ``xfusion
synth xray --rig NAME``: a real two-camera rig's virtual experiment, in the cameras' own files (``xfusion.synth.rig``).
"""
from __future__ import annotations

import argparse

from xfusion.errors import InputError
from xfusion.synth.reds import synth_reds
from xfusion.synth.rig import RIGS, synth_rig
from xfusion.synth.xray import ROLES, synth_xray

HELP = 'write synthetic sequences (REDS layout or x-ray layout)'
DEFAULT_HR_SIZE = {'reds': (192, 320), 'xray': (128, 128)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('kind', choices=['reds', 'xray'])
    parser.add_argument('--out', required=True, help='output root folder')
    parser.add_argument('--sequences', type=int, default=4, help='number of clips / sequences')
    parser.add_argument('--frames', type=int, default=None, help='frames per sequence (default 30; --rig: a shot)')
    parser.add_argument('--hr-size', type=int, nargs=2, default=None, metavar=('H', 'W'),
                        help='HR frame size, multiples of 16 (default: 192 320 for reds, 128 128 for xray)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--first-clip', type=int, default=0, help='reds: number of the first clip (names are %%03d)')
    parser.add_argument('--b0', type=float, default=1e3, help='xray: photons per pixel of the flat field')
    parser.add_argument('--bit-depth', type=int, choices=[8, 16], default=16, help='xray: bits per pixel')
    roles = '; '.join(f'{role}: {", ".join(names)}' for role, names in ROLES.items())
    parser.add_argument('--families', default=None,
                        help=f'xray: comma list of scene families or roles, taken in turn by the sequences ({roles}); '
                             'default: a mix of every kind of event')
    parser.add_argument('--rig', default=None, choices=list(RIGS),
                        help='xray: one experiment of this two-camera rig, in the cameras\' own files, with the ground '
                             'truth beside it (sizes, pixel ratio, frame rates, mirroring of the real rig)')
    parser.add_argument('--rig-scale', type=float, default=1.0,
                        help='--rig: shrink both fields of view by this factor (pixel sizes kept), for a laptop')


def run(args: argparse.Namespace) -> int:
    if args.rig:
        if args.kind != 'xray' or args.hr_size:
            raise InputError('--rig: an x-ray experiment of the rig\'s own sizes; leave --hr-size out')
        family = args.families or 'wing'
        out = synth_rig(args.out, args.rig, frames=args.frames, scale=args.rig_scale, b0=args.b0, seed=args.seed,
                        family=family)
        print(f'wrote the virtual experiment of the rig {args.rig} to {out} (experiment/, truth/, rig.json)')
        return 0
    args.frames = args.frames or 30
    hr_size = tuple(args.hr_size or DEFAULT_HR_SIZE[args.kind])
    if args.kind == 'reds':
        out = synth_reds(args.out, sequences=args.sequences, frames=args.frames, hr_size=hr_size, seed=args.seed,
                         first_clip=args.first_clip)
    else:
        out = synth_xray(args.out, sequences=args.sequences, frames=args.frames, hr_size=hr_size, b0=args.b0,
                         seed=args.seed, bit_depth=args.bit_depth, families=args.families)
    print(f'wrote synthetic {args.kind} data to {out}')
    return 0
