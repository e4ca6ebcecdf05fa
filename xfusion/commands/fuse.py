"""``xfusion fuse``: the fused HR sequence of a real two-camera experiment, streamed frame by frame.

The LR camera gives every time step, the HR camera only key frames (at ``offset + n * period``,
at the steps listed in an index file, or, when both sources carry frame times and neither is given,
at the LR step nearest each HR frame's time). Sources are any camera file ``FrameStack`` reads
(frame folders, TIFF stacks, HDF5/DataExchange, Photron MRAW, Phantom CINE). Frames are read, fused
and written as it goes, so memory does not grow with the length of the sequence; frames larger than
``--tile`` LR pixels are fused in overlapping tiles blended with linear ramps (no seams). Output: a
folder of TIFFs or an HDF5 dataset in the input bit depth and intensity scale (12-bit data in 16-bit
words stay so; flat-corrected transmissions stay float32), plus a JSON sidecar.

LR consistency: the LR camera's model (extra blur, gain, offset; ``xfusion.camera.fit_lr_camera``) is fitted on
the simultaneous frames at the key times, and every output frame goes through it and is compared with the LR
frame recorded at its time: ``consistency.csv`` beside the sidecar (chi2 per frame: about 1 where the frame is
as consistent with the LR camera as the key frames are), per-frame z maps with ``--maps``, a data-consistency
step with ``--project``, and ``report.html`` (``--report``) and an .mp4 (``--video``) to look at.
"""
from __future__ import annotations

import argparse
import bisect
import csv
import io
import json
import os
import shutil
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from xfusion.camera import SCALE, CameraModel, fit_lr_camera, hr_field_of_view
from xfusion.checkpoint import load_network
from xfusion.data.sequence_io import H5_SUFFIXES, FrameStack, split_h5_spec, write_frame
from xfusion.errors import InputError
from xfusion.inference import PRECISIONS, SequenceInference
from xfusion.options_check import check_writable
from xfusion.report import (
    Player,
    Section,
    VideoWriter,
    check_video_path,
    display_window,
    upsampled,
    write_report,
    z_colour,
)
from xfusion.schedule import FrameSource, KeySchedule, check_lr_sep, schedule_for, schedule_from_times
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

    def beside(self, name: str) -> Path:
        """Where a file that goes with the output lives: in the folder, or ``out.h5.<name>`` beside the file."""
        return self.path.with_name(f'{self.path.name}.{name}') if self.is_h5 else self.path / name

    def finish(self, sidecar: dict, files: dict[str, str] | None = None) -> None:
        """Close, rename into place, then write the sidecar and ``files`` ({name: text}) beside the output."""
        if self.is_h5:
            self._data.attrs['xfusion'] = json.dumps(sidecar)
            self._file.close()
        os.replace(self.tmp, self.path)
        self.sidecar_path().write_text(json.dumps(sidecar, indent=2))
        for name, text in (files or {}).items():
            self.beside(name).write_text(text)

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


def open_cameras(lr: str, hr: str, value_range: tuple[float, float] | None = None,
                 flat_correction: bool = True) -> tuple[FrameStack, FrameStack]:
    """The LR and HR sources of a real experiment, checked to be of one kind (counts of one dtype, or both
    transmissions)."""
    lr_stack = FrameStack(lr, value_range, flat_correction)
    hr_stack = FrameStack(hr, value_range, flat_correction)
    if (lr_stack.dtype.kind == 'f') != (hr_stack.dtype.kind == 'f'):  # a transmission and raw counts
        raise InputError(f'LR frames are {lr_stack.dtype} but HR frames are {hr_stack.dtype}: give both cameras as '
                         'transmissions (DataExchange with flats) or both as counts (--no-flat-correction)')
    if lr_stack.dtype != hr_stack.dtype:
        raise InputError(f'LR frames are {lr_stack.dtype} but HR frames are {hr_stack.dtype}; '
                         'both cameras must have the same bit depth (or give --range)')
    return lr_stack, hr_stack


