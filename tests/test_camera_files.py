"""Camera files in, with no conversion: Photron MRAW, Phantom CINE, TIFF with camera metadata, DataExchange with
flats and darks, and the key-frame schedule from the cameras' clocks.

Every file is made here, a few small frames, with the format library's own writer where there is one (pyMRAW
writes MRAW + .cih) and otherwise to the published layout (each writer says where its layout comes from), and
read back against the arrays it was made from.
"""
from __future__ import annotations

import ctypes
import json
import struct

import h5py
import numpy as np
import pycine.cine as pycine_cine
import pyMRAW  # the camera extra, which make test installs (pip install '.[cameras]')
import pytest
import tifffile

from xfusion.camera import area_average
from xfusion.commands import main
from xfusion.errors import InputError, SequenceError
from xfusion.io.formats.cine import CineReader
from xfusion.io.formats.mraw import MrawReader
from xfusion.io.frames import write_frame
from xfusion.io.intensity import IntensityScale
from xfusion.io.metadata import find_metadata
from xfusion.io.metadata.phantom_xml import write_phantom_xml as phantom_xml
from xfusion.io.metadata.shimadzu_ini import write_shimadzu_ini as shimadzu_ini
from xfusion.io.sequence import Sequence, open_xray_root
from xfusion.io.stack import FrameStack
from xfusion.schedule import MISALIGNED, schedule_from_times

HR_FPS, LR_FPS = 71428.6, 1e6  # the TomoBank rad_00003 cameras: Phantom TMX7510 (HR), Shimadzu HPV-X2 (LR)


# --- writers


def write_mraw(cih, frames: np.ndarray, effective: int = 12, fps: float = LR_FPS, start: int = 0):
    """MRAW + .cih by pyMRAW's own writer (16- or 8-bit words)."""
    bits = frames.dtype.itemsize * 8
    pyMRAW.save_mraw(frames, str(cih), bit_depth=bits,
                     info_dict={'Record Rate(fps)': fps, 'Start Frame': start, 'EffectiveBit Depth': effective})
    return cih


def write_mraw_12bit_packed_cihx(cihx, frames: np.ndarray, fps: float, start: int):
    """12-bit packed MRAW (two pixels in three bytes, the layout pyMRAW's reader unpacks) with a .cihx header.

    pyMRAW writes neither; the .cihx holds the XML elements pyMRAW's get_cih reads from Photron's cihx files
    (fileInfo, deviceInfo, recordInfo, frameInfo, imageDataInfo, imageFileInfo, basicInfo)."""
    flat = frames.astype(np.uint16).reshape(-1, 2)
    packed = np.empty((flat.shape[0], 3), np.uint8)
    packed[:, 0] = flat[:, 0] >> 4
    packed[:, 1] = ((flat[:, 0] & 0x0F) << 4) | (flat[:, 1] >> 8)
    packed[:, 2] = flat[:, 1] & 0xFF
    packed.tofile(cihx.with_suffix('.mraw'))
    n, h, w = frames.shape
    cihx.write_text(f'''<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<cih>
<fileInfo><date>2024/01/01</date></fileInfo>
<deviceInfo><deviceName>FASTCAM test</deviceName></deviceInfo>
<recordInfo><recordRate>{fps}</recordRate><shutterSpeed>0.000001</shutterSpeed></recordInfo>
<frameInfo><totalFrame>{n}</totalFrame><recordedFrame>{n}</recordedFrame><startFrame>{start}</startFrame></frameInfo>
<imageDataInfo><resolution><width>{w}</width><height>{h}</height></resolution>
<effectiveBit><depth>12</depth><side>Lower</side></effectiveBit><colorInfo><type>Mono</type><bit>12</bit></colorInfo>
</imageDataInfo>
<imageFileInfo><fileFormat>MRaw</fileFormat></imageFileInfo>
<basicInfo><comment>test</comment></basicInfo>
</cih>
''')
    return cihx


def time64(seconds: int, fractions: int, offset_s: float) -> tuple[int, int]:
    """TIME64 (seconds, fractions of 2^-32 s) of a time offset_s after (seconds, fractions)."""
    total = fractions + round(offset_s * 2 ** 32)
    return seconds + total // 2 ** 32, total % 2 ** 32


