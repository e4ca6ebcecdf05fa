"""Phantom CINE: the headers (checked here, then read by pycine-lite's ctypes structures), then each image at its
offset."""
from __future__ import annotations

import ctypes
import struct
from pathlib import Path

import numpy as np

from xfusion.errors import SequenceError
from xfusion.io.intensity import bits_range
from xfusion.io.reader import CameraReader, require, times_from_rate

CINE_TIME_BLOCK = 1002  # tagged block of one TIME64 per image (the CINE file format's "time only" block)
# CINEFILEHEADER (44 bytes): Type ('CI'), Headersize, Compression, Version, FirstMovieImage, TotalImageCount,
# FirstImageNo, ImageCount, OffImageHeader, OffSetup, OffImageOffsets, TriggerTime (fractions, seconds)
CINEFILEHEADER = struct.Struct('<2sHHHiIiIIIIII')
BITMAPINFOHEADER_SIZE = 40  # read by pycine right after the CINEFILEHEADER


def check_cine_header(path: Path, size: int, setup_type: type[ctypes.Structure]) -> None:
    """Refuse a CINE file whose header gives counts or offsets beyond the file, before pycine reads it.

    pycine believes the header: it reads ``ImageCount`` image offsets and the tagged blocks at the sizes they
    state, so an absurd count (a corrupt or truncated file) would allocate gigabytes, and a block size under 8
    would never end its walk. `setup_type` is pycine's SETUP structure (its size, and where its Length is)."""
    with open(path, 'rb') as f:
        head = f.read(CINEFILEHEADER.size + BITMAPINFOHEADER_SIZE)
        if len(head) < CINEFILEHEADER.size + BITMAPINFOHEADER_SIZE:
            raise SequenceError(f'{path}: truncated CINE file (the header runs past its end)')
        fields = CINEFILEHEADER.unpack_from(head)
        count, off_setup, off_offsets = fields[7], fields[9], fields[10]
        if count < 1:
            raise SequenceError(f'{path}: no images')
        if off_setup + ctypes.sizeof(setup_type) > size:
            raise SequenceError(f'{path}: truncated CINE file (the header runs past its end)')
        if off_offsets + 8 * count > size:
            raise SequenceError(f'{path}: truncated or corrupt CINE file: its header gives {count} images, whose '
                                f'offsets (8 bytes each from byte {off_offsets}) run past its end ({size} bytes)')
        f.seek(off_setup + setup_type.Length.offset)
        (setup_length,) = struct.unpack('<H', f.read(2))
        position = CINEFILEHEADER.size + BITMAPINFOHEADER_SIZE + setup_length  # where pycine reads tagged blocks
        while position < off_offsets:
            f.seek(position)
            raw = f.read(6)
            if len(raw) < 6:
                raise SequenceError(f'{path}: truncated CINE file (a tagged block at byte {position} is cut off)')
            block_size, _ = struct.unpack('<IH', raw)
            if block_size < 8 or position + block_size > size:
                raise SequenceError(f'{path}: corrupt CINE file (a tagged block at byte {position} gives a size '
                                    f'of {block_size} bytes, the file has {size})')
            position += block_size