def grid_warp(transform: str | None, hr_stack: FrameStack,
              lr_shape: tuple[int, int]) -> tuple[tuple | None, np.ndarray | None]:
    """(warp, seen): how HR frames reach the x4 LR grid (None: they are on it) and the LR pixels the HR camera saw
    too (None: all of them), from ``--transform``; an error when the frames cannot be put on the grid."""
    h, w = lr_shape
    grid = (h * SCALE, w * SCALE)
    if transform is None:
        if hr_stack.shape != grid:
            raise InputError(f'HR frames are {hr_stack.shape[0]}x{hr_stack.shape[1]} but 4x the LR frames is '
                             f'{grid[0]}x{grid[1]}; register the cameras (xfusion register) and give --transform')
        return None, None
    from xfusion.registration import load_transform, warp_to_lr_grid
    registration = load_transform(transform)
    out_shape = tuple(registration.get('output_shape') or grid)
    if out_shape != grid:
        raise InputError(f'{transform}: maps onto a {out_shape[0]}x{out_shape[1]} grid but 4x the LR frames is '
                         f'{grid[0]}x{grid[1]}; register frames of these cameras')
    seen = hr_field_of_view(registration, hr_stack.shape, (h, w))
    if not seen.any():
        raise InputError(f'{transform}: the HR field of view covers no LR pixel; register these cameras again')
    return (warp_to_lr_grid, registration), seen


def tiled_fusion(net: torch.nn.Module, read_lr: Callable[[int], np.ndarray], read_key: Callable[[int], np.ndarray],
                 schedule: KeySchedule, lr_sep: int, padded: tuple[int, int], tile: int,
                 overlap: int, times: list[int] | None = None, device: str = 'cpu', batch: int = 1,
                 precision: str = 'fp32', cached: bool = True, compile: bool = False,
                 channels_last: bool = False) -> Iterator[tuple[int, torch.Tensor]]:
    """(t, fused HR frame (4 ph, 4 pw) in [0, 1]-ish units) for each time step (all, or ``times``), fused tile by
    tile over LR frames padded to ``padded`` = (ph, pw) and blended with linear ramps.

    ``read_lr(t)`` gives the padded LR frame, ``read_key(k)`` the padded key frame on the x4 grid."""
    ph, pw = padded
    boxes = tile_boxes(ph, pw, tile, overlap)
    weights = [torch.from_numpy(blend_weight(b, ph, pw, overlap)) for b in boxes]
    streams = []
    for y0, y1, x0, x1 in boxes:
        lr_box, hr_box = np.s_[y0:y1, x0:x1], np.s_[y0 * SCALE:y1 * SCALE, x0 * SCALE:x1 * SCALE]
        src = FrameSource(lambda t, b=lr_box: read_lr(t)[b], lambda k, b=hr_box: read_key(k)[b], schedule, lr_sep)
        inference = SequenceInference(net, device, cached=cached, batch=batch, precision=precision, compile=compile,
                                      channels_last=channels_last)
        streams.append(inference.run(src, times))
    for outputs in zip(*streams):
        t = outputs[0][0]
        if len(boxes) == 1:
            yield t, outputs[0][1][0]
            continue
        frame, total = torch.zeros(ph * SCALE, pw * SCALE), torch.zeros(ph * SCALE, pw * SCALE)
        for (y0, y1, x0, x1), weight, (_, result) in zip(boxes, weights, outputs):
            frame[y0 * SCALE:y1 * SCALE, x0 * SCALE:x1 * SCALE] += weight * result[0]
            total[y0 * SCALE:y1 * SCALE, x0 * SCALE:x1 * SCALE] += weight
        yield t, frame / total


FIT_PAIRS = 8  # key frames the camera model is fitted on (spread over the sequence)
FIT_PIXELS = 8_000_000  # at most this many HR pixels in all, so that large frames fit in seconds


