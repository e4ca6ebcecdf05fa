"""The last stage of a fusion run: what is done with each fused frame.

Every sink has ``add`` (one frame), ``close`` (the run ended well: put the output in place) and ``abort`` (the run
failed: remove what the sink made, after its pending writes). Outputs are written under a temporary name
(``<name>.partial``) and renamed at the end, so an interrupted run never leaves something that looks finished,
and a failed one leaves nothing.

- ``StackWriter``: the fused frames as a TIFF folder or an HDF5 dataset, written on a thread while the network
  computes the next frame, with the JSON sidecar and the files that go beside it;
- ``MapsWriter``: the per-frame LR-consistency maps (float TIFF);
- ``Viewer``: the report's player and the .mp4 of the same side-by-side panels.
"""
from __future__ import annotations

import json
import os
import shutil
import zlib
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from xfusion.errors import InputError
from xfusion.io.frames import H5_SUFFIXES, read_frame, split_h5_spec, write_frame
from xfusion.options_check import check_writable
from xfusion.report import Player, VideoWriter


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


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


class StackWriter:
    """Fused frames to a TIFF folder or an HDF5 dataset (``file.h5[:/dataset]``, default ``/exchange/data``), from
    one process or several, resumable after a kill.

    ``__init__`` (before anything is made) refuses an output that exists or cannot be written. The frames go to
    files in ``<out>.partial/`` as they are fused: TIFFs for a folder output, ``.npy`` for an HDF5 one, each written
    on a thread while the network computes the next frame. Several ranks write into the same folder, each its own
    frames. ``record`` notes a finished segment of time steps in ``<out>.partial/.progress/`` (each file's size and
    CRC-32, the segment's consistency rows); ``completed`` gives back the segments a killed run finished whose
    files still match their record. ``close`` (one rank): an HDF5 output is assembled from the frame files by this
    one writer (h5py writes a file from one process unless built with MPI), then the output is renamed into place
    and the sidecar and the files that go beside it are written. ``abort`` removes the partial output.
    """

    PROGRESS = '.progress'

    def __init__(self, spec: str):
        path, self.dataset = split_h5_spec(spec)
        self.path = new_path(path, '--out')
        self.is_h5 = self.path.suffix.lower() in H5_SUFFIXES
        check_writable(str(self.path.parent))
        if self.is_h5 and not self.dataset:
            self.dataset = '/exchange/data'
        self.tmp = self.path.with_name(self.path.name + '.partial')
        self.assembling = self.path.with_name(self.path.name + '.assembling')  # an HDF5 output, being put together
        self.progress = self.tmp / self.PROGRESS
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future | None = None

    def prepare(self, fingerprint: dict) -> bool:
        """Keep what a killed run of the same fusion (``fingerprint``: its inputs, network and settings) left in
        ``<out>.partial``, else start it empty; whether something was kept. On one rank, before the others write."""
        run_file = self.progress / 'run.json'
        text = json.dumps(fingerprint, sort_keys=True, default=str)
        _remove(self.assembling)  # a run killed while putting an HDF5 output together
        if self.tmp.is_dir() and run_file.is_file() and run_file.read_text() == text:
            return True
        _remove(self.tmp)  # another fusion's leftovers, or an older version's
        self.progress.mkdir(parents=True)
        run_file.write_text(text)
        return False

    def start(self) -> None:
        """Ready to write frames (every rank)."""
        self._pool = ThreadPoolExecutor(1)

    def frame_path(self, t: int) -> Path:
        return self.tmp / (f'{t:08d}.npy' if self.is_h5 else f'{t:08d}.tif')

    def _write(self, t: int, frame: np.ndarray) -> None:
        path = self.frame_path(t)
        if self.is_h5:
            np.save(path, frame)
        else:
            write_frame(path, frame)

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def add(self, t: int, frame: np.ndarray) -> None:
        self._wait()
        self._pending = self._pool.submit(self._write, t, frame)

    def read(self, t: int) -> np.ndarray:
        """A frame as it was written."""
        path = self.frame_path(t)
        return np.load(path) if self.is_h5 else read_frame(path)

    def record(self, segment: tuple[int, int], rows: list[dict], files: list[Path]) -> None:
        """Note that ``segment`` = [start, stop) is written: ``files`` (its frames, and maps) with their sizes and
        CRC-32, and its consistency ``rows``. Written after the files, and atomically: a segment without a whole
        record is done again."""
        self._wait()
        record = {'segment': list(segment), 'rows': rows,
                  'files': {os.path.relpath(p, self.path.parent): [p.stat().st_size, _crc32(p)] for p in files}}
        path = self.progress / f'{segment[0]:08d}-{segment[1]:08d}.json'
        tmp = path.with_name(path.name + f'.tmp{os.getpid()}')
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)

    def completed(self) -> dict[tuple[int, int], list[dict]]:
        """{segment: its consistency rows} of every recorded segment whose files are all there, unchanged."""
        done = {}
        for path in sorted(self.progress.glob('*-*.json')):
            record = json.loads(path.read_text())
            files = [(self.path.parent / name, size, crc) for name, (size, crc) in record['files'].items()]
            if all(p.is_file() and p.stat().st_size == size and _crc32(p) == crc for p, size, crc in files):
                done[tuple(record['segment'])] = record['rows']
        return done

    def sidecar_path(self) -> Path:
        return sidecar_path_of(self.path)

    def beside(self, name: str) -> Path:
        """Where a file that goes with the output lives: in the folder, or ``out.h5.<name>`` beside the file."""
        return self.path.with_name(f'{self.path.name}.{name}') if self.is_h5 else self.path / name

    def stop(self) -> None:
        """This rank's writes are done (the last one finished)."""
        if self._pool is not None:
            self._wait()
            self._pool.shutdown()
            self._pool = None

    def close(self, sidecar: dict, num_frames: int, files: dict[str, str] | None = None) -> None:
        """Put the output in place (an HDF5 file assembled from the frames first), then write the sidecar and
        ``files`` ({name: text}) beside it. The records go last: a run killed while assembling is resumed."""
        self.stop()
        if self.is_h5:
            import h5py
            first = self.read(0)
            with h5py.File(self.assembling, 'w') as f:
                data = f.create_dataset(self.dataset, (num_frames, *first.shape), dtype=first.dtype,
                                        chunks=(1, *first.shape))
                for t in range(num_frames):
                    data[t] = self.read(t)
                data.attrs['xfusion'] = json.dumps(sidecar)
            os.replace(self.assembling, self.path)
            _remove(self.tmp)
        else:
            shutil.rmtree(self.progress)
            os.replace(self.tmp, self.path)
        self.sidecar_path().write_text(json.dumps(sidecar, indent=2))
        for name, text in (files or {}).items():
            self.beside(name).write_text(text)

    def abort(self) -> None:
        """Remove the partial output, after the write in flight (a failed run leaves nothing)."""
        if self._pool is not None:
            try:
                self._wait()  # a write still in flight would make the folder again after it is removed
            except Exception:  # the run already failed; its own error is the one to report
                pass
            self._pool.shutdown()
        _remove(self.assembling)
        _remove(self.tmp)


