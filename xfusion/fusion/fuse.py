"""``xfusion fuse``: the fused HR sequence of a real two-camera experiment, streamed frame by frame.

The stages (``xfusion.fusion``): the experiment is opened and checked (``Experiment``), the network is loaded,
every output is checked (nothing exists yet, every folder is writable), the LR camera is fitted at the key
frames; then every time step is fused (``network_frames``), checked against its LR frame (``LRConsistency``)
and handed to the sinks (the TIFF/HDF5 writer, the maps, the report's player and the video). Frames are read,
fused and written as the run goes, so memory does not grow with the length of the sequence. When the run
fails, the sinks remove what they made.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from xfusion.checkpoint import load_network
from xfusion.fusion.config import FuseConfig
from xfusion.fusion.consistency import PROJECT_THRESHOLD, Z_LABEL, LRConsistency, fit_camera
from xfusion.fusion.sinks import MapsWriter, StackWriter, Viewer, new_path
from xfusion.fusion.sources import Experiment
from xfusion.fusion.streams import FrameCache, check_device, check_tile, network_frames, padded_shape, tile_boxes
from xfusion.pretrained import model_file
from xfusion.report import Player, Section, check_video_path, display_window, upsampled, write_report, z_colour
from xfusion.schedule import FrameSource
from xfusion.version import __version__


class FuseOutputs:
    """Everything ``fuse`` writes: the frames (``StackWriter``), the maps, the report and the video. Checked when
    made, before anything is written; ``open`` makes the temporary outputs, ``close`` puts them in place,
    ``abort`` removes them."""

    def __init__(self, config: FuseConfig):
        self.writer = StackWriter(config.out)
        self.maps = MapsWriter(path) if (path := new_path(config.maps, '--maps')) is not None else None
        report = config.report
        explicit = new_path(report, '--report') if isinstance(report, (str, Path)) and str(report) else None
        self.report_path = explicit or (self.writer.beside('report.html') if report else None)
        self.video = check_video_path(config.video, overwrite=False)
        self.viewer: Viewer | None = None

    def open(self, exp: Experiment) -> None:
        if self.report_path is not None or self.video is not None:
            window = display_window([exp.key_on_grid(exp.schedule.key_times[0])])
            player = Player(self.writer.path.name, ['LR (upsampled)', 'fused', 'nearest key frame', Z_LABEL],
                            window, list(exp.schedule.key_times), exp.num_frames,
                            metric='chi2', log=True, note='chi2: mean squared LR residual over the expected noise '
                                                           'variance (about 1: consistent)')
            self.viewer = Viewer(player, self.video)
        self.writer.open(exp.num_frames, exp.grid, exp.hr.dtype)
        if self.maps is not None:
            self.maps.open()

    def add(self, t: int, stored: np.ndarray, z: np.ndarray) -> None:
        self.writer.add(t, stored)
        if self.maps is not None:
            self.maps.add(t, z)

    def close(self, sidecar: dict, consistency: LRConsistency) -> None:
        self.writer.close(sidecar, {'consistency.csv': consistency.csv()})
        if self.maps is not None:
            self.maps.close()
        if self.viewer is not None:
            self.viewer.close()
        if self.report_path is not None:
            self.viewer.player.series = consistency.series()
            write_report(self.report_path, 'XFusion: fused sequence',
                         f'{sidecar["inputs"]["lr"]} + {sidecar["inputs"]["hr"]} -> {self.writer.path}',
                         [self.viewer.player], [Section('LR consistency', 'markdown', consistency.markdown())],
                         sidecar)

    def abort(self) -> None:
        for sink in (self.writer, self.maps, self.viewer):
            if sink is not None:
                sink.abort()


def fuse(config: FuseConfig) -> Path:
    """Fuse an LR stack and an HR key-frame stack into an HR stack at the LR frame rate; returns the output path.

    Without a period or an index file, the HR frames are matched to LR steps by the two sources' frame times;
    the matching is printed and kept in the sidecar. Every output frame is checked against the LR frame of its
    time (``consistency.csv`` beside the sidecar)."""
    exp = Experiment(config.sources)  # everything is checked before anything is written
    if exp.time_match is not None:
        print('\n'.join(exp.time_match.report()))
    check_device(config.run.device)
    net, net_opt = load_network(config.model, config.opt, config.run.device)
    check_tile(net, config.run)
    outputs = FuseOutputs(config)
    camera = fit_camera(exp.lr.read_unit, exp.key_on_grid, exp.schedule.key_times, exp.lr_shape, exp.seen, exp.b0,
                        exp.quantum())
    consistency = LRConsistency(camera, exp.hr.scale, config.project)
    started = time.time()
    try:
        outputs.open(exp)
        stream_frames(net, exp, consistency, outputs, config)
    except BaseException:
        outputs.abort()
        raise
    outputs.close(sidecar(config, exp, net, net_opt, consistency, outputs, time.time() - started), consistency)
    return outputs.writer.path


def stream_frames(net: torch.nn.Module, exp: Experiment, consistency: LRConsistency, outputs: FuseOutputs,
                  config: FuseConfig) -> None:
    """Every time step: fused, checked against its LR frame, handed to the outputs. Each frame is read once, on a
    thread, ahead of the network."""
    run = config.run
    reader = ThreadPoolExecutor(1)  # reads the next frames while the network computes
    span = 2 * exp.lr_sep + run.batch + 1
    read_lr = FrameCache(exp.lr.read_unit, capacity=2 * span, pool=reader)
    read_key = FrameCache(exp.key_on_grid, capacity=4, pool=reader)
    source = FrameSource(read_lr, read_key, exp.schedule, exp.lr_sep)
    bar = tqdm(total=exp.num_frames, unit='frame', desc='fuse', disable=not run.progress)
    try:
        for t, fused in network_frames(net, source, exp.lr_shape, run):
            lr = read_lr(t)
            k0, k1 = exp.schedule.bracket(t)
            unit, stored, z = consistency.frame(t, exp.schedule.is_key(t), np.clip(fused, 0, 1), lr,
                                                {k: read_key(k) for k in (k0, k1)})
            outputs.add(t, stored, z)
            if outputs.viewer is not None and outputs.viewer.wants(t):
                nearest = k0 if abs(t - k0) <= abs(k1 - t) else k1
                panels = [upsampled(lr, exp.grid), unit, read_key(nearest), z_colour(z, exp.grid)]
                outputs.viewer.add(t, panels, f'{outputs.writer.path.name}  step {t}  '
                                              f'chi2 {consistency.rows[-1]["chi2"]:.3g}')
            bar.update(1)
    finally:
        reader.shutdown(cancel_futures=True)
        bar.close()


def sidecar(config: FuseConfig, exp: Experiment, net: torch.nn.Module, net_opt: dict, consistency: LRConsistency,
            outputs: FuseOutputs, seconds: float) -> dict:
    """What the run was: the software, the network, the inputs, the schedule, the transform, the camera model, the
    LR consistency and the run's settings (``xfusion.json`` beside the frames, or ``out.h5.json``)."""
    run, transform = config.run, config.sources.transform
    tiles = len(tile_boxes(*padded_shape(exp.lr_shape, net.lr_multiple), run.tile, run.overlap))
    maps = outputs.maps
    return {
        'software': f'xfusion {__version__}', 'created': time.strftime('%Y-%m-%d %H:%M:%S'),
        'model': str(model_file(config.model).resolve()), 'network': net_opt,
        'inputs': exp.inputs_record(), 'schedule': exp.schedule_record(),
        'time_matching': exp.time_matching_record(),
        'transform': transform and json.loads(Path(transform).read_text()),
        'camera_model': consistency.camera.summary(),
        'consistency': {'file': outputs.writer.beside('consistency.csv').name,
                        'maps': maps and str(maps.path), 'project': config.project,
                        'project_threshold_sd': PROJECT_THRESHOLD if config.project else None,
                        **consistency.summary()},
        'run': {'tile': run.tile, 'overlap': run.overlap, 'tiles': tiles, 'device': run.device, 'batch': run.batch,
                'precision': run.precision, 'cached': run.cached, 'compile': run.compile,
                'channels_last': run.channels_last, 'seconds': round(seconds, 2)},
    }
