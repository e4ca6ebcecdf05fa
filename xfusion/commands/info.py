"""``xfusion info``: what the readers see in camera files, and for two sources the key-frame schedule.

Per source: format, frame count, size, dtype, effective bit depth and the intensity range used, frame rate
and time span (and where the times come from), flats and darks found. With two sources (LR first, then HR),
or one sequence folder (``<seq>/HR.<ext>`` + ``<seq>/LR.<ext>``, or ``HR/`` + ``LR/``): the schedule fuse
would use, from ``--period``/``--hr-index`` when given, else from the frame times.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from xfusion.commands.arguments import add_schedule_arguments
from xfusion.errors import InputError
from xfusion.fusion.sources import key_frame_schedule
from xfusion.io.sequence import camera_files_of
from xfusion.io.stack import FrameStack
from xfusion.schedule import format_seconds

HELP = 'show what XFusion reads in camera files (format, bit depth, range, frame times) and the schedule'


def source_lines(name: str, stack: FrameStack) -> list[str]:
    """The lines of one source."""
    info = stack.describe()
    lines = [f'{name}: {stack.spec}',
             f'  format        {info["format"]}' + (f' (metadata: {info["metadata_file"]})'
                                                     if info['metadata_file'] else ''),
             f'  frames        {info["frames"]} of {info["shape"][0]}x{info["shape"][1]}, {info["dtype"]}']
    if stack.dtype.kind == 'f':
        bits = f'{info["dtype"]}' + (f' (from {info["bit_depth"]}-bit counts)' if info['bit_depth'] else '')
    else:
        bits = f'{info["bit_depth"]}-bit' if info['bit_depth'] else info['dtype']
    low, high = info['intensity_range']
    lines.append(f'  bit depth     {bits}; intensity range {low:g}..{high:g} ({info["range_source"]}), '
                 'fixed for all frames')
    rate = f'{info["frame_rate"]:,.3f}'.rstrip('0').rstrip('.') + ' fps' if info['frame_rate'] else 'not given'
    if info['time_span'] is not None:
        t0, t1 = info['time_span']
        span = (f'; frames at {format_seconds(t0)} .. {format_seconds(t1)} from the trigger, from '
                f'{info["time_source"]}')
    else:
        span = '; no frame times'
    lines.append(f'  frame rate    {rate}{span}')
    flat = info['flat_field']
    if flat is not None:
        applied = 'applied: transmission, float32' if flat['applied'] else 'not applied: raw counts'
        lines.append(f'  flats/darks   {flat["whites"]} white, {flat["darks"]} dark ({applied})')
    else:
        lines.append('  flats/darks   none (not a DataExchange file)')
    lines.extend(f'  note          {note}' for note in info['notes'])
    return lines


def schedule_lines(lr: FrameStack, hr: FrameStack, period: int | None, offset: int, hr_index: str | None,
                   time_offset: float) -> list[str]:
    """The key-frame schedule of an LR and an HR source, as fuse would compute it."""
    try:
        schedule, hr_frames, match = key_frame_schedule(lr, hr, period, offset, hr_index, time_offset)
    except InputError as error:
        return [f'schedule: none yet: {error}']
    keys = schedule.key_times
    shown = ', '.join(map(str, keys[:16])) + (f', ... ({len(keys)} key frames)' if len(keys) > 16 else '')
    how = 'from the frame times' if match is not None else ('from --hr-index' if hr_index else
                                                             f'every {period} LR steps from {offset}')
    lines = [f'schedule ({how}): key frames at LR steps {shown} of 0..{schedule.num_frames - 1}']
    if match is not None:
        lines.extend(match.report())
    elif len(hr_frames) < len(hr):
        lines.append(f'  {len(hr) - len(hr_frames)} HR frames unused')
    return lines


def expand_sources(sources: list[str]) -> list[tuple[str, str]]:
    """(name, spec) per source: 'LR' and 'HR' for two sources or one sequence folder, 'source N' otherwise."""
    if len(sources) == 1 and Path(sources[0]).is_dir():
        folder = Path(sources[0])
        if (folder / 'HR').is_dir() and (folder / 'LR').is_dir():
            return [('LR', str(folder / 'LR')), ('HR', str(folder / 'HR'))]
        cameras = camera_files_of(folder)
        if cameras is not None:
            return [('LR', str(cameras['LR'])), ('HR', str(cameras['HR']))]
    if len(sources) == 2:
        return [('LR', sources[0]), ('HR', sources[1])]
    return [(f'source {i + 1}', spec) for i, spec in enumerate(sources)]


def info(sources: list[str], value_range: tuple[float, float] | None = None, flat_correction: bool = True,
         period: int | None = None, offset: int = 0, hr_index: str | None = None, time_offset: float = 0.0) -> str:
    """The text ``xfusion info`` prints."""
    named = expand_sources(sources)
    stacks = [(name, FrameStack(spec, value_range, flat_correction)) for name, spec in named]
    lines: list[str] = []
    for name, stack in stacks:
        lines.extend(source_lines(name, stack))
    if [name for name, _ in stacks] == ['LR', 'HR']:
        lines.extend(schedule_lines(stacks[0][1], stacks[1][1], period, offset, hr_index, time_offset))
    return '\n'.join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('sources', nargs='+', metavar='SRC',
                        help='camera sources (as fuse takes them); two: LR first, then HR; or one sequence folder')
    add_schedule_arguments(parser)


def run(args: argparse.Namespace) -> int:
    print(info(args.sources, args.range, not args.no_flat_correction, args.period, args.offset, args.hr_index,
               args.time_offset))
    return 0
