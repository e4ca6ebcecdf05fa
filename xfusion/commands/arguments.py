"""The command-line options the fusion commands share, and the option records (``xfusion.fusion.config``) they
become. One place for each option's name, default and help, so that ``fuse``, ``check``, ``info`` and
``evaluate`` spell them alike."""
from __future__ import annotations

import argparse
import re

from xfusion.baselines import BASELINES
from xfusion.errors import InputError
from xfusion.fusion.config import RECOMMENDED, RunOptions, SourceOptions
from xfusion.inference import PRECISIONS
from xfusion.pretrained import recommended_model

_NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_.-]*')


def add_schedule_arguments(parser: argparse.ArgumentParser) -> None:
    """When the HR camera recorded, and how its files are read."""
    parser.add_argument('--period', type=int, default=None, help='LR steps between HR key frames')
    parser.add_argument('--offset', type=int, default=0, help='LR step of the first HR key frame')
    parser.add_argument('--hr-index', default=None, help='file listing the LR step of each HR frame')
    parser.add_argument('--time-offset', type=float, default=0.0, metavar='SECONDS',
                        help='added to the HR frame times before matching them to LR steps (a known trigger delay); '
                             'used when neither --period nor --hr-index is given and both sources carry times')
    parser.add_argument('--no-flat-correction', action='store_true',
                        help='DataExchange sources: raw counts, without data_white/data_dark')
    parser.add_argument('--range', type=float, nargs=2, default=None, metavar=('LOW', 'HIGH'),
                        help='fixed intensity range of both cameras (default: the effective bit depth the file '
                             'gives, else the dtype range; [0, 1] for transmissions)')


def add_experiment_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """The sources, the schedule, the registration and the LR camera's noise of a real experiment."""
    parser.add_argument('--lr', required=required,
                        help='LR frames: a folder, a multi-page TIFF, file.h5[:/dataset] (DataExchange: flat/dark '
                             'corrected), a Photron x.cih/x.cihx (+ x.mraw) or a Phantom x.cine')
    parser.add_argument('--hr', required=required, help='HR key frames only (same kinds of source)')
    add_schedule_arguments(parser)
    parser.add_argument('--transform', default=None, help='JSON from xfusion register (HR camera -> x4 LR grid)')
    parser.add_argument('--lr-sep', type=int, default=1, help='LR frame separation r (frames t-r, t, t+r)')
    parser.add_argument('--b0', type=float, default=None,
                        help='LR camera photons per unit intensity (Poisson noise variance = intensity / b0); '
                             'default: the noise the camera model leaves at the key frames')


def add_run_arguments(parser: argparse.ArgumentParser, batch: int = 1, tiles: bool = True) -> None:
    """Where and how the networks run."""
    parser.add_argument('--device', default='cpu', help='cpu or cuda[:N]')
    parser.add_argument('--batch', type=int, default=batch, help='time steps fused together')
    parser.add_argument('--precision', default='fp32', choices=list(PRECISIONS), help='of the networks')
    if tiles:
        parser.add_argument('--tile', type=int, default=0, help='tile size in LR pixels (0: whole frames)')
        parser.add_argument('--overlap', type=int, default=8, help='tile overlap in LR pixels')


def add_network_arguments(parser: argparse.ArgumentParser) -> None:
    """Networks by method name, and which methods to run."""
    parser.add_argument('--model', action='append', metavar='[NAME=]CKPT',
                        help=f'a network checkpoint or a packaged model (xfusion models), as the method NAME (plain '
                             f'CKPT: the method {RECOMMENDED}); repeatable. Default: the packaged recommended network')
    parser.add_argument('--opt', action='append', metavar='[NAME=]FILE',
                        help="option file of the network NAME (default: its checkpoint's own options); repeatable")
    parser.add_argument('--methods', default=None,
                        help='comma list (default: the baselines plus every network given)')


def source_options(args: argparse.Namespace) -> SourceOptions:
    return SourceOptions(lr=args.lr, hr=args.hr, period=args.period, offset=args.offset, hr_index=args.hr_index,
                         time_offset=args.time_offset, transform=args.transform, value_range=args.range,
                         flat_correction=not args.no_flat_correction, lr_sep=args.lr_sep, b0=args.b0)


def run_options(args: argparse.Namespace, **extra) -> RunOptions:
    return RunOptions(device=args.device, batch=args.batch, precision=args.precision,
                      tile=getattr(args, 'tile', 0), overlap=getattr(args, 'overlap', 8), **extra)


def named(values: list[str] | None, flag: str) -> dict[str, str]:
    """``[NAME=]VALUE`` arguments (repeatable) -> {NAME: VALUE}; a plain VALUE is the recommended method."""
    out = {}
    for value in values or []:
        name, sep, rest = value.partition('=')
        if not (sep and _NAME.fullmatch(name)):
            name, rest = RECOMMENDED, value
        if name in out:
            raise InputError(f'{flag}: the method {name!r} is given twice')
        if name in BASELINES:
            raise InputError(f'{flag} {value}: {name!r} is a baseline; give the network another name')
        out[name] = rest
    return out


def packaged_default(command: str, quiet: bool = False) -> str:
    """The packaged recommended network, for a command given no ``--model``; says so in one line (unless
    ``quiet``: the other ranks of a torchrun run)."""
    name = recommended_model()
    if not quiet:
        print(f'xfusion {command}: no --model given: using the packaged network {name}, trained on synthetic data '
              f'(its card: xfusion models {name}; fine-tune on your own sequences for the best result)', flush=True)
    return name


def with_default_network(networks: dict[str, str], args: argparse.Namespace, command: str) -> dict[str, str]:
    """``networks``, or {RECOMMENDED: the packaged network} when none is given and ``--methods`` does not leave
    the recommended method out."""
    if networks or (args.methods and RECOMMENDED not in parse_list(args.methods, str)):
        return networks
    return {RECOMMENDED: packaged_default(command)}


def parse_list(text: str, kind) -> list:
    """'10,20,40' -> [10, 20, 40]."""
    try:
        return [kind(v) for v in text.split(',') if v.strip()]
    except ValueError as error:
        raise InputError(f'could not read the list {text!r}: {error}') from None


def parse_b0(text: str) -> list[float | None]:
    """'none,1e3,100' -> [None, 1000.0, 100.0] (none: clean LR frames)."""
    return [None if v.strip().lower() in ('none', 'clean', 'inf') else parse_list(v, float)[0]
            for v in text.split(',') if v.strip()]


def methods_of(args: argparse.Namespace, networks: dict[str, str]) -> list[str]:
    """``--methods``, or the baselines and every network given."""
    return parse_list(args.methods, str) if args.methods else list(BASELINES) + list(networks)