def sidecar_path_of(out: str | Path) -> Path:
    """The JSON sidecar of a fused output: ``out/xfusion.json``, or ``out.h5.json`` beside an HDF5 file."""
    path, _ = split_h5_spec(out)
    return path.with_name(path.name + '.json') if path.suffix.lower() in H5_SUFFIXES else path / 'xfusion.json'


def _crc32(path: Path) -> int:
    return zlib.crc32(path.read_bytes())


class MapsWriter:
    """The per-frame LR-consistency maps in a new folder (``--maps``): float32 TIFF at LR resolution, written into
    ``<maps>.partial/`` by every rank (kept with the frames' partial output after a kill), renamed at the end."""

    def __init__(self, path: Path):
        self.path = path
        self.tmp = path.with_name(path.name + '.partial')

    def prepare(self, keep: bool) -> None:
        """Keep the maps of a killed run that is resumed, else start empty (one rank)."""
        if not keep:
            _remove(self.tmp)
        self.tmp.mkdir(exist_ok=True)

    def path_of(self, t: int) -> Path:
        return self.tmp / f'{t:08d}.tif'

    def add(self, t: int, z: np.ndarray) -> None:
        write_frame(self.path_of(t), z)

    def close(self) -> None:
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        _remove(self.tmp)


class Viewer:
    """The report's player and the optional video (``--video``) of the same side-by-side panels. ``video``: the
    path of a new .mp4, or a ``VideoWriter`` that several viewers share (one video of several sequences)."""

    def __init__(self, player: Player, video: Path | VideoWriter | None = None):
        self.player = player
        self.movie = VideoWriter(video) if isinstance(video, Path) else video

    def wants(self, t: int) -> bool:
        """Whether frame t is shown (the video shows every frame; a long sequence's player a spread of them)."""
        return self.movie is not None or self.player.wants(t)

    def add(self, t: int, panels: Sequence[np.ndarray], caption: str) -> None:
        self.player.add(t, panels)
        if self.movie is not None:
            self.movie.add(panels, self.player.window, self.player.labels, caption)

    def close(self) -> None:
        if self.movie is not None:
            self.movie.close()

    def abort(self) -> None:
        if self.movie is not None:
            self.movie.abort()


class OutputFolder:
    """A folder of results (``check``, ``evaluate``): checked before the run, made when results are written, and
    removed again when the run fails after making it (a folder that existed before is left as it was)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f'--out {self.path}: exists and is not a folder')
        existing = next(p for p in (self.path, *self.path.parents) if p.exists())
        check_writable(str(existing))  # the nearest existing folder: nothing is made before the run starts
        made = [p for p in (self.path, *self.path.parents) if not p.exists()]
        self._top = made[-1] if made else None  # the outermost folder this run will make

    def make(self) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path

    def abort(self) -> None:
        if self._top is not None:  # only what this run made
            shutil.rmtree(self._top, ignore_errors=True)
