"""``xfusion fuse``: the fused HR sequence of a real two-camera experiment, streamed frame by frame.

The LR camera gives every time step, the HR camera only key frames (at ``offset + n * period``,
at the steps listed in an index file, or, when both sources carry frame times and neither is given,
at the LR step nearest each HR frame's time). Sources are any camera file ``FrameStack`` reads
(frame folders, TIFF stacks, HDF5/DataExchange, Photron MRAW, Phantom CINE). Frames are read, fused
and written as it goes, so memory does not grow with the length of the sequence; frames larger than
``--tile`` LR pixels are fused in overlapping tiles blended with linear ramps (no seams). Output: a
folder of TIFFs or an HDF5 dataset in the input bit depth and intensity scale (12-bit data in 16-bit
words stay so; flat-corrected transmissions stay float32), plus a JSON sidecar.
"""
from __future__ import annotations

import argparse
import bisect
import json
import os
import shutil
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from xfusion.camera import SCALE
from xfusion.checkpoint import load_network
from xfusion.data.sequence_io import H5_SUFFIXES, FrameStack, split_h5_spec, write_frame
from xfusion.errors import InputError
from xfusion.inference import PRECISIONS, SequenceInference
from xfusion.options_check import check_writable
from xfusion.schedule import FrameSource, check_period, schedule_for, schedule_from_times
from xfusion.version import __version__

HELP = 'fuse a real two-camera experiment into an HR sequence at the LR frame rate'


def tile_boxes(h: int, w: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) LR boxes covering an h x w frame; tiles of `tile` pixels overlapping by `overlap`."""
    def starts(size: int) -> list[int]:
        if tile <= 0 or size <= tile:
            return [0]
        step = tile - overlap
        positions = list(range(0, size - tile, step)) + [size - tile]
        return sorted(set(positions))
    size_y, size_x = (h if tile <= 0 else min(tile, h)), (w if tile <= 0 else min(tile, w))
    return [(y, y + size_y, x, x + size_x) for y in starts(h) for x in starts(w)]


def blend_weight(box: tuple[int, int, int, int], h: int, w: int, overlap: int) -> np.ndarray:
    """HR weight map of a tile: 1 inside, a linear ramp over the overlap where another tile continues."""
    y0, y1, x0, x1 = box
    ramp_len = max(overlap * SCALE, 1)

    def profile(n: int, lo_inner: bool, hi_inner: bool) -> np.ndarray:
        p = np.ones(n, np.float32)
        ramp = (np.arange(ramp_len, dtype=np.float32) + 0.5) / ramp_len
        if lo_inner:
            p[:ramp_len] = np.minimum(p[:ramp_len], ramp[:n])
        if hi_inner:
            p[-ramp_len:] = np.minimum(p[-ramp_len:], ramp[::-1][-n:])
        return p
    py = profile((y1 - y0) * SCALE, y0 > 0, y1 < h)
    px = profile((x1 - x0) * SCALE, x0 > 0, x1 < w)
    return py[:, None] * px[None, :]


class FrameCache:
    """The last few frames read, so that overlapping tiles and windows read each frame once.

    ``prefetch(i)`` starts reading frame i on a background thread, so that reading (and
    decoding) the next frames overlaps with the network's compute.
    """

    def __init__(self, read, capacity: int, pool: ThreadPoolExecutor | None = None):
        self.read, self.capacity, self.pool, self.frames = read, capacity, pool, OrderedDict()

    def _insert(self, i: int, value) -> None:
        self.frames[i] = value
        while len(self.frames) > self.capacity:
            self.frames.popitem(last=False)

    def prefetch(self, i: int) -> None:
        if self.pool is not None and i not in self.frames:
            self._insert(i, self.pool.submit(self.read, i))

    def __call__(self, i: int) -> np.ndarray:
        if i in self.frames:
            self.frames.move_to_end(i)
        else:
            self._insert(i, self.read(i))
        value = self.frames[i]
        if isinstance(value, Future):
            value = self.frames[i] = value.result()
        return value


class OutputWriter:
    """Fused frames to a TIFF folder or an HDF5 dataset, written under a temporary name and renamed at the end."""

    def __init__(self, spec: str, num_frames: int, shape: tuple[int, int], dtype: np.dtype):
        self.path, self.dataset = split_h5_spec(spec)
        self.is_h5 = self.path.suffix.lower() in H5_SUFFIXES
        if self.path.exists():
            raise InputError(f'{self.path}: already exists; choose another --out (nothing is overwritten)')
        if not self.path.parent.is_dir():
            raise InputError(f'{self.path.parent}: output folder does not exist')
        check_writable(str(self.path.parent))
        if self.is_h5 and not self.dataset:
            self.dataset = '/exchange/data'
        self.tmp = self.path.with_name(self.path.name + '.partial')
        if self.tmp.exists():
            shutil.rmtree(self.tmp) if self.tmp.is_dir() else self.tmp.unlink()
        if self.is_h5:
            import h5py
            self._file = h5py.File(self.tmp, 'w')
            self._data = self._file.create_dataset(self.dataset, (num_frames, *shape), dtype=dtype,
                                                   chunks=(1, *shape))
        else:
            self.tmp.mkdir(parents=True)

    def write(self, t: int, frame: np.ndarray) -> None:
        if self.is_h5:
            self._data[t] = frame
        else:
            write_frame(self.tmp / f'{t:08d}.tif', frame)

    def sidecar_path(self) -> Path:
        return self.path.with_name(self.path.name + '.json') if self.is_h5 else self.path / 'xfusion.json'

    def finish(self, sidecar: dict) -> None:
        if self.is_h5:
            self._data.attrs['xfusion'] = json.dumps(sidecar)
            self._file.close()
        os.replace(self.tmp, self.path)
        self.sidecar_path().write_text(json.dumps(sidecar, indent=2))

    def abort(self) -> None:
        if self.is_h5:
            self._file.close()
        if self.tmp.exists():
            shutil.rmtree(self.tmp) if self.tmp.is_dir() else self.tmp.unlink()


def pad_to_multiple(img: np.ndarray, multiple: int) -> np.ndarray:
    h, w = img.shape
    ph, pw = (-h) % multiple, (-w) % multiple
    return np.pad(img, ((0, ph), (0, pw)), mode='reflect') if ph or pw else img


def key_frame_schedule(lr_stack: FrameStack, hr_stack: FrameStack, period: int | None, offset: int,
                       hr_index: str | None, time_offset: float = 0.0):
    """(schedule, HR frame of each key frame, TimeMatch or None): ``--period``/``--hr-index`` when given, else the
    sources' frame times."""
    if period is None and hr_index is None:
        if lr_stack.times is None or hr_stack.times is None:
            missing = [name for name, stack in (('LR', lr_stack), ('HR', hr_stack)) if stack.times is None]
            which = 'the LR and HR sources carry' if len(missing) == 2 else f'the {missing[0]} source carries'
            raise InputError('give --period (and --offset) or --hr-index to say when the HR frames were taken '
                             f'({which} no frame times or frame rate to match them by)')
        match = schedule_from_times(lr_stack.times, hr_stack.times, time_offset)
        return match.schedule, match.hr_frames, match
    schedule = schedule_for(len(lr_stack), len(hr_stack), period, offset, hr_index)
    return schedule, tuple(range(len(schedule.key_times))), None