class CineReader(CameraReader):
    """Phantom CINE: the headers (checked by ``check_cine_header``, then read by pycine-lite's ctypes structures),
    then each image at its offset.

    Frames are decoded as pycine decodes them (bottom-up rows flipped, packed 10/12-bit unpacked,
    black..white level mapped to 0..2^RealBPP - 1), so the intensity range is 0..2^RealBPP - 1.
    Frame times: the per-image TIME64 block (relative to TriggerTime, exact to 2^-32 s) when present,
    else frame ``FirstImageNo + i`` over the frame rate.
    """
    kind, format = 'cine', 'Phantom CINE'
    suffixes = ('.cine',)

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        pycine_file = require('pycine.file', path, 'Phantom CINE')
        self._raw = require('pycine.raw', path, 'Phantom CINE')
        pycine_cine = require('pycine.cine', path, 'Phantom CINE')
        size = path.stat().st_size
        with open(path, 'rb') as f:
            signature = f.read(2)
        if signature != b'CI':
            raise SequenceError(f'{path}: not a CINE file (it does not start with "CI")')
        check_cine_header(path, size, pycine_cine.SETUP)
        try:
            header = pycine_file.read_header(str(path))
        except (OSError, ValueError, struct.error, IndexError) as error:
            raise SequenceError(f'{path}: truncated or unreadable CINE header ({error})') from error
        cfh, bih, setup = header['cinefileheader'], header['bitmapinfoheader'], header['setup']
        if cfh.OffSetup + ctypes.sizeof(setup) > size or len(header['pImage']) != cfh.ImageCount:
            raise SequenceError(f'{path}: truncated CINE file (the header runs past its end)')
        if bih.biCompression == 0 and bih.biBitCount not in (8, 16):
            raise SequenceError(f'{path}: {bih.biBitCount}-bit pixels; only gray 8- and 16-bit (or packed 10/12-bit) '
                                'CINE files are read')
        if bih.biCompression not in (0, 256, 1024):
            raise SequenceError(f'{path}: compression {bih.biCompression} is not read (uncompressed, P10 or P12L)')
        if bih.biHeight <= 0 or bih.biWidth <= 0:
            raise SequenceError(f'{path}: image size {bih.biWidth}x{bih.biHeight} is not read '
                                '(bottom-up frames expected)')
        self.length, self.shape = cfh.ImageCount, (bih.biHeight, bih.biWidth)
        if self.length < 1:
            raise SequenceError(f'{path}: no images')
        self.offsets = np.asarray(header['pImage'], np.int64)
        if (self.offsets < 0).any() or (self.offsets + 8 > size).any():
            raise SequenceError(f'{path}: truncated CINE file ({int((self.offsets + 8 > size).sum())} of '
                                f'{self.length} images are past its end)')
        if setup.RealBPP > 16:  # pycine maps the levels to 0..2^RealBPP - 1 in uint16
            raise SequenceError(f'{path}: RealBPP {setup.RealBPP} in the header; at most 16 bits per pixel are read')
        if setup.WhiteLevel <= setup.BlackLevel:  # files of old software carry no levels: take the full range
            setup.BlackLevel, setup.WhiteLevel = 0, (1 << setup.RealBPP) - 1 if setup.RealBPP else 65535
            self.notes.append('no black/white level in the header: taken as 0..2^RealBPP - 1')
        self.header = header
        self.bit_depth = int(self._raw.read_bpp(header)) or (8 if bih.biBitCount == 8 else 16)
        self.dtype = np.dtype(np.uint16)  # pycine gives uint16 frames at every bit depth
        self.value_range = bits_range(self.bit_depth, 16)
        self.range_source = f'{self.bit_depth}-bit effective, RealBPP of the CINE header'
        self.format = f'Phantom CINE ({bih.biBitCount if bih.biCompression == 0 else self.bit_depth}-bit' \
                      f'{", packed" if bih.biCompression else ""})'
        rate = float(getattr(setup, 'dFrameRate', 0.0) or 0.0) or float(setup.FrameRate)
        self.frame_rate = rate if rate > 0 else None
        self.first_image = int(cfh.FirstImageNo)
        self._check_last_image(size)
        stamps = self._time_block(path, cfh, setup)
        if stamps is not None:
            self.times, self.time_source = stamps, 'the CINE time block (relative to TriggerTime)'
        else:
            self.times = times_from_rate(self.length, self.frame_rate, self.first_image)
            self.time_source = 'frame rate and FirstImageNo of the CINE header' if self.times is not None else None

    def _check_last_image(self, size: int) -> None:
        with open(self.path, 'rb') as f:
            f.seek(int(self.offsets[-1]))
            annotation = struct.unpack('<I', f.read(4))[0]
            f.seek(int(self.offsets[-1]) + max(annotation, 8) - 4)
            raw = f.read(4)
        image = struct.unpack('<I', raw)[0] if len(raw) == 4 else size
        if annotation < 8 or int(self.offsets[-1]) + annotation + image > size:
            raise SequenceError(f'{self.path}: truncated CINE file (the last image runs past its end)')

    def _time_block(self, path: Path, cfh, setup) -> np.ndarray | None:
        """Seconds from TriggerTime of each image, from the TIME64 tagged block (None when there is none).

        Read here rather than taken from pycine, whose float seconds since 1970 lose the microseconds
        that matter at a million frames per second."""
        start, end = cfh.OffSetup + setup.Length, cfh.OffImageOffsets
        with open(path, 'rb') as f:
            f.seek(start)
            blocks = f.read(max(end - start, 0))
        pos = 0
        while pos + 8 <= len(blocks):
            size, kind = struct.unpack_from('<IH', blocks, pos)
            if size < 8:
                break
            if kind == CINE_TIME_BLOCK:
                n = min((size - 8) // 8, (len(blocks) - pos - 8) // 8)
                if n != self.length:
                    raise SequenceError(f'{path}: the time block holds {n} times for {self.length} images')
                stamps = np.frombuffer(blocks, '<u4', count=2 * n, offset=pos + 8).reshape(n, 2).astype(np.int64)
                trigger = cfh.TriggerTime
                return (stamps[:, 1] - int(trigger.seconds)) + (stamps[:, 0] - int(trigger.fractions)) / 2.0 ** 32
            pos += size
        return None

    def read(self, i: int) -> np.ndarray:
        if self._handle is None:
            self._handle = np.memmap(self.path, dtype=np.uint8, mode='r')
        mm, offset = self._handle, int(self.offsets[i])
        annotation = int(mm[offset:offset + 4].view('<u4')[0])  # the offsets are checked to lie in the file
        size_field = mm[offset + annotation - 4:offset + annotation] if annotation >= 8 else mm[:0]
        if len(size_field) < 4:
            raise SequenceError(f'{self.where(i)}: truncated image')
        image_size = int(size_field.view('<u4')[0])
        data = mm[offset + annotation:offset + annotation + image_size]
        if len(data) < image_size:
            raise SequenceError(f'{self.where(i)}: truncated image')
        try:
            return self._raw.create_raw_array(data, self.header)
        except ValueError as error:
            raise SequenceError(f'{self.where(i)}: unreadable image ({error})') from error

    def where(self, i: int) -> str:
        return f'{self.path} image {i}'
