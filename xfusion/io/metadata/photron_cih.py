"""Photron .cih (text) and .cihx (XML) headers of MRAW frames, read by pyMRAW's ``get_cih`` and checked here:
what ``formats.mraw`` needs to read the frames (count, size, bits per pixel) and what the camera says about
them (effective bit depth and its side, record rate, start frame).
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

from xfusion.errors import SequenceError
from xfusion.io.intensity import bits_range
from xfusion.io.metadata.record import CameraMetadata
from xfusion.io.reader import require


def _is_number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


class PhotronHeader(CameraMetadata):
    """A checked Photron header: ``count`` frames of ``shape`` at ``color_bit`` bits per pixel (8, 12 packed,
    16), ``bit_depth`` effective bits on the ``bit_side`` ('Lower' or 'Higher') of the word, ``value_range``
    the stored range they give, ``first_frame`` the number of the first stored frame (trigger at 0)."""

    def __init__(self, path: Path, cih: dict):
        super().__init__(path, f'{path.suffix} header')
        self.cih = cih
        self.count: int = 0
        self.shape: tuple[int, int] = (0, 0)
        self.color_bit = 16
        self.bit_side = 'Lower'
        self.value_range: tuple[float, float] = (0.0, 0.0)


def read_cih(header: Path) -> PhotronHeader:
    """The header of MRAW frames, checked: one line naming the header when a field is missing or does not fit."""
    pymraw = require('pyMRAW', header, 'Photron MRAW')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # pyMRAW warns on anything but 12 bits; the range says it here
            cih = pymraw.get_cih(str(header))
    except Exception as error:  # pyMRAW raises plain exceptions on headers it cannot parse
        raise SequenceError(f'{header}: unreadable Photron header ({type(error).__name__}: {error})') from error

    def field(key: str, kind=int):
        if key not in cih:
            raise SequenceError(f'{header}: no {key!r} in the header; is it a Photron .cih/.cihx?')
        try:
            return kind(cih[key])
        except (TypeError, ValueError):
            raise SequenceError(f'{header}: {key!r} is {cih[key]!r}, expected a number') from None
    if 'File Format' not in cih:
        raise SequenceError(f"{header}: no 'File Format' in the header; is it a Photron .cih/.cihx?")
    if str(cih['File Format']).lower() != 'mraw':
        raise SequenceError(f'{header}: File Format is {cih.get("File Format")!r}; only MRAW frames are read '
                            '(export TIFF frames as a folder instead)')
    if str(cih.get('Color Type', 'Mono')).lower() not in ('mono', 'monochrome'):
        raise SequenceError(f'{header}: Color Type {cih["Color Type"]!r}; a monochrome camera is expected')
    meta = PhotronHeader(header, cih)
    meta.count, h, w = field('Total Frame'), field('Image Height'), field('Image Width')
    meta.color_bit = color_bit = field('Color Bit')
    if color_bit not in (8, 12, 16):
        raise SequenceError(f'{header}: Color Bit {color_bit}; 8-, 12- (packed) and 16-bit MRAW are read')
    effective = field('EffectiveBit Depth') if 'EffectiveBit Depth' in cih else color_bit
    side = str(cih.get('EffectiveBit Side', 'Lower'))
    if side.lower() not in ('lower', 'higher') or not 0 < effective <= color_bit:
        raise SequenceError(f'{header}: EffectiveBit Depth {effective} / Side {side!r} do not fit '
                            f'{color_bit}-bit words')
    if color_bit == 12 and (h * w) % 2:
        raise SequenceError(f'{header}: 12-bit packed frames need an even number of pixels, got {h}x{w}')
    meta.shape, meta.bit_depth, meta.bit_side = (h, w), effective, side
    meta.value_range = bits_range(effective, color_bit, side)
    meta.frame_rate = float(cih['Record Rate(fps)']) if _is_number(cih.get('Record Rate(fps)')) else None
    meta.first_frame = _start_frame(header, cih)
    meta.time_source = f'Record Rate and Start Frame of the {header.suffix} header'
    return meta


def _start_frame(header: Path, cih: dict) -> int:
    """The number of the first stored frame relative to the trigger (0 when the header does not say)."""
    if 'Start Frame' in cih and _is_number(cih['Start Frame']):
        return int(cih['Start Frame'])
    if header.suffix.lower() == '.cihx':  # pyMRAW leaves it out of .cihx headers
        text = header.read_text(encoding='utf-8', errors='ignore')
        found = re.search(r'<startFrame>\s*(-?\d+)\s*</startFrame>', text)
        if found:
            return int(found.group(1))
    return 0
