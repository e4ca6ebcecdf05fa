"""The registry of camera readers: which reader opens a source.

``READERS`` are asked in this order whether they claim a source (``CameraReader.claims``); the first that
does opens it. A new format is one module here, defining a ``CameraReader`` with its ``suffixes`` (and
``claims``/``open`` when the suffix alone does not say), plus one line in ``READERS``.
"""
from __future__ import annotations

from pathlib import Path

from xfusion.errors import SequenceError
from xfusion.io.formats.cine import CineReader
from xfusion.io.formats.dataexchange import DataExchangeReader
from xfusion.io.formats.folder import FolderReader
from xfusion.io.formats.hdf5 import H5DatasetReader
from xfusion.io.formats.mraw import MrawReader
from xfusion.io.formats.tiff_stack import TiffStackReader
from xfusion.io.frames import split_h5_spec
from xfusion.io.reader import CameraReader

READERS: tuple[type[CameraReader], ...] = (
    FolderReader,        # a folder of PNG/TIFF frames
    DataExchangeReader,  # file.h5 holding /exchange/data, or file.h5:<group>/data with flats or darks beside it
    H5DatasetReader,     # any other file.h5:/dataset
    TiffStackReader,     # a multi-page TIFF
    MrawReader,          # a Photron x.cih / x.cihx (+ x.mraw)
    CineReader,          # a Phantom x.cine
)
# every camera file a source may name (the x-ray sequence naming rule ``<seq>/HR.<ext>`` uses these too)
CAMERA_SUFFIXES: tuple[str, ...] = tuple(dict.fromkeys(s for reader in READERS for s in reader.suffixes))


def open_source(spec: str | Path, flat_correction: bool = True) -> CameraReader:
    """The reader of a source: a frame folder, ``x.tif``, ``file.h5[:/dataset]``, ``x.cih``/``x.cihx``/``x.mraw``
    or ``x.cine`` (see ``xfusion.io``)."""
    path, dataset = split_h5_spec(spec)
    for reader in READERS:
        if reader.claims(path, dataset):
            return reader.open(path, dataset, flat_correction)
    if not path.exists():
        raise SequenceError(f'{path}: not found')
    raise SequenceError(f'{path}: expected a frame folder, a .tif stack, file.h5[:/dataset], a Photron .cih/.cihx '
                        '(+ .mraw) or a Phantom .cine')