def fit_camera(read_lr: Callable[[int], np.ndarray], read_hr_grid: Callable[[int], np.ndarray],
               key_times: list[int] | tuple[int, ...], lr_shape: tuple[int, int], mask: np.ndarray | None = None,
               b0: float | None = None, quantum: float = 0.0) -> CameraModel:
    """The LR camera relative to the HR camera (``fit_lr_camera``) from the simultaneous frames at up to
    ``FIT_PAIRS`` key times spread over the sequence; ``read_hr_grid(k)``: the key frame on the x4 grid."""
    h, w = lr_shape
    n = max(1, min(FIT_PAIRS, len(key_times), FIT_PIXELS // (SCALE * SCALE * h * w)))
    chosen = sorted({key_times[int(round(i))] for i in np.linspace(0, len(key_times) - 1, n)})
    return fit_lr_camera(np.stack([read_lr(k) for k in chosen]), np.stack([read_hr_grid(k) for k in chosen]),
                         mask, b0, quantum)


def check_b0(b0: float | None) -> float | None:
    if b0 is not None and not (np.isfinite(b0) and b0 > 0):
        raise InputError(f'--b0 must be a positive number of photons per unit intensity, got {b0:g}')
    return b0


def quantum_of(stack: FrameStack) -> float:
    """The step between stored values in [0, 1] units (0 for float data)."""
    return 1.0 / (stack.scale.high - stack.scale.low) if stack.dtype.kind in 'ui' else 0.0


def new_path(path: str | Path | None, flag: str) -> Path | None:
    """An output the command creates: its folder must exist and nothing is overwritten."""
    if path is None:
        return None
    path = Path(path)
    if path.exists():
        raise InputError(f'{flag} {path}: already exists; choose another name (nothing is overwritten)')
    if not path.parent.is_dir():
        raise InputError(f'{flag} {path}: the folder {path.parent} does not exist')
    return path


PROJECT_THRESHOLD = 2.0  # noise sd: --project leaves LR residuals whose neighbourhood is within this alone
CONSISTENCY_COLUMNS = ['frame', 'is_key', 'chi2', 'max_abs_z', 'chi2_unprojected']
Z_LABEL = 'LR consistency z (red: LR brighter than fused, blue: darker)'


def consistency_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CONSISTENCY_COLUMNS, extrasaction='ignore', lineterminator='\n')
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f'{v:.6g}' if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def fuse(lr: str, hr: str, model: str, out: str, period: int | None = None, offset: int = 0,
         hr_index: str | None = None, lr_sep: int = 1, transform: str | None = None, tile: int = 0,
         overlap: int = 8, device: str = 'cpu', batch: int = 1, precision: str = 'fp32', cached: bool = True,
         opt: str | None = None, value_range: tuple[float, float] | None = None, progress: bool = True,
         compile: bool = False, channels_last: bool = False, time_offset: float = 0.0,
         flat_correction: bool = True, b0: float | None = None, maps: str | None = None, project: bool = False,
         report: bool | str | None = None, video: str | None = None) -> Path:
    """Fuse an LR stack and an HR key-frame stack into an HR stack at the LR frame rate; returns the output path.

    Without ``period`` and ``hr_index``, the HR frames are matched to LR steps by the two sources' frame
    times (``time_offset`` seconds added to the HR times); the matching is printed and kept in the sidecar.

    Every output frame is checked against the LR frame of its time through the camera model fitted at the key
    times (``consistency.csv`` beside the sidecar; ``maps``: a folder of per-frame z maps at LR resolution);
    ``b0``: the LR camera's photons per unit intensity (default: the noise estimated from the key frames);
    ``project``: pull each frame back onto its LR frame within noise; ``report``: True (beside the sidecar)
    or a path for ``report.html``; ``video``: an .mp4 of the frames side by side.
    """
    # --- check everything before writing anything
    lr_stack, hr_stack = open_cameras(lr, hr, value_range, flat_correction)
    num_frames, (h, w) = len(lr_stack), lr_stack.shape
    schedule, hr_frames, time_match = key_frame_schedule(lr_stack, hr_stack, period, offset, hr_index, time_offset)
    if time_match is not None:
        print('\n'.join(time_match.report()))
    lr_sep = check_lr_sep(lr_sep, num_frames)
    b0 = check_b0(b0)
    grid = (h * SCALE, w * SCALE)
    warp, seen = grid_warp(transform, hr_stack, (h, w))
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise InputError('--device cuda: no CUDA device here; use --device cpu')
    net, net_opt = load_network(model, opt, device)
    multiple = net.lr_multiple  # the LR size multiple the network needs: frames and tiles are padded to it
    if tile and (tile % multiple or tile <= 2 * overlap):
        raise InputError(f'--tile must be a multiple of {multiple} larger than twice --overlap, got {tile} / {overlap}')
    maps_path = new_path(maps, '--maps')
    report_path = new_path(report, '--report') if isinstance(report, (str, Path)) and str(report) else None
    video_path = check_video_path(video, overwrite=False)

    position = dict(zip(schedule.key_times, hr_frames))  # LR step of a key frame -> its HR frame

    def key_on_grid(k: int) -> np.ndarray:
        img = hr_stack.read_unit(position[k])
        return warp[0](img, warp[1], output_shape=grid) if warp is not None else img

    camera = fit_camera(lr_stack.read_unit, key_on_grid, schedule.key_times, (h, w), seen, b0, quantum_of(lr_stack))
    writer = OutputWriter(out, num_frames, grid, hr_stack.dtype)
    if report and report_path is None:
        report_path = writer.beside('report.html')

    # --- read each frame once (padded to the network's multiple), fuse tile by tile, write as it goes
    ph, pw = h + (-h) % multiple, w + (-w) % multiple
    reader = ThreadPoolExecutor(1)  # reads the next frames while the network computes
    span = 2 * lr_sep + batch + 1
    read_lr = FrameCache(lambda t: pad_to_multiple(lr_stack.read_unit(t), multiple), capacity=2 * span, pool=reader)

    def key_frame(k: int) -> np.ndarray:
        img = key_on_grid(k)
        return pad_to_multiple(img, multiple * SCALE) if (ph, pw) != (h, w) else img
    read_key = FrameCache(key_frame, capacity=4, pool=reader)

    boxes = tile_boxes(ph, pw, tile, overlap)
    frames = tiled_fusion(net, read_lr, read_key, schedule, lr_sep, (ph, pw), tile, overlap, device=device,
                          batch=batch, precision=precision, cached=cached, compile=compile,
                          channels_last=channels_last)
    player = None
    if report_path is not None or video_path is not None:
        window = display_window([key_on_grid(schedule.key_times[0])])
        player = Player(Path(out).name, ['LR (upsampled)', 'fused', 'nearest key frame', Z_LABEL], window,
                        list(schedule.key_times), num_frames, metric='chi2', log=True,
                        note='chi2: mean squared LR residual over the expected noise variance (about 1: consistent)')
    movie = VideoWriter(video_path) if video_path is not None else None
    maps_tmp = maps_path.with_name(maps_path.name + '.partial') if maps_path is not None else None
    if maps_tmp is not None:
        shutil.rmtree(maps_tmp, ignore_errors=True)
        maps_tmp.mkdir()

    started = time.time()
    bar = tqdm(total=num_frames, unit='frame', desc='fuse', disable=not progress)
    pool = ThreadPoolExecutor(1)  # writing overlaps with the next frame's compute
    pending, rows = None, []
    try:
        for t, frame in frames:
            for ahead in range(t + lr_sep + 1, min(t + lr_sep + 1 + batch, num_frames)):
                read_lr.prefetch(ahead)
            for k in schedule.key_times[bisect.bisect_right(schedule.key_times, t):][:2]:  # the next key frames
                read_key.prefetch(k)
            unit = frame[:grid[0], :grid[1]].clamp(0, 1).numpy()
            lr_t = read_lr(t)[:h, :w]
            row = {'frame': t, 'is_key': schedule.is_key(t)}
            if project:
                row['chi2_unprojected'] = camera.chi2(unit, lr_t)
                unit = camera.project(unit, lr_t, PROJECT_THRESHOLD)
            stored = hr_stack.scale.from_unit(unit)
            z = camera.residual_map(hr_stack.scale.to_unit(stored), lr_t)  # of what is written
            row.update(chi2=float(np.mean(z ** 2)), max_abs_z=float(np.abs(z).max()))
            rows.append(row)
            if pending is not None:
                pending.result()
            pending = pool.submit(writer.write, t, stored)
            if maps_tmp is not None:
                write_frame(maps_tmp / f'{t:08d}.tif', z)
            if player is not None and (movie is not None or player.wants(t)):
                k0, k1 = schedule.bracket(t)
                nearest = k0 if abs(t - k0) <= abs(k1 - t) else k1
                panels = [upsampled(lr_t, grid), unit, read_key(nearest)[:grid[0], :grid[1]], z_colour(z, grid)]
                player.add(t, panels)
                if movie is not None:
                    movie.add(panels, player.window, player.labels,
                              f'{Path(out).name}  step {t}  chi2 {row["chi2"]:.3g}')
            bar.update(1)
        if pending is not None:
            pending.result()
    except BaseException:
        writer.abort()
        if maps_tmp is not None:
            shutil.rmtree(maps_tmp, ignore_errors=True)
        if movie is not None:
            movie.abort()
        raise
    finally:
        pool.shutdown()
        reader.shutdown(cancel_futures=True)
        bar.close()
    chi2 = np.array([r['chi2'] for r in rows])
    nonkey = np.array([not r['is_key'] for r in rows])
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
        'camera_model': camera.summary(),
        'consistency': {'file': writer.beside('consistency.csv').name, 'maps': maps_path and str(maps_path),
                        'project': project, 'project_threshold_sd': PROJECT_THRESHOLD if project else None,
                        'mean_chi2_non_key': float(chi2[nonkey].mean()) if nonkey.any() else None,
                        'mean_chi2_key': float(chi2[~nonkey].mean()) if (~nonkey).any() else None},
        'run': {'tile': tile, 'overlap': overlap, 'tiles': len(boxes), 'device': device, 'batch': batch,
                'precision': precision, 'cached': cached, 'compile': compile, 'channels_last': channels_last,
                'seconds': round(time.time() - started, 2)},
    }
    writer.finish(sidecar, {'consistency.csv': consistency_csv(rows)})
    if maps_tmp is not None:
        os.replace(maps_tmp, maps_path)
    if movie is not None:
        movie.close()
    if report_path is not None:
        player.series = {'chi2': {r['frame']: r['chi2'] for r in rows}}
        if project:
            player.series['chi2 before --project'] = {r['frame']: r['chi2_unprojected'] for r in rows}
        write_report(report_path, 'XFusion: fused sequence', f'{lr} + {hr} -> {writer.path}', [player],
                     [Section('LR consistency', 'markdown', consistency_markdown(camera, rows, project))], sidecar)
    return writer.path


