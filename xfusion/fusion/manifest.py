"""``xfusion fuse --manifest FILE``: many experiments in one run, shared among the ranks of a torchrun run.

The manifest is a CSV file with a header row: columns ``lr,hr,out`` and optionally ``period``, ``offset``,
``hr_index``, ``transform`` and ``model``, one row per experiment. What a row leaves out (an empty cell or a missing
column) is taken from the command line. Each experiment is fused as ``xfusion fuse`` would fuse it alone (its output,
sidecar and ``consistency.csv``); an experiment whose output is already complete is skipped, one that was
interrupted is resumed, and one that fails with bad input is reported and the others still run. A progress line per
experiment, and a summary table at the end.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import time
from pathlib import Path

from xfusion.errors import InputError
from xfusion.fusion.config import FuseConfig
from xfusion.fusion.fuse import fuse
from xfusion.fusion.ranks import Ranks
from xfusion.fusion.sinks import sidecar_path_of
from xfusion.io.frames import H5_SUFFIXES, split_h5_spec

REQUIRED = ('lr', 'hr', 'out')
SOURCE_COLUMNS = {'period': int, 'offset': int, 'hr_index': str, 'transform': str}  # SourceOptions fields
COLUMNS = (*REQUIRED, *SOURCE_COLUMNS, 'model')


def read_manifest(path: str | Path) -> list[dict[str, str]]:
    """The rows of a manifest, checked: the columns, a value in every required cell, no output twice."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f'--manifest {path}: file not found')
    with open(path, newline='') as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        unknown = [c for c in columns if c not in COLUMNS]
        missing = [c for c in REQUIRED if c not in columns]
        if unknown or missing:
            raise InputError(f'--manifest {path}: ' + (f'unknown column {unknown[0]!r}' if unknown else
                                                        f'no column {missing[0]!r}') + f'; the columns are '
                             f'{",".join(REQUIRED)} and optionally {",".join(COLUMNS[len(REQUIRED):])}')
        rows = [{k.strip(): (v or '').strip() for k, v in row.items() if k is not None} for row in reader]
    if not rows:
        raise InputError(f'--manifest {path}: no experiments (one row per experiment after the header)')
    seen = set()
    for line, row in enumerate(rows, start=2):
        for column in REQUIRED:
            if not row.get(column):
                raise InputError(f'--manifest {path}, line {line}: no {column}')
        for column, kind in SOURCE_COLUMNS.items():
            if row.get(column) and kind is int and not row[column].lstrip('-').isdigit():
                raise InputError(f'--manifest {path}, line {line}: {column} must be a whole number, got '
                                 f'{row[column]!r}')
        if row['out'] in seen:
            raise InputError(f'--manifest {path}, line {line}: the output {row["out"]} is given twice')
        seen.add(row['out'])
    return rows


def experiment_config(base: FuseConfig, row: dict[str, str]) -> FuseConfig:
    """The fusion of one row: its own values, the command line's where it leaves them out."""
    sources = {column: kind(row[column]) for column, kind in SOURCE_COLUMNS.items() if row.get(column)}
    if 'hr_index' in sources:  # an index file replaces the command line's period, and the other way round
        sources.setdefault('period', None)
    elif 'period' in sources:
        sources.setdefault('hr_index', None)
    return dataclasses.replace(base, sources=dataclasses.replace(base.sources, lr=row['lr'], hr=row['hr'], **sources),
                               out=row['out'], model=row.get('model') or base.model)


def is_complete(out: str) -> bool:
    """Whether ``out`` is a finished fusion: its sidecar (written last) is there and names as many frames as the
    output holds."""
    sidecar_path = sidecar_path_of(out)
    try:
        frames = json.loads(sidecar_path.read_text())['inputs']['frames']
    except (OSError, ValueError, KeyError):
        return False
    path, dataset = split_h5_spec(out)
    if path.suffix.lower() in H5_SUFFIXES:
        import h5py
        try:
            with h5py.File(path, 'r') as f:
                return f[dataset or '/exchange/data'].shape[0] == frames
        except (OSError, KeyError):
            return False
    return len(list(path.glob('*.tif'))) == frames


def fuse_manifest(base: FuseConfig, rows: list[dict[str, str]], ranks: Ranks) -> list[dict]:
    """Fuse every experiment of a manifest; one summary row each, in the manifest's order (on every rank).

    With several ranks, each fuses whole experiments of its own (every ``world``-th row from its rank on), alone:
    no rank waits for another, and no experiment's set-up (the network, the camera fit) is made twice. One long
    recording is shared among the ranks by segments without ``--manifest``."""
    alone = Ranks()
    run = dataclasses.replace(base.run, device=ranks.device(base.run.device), progress=base.run.progress and
                              ranks.world == 1)  # one progress bar, or one line per experiment from each rank
    mine = {}
    for number, row in enumerate(rows, start=1):
        if (number - 1) % ranks.world == ranks.rank:
            config = dataclasses.replace(experiment_config(base, row), run=run)
            mine[number] = fuse_experiment(config, f'[{number}/{len(rows)}] {row["lr"]} + {row["hr"]} -> '
                                                   f'{row["out"]}', alone)
    merged = {number: result for part in ranks.gather(mine) for number, result in part.items()}
    return [merged[number] for number in sorted(merged)]


def fuse_experiment(config: FuseConfig, head: str, ranks: Ranks) -> dict:
    """One experiment of a manifest, unless it is complete; its summary row, and its progress line printed."""
    if is_complete(config.out):
        print(f'{head}: done before, skipped', flush=True)
        return {'out': config.out, 'status': 'done before', **result_of(config.out)}
    started = time.time()
    try:
        fuse(config, ranks)
    except InputError as error:
        print(f'{head}: failed: {error}', flush=True)
        return {'out': config.out, 'status': f'failed: {error}'}
    result = {'out': config.out, 'status': 'fused', **result_of(config.out), 'seconds': time.time() - started}
    print(f'{head}: {result["frames"]} frames in {result["seconds"]:.1f} s, mean chi2 {result["chi2"]:.3g}',
          flush=True)
    return result


def result_of(out: str) -> dict:
    """Frames, seconds and mean chi2 (non-key frames) of a finished fusion, from its sidecar."""
    sidecar = json.loads(sidecar_path_of(out).read_text())
    chi2 = sidecar['consistency']['mean_chi2_non_key']
    return {'frames': sidecar['inputs']['frames'], 'seconds': sidecar['run']['seconds'],
            'chi2': float('nan') if chi2 is None else chi2}


def summary_table(summary: list[dict]) -> str:
    lines = ['| output | frames | seconds | mean chi2 (non-key) | status |', '|---|---|---|---|---|']
    for s in summary:
        numbers = (f"{s['frames']} | {s['seconds']:.1f} | {s['chi2']:.3g}" if 'frames' in s else '- | - | -')
        lines.append(f"| {s['out']} | {numbers} | {s['status']} |")
    return '\n'.join(lines)