def write_cine(path, frames: np.ndarray, fps: float, real_bpp: int = 12, first: int = 0, stamps=None,
               frame_rate_field: bool = True, trigger=(1_700_000_000, 123_456_789)):
    """A Phantom CINE of 16-bit gray frames, built to the layout of the Vision Research CINE file format as
    pycine's ctypes structures (CINEFILEHEADER, BITMAPINFOHEADER, SETUP) encode it: the three headers, a
    tagged block 1002 of one TIME64 per image (when ``stamps``, seconds from the trigger, are given), the
    image offsets (int64), then per image AnnotationSize, ImageSize and the rows bottom-up."""
    n, h, w = frames.shape
    cfh, bih, setup = pycine_cine.CINEFILEHEADER(), pycine_cine.BITMAPINFOHEADER(), pycine_cine.SETUP()
    setup_at = ctypes.sizeof(cfh) + ctypes.sizeof(bih)
    block = b''
    if stamps is not None:
        times = [time64(*trigger, float(t)) for t in stamps]
        block = struct.pack('<IHH', 8 + 8 * n, 1002, 0) + b''.join(struct.pack('<II', f, s) for s, f in times)
    offsets_at = setup_at + ctypes.sizeof(setup) + len(block)
    image_size = h * w * 2
    first_image_at = offsets_at + 8 * n
    offsets = [first_image_at + i * (8 + image_size) for i in range(n)]
    cfh.Type, cfh.Headersize, cfh.Compression, cfh.Version = int.from_bytes(b'CI', 'little'), 44, 0, 1
    cfh.FirstMovieImage, cfh.TotalImageCount, cfh.FirstImageNo, cfh.ImageCount = first, n, first, n
    cfh.OffImageHeader, cfh.OffSetup, cfh.OffImageOffsets = ctypes.sizeof(cfh), setup_at, offsets_at
    cfh.TriggerTime.seconds, cfh.TriggerTime.fractions = trigger
    bih.biSize, bih.biWidth, bih.biHeight, bih.biPlanes, bih.biBitCount = 40, w, h, 1, 16
    bih.biCompression, bih.biSizeImage = 0, image_size
    setup.Mark, setup.Length = int.from_bytes(b'ST', 'little'), ctypes.sizeof(setup)
    setup.RealBPP, setup.BlackLevel, setup.WhiteLevel = real_bpp, 0, (1 << real_bpp) - 1
    if frame_rate_field:
        setup.FrameRate, setup.dFrameRate = int(fps), fps
    with open(path, 'wb') as f:
        f.write(bytes(cfh) + bytes(bih) + bytes(setup) + block + struct.pack(f'<{n}q', *offsets))
        for frame in frames:
            f.write(struct.pack('<II', 8, image_size) + np.ascontiguousarray(frame[::-1]).astype('<u2').tobytes())
    return path


