"""Synthetic REDS-layout clips: camera and object motion over images that ship with scikit-image.

Stands in for REDS where it cannot be downloaded (tests, the demo, a first look): RGB clips
in ``train_sharp/<clip>/%08d.png``, their x4 bicubic (antialiased) copies in
``train_sharp_bicubic/X4/<clip>/``, and ``meta_info_REDS_GT.txt``.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from xfusion.camera import SCALE
from xfusion.errors import InputError
from xfusion.io.frames import write_frame

# scikit-image sample images stored inside the package (no download needed)
SKIMAGE_IMAGES = ('astronaut', 'chelsea', 'coffee', 'rocket', 'hubble_deep_field', 'retina',
                  'brick', 'grass', 'gravel', 'coins', 'moon', 'camera', 'page', 'text', 'immunohistochemistry')


def load_texture(name: str) -> np.ndarray:
    """A scikit-image sample image as uint8 RGB."""
    from skimage import data
    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8)


def downscale_x4(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, C) uint8 -> x4 smaller by antialiased bicubic (like MATLAB's imresize used for REDS)."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    h, w = frames.shape[1] // SCALE, frames.shape[2] // SCALE
    y = F.interpolate(x, size=(h, w), mode='bicubic', antialias=True, align_corners=False)
    return y.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def _smooth_path(rng: np.random.Generator, frames: int, scale: float) -> np.ndarray:
    """A smooth random 2-D path (frames, 2) with steps of roughly `scale` pixels."""
    velocity = rng.normal(0, scale, 2)
    accel = rng.normal(0, scale * 0.1, (frames, 2))
    steps = velocity + np.cumsum(accel, axis=0)
    return np.cumsum(steps, axis=0) - steps[0]


def bounce(position: float, limit: int) -> int:
    """A position moving freely, folded back into [0, limit] as if bouncing off the ends."""
    if limit <= 0:
        return 0
    folded = abs(position) % (2 * limit)
    return int(folded if folded <= limit else 2 * limit - folded)


def make_clip(rng: np.random.Generator, frames: int, hr_size: tuple[int, int]) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB: a panning, zooming camera over one image, plus a moving, turning object."""
    h, w = hr_size
    names = rng.choice(SKIMAGE_IMAGES, size=2, replace=False)
    background, sprite_src = load_texture(names[0]), load_texture(names[1])
    # enlarge the background so that the camera can travel
    zoom = 1.6 * max(h / background.shape[0], w / background.shape[1], 1.0)
    background = cv2.resize(background, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)
    camera = _smooth_path(rng, frames, rng.uniform(0.5, 3.0))
    camera_zoom = 1.0 + np.cumsum(rng.normal(0, 0.002, frames))

    size = int(rng.integers(min(h, w) // 4, min(h, w) // 2))
    y0 = int(rng.integers(0, sprite_src.shape[0] - size))
    x0 = int(rng.integers(0, sprite_src.shape[1] - size))
    sprite = sprite_src[y0:y0 + size, x0:x0 + size]
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    alpha = ((yy / (size / 2))**2 + (xx / (size / 2.6))**2 <= 1).astype(np.float32)
    alpha = cv2.GaussianBlur(alpha, (5, 5), 1.0)[..., None]
    start = np.array([rng.uniform(0, h - size), rng.uniform(0, w - size)])
    path = start + _smooth_path(rng, frames, rng.uniform(1.0, 5.0))
    spin = rng.uniform(-4, 4)

    cy, cx = background.shape[0] / 2, background.shape[1] / 2
    out = np.empty((frames, h, w, 3), np.uint8)
    for t in range(frames):
        # camera: the output pixel (x, y) shows background pixel M @ (x, y, 1)
        s = camera_zoom[t]
        shift = np.array([cx - w / 2 / s + camera[t, 1], cy - h / 2 / s + camera[t, 0]])
        m = np.array([[1 / s, 0, shift[0]], [0, 1 / s, shift[1]]], np.float32)
        frame = cv2.warpAffine(background, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        # object: rotated sprite pasted at its position on the path (bouncing off the borders)
        rot = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), spin * t, 1.0)
        spr = cv2.warpAffine(sprite, rot, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        a = cv2.warpAffine(alpha, rot, (size, size), flags=cv2.INTER_LINEAR)[..., None]
        py, px = bounce(path[t, 0], h - size), bounce(path[t, 1], w - size)
        region = frame[py:py + size, px:px + size]
        frame[py:py + size, px:px + size] = a * spr + (1 - a) * region
        out[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return out


def synth_reds(out: str | Path, sequences: int = 4, frames: int = 30, hr_size: tuple[int, int] = (192, 320),
               seed: int = 0, first_clip: int = 0) -> Path:
    """Write ``sequences`` clips named ``first_clip``, ``first_clip + 1``, ... (%03d) in REDS layout under ``out``."""
    h, w = hr_size
    if h % (SCALE * 4) or w % (SCALE * 4):
        raise InputError(f'hr size must be a multiple of {SCALE * 4} (LR a multiple of 4), got {h}x{w}')
    if frames < 2:
        raise InputError('a clip needs at least 2 frames')
    out = Path(out)
    meta = out / 'meta_info_REDS_GT.txt'
    old_lines = meta.read_text().splitlines() if meta.exists() else []
    entries = {line.split()[0]: line for line in old_lines if line.strip()}
    for i in tqdm(range(sequences), desc='synth reds', unit='clip'):
        clip = f'{first_clip + i:03d}'
        rng = np.random.default_rng([seed, first_clip + i])
        hr = make_clip(rng, frames, hr_size)
        lr = downscale_x4(hr)
        for t in range(frames):
            # cv2 writes BGR: flip so that the PNGs hold the RGB image
            write_frame(out / 'train_sharp' / clip / f'{t:08d}.png', hr[t][..., ::-1])
            write_frame(out / 'train_sharp_bicubic' / 'X4' / clip / f'{t:08d}.png', lr[t][..., ::-1])
        entries[clip] = f'{clip} {frames} ({h},{w},3)'
    meta.write_text(''.join(entries[c] + '\n' for c in sorted(entries)))
    return out
