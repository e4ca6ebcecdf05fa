"""Sequence inference: run an STF network over every time step of a sequence.

Window networks: a sliding window sees each LR frame in 2r+1 windows and each key frame in D
windows. With ``cached=True`` every frame is encoded once (the network's ``encode``) and its
features are reused in every window (``decode``), which gives the same output as the per-window
forward.

Segment networks: the sequence is cut at its key frames (``KeySchedule.segments``); each segment
(its LR frames, the key frames at its ends, ``context`` LR frames beyond) is propagated once and its
time steps decoded in batches. Only one segment is held at a time, so memory grows with the
key-frame period, never with the length of the sequence. A segment network whose ``self_ensemble`` is set is run
on the 8 flips and transposes of its frames (``dihedral``) and its outputs, turned back, are averaged: 8 times the
time and the memory of a segment, for a smoother estimate where the network learnt a direction-dependent guess.

Time steps are decoded in batches, under autocast (bf16 / fp16), with no host-device copies
inside the loop other than frames in and frames out. Used by ``test.py`` (validation),
``xfusion evaluate``, ``xfusion fuse`` and ``xfusion bench``.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from xfusion.archs.stf_base import STFNetwork
from xfusion.errors import InputError
from xfusion.schedule import FrameSource

PRECISIONS = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
DIHEDRAL = 8  # the flips and transposes of a frame (the symmetries of the square)


def dihedral(x: torch.Tensor, k: int, inverse: bool = False) -> torch.Tensor:
    """x (..., h, w) under the k-th of the ``DIHEDRAL`` flips and transposes (0: unchanged); ``inverse``: undo it."""
    steps = [(k & 4, lambda a: a.transpose(-1, -2)), (k & 1, lambda a: a.flip(-1)), (k & 2, lambda a: a.flip(-2))]
    for on, step in (reversed(steps) if inverse else steps):
        x = step(x) if on else x
    return x


def supports_cache(net: STFNetwork) -> bool:
    """Whether a window network has its own encode/decode stages (else it runs per window)."""
    return type(net).encode is not STFNetwork.encode and type(net).decode is not STFNetwork.decode


def autocast_for(device: torch.device, precision: str):
    if precision not in PRECISIONS:
        raise InputError(f'precision must be one of {list(PRECISIONS)}, got {precision!r}')
    if PRECISIONS[precision] is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=PRECISIONS[precision])


class SequenceInference:
    """Runs ``net`` over a FrameSource and yields (t, HR frame (C, 4h, 4w) float32 on the CPU).

    Args:
        net: an STF network (the protocol of ``xfusion.archs.stf_base``).
        device: where to compute. cached: reuse per-frame features (falls back to per-window
        for networks without encode/decode). batch: time steps decoded together.
        precision: 'fp32' | 'bf16' | 'fp16' (autocast). compile: torch.compile the network's stages
        (pays off on long sequences; the first frames wait for compilation).
        channels_last: memory format of the network's weights and inputs (faster for some
        devices and convolution back ends; off by default).
    """

    def __init__(self, net: STFNetwork, device: str | torch.device = 'cpu', cached: bool = True,
                 batch: int = 1, precision: str = 'fp32', compile: bool = False, channels_last: bool = False):
        self.net = net.eval()
        self.device = torch.device(device)
        self.cached = cached and supports_cache(net)
        self.batch = max(1, int(batch))
        self.precision = precision
        autocast_for(self.device, precision)  # validates the name
        self.num_lr = net.num_frame
        self.uses_keys = net.uses_keys
        self._cache, self._cache_source = None, None
        self.transforms = range(DIHEDRAL) if getattr(net, 'self_ensemble', False) else range(1)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            net.to(memory_format=torch.channels_last)
        self._forward, self._encode, self._decode = net, getattr(net, 'encode', None), getattr(net, 'decode', None)
        if compile:
            self._forward = torch.compile(net)
            if self.cached:
                self._encode, self._decode = torch.compile(net.encode), torch.compile(net.decode)

    def reset(self) -> None:
        """Forget cached features (the next run starts from an empty cache)."""
        self._cache, self._cache_source = None, None

    def _to_device(self, frame) -> torch.Tensor:
        frame = torch.as_tensor(frame)
        return frame.to(self.device, dtype=torch.float32, non_blocking=True)[None]  # (1, h, w): one channel

    def run(self, source: FrameSource, times: list[int] | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        times = list(range(source.num_frames)) if times is None else sorted(times)
        if self.net.kind == 'segment':
            yield from self._run_segments(source, times)
            return
        for start in range(0, len(times), self.batch):
            chunk = times[start:start + self.batch]
            # the grad/autocast modes are thread state: enter them per step, never across a yield,
            # or a caller holding a half-consumed generator would run in inference mode too
            with torch.inference_mode(), autocast_for(self.device, self.precision):
                out = self._cached_step(source, chunk) if self.cached else self._window_step(source, chunk)
                out = out.float().cpu()
            yield from zip(chunk, out.clone())  # a normal tensor: callers may modify it

    # ---- segment networks: one segment at a time --------------------------------------------
    def _run_segments(self, source: FrameSource, times: list[int]) -> Iterator[tuple[int, torch.Tensor]]:
        wanted = set(times)
        context, last = getattr(self.net, 'context', 0), source.num_frames - 1
        for start, stop in source.schedule.segments():
            outputs = [t for t in range(start, stop) if t in wanted]
            if not outputs:
                continue
            first, end = max(start - context, 0), min(stop + context, last)  # frames read: the segment, its end key
            keys = [k for k in source.schedule.key_times if start <= k <= min(stop, last)]
            with torch.inference_mode(), autocast_for(self.device, self.precision):
                lq = torch.stack([self._to_device(source.read_lr(i)) for i in range(first, end + 1)])[None]
                hq = key_pos = None
                if self.uses_keys:
                    hq = torch.stack([self._to_device(source.read_key(k)) for k in keys])[None]
                    key_pos = torch.tensor([[k - first for k in keys]], device=self.device)
                states = [self.net.propagate(dihedral(lq, k), None if hq is None else dihedral(hq, k), key_pos)
                          for k in self.transforms]
            for i in range(0, len(outputs), self.batch):
                chunk = outputs[i:i + self.batch]
                with torch.inference_mode(), autocast_for(self.device, self.precision):
                    pos = torch.tensor([[t - first for t in chunk]], device=self.device)
                    out = sum(dihedral(self.net.decode(state, pos)[0].float(), k, inverse=True)
                              for k, state in zip(self.transforms, states)) / len(states)
                yield from zip(chunk, out.cpu().clone())
            del states

    # ---- per-window: the plain forward on each window --------------------------------------
    def _window_step(self, source: FrameSource, chunk: list[int]) -> torch.Tensor:
        lqs, hqs, weights = [], [], []
        for t in chunk:
            lr_idx, keys, w = source.window(t, self.num_lr)
            lqs.append(torch.stack([self._to_device(source.read_lr(i)) for i in lr_idx]))
            if self.uses_keys:
                hqs.append(torch.stack([self._to_device(source.read_key(k)) for k in keys]))
            weights.append(w)
        hq = torch.stack(hqs) if hqs else None
        return self._forward(torch.stack(lqs), hq, torch.tensor(weights, device=self.device))

    # ---- cached: encode each frame once ----------------------------------------------------
    def _cached_step(self, source: FrameSource, chunk: list[int]) -> torch.Tensor:
        if self._cache_source is not source:
            self._cache_source, self._cache = source, {'lr': {}, 'key': {}, 'lr_img': {}, 'key_img': {}}
        cache = self._cache
        windows = [source.window(t, self.num_lr) for t in chunk]
        need_lr = sorted({i for lr_idx, _, _ in windows for i in lr_idx})
        need_key = sorted({k for _, keys, _ in windows for k in keys}) if self.uses_keys else []
        # forget frames that no later (larger) t can need: times run in increasing order
        for kind, needed in (('lr', need_lr), ('key', need_key)):
            for i in [i for i in cache[kind] if i < min(needed, default=0)]:
                cache[kind].pop(i)
                cache[kind + '_img'].pop(i)
        self._encode_missing(cache, 'lr', need_lr, source.read_lr, key=False)
        self._encode_missing(cache, 'key', need_key, source.read_key, key=True)

        def stacked(kind: str, indices: list[int]) -> list[tuple[torch.Tensor, ...]]:
            """Per window position, the frames' features batched over the chunk."""
            return [tuple(torch.cat(levels) for levels in zip(*(cache[kind][i] for i in column)))
                    for column in zip(*indices)]

        lr_feats = stacked('lr', [lr_idx for lr_idx, _, _ in windows])
        key_feats = stacked('key', [keys for _, keys, _ in windows]) if self.uses_keys else []
        center = self.net.center_frame_idx
        lq_center = torch.stack([cache['lr_img'][lr_idx[center]] for lr_idx, _, _ in windows])
        hq = torch.stack([torch.stack([cache['key_img'][k] for k in keys]) for _, keys, _ in windows]) \
            if self.uses_keys else None
        weights = torch.tensor([w for _, _, w in windows], device=self.device)
        return self._decode(lr_feats, key_feats, lq_center, hq, weights)

    def _encode_missing(self, cache: dict, kind: str, needed: list[int], read: Callable, key: bool) -> None:
        missing = [i for i in needed if i not in cache[kind]]
        if not missing:
            return
        frames = torch.stack([self._to_device(read(i)) for i in missing]).contiguous(memory_format=self.memory_format)
        for start in range(0, len(missing), max(self.batch, 1)):  # bounded batches of frames
            part = missing[start:start + self.batch]
            levels = self._encode(frames[start:start + len(part)], key=key)
            for j, i in enumerate(part):
                cache[kind][i] = tuple(level[j:j + 1] for level in levels)
                cache[kind + '_img'][i] = frames[start + j]
