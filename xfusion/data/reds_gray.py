"""The 1-channel copy of REDS used for pretraining, and its meta file (``xfusion reds-gray``)."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from xfusion.errors import InputError
from xfusion.io.frames import list_frames, read_frame, write_frame

# (RGB source, gray copy) folders under the REDS root (the layout of docs/design.md)
REDS_GRAY_PAIRS = (('train_sharp', 'train_sharp_gray'),
                   ('train_sharp_bicubic/X4', 'train_sharp_bicubic_gray/X4'))


def _convert(src: Path, dst: Path) -> None:
    if dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime:
        return  # done by an earlier, interrupted run
    tmp = dst.with_name('.tmp_' + dst.name)
    write_frame(tmp, read_frame(src))  # read_frame gives the luma of colour frames, in their dtype
    os.replace(tmp, dst)


def reds_gray(src: str | Path, workers: int | None = None) -> Path:
    """Write the gray copies of ``src``'s RGB folders and ``meta_info_REDS_GT.txt`` (from the HR clips)."""
    src = Path(src)
    if not (src / REDS_GRAY_PAIRS[0][0]).is_dir():
        raise InputError(f'{src / REDS_GRAY_PAIRS[0][0]}: not found; --src must be the REDS root holding '
                                'train_sharp/ and train_sharp_bicubic/X4/')
    jobs, meta = [], []
    for rgb, gray in REDS_GRAY_PAIRS:
        if not (src / rgb).is_dir():
            raise InputError(f'{src / rgb}: not found')
        for clip in sorted(p for p in (src / rgb).iterdir() if p.is_dir()):
            frames = list_frames(clip)
            (src / gray / clip.name).mkdir(parents=True, exist_ok=True)
            jobs += [(f, src / gray / clip.name / f.with_suffix('.png').name) for f in frames]
            if rgb == REDS_GRAY_PAIRS[0][0]:
                h, w = read_frame(frames[0]).shape
                meta.append(f'{clip.name} {len(frames)} ({h},{w},1)')
    with ThreadPoolExecutor(workers or os.cpu_count()) as pool:
        list(tqdm(pool.map(lambda job: _convert(*job), jobs), total=len(jobs), desc='reds-gray', unit='frame'))
    (src / 'meta_info_REDS_GT.txt').write_text(''.join(line + '\n' for line in meta))
    return src
