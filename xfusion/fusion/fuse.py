"""``xfusion fuse``: the fused HR sequence of a real two-camera experiment, streamed frame by frame, in one
process or several (torchrun), resumable after a kill.

The stages (``xfusion.fusion``): the experiment is opened and checked (``Experiment``), the network is loaded,
every output is checked (nothing exists yet, every folder is writable), the LR camera is fitted at the key
frames. The time steps are cut at the key frames into segments (``KeySchedule.segments``); those a killed run of
the same fusion finished are kept (``StackWriter.completed``), the others are shared among the ranks
(``xfusion.fusion.ranks``). Each rank fuses its segments (``network_frames``), checks every frame against its LR
frame (``LRConsistency``), writes it, and records each finished segment. Then one rank gathers the records and
finishes the outputs: the frames put in place, the sidecar, ``consistency.csv``, the report's player and the video
(from the frames as written). Frames are read, fused and written as the run goes, so memory does not grow with the
length of the sequence. A failed run removes what it made; an interrupted one (Ctrl-C, a kill) leaves
``<out>.partial``, which the same command finishes.
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
from xfusion.fusion.config import FuseConfig, RunOptions
from xfusion.fusion.consistency import PROJECT_THRESHOLD, Z_LABEL, LRConsistency, fit_camera
from xfusion.fusion.ranks import Ranks, share_segments
from xfusion.fusion.sinks import MapsWriter, StackWriter, Viewer, new_path
from xfusion.fusion.sources import Experiment
from xfusion.fusion.streams import FrameCache, check_device, check_tile, network_frames, padded_shape, tile_boxes
from xfusion.pretrained import model_file
from xfusion.report import Player, Section, check_video_path, display_window, upsampled, write_report, z_colour
from xfusion.schedule import FrameSource
from xfusion.version import __version__


class FuseOutputs:
    """Everything ``fuse`` writes: the frames (``StackWriter``), the maps, the report and the video. Checked when
    made, before anything is written; ``prepare`` makes (or keeps) the partial outputs, ``close`` puts them in
    place, ``abort`` removes them."""

    def __init__(self, config: FuseConfig):
        self.writer = StackWriter(config.out)
        self.maps = MapsWriter(path) if (path := new_path(config.maps, '--maps')) is not None else None
        report = config.report
        explicit = new_path(report, '--report') if isinstance(report, (str, Path)) and str(report) else None
        self.report_path = explicit or (self.writer.beside('report.html') if report else None)
        self.video = check_video_path(config.video, overwrite=False)

    def prepare(self, fingerprint: dict) -> bool:
        """The partial outputs, kept from a killed run of the same fusion or new; whether kept (one rank)."""
        kept = self.writer.prepare(fingerprint)
        if self.maps is not None:
            self.maps.prepare(kept)
        return kept

    def add(self, t: int, stored: np.ndarray, z: np.ndarray) -> list[Path]:
        """Write frame t (and its map); the files it makes."""
        self.writer.add(t, stored)
        if self.maps is None:
            return [self.writer.frame_path(t)]
        self.maps.add(t, z)
        return [self.writer.frame_path(t), self.maps.path_of(t)]

    def close(self, exp: Experiment, sidecar: dict, consistency: LRConsistency, show: bool = True) -> None:
        """Put every output in place; the player and the video are made from the frames as written."""
        viewer = self._viewer(exp, consistency, show) if self.report_path or self.video else None
        self.writer.close(sidecar, exp.num_frames, {'consistency.csv': consistency.csv()})
        if self.maps is not None:
            self.maps.close()
        if self.report_path is not None:
            viewer.player.series = consistency.series()
            write_report(self.report_path, 'XFusion: fused sequence',
                         f'{sidecar["inputs"]["lr"]} + {sidecar["inputs"]["hr"]} -> {self.writer.path}',
                         [viewer.player], [Section('LR consistency', 'markdown', consistency.markdown())],
                         sidecar)

    def _viewer(self, exp: Experiment, consistency: LRConsistency, show: bool) -> Viewer:
        """The report's player and the video, from the written frames: LR | fused | nearest key | z map."""
        window = display_window([exp.key_on_grid(exp.schedule.key_times[0])])
        player = Player(self.writer.path.name, ['LR (upsampled)', 'fused', 'nearest key frame', Z_LABEL],
                        window, list(exp.schedule.key_times), exp.num_frames,
                        metric='chi2', log=True, note='chi2: mean squared LR residual over the expected noise '
                                                       'variance (about 1: consistent)')
        viewer = Viewer(player, self.video)
        chi2 = {r['frame']: r['chi2'] for r in consistency.rows}
        read_key = FrameCache(exp.key_on_grid, capacity=2)
        try:
            for t in tqdm(range(exp.num_frames), desc='report', unit='frame', disable=not show):
                if not viewer.wants(t):
                    continue
                lr, unit = exp.lr.read_unit(t), exp.hr.scale.to_unit(self.writer.read(t))
                k0, k1 = exp.schedule.bracket(t)
                nearest = k0 if abs(t - k0) <= abs(k1 - t) else k1
                z = consistency.camera.residual_map(unit, lr)
                panels = [upsampled(lr, exp.grid), unit, read_key(nearest), z_colour(z, exp.grid)]
                viewer.add(t, panels, f'{self.writer.path.name}  step {t}  chi2 {chi2[t]:.3g}')
        except BaseException:
            viewer.abort()
            raise
        viewer.close()
        return viewer

    def abort(self) -> None:
        for sink in (self.writer, self.maps):
            if sink is not None:
                sink.abort()


