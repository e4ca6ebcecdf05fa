"""Shared fixtures."""
from __future__ import annotations

from pathlib import Path

import pytest

import xfusion  # noqa: F401  (registers everything with BasicSR)
from helpers import moving_scene, write_pair_sequence


@pytest.fixture(scope='session')
def reds_root(tmp_path_factory) -> Path:
    """REDS layout (gray HR/LR, meta file): clips 000 (the REDS4 validation clip), 001, 002; 12 frames of 64x64."""
    root = tmp_path_factory.mktemp('reds')
    lines = []
    for i in range(3):
        clip = f'{i:03d}'
        write_pair_sequence(root / 'train_sharp_gray' / clip, root / 'train_sharp_bicubic_gray' / 'X4' / clip,
                            moving_scene(12, (64, 64), seed=i))
        lines.append(f'{clip} 12 (64,64,1)\n')
    (root / 'meta_info_REDS_GT.txt').write_text(''.join(lines))
    return root