def write_dxchange(path, counts, white=None, dark=None, time=None, bit_depth=None, frame_rate=None):
    """DataExchange raw counts with flats and darks, by h5py (the layout of the Data Exchange format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, 'w') as f:
        f['/exchange/data'] = counts
        if white is not None:
            f['/exchange/data_white'] = white
        if dark is not None:
            f['/exchange/data_dark'] = dark
        if time is not None:
            f['/exchange/time'] = time
        if bit_depth is not None:
            f['/measurement/instrument/detector/bit_depth'] = bit_depth
        if frame_rate is not None:
            f['/measurement/instrument/detector/frame_rate'] = frame_rate
    return path


def frames12(n=5, h=16, w=24, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4096, (n, h, w)).astype(np.uint16)


# --- readers


def test_mraw_12_bit_in_16_bit_words_reads_with_the_effective_range(tmp_path):
    frames = frames12()
    frames[0, 0, 0] = 4095
    cih = write_mraw(tmp_path / 'cam.cih', frames, effective=12, fps=LR_FPS, start=-2)
    stack = FrameStack(cih)
    assert (len(stack), stack.shape, stack.dtype, stack.bit_depth) == (5, (16, 24), np.uint16, 12)
    assert (stack.scale.low, stack.scale.high) == (0.0, 4095.0)  # never 65535
    reference, _ = pyMRAW.load_video(str(cih))  # the library's own reader
    for i in range(5):
        assert np.array_equal(stack.read(i), frames[i]) and np.array_equal(stack.read(i), reference[i])
    assert stack.read_unit(0)[0, 0] == 1.0
    np.testing.assert_allclose(stack.times, (np.arange(5) - 2) / LR_FPS)
    assert stack.frame_rate == LR_FPS and 'MRAW' in stack.format
    # the .mraw named instead of its header: the same source
    assert np.array_equal(FrameStack(tmp_path / 'cam.mraw').read(3), frames[3])


def test_mraw_12_bit_packed_with_cihx_header(tmp_path):
    frames = frames12(n=4, h=8, w=10, seed=1)
    cihx = write_mraw_12bit_packed_cihx(tmp_path / 'cam.cihx', frames, fps=HR_FPS, start=-1)
    stack = FrameStack(cihx)
    assert stack.dtype == np.uint16 and (stack.scale.high, stack.bit_depth) == (4095.0, 12)
    reference, _ = pyMRAW.load_video(str(cihx))
    for i in range(4):
        assert np.array_equal(stack.read(i), frames[i]) and np.array_equal(reference[i], frames[i])
    np.testing.assert_allclose(stack.times, (np.arange(4) - 1) / HR_FPS)
    assert 'packed' in stack.format


def test_mraw_8_bit(tmp_path):
    frames = np.random.default_rng(2).integers(0, 256, (3, 8, 8)).astype(np.uint8)
    stack = FrameStack(write_mraw(tmp_path / 'cam.cih', frames, effective=8))
    assert stack.dtype == np.uint8 and stack.scale.high == 255.0
    assert np.array_equal(stack.read(2), frames[2])


def test_cine_frames_range_and_timestamps(tmp_path):
    frames = frames12(n=6, h=12, w=20, seed=3)
    stamps = (np.arange(6) - 3) / HR_FPS + 1e-7 * np.array([0, 1, 0, 2, 0, 1])  # a clock with jitter
    cine = write_cine(tmp_path / 'hr.cine', frames, HR_FPS, real_bpp=12, first=-3, stamps=stamps)
    stack = FrameStack(cine)
    assert (len(stack), stack.shape, stack.dtype) == (6, (12, 20), np.uint16)
    assert (stack.scale.high, stack.bit_depth, stack.frame_rate) == (4095.0, 12, HR_FPS)
    import pycine.raw  # the library's own reader gives the same frames
    library, _, bpp = pycine.raw.read_frames(str(cine))
    for i, expected in enumerate(library):
        assert np.array_equal(stack.read(i), frames[i]) and np.array_equal(expected, frames[i])
    assert bpp == 12
    np.testing.assert_allclose(stack.times, stamps, rtol=0, atol=1e-9)  # exact to the TIME64 resolution
    assert stack.time_source == 'the CINE time block (relative to TriggerTime)'
    # without the time block: FirstImageNo over the frame rate
    plain = FrameStack(write_cine(tmp_path / 'plain.cine', frames, HR_FPS, first=-3))
    np.testing.assert_allclose(plain.times, (np.arange(6) - 3) / HR_FPS)


def test_tiff_folder_with_phantom_xml_beside_it(tmp_path):
    frames = frames12(n=4, h=8, w=8, seed=4)
    for i, frame in enumerate(frames):
        write_frame(tmp_path / 'hr' / f'img_{i:04d}.tif', frame)
    stamps = (np.arange(4) - 1) / HR_FPS
    phantom_xml(tmp_path / 'hr.xml', 4, HR_FPS, 12, first=-1, stamps=stamps)
    stack = FrameStack(tmp_path / 'hr')
    assert stack.scale.high == 4095.0 and stack.bit_depth == 12 and stack.frame_rate == HR_FPS
    np.testing.assert_allclose(stack.times, stamps, atol=2e-9)
    assert 'Phantom .xml' in stack.format and stack.metadata_file.name == 'hr.xml'
    assert np.array_equal(stack.read(3), frames[3])
    # the .xml inside the folder works too, and a frame rate alone gives the times
    (tmp_path / 'hr.xml').rename(tmp_path / 'hr' / 'meta.xml')
    phantom_xml(tmp_path / 'hr' / 'meta.xml', 4, HR_FPS, 12, first=-1)
    np.testing.assert_allclose(FrameStack(tmp_path / 'hr').times, stamps)


def test_tiff_stack_with_shimadzu_ini_beside_it(tmp_path):
    frames = np.random.default_rng(5).integers(0, 1024, (8, 8, 12)).astype(np.uint16)
    tifffile.imwrite(tmp_path / 'lr.tif', frames)
    shimadzu_ini(tmp_path / 'lr.ini', '1,000 ns', frames=8, delay='200 ns')
    stack = FrameStack(tmp_path / 'lr.tif')
    assert stack.frame_rate == pytest.approx(LR_FPS) and len(stack) == 8
    np.testing.assert_allclose(stack.times, np.arange(8) * 1e-6 + 200e-9)
    assert stack.scale.high == 65535.0  # the .ini holds no bit depth: the dtype's range
    assert np.array_equal(stack.read(5), frames[5])


def test_dataexchange_flat_and_dark_correction(tmp_path):
    rng = np.random.default_rng(6)
    truth = rng.uniform(0.05, 1.0, (5, 16, 16))
    yy, xx = np.mgrid[:16, :16]
    white_mean = 2000 + 60 * xx + 30 * yy  # a non-uniform flat
    dark_mean = 90 + 5 * (xx % 3)
    whites = np.stack([white_mean + d for d in (-4, 0, 4)]).astype(np.uint16)
    darks = np.stack([dark_mean + d for d in (-1, 1)]).astype(np.uint16)
    counts = np.rint(dark_mean + truth * (white_mean - dark_mean)).astype(np.uint16)
    path = write_dxchange(tmp_path / 'cam.h5', counts, whites, darks, bit_depth=12, frame_rate=LR_FPS)
    stack = FrameStack(path)  # file.h5 alone: /exchange/data
    assert stack.dtype == np.float32 and (stack.scale.low, stack.scale.high) == (0.0, 1.0)
    assert stack.flat_field == {'whites': 3, 'darks': 2, 'applied': True}
    for i in range(5):
        expected = (counts[i] - darks.mean(0)) / (whites.mean(0) - darks.mean(0))
        np.testing.assert_allclose(stack.read(i), expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(stack.read_unit(i), truth[i], atol=0.5 / 1800)
    np.testing.assert_allclose(stack.times, np.arange(5) / LR_FPS)
    assert np.array_equal(FrameStack(f'{path}:/exchange/data').read(2), stack.read(2))  # the same source
    raw = FrameStack(path, flat_correction=False)
    assert raw.dtype == np.uint16 and raw.scale.high == 4095.0 and np.array_equal(raw.read(1), counts[1])


def test_dataexchange_time_vector_and_no_flat(tmp_path):
    counts = frames12(n=3, h=8, w=8)
    path = write_dxchange(tmp_path / 'cam.h5', counts, dark=counts[:1], time=[0.0, 1e-6, 2.5e-6])
    stack = FrameStack(path)
    assert stack.dtype == np.uint16 and not stack.flat_field['applied'] and 'not corrected' in stack.notes[0]
    np.testing.assert_allclose(stack.times, [0.0, 1e-6, 2.5e-6])


def test_metadata_range_exceeded_names_the_fix(tmp_path):
    write_frame(tmp_path / 'hr' / '0.tif', np.full((8, 8), 60000, np.uint16))
    phantom_xml(tmp_path / 'hr.xml', 1, HR_FPS, 12, first=0)
    with pytest.raises(SequenceError, match=r'0.tif: values up to 60000 exceed .*give --range 0 65535'):
        FrameStack(tmp_path / 'hr')
    assert FrameStack(tmp_path / 'hr', value_range=(0, 65535)).scale.high == 65535.0


def test_bad_or_truncated_files_give_one_line_naming_the_file(tmp_path, capsys):
    frames = frames12(n=4, h=8, w=8)
    cih = write_mraw(tmp_path / 'cut.cih', frames)
    data = (tmp_path / 'cut.mraw').read_bytes()
    (tmp_path / 'cut.mraw').write_bytes(data[:len(data) - 10])
    (tmp_path / 'garbage.cih').write_text('this is not a header\n')
    (tmp_path / 'garbage.mraw').write_bytes(b'\0' * 10)
    cine = write_cine(tmp_path / 'cut.cine', frames, HR_FPS)
    (tmp_path / 'cut.cine').write_bytes(cine.read_bytes()[:-50])
    (tmp_path / 'other.cine').write_bytes(b'RIFF' + b'\0' * 200)
    write_dxchange(tmp_path / 'good.h5', frames)
    (tmp_path / 'cut.h5').write_bytes((tmp_path / 'good.h5').read_bytes()[:1000])
    (tmp_path / 'bad').mkdir()
    write_frame(tmp_path / 'bad' / '0.tif', frames[0])
    (tmp_path / 'bad.xml').write_text('<chd><FrameRate>10')
    (tmp_path / 'ini').mkdir()
    write_frame(tmp_path / 'ini' / '0.tif', frames[0])
    (tmp_path / 'ini.ini').write_text('[REC_INFO]\nRecFrame=1\n')
    (tmp_path / 'nomraw.cih').write_text((tmp_path / 'cut.cih').read_text())
    cases = {cih: 'cut.mraw: truncated', tmp_path / 'garbage.cih': "garbage.cih: no 'File Format'",
             tmp_path / 'cut.cine': 'cut.cine: truncated', tmp_path / 'other.cine': 'other.cine: not a CINE file',
             tmp_path / 'cut.h5': 'cut.h5: unreadable HDF5', tmp_path / 'bad': 'bad.xml: unreadable Phantom .xml',
             tmp_path / 'ini': 'ini.ini: not a Shimadzu HPV .ini', tmp_path / 'nomraw.cih': 'no nomraw.mraw beside it',
             tmp_path / 'missing.cine': 'missing.cine: not found'}
    for source, message in cases.items():
        assert main(['info', str(source)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (source, err)


def one_error_line(capsys, argv: list[str]) -> str:
    """Run the xfusion command on bad input: exit status 2 and one line on stderr (no traceback); that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'Traceback' not in err[0], err
    return err[0]


