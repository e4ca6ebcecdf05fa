"""Single frames: PNG and TIFF files (8- or 16-bit, or float TIFF) and folders of them.

Frames are single-channel; colour frames become gray on reading. A folder's frames are its image
files in natural order of their names. Every error names the file at fault.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
import numpy as np
import tifffile

from xfusion.errors import SequenceError

H5_SUFFIXES = ('.h5', '.hdf5')
TIFF_SUFFIXES = ('.tif', '.tiff')
IMAGE_SUFFIXES = ('.png',) + TIFF_SUFFIXES


def split_h5_spec(spec: str | Path) -> tuple[Path, str]:
    """``file.h5:/group/dataset`` -> (file, '/group/dataset'); any other path -> (path, '')."""
    spec = str(spec)
    for suffix in H5_SUFFIXES:
        head, sep, dataset = spec.partition(suffix + ':')
        if sep:
            return Path(head + suffix), dataset
    return Path(spec), ''


def natural_key(name: str) -> list:
    """Sort key that orders 'f2' before 'f10'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r'(\d+)', name)]


def list_frames(folder: str | Path) -> list[Path]:
    """Image files of a folder in natural order; an error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SequenceError(f'{folder}: not a folder')
    frames = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith('.')),
                    key=lambda p: natural_key(p.name))
    if not frames:
        raise SequenceError(f'{folder}: no frames (.png, .tif, .tiff) in this folder')
    return frames


def read_frame(path: str | Path) -> np.ndarray:
    """One frame as stored (uint8, uint16 or float), 2-D; colour frames become gray."""
    path = Path(path)
    tiff_log = logging.getLogger('tifffile')
    level = tiff_log.level
    tiff_log.setLevel(logging.CRITICAL)  # a broken file gets our one-line error, not tifffile's log too
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            img = tifffile.imread(path)
        else:
            img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except Exception as error:  # tifffile raises its own errors on truncated files
        raise SequenceError(f'{path}: unreadable frame ({error})') from error
    finally:
        tiff_log.setLevel(level)
    if img is None or img.size == 0:
        raise SequenceError(f'{path}: unreadable frame')
    if img.ndim == 3 and img.shape[-1] in (3, 4):
        code = cv2.COLOR_BGRA2GRAY if img.shape[-1] == 4 else cv2.COLOR_BGR2GRAY
        if path.suffix.lower() in TIFF_SUFFIXES:  # tifffile gives RGB order
            code = cv2.COLOR_RGBA2GRAY if img.shape[-1] == 4 else cv2.COLOR_RGB2GRAY
        img = cv2.cvtColor(img, code)
    elif img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim != 2:
        raise SequenceError(f'{path}: expected a single image, got an array of shape {img.shape}')
    return img


def write_frame(path: str | Path, img: np.ndarray) -> None:
    """Write a uint8 / uint16 frame (2-D, or H x W x 3 in BGR order) as PNG or TIFF (by the suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in TIFF_SUFFIXES:
        tifffile.imwrite(path, img)
    elif not cv2.imwrite(str(path), img):
        raise SequenceError(f'{path}: could not write frame')