def time_matching_record(lr_stack: FrameStack, hr_stack: FrameStack, match, period, hr_index) -> dict:
    """The sidecar's ``time_matching``: what was matched, or why the clocks were not used."""
    if match is not None:
        return dict(match.summary(), lr_time_source=lr_stack.time_source, hr_time_source=hr_stack.time_source)
    if lr_stack.times is not None and hr_stack.times is not None:
        reason = '--period given' if period is not None else '--hr-index given'
    else:
        reason = 'the sources carry no frame times'
    return {'used': False, 'reason': reason}


def fuse(lr: str, hr: str, model: str, out: str, period: int | None = None, offset: int = 0,
         hr_index: str | None = None, lr_sep: int = 1, transform: str | None = None, tile: int = 0,
         overlap: int = 8, device: str = 'cpu', batch: int = 1, precision: str = 'fp32', cached: bool = True,
         opt: str | None = None, value_range: tuple[float, float] | None = None, progress: bool = True,
         compile: bool = False, channels_last: bool = False, time_offset: float = 0.0,
         flat_correction: bool = True) -> Path:
    """Fuse an LR stack and an HR key-frame stack into an HR stack at the LR frame rate; returns the output path.

    Without ``period`` and ``hr_index``, the HR frames are matched to LR steps by the two sources' frame
    times (``time_offset`` seconds added to the HR times); the matching is printed and kept in the sidecar.
    """
    # --- check everything before writing anything
    lr_stack = FrameStack(lr, value_range, flat_correction)
    hr_stack = FrameStack(hr, value_range, flat_correction)
    if (lr_stack.dtype.kind == 'f') != (hr_stack.dtype.kind == 'f'):  # a transmission and raw counts
        raise InputError(f'LR frames are {lr_stack.dtype} but HR frames are {hr_stack.dtype}: give both cameras as '
                         'transmissions (DataExchange with flats) or both as counts (--no-flat-correction)')
    if lr_stack.dtype != hr_stack.dtype:
        raise InputError(f'LR frames are {lr_stack.dtype} but HR frames are {hr_stack.dtype}; '
                         'both cameras must have the same bit depth (or give --range)')
    num_frames, (h, w) = len(lr_stack), lr_stack.shape
    schedule, hr_frames, time_match = key_frame_schedule(lr_stack, hr_stack, period, offset, hr_index, time_offset)
    if time_match is not None:
        print('\n'.join(time_match.report()))
    lr_sep = check_period(lr_sep, '--lr-sep')
    if lr_sep >= num_frames:
        raise InputError(f'--lr-sep {lr_sep} must be between 1 and {num_frames - 1} for {num_frames} LR frames')
    grid = (h * SCALE, w * SCALE)
    warp = None
    if transform is not None:
        from xfusion.registration import load_transform, warp_to_lr_grid
        registration = load_transform(transform)
        out_shape = tuple(registration.get('output_shape') or grid)
        if out_shape != grid:
            raise InputError(f'{transform}: maps onto a {out_shape[0]}x{out_shape[1]} grid but 4x the LR frames is '
                             f'{grid[0]}x{grid[1]}; register frames of these cameras')
        warp = (warp_to_lr_grid, registration)
    elif hr_stack.shape != grid:
        raise InputError(f'HR frames are {hr_stack.shape[0]}x{hr_stack.shape[1]} but 4x the LR frames is '
                         f'{grid[0]}x{grid[1]}; register the cameras (xfusion register) and give --transform')
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise InputError('--device cuda: no CUDA device here; use --device cpu')
    net, net_opt = load_network(model, opt, device)
    multiple = net.lr_multiple  # the LR size multiple the network needs: frames and tiles are padded to it
    if tile and (tile % multiple or tile <= 2 * overlap):
        raise InputError(f'--tile must be a multiple of {multiple} larger than twice --overlap, got {tile} / {overlap}')
    writer = OutputWriter(out, num_frames, grid, hr_stack.dtype)

    # --- read each frame once (padded to the network's multiple), fuse tile by tile, write as it goes
    ph, pw = h + (-h) % multiple, w + (-w) % multiple
    reader = ThreadPoolExecutor(1)  # reads the next frames while the network computes
    span = 2 * lr_sep + batch + 1
    read_lr = FrameCache(lambda t: pad_to_multiple(lr_stack.read_unit(t), multiple), capacity=2 * span, pool=reader)

    position = dict(zip(schedule.key_times, hr_frames))  # LR step of a key frame -> its HR frame

    def key_frame(k: int) -> np.ndarray:
        img = hr_stack.read_unit(position[k])
        if warp is not None:
            img = warp[0](img, warp[1], output_shape=grid)
        return pad_to_multiple(img, multiple * SCALE) if (ph, pw) != (h, w) else img
    read_key = FrameCache(key_frame, capacity=4, pool=reader)

    boxes = tile_boxes(ph, pw, tile, overlap)
    weights = [torch.from_numpy(blend_weight(b, ph, pw, overlap)) for b in boxes]
    streams = []
    for y0, y1, x0, x1 in boxes:
        lr_box, hr_box = np.s_[y0:y1, x0:x1], np.s_[y0 * SCALE:y1 * SCALE, x0 * SCALE:x1 * SCALE]
        src = FrameSource(lambda t, b=lr_box: read_lr(t)[b], lambda k, b=hr_box: read_key(k)[b], schedule, lr_sep)
        inference = SequenceInference(net, device, cached=cached, batch=batch, precision=precision, compile=compile,
                                      channels_last=channels_last)
        streams.append(inference.run(src))

    started = time.time()
    bar = tqdm(total=num_frames, unit='frame', desc='fuse', disable=not progress)
    pool = ThreadPoolExecutor(1)  # writing overlaps with the next frame's compute
    pending = None
    try:
        for outputs in zip(*streams):
            t = outputs[0][0]
            for ahead in range(t + lr_sep + 1, min(t + lr_sep + 1 + batch, num_frames)):
                read_lr.prefetch(ahead)
            for k in schedule.key_times[bisect.bisect_right(schedule.key_times, t):][:2]:  # the next key frames
                read_key.prefetch(k)
            if len(boxes) == 1:
                frame = outputs[0][1][0]
            else:
                frame, total = torch.zeros(ph * SCALE, pw * SCALE), torch.zeros(ph * SCALE, pw * SCALE)
                for (y0, y1, x0, x1), weight, (_, result) in zip(boxes, weights, outputs):
                    frame[y0 * SCALE:y1 * SCALE, x0 * SCALE:x1 * SCALE] += weight * result[0]
                    total[y0 * SCALE:y1 * SCALE, x0 * SCALE:x1 * SCALE] += weight
                frame = frame / total
            stored = hr_stack.scale.from_unit(frame[:grid[0], :grid[1]].clamp(0, 1).numpy())
            if pending is not None:
                pending.result()
            pending = pool.submit(writer.write, t, stored)
            bar.update(1)
        if pending is not None:
            pending.result()
    except BaseException:
        writer.abort()
        raise
    finally:
        pool.shutdown()
        reader.shutdown(cancel_futures=True)
        bar.close()
    sidecar = {
        'software': f'xfusion {__version__}', 'created': time.strftime('%Y-%m-%d %H:%M:%S'),
        'model': str(Path(model).resolve()), 'network': net_opt,
        'inputs': {'lr': lr, 'hr': hr, 'frames': num_frames, 'lr_shape': [h, w], 'dtype': str(hr_stack.dtype),
                   'intensity_range': [hr_stack.scale.low, hr_stack.scale.high],
                   'lr_format': lr_stack.format, 'hr_format': hr_stack.format,
                   'lr_bit_depth': lr_stack.bit_depth, 'hr_bit_depth': hr_stack.bit_depth,
                   'lr_intensity_range': [lr_stack.scale.low, lr_stack.scale.high],
                   'flat_correction': {'lr': lr_stack.flat_field, 'hr': hr_stack.flat_field},
                   'lr_source': lr_stack.describe(), 'hr_source': hr_stack.describe()},
        'schedule': {'key_times': list(schedule.key_times), 'hr_frames': list(hr_frames), 'period': period,
                     'offset': offset, 'hr_index': hr_index, 'lr_sep': lr_sep},
        'time_matching': time_matching_record(lr_stack, hr_stack, time_match, period, hr_index),
        'transform': transform and json.loads(Path(transform).read_text()),
        'run': {'tile': tile, 'overlap': overlap, 'tiles': len(boxes), 'device': device, 'batch': batch,
                'precision': precision, 'cached': cached, 'compile': compile, 'channels_last': channels_last,
                'seconds': round(time.time() - started, 2)},
    }
    writer.finish(sidecar)
    return writer.path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--lr', required=True,
                        help='LR frames: a folder, a multi-page TIFF, file.h5[:/dataset] (DataExchange: flat/dark '
                             'corrected), a Photron x.cih/x.cihx (+ x.mraw) or a Phantom x.cine')
    parser.add_argument('--hr', required=True, help='HR key frames only (same kinds of source)')
    parser.add_argument('--model', required=True, help='checkpoint (experiments/<name>/models/net_g_*.pth)')
    parser.add_argument('--opt', default=None, help='option file with network_g (default: the experiment\'s)')
    parser.add_argument('--out', required=True, help='output folder of TIFFs, or file.h5[:/dataset]')
    parser.add_argument('--period', type=int, default=None, help='LR steps between HR key frames')
    parser.add_argument('--offset', type=int, default=0, help='LR step of the first HR key frame')
    parser.add_argument('--hr-index', default=None, help='file listing the LR step of each HR frame')
    parser.add_argument('--time-offset', type=float, default=0.0, metavar='SECONDS',
                        help='added to the HR frame times before matching them to LR steps (a known trigger delay); '
                             'used when neither --period nor --hr-index is given and both sources carry times')
    parser.add_argument('--no-flat-correction', action='store_true',
                        help='DataExchange sources: raw counts, without data_white/data_dark')
    parser.add_argument('--lr-sep', type=int, default=1, help='LR frame separation r (frames t-r, t, t+r)')
    parser.add_argument('--transform', default=None, help='JSON from xfusion register (HR camera -> x4 LR grid)')
    parser.add_argument('--tile', type=int, default=0, help='tile size in LR pixels (0: whole frames)')
    parser.add_argument('--overlap', type=int, default=8, help='tile overlap in LR pixels')
    parser.add_argument('--device', default='cpu', help='cpu or cuda[:N]')
    parser.add_argument('--batch', type=int, default=1, help='time steps fused together')
    parser.add_argument('--precision', default='fp32', choices=list(PRECISIONS))
    parser.add_argument('--no-cache', action='store_true', help='per-window forward (no feature reuse)')
    parser.add_argument('--compile', action='store_true', help='torch.compile the network (long sequences)')
    parser.add_argument('--channels-last', action='store_true', help='channels-last memory format')
    parser.add_argument('--range', type=float, nargs=2, default=None, metavar=('LOW', 'HIGH'),
                        help='fixed intensity range of both cameras (default: the effective bit depth the file '
                             'gives, else the dtype range; [0, 1] for transmissions)')


def run(args: argparse.Namespace) -> int:
    out = fuse(args.lr, args.hr, args.model, args.out, period=args.period, offset=args.offset,
               hr_index=args.hr_index, lr_sep=args.lr_sep, transform=args.transform, tile=args.tile,
               overlap=args.overlap, device=args.device, batch=args.batch, precision=args.precision,
               cached=not args.no_cache, opt=args.opt, value_range=args.range, compile=args.compile,
               channels_last=args.channels_last, time_offset=args.time_offset,
               flat_correction=not args.no_flat_correction)
    print(f'fused sequence written to {out}')
    return 0