def test_empty_intensity_range_is_one_line_naming_the_option(tmp_path, capsys):
    frames = frames12(n=2, h=8, w=8)
    for name, frame_set in (('lr', frames[:, ::4, ::4]), ('hr', frames)):
        for t, frame in enumerate(frame_set):
            write_frame(tmp_path / name / f'{t}.tif', np.ascontiguousarray(frame))
    model = tmp_path / 'model.pth'
    model.write_bytes(b'')
    before = sorted(tmp_path.rglob('*'))
    line = one_error_line(capsys, ['info', str(tmp_path / 'hr'), '--range', '1', '0'])
    assert 'intensity range 1 0' in line and '--range' in line and 'value_range' in line, line
    line = one_error_line(capsys, ['fuse', '--lr', str(tmp_path / 'lr'), '--hr', str(tmp_path / 'hr'), '--period', '1',
                                   '--model', str(model), '--out', str(tmp_path / 'out'), '--range', '1', '0'])
    assert 'intensity range 1 0' in line and '--range' in line, line
    assert sorted(tmp_path.rglob('*')) == before  # nothing written
    with pytest.raises(InputError, match='value_range'):  # the dataset option, the same check
        IntensityScale.for_dtype(np.uint16, (5, 5))
    with pytest.raises(InputError, match='two numbers'):
        IntensityScale.for_dtype(np.uint16, (5,))


def test_phantom_xml_with_real_bpp_0_is_one_line_naming_the_file(tmp_path, capsys):
    write_frame(tmp_path / 'hr' / '0.tif', frames12(n=1, h=8, w=8)[0])
    phantom_xml(tmp_path / 'hr.xml', 1, HR_FPS, 0, first=0)
    before = sorted(tmp_path.rglob('*'))
    line = one_error_line(capsys, ['info', str(tmp_path / 'hr')])
    assert f'{tmp_path / "hr.xml"}: <RealBPP> is 0' in line, line
    assert sorted(tmp_path.rglob('*')) == before
    with pytest.raises(SequenceError, match='RealBPP> is 0'):
        find_metadata(tmp_path / 'hr')


