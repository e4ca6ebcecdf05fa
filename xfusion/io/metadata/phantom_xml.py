"""Phantom .xml: what PCC writes beside TIFF frames exported from a CINE (the CINE header's fields as elements)."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from xfusion.errors import SequenceError
from xfusion.io.metadata.record import CameraMetadata


def _local(tag: str) -> str:
    return tag.rsplit('}', 1)[-1].lower()


def _time_of_day(text: str) -> float:
    """'HH:MM:SS.fff fff fff' (digit groups of the fraction may be spaced) or plain seconds -> seconds."""
    text = text.strip()
    match = re.fullmatch(r'(\d+):(\d+):(\d+)(?:[.,]([\d ]*))?', text)
    if match:
        hours, minutes, seconds, fraction = match.groups()
        digits = (fraction or '').replace(' ', '')
        return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + (int(digits) / 10 ** len(digits) if digits else 0)
    return float(text.replace(' ', ''))


def _parse_time(text: str, path: Path) -> float:
    try:
        return _time_of_day(text)
    except ValueError:
        raise SequenceError(f'{path}: time {text.strip()!r} is neither HH:MM:SS.fraction nor seconds') from None


def read_phantom_xml(path: Path) -> CameraMetadata:
    """A Phantom .xml (what PCC writes beside exported TIFFs): the CINE header's fields as elements.

    Read (element names as in the CINE header, case-insensitive, anywhere in the file): ``dFrameRate``
    or ``FrameRate``, ``RealBPP``, ``FirstImageNo``, ``ImageCount``, ``TriggerTime/Time`` and the
    per-frame ``Time`` elements of ``TIMEBLOCK`` ('HH:MM:SS.ffffff...' or seconds). Frame times are
    relative to the trigger time (to the frame numbered 0 when there is none).
    """
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as error:
        raise SequenceError(f'{path}: unreadable Phantom .xml ({error})') from error
    meta = CameraMetadata(path, 'Phantom .xml')
    elements: dict[str, ET.Element] = {}
    for element in root.iter():
        elements.setdefault(_local(element.tag), element)
    if not {'framerate', 'dframerate', 'timeblock', 'cinefileheader', 'realbpp'} & set(elements):
        raise SequenceError(f'{path}: not a Phantom .xml (no FrameRate, RealBPP or TIMEBLOCK element)')

    def number(name: str, kind=float):
        element = elements.get(name)
        if element is None or not (element.text or '').strip():
            return None
        try:
            return kind(element.text.strip())
        except ValueError:
            raise SequenceError(f'{path}: <{element.tag}> is {element.text.strip()!r}, expected a number') from None
    rate = number('dframerate') or number('framerate')
    meta.frame_rate = rate if rate and rate > 0 else None
    meta.bit_depth = number('realbpp', int)
    if meta.bit_depth is not None and meta.bit_depth < 1:  # the range would be empty: 0..2^0 - 1
        raise SequenceError(f'{path}: <{elements["realbpp"].tag}> is {meta.bit_depth}, expected the effective bit '
                            'depth of the frames (1 or more, e.g. 12)')
    meta.count = number('imagecount', int)
    meta.first_frame = number('firstimageno', int) or 0
    meta.time_source = f'FrameRate and FirstImageNo of {path.name}'
    trigger = None
    if 'triggertime' in elements:
        for child in elements['triggertime']:
            if _local(child.tag) == 'time' and (child.text or '').strip():
                trigger = _parse_time(child.text, path)
    if 'timeblock' in elements:
        stamps = [_parse_time(e.text or '', path) for e in elements['timeblock'].iter() if _local(e.tag) == 'time']
        if stamps:
            times = np.unwrap(np.asarray(stamps, np.float64), period=86400.0)  # a recording across midnight
            if trigger is not None:
                times = times - trigger
                times -= np.round(times[0] / 86400.0) * 86400.0  # the trigger on the other side of midnight
            else:
                times = times - times[0] + (meta.first_frame / meta.frame_rate if meta.frame_rate else 0.0)
            meta.times = times
    return meta


def write_phantom_xml(path: Path, count: int, fps: float, real_bpp: int, first: int, stamps=None,
                      trigger: str = '12:00:00.000 000') -> Path:
    """A Phantom .xml as PCC writes beside exported TIFFs: the CINE header's fields as elements (CineFileHeader,
    BitmapInfoHeader, CameraSetup) and a TIMEBLOCK of per-frame times of day."""
    base = 12 * 3600.0
    times = ''
    if stamps is not None:
        rows = []
        for i, t in enumerate(stamps):
            tod = base + t
            hh, rest = divmod(tod, 3600)
            mm, ss = divmod(rest, 60)
            ns = round((ss - int(ss)) * 1e9)
            rows.append(f'<Time frame="{first + i}">{int(hh):02d}:{int(mm):02d}:{int(ss):02d}.'
                        f'{ns // 1000000:03d} {ns // 1000 % 1000:03d} {ns % 1000:03d}</Time>')
        times = '<TIMEBLOCK>' + ''.join(rows) + '</TIMEBLOCK>'
    path.write_text(f'''<?xml version="1.0"?>
<chd><CineFileHeader><FirstImageNo>{first}</FirstImageNo><ImageCount>{count}</ImageCount>
<TriggerTime><Date>Mon Jan 01 2024</Date><Time>{trigger}</Time></TriggerTime></CineFileHeader>
<BitmapInfoHeader><biBitCount>16</biBitCount></BitmapInfoHeader>
<CameraSetup><FrameRate>{int(fps)}</FrameRate><dFrameRate>{fps}</dFrameRate><RealBPP>{real_bpp}</RealBPP>
</CameraSetup>{times}</chd>
''')
    return path
