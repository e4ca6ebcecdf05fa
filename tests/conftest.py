"""Shared fixtures."""
from __future__ import annotations

import os
import shutil
import subprocess
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


@pytest.fixture(scope='session')
def chromium() -> str:
    """A headless browser for the report's test: Debian's chromium, installed with apt-get when it is missing (as
    root); the test is skipped, saying why, where it cannot be had. Nothing is downloaded at run time but the
    Debian package."""
    found = shutil.which('chromium') or shutil.which('chromium-browser')
    if found:
        return found
    if os.name != 'posix' or os.geteuid() != 0 or not shutil.which('apt-get'):
        pytest.skip('the browser test needs Debian\'s chromium (apt-get install chromium), which is not installed '
                    'and cannot be installed here (not root, or no apt-get)')
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    for command in (['apt-get', 'update', '-qq'], ['apt-get', 'install', '-y', '-qq', 'chromium']):
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            pytest.skip(f'the browser test needs Debian\'s chromium; {" ".join(command)} failed: '
                        f'{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}')
    found = shutil.which('chromium')
    if not found:
        pytest.skip('the browser test needs Debian\'s chromium; apt-get installed no chromium command')
    return found