def test_cine_header_with_absurd_counts_is_refused_before_pycine_reads_it(tmp_path, capsys, monkeypatch):
    import pycine.file
    read_header = pycine.file.read_header
    read = []
    monkeypatch.setattr(pycine.file, 'read_header', lambda path: read.append(path) or read_header(path))
    frames = frames12(n=3, h=8, w=12)
    good = write_cine(tmp_path / 'good.cine', frames, HR_FPS, stamps=np.arange(3) / HR_FPS)
    assert np.array_equal(FrameStack(good).read(2), frames[2]) and len(read) == 1  # the check lets good files by
    data = bytearray(good.read_bytes())
    count_at = pycine_cine.CINEFILEHEADER.ImageCount.offset
    data[count_at:count_at + 4] = struct.pack('<I', 0xFFFFFFFF)
    (tmp_path / 'huge.cine').write_bytes(bytes(data))
    line = one_error_line(capsys, ['info', str(tmp_path / 'huge.cine')])
    assert f'{tmp_path / "huge.cine"}: truncated or corrupt CINE file' in line and '4294967295 images' in line, line
    # a tagged block of size 0 (pycine would walk it for ever)
    data = bytearray(good.read_bytes())
    block_at = ctypes.sizeof(pycine_cine.CINEFILEHEADER) + ctypes.sizeof(pycine_cine.BITMAPINFOHEADER) + \
        ctypes.sizeof(pycine_cine.SETUP)
    data[block_at:block_at + 4] = struct.pack('<I', 0)
    (tmp_path / 'loop.cine').write_bytes(bytes(data))
    line = one_error_line(capsys, ['info', str(tmp_path / 'loop.cine')])
    assert 'loop.cine: corrupt CINE file (a tagged block' in line, line
    # "CI" and then anything
    rng = np.random.default_rng(13)
    for k, size in enumerate([10, 100, 5000, 20000, 20000, 20000]):
        path = tmp_path / f'random{k}.cine'
        path.write_bytes(b'CI' + rng.bytes(size))
        assert f'{path}: ' in one_error_line(capsys, ['info', str(path)])
    assert len(read) == 1  # none of the bad files reached pycine's header reader


def test_missing_library_is_one_line_naming_what_to_install(tmp_path, monkeypatch):
    cih = write_mraw(tmp_path / 'cam.cih', frames12(n=2, h=4, w=4))
    cine = write_cine(tmp_path / 'cam.cine', frames12(n=2, h=4, w=4), HR_FPS)
    import importlib
    real = importlib.import_module

    def without_cameras(name, *args):
        if name.split('.')[0] in ('pyMRAW', 'pycine'):
            raise ImportError(name)
        return real(name, *args)
    monkeypatch.setattr(importlib, 'import_module', without_cameras)
    with pytest.raises(InputError, match=r'cam.cih: reading Photron MRAW needs pyMRAW: pip install "pyMRAW==0.33.0"'):
        MrawReader(cih)
    with pytest.raises(InputError, match=r'cam.cine: reading Phantom CINE needs pycine-lite: pip install'):
        CineReader(cine)


def test_several_metadata_files_are_an_error(tmp_path):
    write_frame(tmp_path / 'f' / '0.tif', frames12(n=1, h=4, w=4)[0])
    phantom_xml(tmp_path / 'f' / 'a.xml', 1, HR_FPS, 12, 0)
    shimadzu_ini(tmp_path / 'f' / 'b.ini')
    with pytest.raises(SequenceError, match='several camera metadata files'):
        find_metadata(tmp_path / 'f')


# --- time matching


def test_schedule_from_times_uhs_cameras():
    lr = np.arange(100) / LR_FPS
    hr = np.arange(7) / HR_FPS  # 14.0000 us apart
    match = schedule_from_times(lr, hr)
    assert match.schedule.key_times == (0, 14, 28, 42, 56, 70, 84)
    assert match.hr_frames == tuple(range(7)) and not match.misaligned and not match.unmatched
    assert max(abs(m) for m in match.misalignment) < 1e-3
    # a trigger delay of 0.4 LR frames: the same steps, every frame reported with its misalignment
    late = schedule_from_times(lr, hr, time_offset=0.4e-6)
    assert late.schedule.key_times == match.schedule.key_times
    assert [f for f, _, _ in late.misaligned] == list(range(7))
    assert late.misaligned[0][2] == pytest.approx(0.4) and MISALIGNED == 0.25
    assert 'HR frame 3 falls between LR steps: +0.400 LR frames from step 42' in '\n'.join(late.report())
    # 0.6 LR frames late: the next step, 0.4 early
    assert schedule_from_times(lr, hr, time_offset=0.6e-6).schedule.key_times[:2] == (1, 15)
    # HR frames before / after the LR recording are left out
    out = schedule_from_times(lr, np.concatenate([[-5e-6], hr, [200e-6]]))
    assert out.hr_frames == tuple(range(1, 8)) and out.unmatched == (0, 8)
    # two HR frames nearest one LR step: the closer one is kept
    twice = schedule_from_times(lr, [9.7e-6, 10.1e-6, 20e-6])
    assert twice.schedule.key_times == (10, 20) and twice.hr_frames == (1, 2) and twice.unmatched == (0,)
    with pytest.raises(InputError, match='no HR frame time falls within the LR recording'):
        schedule_from_times(lr, hr + 1.0)


