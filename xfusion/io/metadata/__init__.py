"""Camera metadata, apart from the readers of frames: Phantom .xml and Shimadzu .ini beside TIFF frames
(``find_metadata`` says which belongs to a folder or stack), Photron .cih/.cihx headers of MRAW frames.
Each parser fills a ``CameraMetadata`` (``record``): frame rate, frame times, first frame, bit depth.
"""
from __future__ import annotations

from pathlib import Path

from xfusion.errors import SequenceError
from xfusion.io.metadata.phantom_xml import read_phantom_xml
from xfusion.io.metadata.record import CameraMetadata
from xfusion.io.metadata.shimadzu_ini import read_shimadzu_ini

METADATA_SUFFIXES = ('.xml', '.ini')


def find_metadata(path: Path) -> CameraMetadata | None:
    """The camera metadata of a TIFF folder (one .xml/.ini inside it, or ``<folder>.xml|.ini`` beside it)
    or of a stack (``<stem>.xml|.ini`` beside it); None when there is none."""
    if path.is_dir():
        inside = sorted(p for p in path.iterdir()
                        if p.is_file() and p.suffix.lower() in METADATA_SUFFIXES and not p.name.startswith('.'))
        if len(inside) > 1:
            raise SequenceError(f'{path}: several camera metadata files ({", ".join(p.name for p in inside)}); '
                                'keep the one of these frames')
        candidates = inside or [path.with_name(path.name + s) for s in METADATA_SUFFIXES]
    else:
        candidates = [path.with_suffix(s) for s in METADATA_SUFFIXES]
    found = [p for p in candidates if p.is_file()]
    if len(found) > 1:
        raise SequenceError(f'{path}: both {found[0].name} and {found[1].name} beside it; keep the one of these frames')
    if not found:
        return None
    return read_phantom_xml(found[0]) if found[0].suffix.lower() == '.xml' else read_shimadzu_ini(found[0])
