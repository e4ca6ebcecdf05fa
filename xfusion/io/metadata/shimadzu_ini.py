"""Shimadzu HPV .ini: the HPV-X2's metadata of saved images (frame interval, frame count, trigger delay)."""
from __future__ import annotations

import configparser
import re
from pathlib import Path

from xfusion.errors import SequenceError
from xfusion.io.metadata.record import CameraMetadata

_UNITS = {'ns': 1e-9, 'us': 1e-6, 'µs': 1e-6, 'ms': 1e-3, 's': 1.0}


def _duration(text: str, where: str) -> float:
    """'10,000,000 ns' -> 0.01 (seconds); ns when no unit is given, as the HPV software writes them."""
    match = re.fullmatch(r'\s*([-+]?[\d,]*\.?\d+)\s*([a-zµ]*)\s*', text.lower())
    if not match or match.group(2) not in (*_UNITS, ''):
        raise SequenceError(f'{where} is {text.strip()!r}, expected a time such as "1,000 ns"')
    return float(match.group(1).replace(',', '')) * _UNITS.get(match.group(2) or 'ns')


def read_shimadzu_ini(path: Path) -> CameraMetadata:
    """A Shimadzu HPV .ini (the HPV-X2's metadata of saved images): ``[REC_INFO]`` keys ``RecSpeed`` (the
    frame interval, '1,000 ns' at 1 Mfps), ``RecFrame`` (frames) and ``TriggerDelay``.

    Frame i is taken at TriggerDelay + i x RecSpeed after the trigger. The .ini holds no bit depth:
    the intensity range is the TIFF dtype's unless ``--range`` is given.
    """
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(path.read_text(encoding='utf-8-sig', errors='replace'))
    except configparser.Error as error:
        raise SequenceError(f'{path}: unreadable .ini ({error.__class__.__name__})') from error
    values = {key.lower(): (section, value) for section in parser.sections() for key, value in parser[section].items()}
    if 'recspeed' not in values:
        raise SequenceError(f'{path}: not a Shimadzu HPV .ini (no RecSpeed in [REC_INFO])')
    meta = CameraMetadata(path, 'Shimadzu .ini')
    interval = _duration(values['recspeed'][1], f'{path}: RecSpeed')
    if interval <= 0:
        raise SequenceError(f'{path}: RecSpeed must be a positive frame interval')
    meta.frame_rate = 1.0 / interval
    if 'recframe' in values:
        try:
            meta.count = int(values['recframe'][1].replace(',', '').strip())
        except ValueError:
            raise SequenceError(f'{path}: RecFrame is {values["recframe"][1]!r}, expected a frame count') from None
    delay = _duration(values['triggerdelay'][1], f'{path}: TriggerDelay') if 'triggerdelay' in values else 0.0
    meta.time_shift = delay
    meta.time_source = f'RecSpeed and TriggerDelay of {path.name}'
    return meta


def write_shimadzu_ini(path: Path, interval_ns: str = '1,000 ns', frames: int = 8, delay: str = '0 ns') -> Path:
    """A Shimadzu HPV .ini with the sections and keys of the HPV-X2 manual ("Metadata in Image Files")."""
    path.write_text(f'''[SYSTEM]
Comment=xfusion
[PLAY_INFO]
PlaySpeed=15 fps
[REC_INFO]
RecModeUI=Internal
RecFrame={frames}
RecSpeed={interval_ns}
RecExpose=300 ns
TriggerDelay={delay}
TriggerPoint=1
''')
    return path