def test_two_cameras_with_timestamps_only_get_the_right_schedule(tmp_path, capsys):
    """HR Phantom at 71,428.6 fps (CINE, time block, no frame rate field) against an LR camera at 1 Mfps
    (DataExchange, a time vector and no frame rate): the schedule comes from the timestamps alone."""
    rng = np.random.default_rng(7)
    lr_times = np.arange(60) * 1e-6 + rng.normal(0, 2e-9, 60)  # the LR clock, a little jitter
    hr_times = np.arange(5) / HR_FPS
    write_dxchange(tmp_path / 'lr.h5', frames12(n=60, h=8, w=8), time=lr_times)
    write_cine(tmp_path / 'hr.cine', frames12(n=5, h=32, w=32), HR_FPS, stamps=hr_times, frame_rate_field=False)
    lr, hr = FrameStack(tmp_path / 'lr.h5'), FrameStack(tmp_path / 'hr.cine')
    assert lr.frame_rate is None and hr.frame_rate is None
    match = schedule_from_times(lr.times, hr.times)
    assert match.schedule.key_times == (0, 14, 28, 42, 56) and not match.misaligned
    assert main(['info', str(tmp_path / 'lr.h5'), str(tmp_path / 'hr.cine')]) == 0
    out = capsys.readouterr().out
    assert 'schedule (from the frame times): key frames at LR steps 0, 14, 28, 42, 56 of 0..59' in out
    assert 'Phantom CINE' in out and 'DataExchange' in out and '12-bit; intensity range 0..4095' in out
    # a trigger delay moves the steps; --period still overrides the clocks
    assert main(['info', str(tmp_path / 'lr.h5'), str(tmp_path / 'hr.cine'), '--time-offset', '3e-6']) == 0
    assert 'key frames at LR steps 3, 17, 31, 45, 59' in capsys.readouterr().out
    assert main(['info', str(tmp_path / 'lr.h5'), str(tmp_path / 'hr.cine'), '--period', '10']) == 0
    assert 'every 10 LR steps from 0): key frames at LR steps 0, 10, 20, 30, 40' in capsys.readouterr().out


# --- sequences of the x-ray datasets, register, fuse


def test_camera_files_in_an_xray_root_read_like_frame_folders(tmp_path):
    rng = np.random.default_rng(8)
    scene = rng.uniform(0.1, 0.9, (6, 32, 32))
    hr16 = np.rint(scene * 4095).astype(np.uint16)
    lr16 = np.rint(np.stack([area_average(f) for f in scene]) * 4095).astype(np.uint16)
    write_mraw(tmp_path / 'root' / 'mraw_seq' / 'HR.cih', hr16)
    write_mraw(tmp_path / 'root' / 'mraw_seq' / 'LR.cih', lr16)
    white_hr, white_lr = np.full((2, 32, 32), 3000, np.uint16), np.full((2, 8, 8), 3000, np.uint16)
    write_dxchange(tmp_path / 'root' / 'dx_seq' / 'HR.h5', np.rint(100 + scene * 2900).astype(np.uint16),
                   white_hr, np.full((1, 32, 32), 100, np.uint16))
    write_dxchange(tmp_path / 'root' / 'dx_seq' / 'LR.h5', np.rint(100 + lr16 / 4095 * 2900).astype(np.uint16),
                   white_lr, np.full((1, 8, 8), 100, np.uint16))
    sequences = open_xray_root(tmp_path / 'root')
    assert [s.name for s in sequences] == ['dx_seq', 'mraw_seq']
    assert all(isinstance(s, Sequence) and s.layout == 'camera files' for s in sequences)
    dx, mraw = sequences
    assert mraw.hr_index == list(range(6)) and mraw.scale.high == 4095.0
    for t in range(6):
        np.testing.assert_allclose(mraw.read_hr(t), scene[t], atol=0.5 / 4095)
        np.testing.assert_allclose(dx.read_hr(t), scene[t], atol=0.5 / 2900 + 1e-6)
        np.testing.assert_allclose(dx.read_lr(t), mraw.read_lr(t), atol=1e-3)
    # the naming rule's errors
    (tmp_path / 'root' / 'dx_seq' / 'HR.tif').write_bytes(b'')
    with pytest.raises(SequenceError, match=r'several HR camera files \(HR.h5, HR.tif\)'):
        open_xray_root(tmp_path / 'root')
    (tmp_path / 'root' / 'dx_seq' / 'HR.tif').unlink()
    (tmp_path / 'root' / 'dx_seq' / 'LR.h5').unlink()
    with pytest.raises(SequenceError, match='HR.h5 but no LR camera file'):
        open_xray_root(tmp_path / 'root')


def test_xray_dataset_trains_from_camera_files(tmp_path):
    from xfusion.data.xray_stf_dataset import XraySTFDataset
    scene = np.random.default_rng(9).uniform(0.1, 0.9, (8, 32, 32))
    write_mraw(tmp_path / 'seq' / 'HR.cih', np.rint(scene * 4095).astype(np.uint16))
    write_mraw(tmp_path / 'seq' / 'LR.cih',
               np.rint(np.stack([area_average(f) for f in scene]) * 4095).astype(np.uint16))
    ds = XraySTFDataset(dict(name='x', type='XraySTFDataset', phase='train', dataroot=str(tmp_path),
                             num_frame=3, num_frame_hi=2, period_range=[2, 4], lr_sep=[1], gt_size=16,
                             use_hflip=False, use_rot=False))
    sample = ds[0]
    assert tuple(sample['gt'].shape[-2:]) == (16, 16) and float(sample['gt'].max()) <= 1.0
    import pickle  # DataLoader workers get the dataset pickled: the memory maps are reopened there
    clone = pickle.loads(pickle.dumps(ds))
    assert np.array_equal(clone.sequences[0].read_hr(3), ds.sequences[0].read_hr(3))


