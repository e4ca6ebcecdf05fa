"""The second stage of a fusion run: a method fuses the time steps asked of it.

A method is a network of any registered family or a classical baseline; both read a ``FrameSource`` (LR frames at
every step, key frames on the x4 grid, the schedule) and give ``(t, HR frame)`` for every time step or for those
asked. Networks stream through ``SequenceInference`` (window networks window by window, segment networks segment
by segment, each frame encoded once), over frames padded to the network's LR size multiple and, for frames
larger than ``--tile`` LR pixels, in overlapping tiles blended with linear ramps (no seams). Frames are read once
and, where the caller gives a reader thread, ahead of the network.
"""
from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from xfusion.baselines import BASELINES
from xfusion.camera import SCALE
from xfusion.checkpoint import load_network
from xfusion.errors import InputError
from xfusion.fusion.config import RECOMMENDED, RunOptions
from xfusion.inference import SequenceInference
from xfusion.schedule import FrameSource, KeySchedule


class FrameCache:
    """The last few frames read, so that overlapping tiles and windows read each frame once.

    ``prefetch(i)`` starts reading frame i on a background thread (``pool``), so that reading (and decoding) the
    next frames overlaps with the network's compute.
    """

    def __init__(self, read: Callable[[int], np.ndarray], capacity: int, pool: ThreadPoolExecutor | None = None):
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


def pad_to_multiple(img: np.ndarray, multiple: int) -> np.ndarray:
    """A frame mirrored out to a multiple of ``multiple`` pixels (the frame itself when it is one)."""
    h, w = img.shape
    ph, pw = (-h) % multiple, (-w) % multiple
    return np.pad(img, ((0, ph), (0, pw)), mode='reflect') if ph or pw else img


def padded_shape(shape: tuple[int, int], multiple: int) -> tuple[int, int]:
    """The frame size after ``pad_to_multiple``."""
    h, w = shape
    return h + (-h) % multiple, w + (-w) % multiple