def consistency_markdown(camera: CameraModel, rows: list[dict], project: bool) -> str:
    """What consistency.csv means, for the report of ``fuse``."""
    chi2 = np.array([r['chi2'] for r in rows])
    key = np.array([r['is_key'] for r in rows])
    worst = sorted(rows, key=lambda r: -r['chi2'])[:5]
    fit = camera.summary()
    lines = [
        'Each fused frame F is taken through the camera model fitted at the key times, LR = gain x '
        'area_average(blur(F)) + offset, and compared with the LR frame recorded at its time. chi2 is the mean '
        'over LR pixels of the squared residual over the noise variance expected there: about 1 where the fused '
        'frame is as consistent with the LR camera as the recorded key frames are; much larger where the network '
        'invented or lost content that the LR camera resolves. The map (z = residual / noise sd) shows where.', '',
        '| | value |', '|---|---|',
        f'| extra LR blur (HR pixels) | {fit["blur_sigma_hr_px"]:.3f} |',
        f'| gain, offset | {fit["gain"]:.4f}, {fit["offset"]:.5f} |',
        f'| noise | {fit["noise_source"]}; variance = {fit["noise_slope"]:.3g} x intensity + '
        f'{fit["noise_floor"]:.3g} |',
        f'| fit residual (RMS, key frames) | {fit["fit_residual_rms"]:.4g} |',
        f'| mean chi2, non-key frames | {chi2[~key].mean():.3g} |' if (~key).any() else '| mean chi2, non-key | - |',
        f'| mean chi2, key frames | {chi2[key].mean():.3g} |' if key.any() else '| mean chi2, key frames | - |',
        f'| --project | {f"on: residuals beyond {PROJECT_THRESHOLD:g} noise sd put back" if project else "off"} |',
        '',
        '| least consistent frames | chi2 |', '|---|---|',
    ] + [f'| {r["frame"]} | {r["chi2"]:.3g} |' for r in worst]
    return '\n'.join(lines)