def test_info_of_a_sequence_folder_by_the_naming_rule(tmp_path, capsys):
    frames = frames12(n=3, h=32, w=32)
    write_mraw(tmp_path / 'seq' / 'HR.cih', frames, fps=LR_FPS)
    write_cine(tmp_path / 'seq' / 'LR.cine', frames[:, ::4, ::4].copy(), LR_FPS)
    assert main(['info', str(tmp_path / 'seq')]) == 0
    out = capsys.readouterr().out
    assert f'LR: {tmp_path}/seq/LR.cine' in out and f'HR: {tmp_path}/seq/HR.cih' in out
    assert 'frames        3 of 8x8, uint16' in out and 'frame rate    1,000,000 fps' in out
    assert 'key frames at LR steps 0, 1, 2 of 0..2' in out


def test_register_reads_frames_of_camera_sources(tmp_path, capsys):
    rng = np.random.default_rng(10)
    from scipy import ndimage
    scene = ndimage.gaussian_filter(rng.normal(size=(2, 128, 128)), (0, 4, 4))
    scene = np.clip(0.5 + 0.4 * scene / np.abs(scene).max(), 0, 1)
    write_mraw(tmp_path / 'HR.cih', np.rint(scene * 4095).astype(np.uint16))
    write_mraw(tmp_path / 'LR.cih', np.rint(np.stack([area_average(f) for f in scene]) * 4095).astype(np.uint16))
    out = tmp_path / 't.json'
    assert main(['register', '--lr', f'{tmp_path}/LR.cih:0-1', '--hr', f'{tmp_path}/HR.cih:0',
                 f'{tmp_path}/HR.cih:1', '--out', str(out)]) == 0
    t = json.loads(out.read_text())
    assert t['scale'] == pytest.approx(1.0, abs=0.01) and np.hypot(*t['shift_xy']) < 1.0
    capsys.readouterr()
    assert main(['register', '--lr', f'{tmp_path}/LR.cih', '--hr', f'{tmp_path}/HR.cih:0', '--out',
                 str(tmp_path / 'u.json')]) == 2
    assert 'name its frame(s)' in capsys.readouterr().err
    assert main(['register', '--lr', f'{tmp_path}/LR.cih:5', '--hr', f'{tmp_path}/HR.cih:0', '--out',
                 str(tmp_path / 'u.json')]) == 2
    assert 'frame 5 is beyond the 2 frames' in capsys.readouterr().err


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    from test_fuse import NET, save_experiment
    # the identity network (key frames blended by temporal closeness): key frames come out as they went in
    return save_experiment(tmp_path_factory.mktemp('exp'), dict(NET, base='key_blend', hr_encoder='unshuffle'),
                           identity=True)


def test_fuse_keeps_12_bit_words_and_records_formats_and_times(tmp_path, checkpoint, capsys):
    from xfusion.fusion.config import FuseConfig, RunOptions, SourceOptions
    from xfusion.fusion.fuse import fuse
    scene = np.random.default_rng(11).uniform(0.1, 0.9, (17, 16, 16))
    lr = np.rint(np.stack([area_average(f) for f in scene]) * 4095).astype(np.uint16)
    write_mraw(tmp_path / 'LR.cih', lr, fps=LR_FPS, start=-2)  # LR steps 0, 1, ... at -2, -1, ... us
    hr = np.rint(scene[[2, 16]] * 4095).astype(np.uint16)
    write_cine(tmp_path / 'HR.cine', hr, HR_FPS, stamps=np.arange(2) / HR_FPS)
    out = fuse(FuseConfig(SourceOptions(str(tmp_path / 'LR.cih'), str(tmp_path / 'HR.cine')), str(checkpoint),
                          str(tmp_path / 'out'), run=RunOptions(progress=False)))
    assert 'HR frame -> LR step 0->2, 1->16' in capsys.readouterr().out
    fused = [tifffile.imread(out / f'{t:08d}.tif') for t in range(17)]
    assert all(f.dtype == np.uint16 and f.shape == (16, 16) and f.max() <= 4095 for f in fused)
    assert np.array_equal(fused[2], hr[0]) and np.array_equal(fused[16], hr[1])  # 12-bit words as they came
    assert fused[9].max() > 255  # the 12-bit scale, not 8 bits
    sidecar = json.loads((out / 'xfusion.json').read_text())
    assert sidecar['inputs']['lr_format'].startswith('Photron MRAW')
    assert sidecar['inputs']['hr_format'].startswith('Phantom CINE')
    assert sidecar['inputs']['intensity_range'] == [0.0, 4095.0] and sidecar['inputs']['hr_bit_depth'] == 12
    assert sidecar['time_matching']['used'] and sidecar['time_matching']['key_times'] == [2, 16]
    assert sidecar['schedule']['key_times'] == [2, 16] and sidecar['schedule']['hr_frames'] == [0, 1]