def tiled_fusion(net: torch.nn.Module, read_lr: Callable[[int], np.ndarray], read_key: Callable[[int], np.ndarray],
                 schedule: KeySchedule, lr_sep: int, padded: tuple[int, int], run: RunOptions,
                 times: list[int] | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """(t, fused HR frame (4 ph, 4 pw)) for each time step (all, or ``times``), fused tile by tile over LR frames
    padded to ``padded`` = (ph, pw) and blended with linear ramps.

    ``read_lr(t)`` gives the padded LR frame, ``read_key(k)`` the padded key frame on the x4 grid."""
    ph, pw = padded
    boxes = tile_boxes(ph, pw, run.tile, run.overlap)
    weights = [torch.from_numpy(blend_weight(b, ph, pw, run.overlap)) for b in boxes]
    streams = []
    for y0, y1, x0, x1 in boxes:
        lr_box, hr_box = np.s_[y0:y1, x0:x1], np.s_[y0 * SCALE:y1 * SCALE, x0 * SCALE:x1 * SCALE]
        src = FrameSource(lambda t, b=lr_box: read_lr(t)[b], lambda k, b=hr_box: read_key(k)[b], schedule, lr_sep)
        inference = SequenceInference(net, run.device, cached=run.cached, batch=run.batch, precision=run.precision,
                                      compile=run.compile, channels_last=run.channels_last)
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


def _prefetch(read: Callable, indices) -> None:
    """Ask a reader that reads ahead (a ``FrameCache`` with a thread) for these frames; others ignore it."""
    prefetch = getattr(read, 'prefetch', None)
    if prefetch is not None:
        for i in indices:
            prefetch(i)


def network_frames(net: torch.nn.Module, source: FrameSource, lr_shape: tuple[int, int], run: RunOptions,
                   times: list[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(t, fused HR frame (4h, 4w) as float32, not clipped) of a network for each time step (all, or ``times``).

    Frames are padded to the network's LR size multiple (and the output cropped back); the next LR and key
    frames are asked ahead of the network when the source's readers read ahead."""
    multiple = net.lr_multiple
    h, w = lr_shape
    span = 2 * source.lr_sep + run.batch + 1
    read_lr = FrameCache(lambda t: pad_to_multiple(source.read_lr(t), multiple), capacity=2 * span)
    read_key = FrameCache(lambda k: pad_to_multiple(source.read_key(k), multiple * SCALE), capacity=4)
    padded = padded_shape(lr_shape, multiple)
    keys, num_frames = source.schedule.key_times, source.num_frames
    for t, frame in tiled_fusion(net, read_lr, read_key, source.schedule, source.lr_sep, padded, run, times):
        _prefetch(source.read_lr, range(t + source.lr_sep + 1, min(t + source.lr_sep + 1 + run.batch, num_frames)))
        _prefetch(source.read_key, keys[bisect.bisect_right(keys, t):][:2])  # the next key frames
        yield t, frame[:h * SCALE, :w * SCALE].numpy()


def baseline_frames(method: str, source: FrameSource, times: list[int] | None = None,
                    num_lr: int = 3) -> Iterator[tuple[int, np.ndarray]]:
    """(t, HR frame) of a classical baseline for every time step (or those of ``times``)."""
    fn = BASELINES[method]
    for t in (range(source.num_frames) if times is None else times):
        window, (k0, k1), weights = source.window(t, num_lr)
        lr_window = np.stack([source.read_lr(i) for i in window])
        lr_keys = np.stack([source.read_lr(k0), source.read_lr(k1)])
        hr_keys = np.stack([source.read_key(k0), source.read_key(k1)])
        yield t, fn(lr_window, hr_keys, lr_keys, np.asarray(weights, np.float32), num_lr // 2)


def check_methods(methods: list[str], networks: dict[str, str], options: dict[str, str]) -> None:
    """Every method is a baseline or a network given with --model; every --opt names a given network."""
    for method in methods:
        if method not in BASELINES and method not in networks:
            raise InputError(f'method {method!r} is neither a baseline ({", ".join(BASELINES)}) nor a network '
                             f'given with --model {method}=CKPT (or leave it out of --methods)')
    unused = [name for name in options if name not in networks]
    if unused:
        raise InputError(f'--opt {unused[0]}=...: no network {unused[0]!r} is given with --model')


def check_device(device: str) -> None:
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise InputError('--device cuda: no CUDA device here; use --device cpu')


def check_tile(net: torch.nn.Module, run: RunOptions, name: str = '') -> None:
    """``--tile`` must be a multiple of the network's LR size multiple, larger than twice ``--overlap``."""
    multiple = net.lr_multiple
    if run.tile and (run.tile % multiple or run.tile <= 2 * run.overlap):
        which = f' (network {name})' if name else ''
        raise InputError(f'--tile must be a multiple of {multiple}{which} larger than twice --overlap, '
                         f'got {run.tile} / {run.overlap}')


def load_networks(methods: list[str], networks: dict[str, str], options: dict[str, str],
                  run: RunOptions) -> dict[str, torch.nn.Module]:
    """The networks among ``methods``, loaded on the run's device, each checked against ``--tile``."""
    check_device(run.device)
    nets = {m: load_network(networks[m], options.get(m), run.device)[0] for m in methods if m in networks}
    for name, net in nets.items():
        check_tile(net, run, name)
    return nets


def method_frames(method: str, nets: dict[str, torch.nn.Module], source: FrameSource, lr_shape: tuple[int, int],
                  run: RunOptions, times: list[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(t, HR frame) of a method: the network of that name when there is one, else the baseline."""
    if method in nets:
        return network_frames(nets[method], source, lr_shape, run, times)
    return baseline_frames(method, source, times)


def shown_method(methods: list[str], networks: list[str]) -> str:
    """The method a report's players show: the recommended network when evaluated, else the first network, else
    the Bayesian baseline, else the last method."""
    if RECOMMENDED in methods and RECOMMENDED in networks:
        return RECOMMENDED
    return next((m for m in methods if m in networks), 'bayes' if 'bayes' in methods else methods[-1])