def add_schedule_arguments(parser: argparse.ArgumentParser) -> None:
    """When the HR camera recorded, and how its files are read: the options fuse and check share."""
    parser.add_argument('--period', type=int, default=None, help='LR steps between HR key frames')
    parser.add_argument('--offset', type=int, default=0, help='LR step of the first HR key frame')
    parser.add_argument('--hr-index', default=None, help='file listing the LR step of each HR frame')
    parser.add_argument('--time-offset', type=float, default=0.0, metavar='SECONDS',
                        help='added to the HR frame times before matching them to LR steps (a known trigger delay); '
                             'used when neither --period nor --hr-index is given and both sources carry times')
    parser.add_argument('--no-flat-correction', action='store_true',
                        help='DataExchange sources: raw counts, without data_white/data_dark')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--lr', required=True,
                        help='LR frames: a folder, a multi-page TIFF, file.h5[:/dataset] (DataExchange: flat/dark '
                             'corrected), a Photron x.cih/x.cihx (+ x.mraw) or a Phantom x.cine')
    parser.add_argument('--hr', required=True, help='HR key frames only (same kinds of source)')
    parser.add_argument('--model', required=True, help='checkpoint (experiments/<name>/models/net_g_*.pth)')
    parser.add_argument('--opt', default=None, help='option file with network_g (default: the experiment\'s)')
    parser.add_argument('--out', required=True, help='output folder of TIFFs, or file.h5[:/dataset]')
    add_schedule_arguments(parser)
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
    add_consistency_arguments(parser)
    parser.add_argument('--maps', default=None, metavar='DIR',
                        help='a new folder for per-frame LR-consistency maps (float TIFF at LR resolution: z = '
                             '(LR - camera model of the fused frame) / noise sd)')
    parser.add_argument('--project', action='store_true',
                        help='pull each fused frame back onto its LR frame within noise (LR residuals whose 3x3 '
                             'neighbourhood is beyond 2 noise sd are put back through the camera model)')
    parser.add_argument('--report', nargs='?', const=True, default=None, metavar='FILE.html',
                        help='write report.html (beside the sidecar, or FILE.html): the frames side by side, '
                             'the per-frame chi2, the camera model, the settings')
    parser.add_argument('--video', default=None, metavar='FILE.mp4', help='an .mp4 of the frames side by side')


def add_consistency_arguments(parser: argparse.ArgumentParser) -> None:
    """The camera-noise option shared by ``fuse`` and ``check``."""
    parser.add_argument('--b0', type=float, default=None,
                        help='LR camera photons per unit intensity (Poisson noise variance = intensity / b0); '
                             'default: the noise the camera model leaves at the key frames')


def run(args: argparse.Namespace) -> int:
    out = fuse(args.lr, args.hr, args.model, args.out, period=args.period, offset=args.offset,
               hr_index=args.hr_index, lr_sep=args.lr_sep, transform=args.transform, tile=args.tile,
               overlap=args.overlap, device=args.device, batch=args.batch, precision=args.precision,
               cached=not args.no_cache, opt=args.opt, value_range=args.range, compile=args.compile,
               channels_last=args.channels_last, time_offset=args.time_offset,
               flat_correction=not args.no_flat_correction, b0=args.b0, maps=args.maps, project=args.project,
               report=args.report, video=args.video)
    print(f'fused sequence written to {out}')
    return 0