def test_fuse_of_flat_corrected_dataexchange_writes_float32(tmp_path, checkpoint):
    from xfusion.fusion.config import FuseConfig, RunOptions, SourceOptions
    from xfusion.fusion.fuse import fuse
    scene = np.random.default_rng(12).uniform(0.1, 0.9, (5, 32, 32))
    lr = np.stack([area_average(f) for f in scene])
    for name, frames, size in (('LR', lr, 8), ('HR', scene[[0, 4]], 32)):
        white = np.full((2, size, size), 3100, np.uint16)
        dark = np.full((1, size, size), 100, np.uint16)
        write_dxchange(tmp_path / f'{name}.h5', np.rint(100 + frames * 3000).astype(np.uint16), white, dark)
    out = fuse(FuseConfig(SourceOptions(str(tmp_path / 'LR.h5'), str(tmp_path / 'HR.h5'), period=4), str(checkpoint),
                          str(tmp_path / 'out.h5'), run=RunOptions(progress=False)))
    with h5py.File(out, 'r') as f:
        fused = f['/exchange/data'][()]
    assert fused.dtype == np.float32 and fused.shape == (5, 32, 32) and 0 <= fused.min() and fused.max() <= 1
    np.testing.assert_allclose(fused[0], scene[0], atol=1e-3)  # a key frame: the transmission
    sidecar = json.loads((tmp_path / 'out.h5.json').read_text())
    assert sidecar['inputs']['flat_correction']['hr'] == {'whites': 2, 'darks': 1, 'applied': True}
    assert sidecar['time_matching'] == {'used': False, 'reason': 'the sources carry no frame times'}


def test_fuse_without_period_or_times_says_what_is_missing(tmp_path, checkpoint, capsys):
    write_dxchange(tmp_path / 'lr.h5', frames12(n=4, h=8, w=8))
    write_dxchange(tmp_path / 'hr.h5', frames12(n=2, h=32, w=32))
    code = main(['fuse', '--lr', str(tmp_path / 'lr.h5'), '--hr', str(tmp_path / 'hr.h5'), '--model', str(checkpoint),
                 '--out', str(tmp_path / 'out')])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and 'the LR and HR sources carry no frame times' in err[0]
    assert not (tmp_path / 'out').exists()


def test_one_sequence_fuses_alike_from_mraw_dataexchange_and_frame_folders(tmp_path, checkpoint):
    """One scene written as 12-bit MRAW, as DataExchange raw counts under a non-uniform flat and a dark, and as
    16-bit PNG folders, fuses to the same frames (the readers' scales, the flat/dark correction, the clocks)."""
    from xfusion.fusion.config import FuseConfig, RunOptions, SourceOptions
    from xfusion.fusion.fuse import fuse
    rng = np.random.default_rng(13)
    scene = rng.uniform(0.2, 0.8, (9, 32, 32))
    keys = [0, 4, 8]
    lr, hr = np.stack([area_average(f) for f in scene]), scene[keys]
    (tmp_path / 'mraw').mkdir()
    write_mraw(tmp_path / 'mraw' / 'LR.cih', np.rint(lr * 4095).astype(np.uint16), fps=LR_FPS)
    write_mraw(tmp_path / 'mraw' / 'HR.cih', np.rint(hr * 4095).astype(np.uint16), fps=LR_FPS / 4)
    for name, frames in (('LR', lr), ('HR', hr)):
        yy, xx = np.mgrid[:frames.shape[1], :frames.shape[2]] / frames.shape[1]
        flat, dark = 2200 + 900 * xx + 400 * yy, 95 + 10 * (np.arange(frames.shape[2]) % 4) / 3 + 0 * yy
        write_dxchange(tmp_path / 'dx' / f'{name}.h5', np.rint(dark + frames * (flat - dark)).astype(np.uint16),
                       white=np.rint(np.stack([flat - 1, flat + 1])).astype(np.uint16),
                       dark=np.rint(dark[None]).astype(np.uint16))
        for t, frame in zip(range(len(frames)) if name == 'LR' else keys, frames):
            write_frame(tmp_path / 'folders' / name / f'{t:04d}.png', np.rint(frame * 65535).astype(np.uint16))

    def fused(lr_src, hr_src, out, period=4):
        folder = fuse(FuseConfig(SourceOptions(str(lr_src), str(hr_src), period=period), str(checkpoint),
                                 str(tmp_path / out), run=RunOptions(progress=False)))
        return np.stack([tifffile.imread(folder / f'{t:08d}.tif') for t in range(9)])
    mraw = fused(tmp_path / 'mraw' / 'LR.cih', tmp_path / 'mraw' / 'HR.cih', 'a')
    dx = fused(tmp_path / 'dx' / 'LR.h5', tmp_path / 'dx' / 'HR.h5', 'b')
    folders = fused(tmp_path / 'folders' / 'LR', tmp_path / 'folders' / 'HR', 'c')
    assert mraw.dtype == np.uint16 and mraw.max() <= 4095 and dx.dtype == np.float32
    reference = folders / 65535
    assert np.abs(mraw / 4095 - reference).max() < 1e-3
    assert np.abs(dx - reference).max() < 1e-3
    # without --period, the cameras' clocks (250 kfps against 1 Mfps) give the same schedule and the same frames
    assert np.array_equal(fused(tmp_path / 'mraw' / 'LR.cih', tmp_path / 'mraw' / 'HR.cih', 'd', period=None), mraw)