def fingerprint(config: FuseConfig, exp: Experiment, net_opt: dict) -> dict:
    """What decides the frames a fusion writes: a killed run's frames are kept only when all of it is the same."""
    run = config.run
    return {'software': __version__, 'model': str(model_file(config.model).resolve()), 'network': net_opt,
            'inputs': exp.inputs_record(), 'schedule': exp.schedule_record(),
            'transform': config.sources.transform and json.loads(Path(config.sources.transform).read_text()),
            'lr_sep': exp.lr_sep, 'b0': config.sources.b0, 'project': config.project, 'maps': config.maps,
            'run': [run.device.split(':')[0], run.batch, run.precision, run.tile, run.overlap, run.cached]}


def fuse(config: FuseConfig, ranks: Ranks | None = None) -> Path:
    """Fuse an LR stack and an HR key-frame stack into an HR stack at the LR frame rate; returns the output path.

    Without a period or an index file, the HR frames are matched to LR steps by the two sources' frame times;
    the matching is printed and kept in the sidecar. Every output frame is checked against the LR frame of its
    time (``consistency.csv`` beside the sidecar). ``ranks``: this process's share of a torchrun run (default:
    from torchrun's environment; one process otherwise)."""
    ranks = ranks or Ranks.from_env(config.run.device)
    show = config.run.progress and ranks.is_main
    exp = Experiment(config.sources)  # everything is checked before anything is written
    if exp.time_match is not None and ranks.is_main:
        print('\n'.join(exp.time_match.report()))
    device = ranks.device(config.run.device)
    check_device(device)
    net, net_opt = load_network(config.model, config.opt, device)
    check_tile(net, config.run)
    outputs = FuseOutputs(config)
    camera = fit_camera(exp.lr.read_unit, exp.key_on_grid, exp.schedule.key_times, exp.lr_shape, exp.seen, exp.b0,
                        exp.quantum())
    consistency = LRConsistency(camera, exp.hr.scale, config.project)
    started = time.time()
    if ranks.is_main:  # one rank keeps what a killed run left and checks its files; the others are told
        kept = outputs.prepare(fingerprint(config, exp, net_opt))
        found = (kept, outputs.writer.completed() if kept else {})
    kept, done = ranks.gather(found if ranks.is_main else None)[0]
    segments = exp.schedule.segments()
    todo = [s for s in segments if s not in done]
    if kept and show:
        print(f'resuming {outputs.writer.tmp}: {len(segments) - len(todo)} of {len(segments)} segments already '
              f'written, {sum(b - a for a, b in todo)} of {exp.num_frames} time steps to fuse')
    outputs.writer.start()
    try:
        fuse_segments(net, exp, consistency, outputs, share_segments(todo, ranks.world)[ranks.rank], config.run,
                      show)
        outputs.writer.stop()
        fused_rows = ranks.gather(consistency.rows)  # every rank's, once all have written
    except Exception:
        if ranks.world == 1:  # a failed run leaves nothing; with several ranks torchrun stops them all
            outputs.abort()
        raise
    except BaseException:  # interrupted: what is recorded stays for the same command to finish
        outputs.writer.stop()
        if show:
            print(f'\ninterrupted: the finished segments are kept in {outputs.writer.tmp}; run the same command '
                  'again to finish')
        raise
    if ranks.is_main:
        consistency.rows = sorted([row for rows in [*done.values(), *fused_rows] for row in rows],
                                  key=lambda r: r['frame'])
        try:
            outputs.close(exp, sidecar(config, exp, net, net_opt, consistency, outputs, time.time() - started,
                                       ranks.world), consistency, show)
        except Exception:
            outputs.abort()
            raise
    ranks.barrier()
    return outputs.writer.path


def fuse_segments(net: torch.nn.Module, exp: Experiment, consistency: LRConsistency, outputs: FuseOutputs,
                  segments: list[tuple[int, int]], run: RunOptions, show: bool) -> None:
    """This rank's segments: every time step fused, checked against its LR frame and written; each segment
    recorded once its frames are written. Each frame is read once, on a thread, ahead of the network."""
    reader = ThreadPoolExecutor(1)  # reads the next frames while the network computes
    span = 2 * exp.lr_sep + run.batch + 1
    read_lr = FrameCache(exp.lr.read_unit, capacity=2 * span, pool=reader)
    read_key = FrameCache(exp.key_on_grid, capacity=4, pool=reader)
    read_key_lr = FrameCache(exp.lr.read_unit, capacity=4)  # the LR frames at the key times, for consistency
    source = FrameSource(read_lr, read_key, exp.schedule, exp.lr_sep)
    times = [t for start, stop in segments for t in range(start, stop)]
    stops = {stop - 1: (start, stop) for start, stop in segments}
    bar = tqdm(total=len(times), unit='frame', desc='fuse', disable=not show)  # this rank's time steps
    files: list[Path] = []
    try:
        for t, fused in network_frames(net, source, exp.lr_shape, run, times):
            lr = read_lr(t)
            k0, k1 = exp.schedule.bracket(t)
            _, stored, z = consistency.frame(t, exp.schedule.is_key(t), np.clip(fused, 0, 1), lr,
                                             {k: read_key(k) for k in (k0, k1)}, {k: read_key_lr(k) for k in (k0, k1)})
            files += outputs.add(t, stored, z)
            if t in stops:  # the segment's last frame: record it once written
                start, stop = stops[t]
                outputs.writer.record(stops[t], consistency.rows[start - stop:], files)
                files = []
            bar.update(1)
    finally:
        reader.shutdown(cancel_futures=True)
        bar.close()


def sidecar(config: FuseConfig, exp: Experiment, net: torch.nn.Module, net_opt: dict, consistency: LRConsistency,
            outputs: FuseOutputs, seconds: float, processes: int = 1) -> dict:
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
                'channels_last': run.channels_last, 'processes': processes, 'seconds': round(seconds, 2)},
    }
