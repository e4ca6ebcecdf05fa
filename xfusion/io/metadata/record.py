"""The record every camera metadata parser fills: what a camera says about its frames."""
from __future__ import annotations

from pathlib import Path

import numpy as np


class CameraMetadata:
    """What a Phantom .xml, a Shimadzu .ini or a Photron .cih/.cihx says about the frames it describes.

    ``times``: seconds from the trigger of each frame when the file lists them; else frame ``first_frame + i``
    is at (first_frame + i) / frame_rate, shifted by ``time_shift`` (a trigger delay). None: not given.
    """

    def __init__(self, path: Path, format: str):
        self.path, self.format = path, format
        self.frame_rate: float | None = None
        self.times: np.ndarray | None = None
        self.time_source = 'frame rate'
        self.first_frame = 0
        self.time_shift = 0.0  # seconds added to every frame time (a trigger delay)
        self.count: int | None = None
        self.bit_depth: int | None = None
        self.notes: list[str] = []
