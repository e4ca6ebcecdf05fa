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
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from xfusion.errors import InputError
from xfusion.io.frames import H5_SUFFIXES, split_h5_spec, write_frame
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
    """Fused frames to a TIFF folder or an HDF5 dataset (``file.h5[:/dataset]``, default ``/exchange/data``).

    ``check`` (before anything is made) refuses an output that exists or cannot be written; ``open`` makes the
    temporary output; ``add`` writes a frame on a background thread (one write in flight, so that writing overlaps
    the next frame's compute); ``close`` renames the output into place and writes the sidecar and the files that
    go beside it; ``abort`` waits for the write in flight, then removes the temporary output.
    """

    def __init__(self, spec: str):
        path, self.dataset = split_h5_spec(spec)
        self.path = new_path(path, '--out')
        self.is_h5 = self.path.suffix.lower() in H5_SUFFIXES
        check_writable(str(self.path.parent))
        if self.is_h5 and not self.dataset:
            self.dataset = '/exchange/data'
        self.tmp = self.path.with_name(self.path.name + '.partial')
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future | None = None

    def open(self, num_frames: int, shape: tuple[int, int], dtype: np.dtype) -> None:
        _remove(self.tmp)  # what an interrupted run left
        if self.is_h5:
            import h5py
            self._file = h5py.File(self.tmp, 'w')
            self._data = self._file.create_dataset(self.dataset, (num_frames, *shape), dtype=dtype,
                                                   chunks=(1, *shape))
        else:
            self.tmp.mkdir()
        self._pool = ThreadPoolExecutor(1)

    def _write(self, t: int, frame: np.ndarray) -> None:
        if self.is_h5:
            self._data[t] = frame
        else:
            write_frame(self.tmp / f'{t:08d}.tif', frame)

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def add(self, t: int, frame: np.ndarray) -> None:
        self._wait()
        self._pending = self._pool.submit(self._write, t, frame)

    def sidecar_path(self) -> Path:
        return self.path.with_name(self.path.name + '.json') if self.is_h5 else self.path / 'xfusion.json'

    def beside(self, name: str) -> Path:
        """Where a file that goes with the output lives: in the folder, or ``out.h5.<name>`` beside the file."""
        return self.path.with_name(f'{self.path.name}.{name}') if self.is_h5 else self.path / name

    def close(self, sidecar: dict, files: dict[str, str] | None = None) -> None:
        """Rename into place, then write the sidecar and ``files`` ({name: text}) beside the output."""
        self._wait()
        self._pool.shutdown()
        if self.is_h5:
            self._data.attrs['xfusion'] = json.dumps(sidecar)
            self._file.close()
        os.replace(self.tmp, self.path)
        self.sidecar_path().write_text(json.dumps(sidecar, indent=2))
        for name, text in (files or {}).items():
            self.beside(name).write_text(text)

    def abort(self) -> None:
        if self._pool is not None:
            try:
                self._wait()  # a write still in flight would make the folder again after it is removed
            except Exception:  # the run already failed; its own error is the one to report
                pass
            self._pool.shutdown()
        if self.is_h5 and getattr(self, '_file', None) is not None:
            self._file.close()
        _remove(self.tmp)


class MapsWriter:
    """The per-frame LR-consistency maps in a new folder (``--maps``): float32 TIFF at LR resolution."""

    def __init__(self, path: Path):
        self.path = path
        self.tmp = path.with_name(path.name + '.partial')

    def open(self) -> None:
        _remove(self.tmp)
        self.tmp.mkdir()

    def add(self, t: int, z: np.ndarray) -> None:
        write_frame(self.tmp / f'{t:08d}.tif', z)

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
